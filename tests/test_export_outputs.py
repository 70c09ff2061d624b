"""Export options, checked with plain onnxruntime: `outputs` = mean | parameters | sample | all (the mean alone needs
no noise input), the named batch dimension 'batch', and `tfrecog export --outputs`.

Tolerance 3e-5 absolute on outputs of order one: Keras and ONNX Runtime differ only in the order of float32
summation (a few ulps, see tests/test_export.py); a wrong output (a dropped bias, the wrong tensor) differs by ~1e-2.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tfrecog_runtime

import tfrecog
from tfrecog import cli, export

TOLERANCE = 3e-5


@pytest.fixture(scope="module")
def vae():
    model = tfrecog.models.VAE(12, 3, (8,), seed=0)
    model.build((None, 12))
    return model


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _x(n, d=12, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.5).astype(np.float32)


@pytest.mark.parametrize("outputs, inputs, names", [
    ("mean", ["x"], ["mean"]),
    ("parameters", ["x"], ["log_scale", "mean"]),
    ("sample", ["noise", "x"], ["sample"]),
    ("all", ["noise", "x"], ["log_scale", "mean", "sample"]),
])
def test_outputs_choose_the_graph_inputs_and_outputs(vae, tmp_path, outputs, inputs, names):
    path = export.encoder(vae, tmp_path / f"{outputs}.onnx", outputs=outputs)
    session = _session(path)
    assert sorted(i.name for i in session.get_inputs()) == inputs
    assert sorted(o.name for o in session.get_outputs()) == names
    meta = json.loads(session.get_modelmeta().custom_metadata_map["tfrecog"])
    assert meta["outputs"] == outputs and sorted(meta["output_names"]) == names
    x = _x(5)
    noise = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    feed = {"x": x, **({"noise": noise} if "noise" in inputs else {})}
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
    expected = {k: v.numpy() for k, v in vae.export_outputs(x).items()}
    expected["sample"] = expected["mean"] + np.exp(expected["log_scale"]) * noise  # z = mu + sigma * eps
    for name in names:
        np.testing.assert_allclose(got[name], expected[name], atol=TOLERANCE, rtol=0)


def test_the_mean_alone_runs_without_noise_at_any_batch_size_named_batch(vae, tmp_path):
    path = export.encoder(vae, tmp_path / "mean.onnx", outputs="mean")
    proto = onnx.load(str(path))
    for value in [*proto.graph.input, *proto.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        assert first.dim_param == "batch" and not first.HasField("dim_value"), value.name
    session = _session(path)
    for n in (1, 7):
        x = _x(n, seed=n)
        (mean,) = session.run(["mean"], {"x": x})
        np.testing.assert_allclose(mean, vae.export_outputs(x)["mean"].numpy(), atol=TOLERANCE, rtol=0)
    # tfrecog_runtime reads the same file: no noise needed, the mean only.
    encoder = tfrecog_runtime.load(path)
    assert list(encoder(_x(2))) == ["mean"] and encoder.noise_inputs == {}


def test_a_fixed_batch_size_keeps_its_number(vae, tmp_path):
    proto = onnx.load(export.encoder(vae, tmp_path / "fixed.onnx", outputs="mean", batch_size=4))
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_dlgm_means_per_layer_and_sbn_has_no_mean(tmp_path):
    dlgm = tfrecog.models.DLGM(12, latent_sizes=(3, 2), hidden_sizes=(8,), recognition_hidden_sizes=(8,), seed=0)
    dlgm.build((None, 12))
    session = _session(export.encoder(dlgm, tmp_path / "dlgm.onnx", outputs="mean"))
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert sorted(o.name for o in session.get_outputs()) == ["mean_1", "mean_2"]
    x = _x(3)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))
    for name, value in dlgm.export_outputs(x).items():
        if name.startswith("mean_"):
            np.testing.assert_allclose(got[name], value.numpy(), atol=TOLERANCE, rtol=0)
    sbn = tfrecog.models.SBN(12, latent_sizes=(4,), seed=0)
    sbn.build((None, 12))
    with pytest.raises(export.ExportError, match="exports no posterior mean .*logits_1.*outputs='parameters'"):
        export.encoder(sbn, tmp_path / "sbn.onnx", outputs="mean")
    session = _session(export.encoder(sbn, tmp_path / "sbn.onnx", outputs="sample"))
    assert sorted(o.name for o in session.get_outputs()) == ["logits_1_sampled", "sample_1"]
    assert sorted(i.name for i in session.get_inputs()) == ["noise_1", "x"]


def test_bad_outputs_are_refused_in_one_line(vae, tmp_path):
    with pytest.raises(export.ExportError, match="outputs must be one of mean, parameters, sample, all; got 'means'"):
        export.encoder(vae, tmp_path / "a.onnx", outputs="means")
    with pytest.raises(export.ExportError, match="applies to encoders"):
        export.export_model(vae, tmp_path / "c.onnx", kind="decoder", outputs="mean")
    with pytest.raises(export.ExportError, match="needs the sample; got with_sample=False"):
        export.encoder(vae, tmp_path / "d.onnx", with_sample=False, outputs="sample")
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "d.onnx").exists()


def test_a_sample_only_encoder_asks_the_runtime_for_noise(vae, tmp_path):
    encoder = tfrecog_runtime.load(export.encoder(vae, tmp_path / "s.onnx", outputs="sample"))
    with pytest.raises(tfrecog_runtime.InputError, match="computes only the sample .*expected the noise inputs noise"):
        encoder(_x(2))
    assert list(encoder(_x(2), noise=np.zeros((2, 3), np.float32))) == ["sample"]


def test_cli_export_outputs_mean(tmp_path, capsys):
    out = tmp_path / "enc.onnx"
    assert cli.main(["export", "vae-frey", "--outputs", "mean", "--out", str(out)]) == 0
    session = _session(out)
    assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["mean"]
    assert session.get_inputs()[0].shape == ["batch", 560]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "vae-frey", "--outputs", "median", "--out", str(out)])
    assert exit_.value.code == 2 and "invalid choice: 'median'" in capsys.readouterr().err
