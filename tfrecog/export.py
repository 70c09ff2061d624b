"""Keras model -> deployable artifact: a TensorFlow SavedModel or an ONNX file, with metadata, written atomically.

Run the ONNX files without TensorFlow through `tfrecog_runtime` (export/tfrecog_runtime/); reload SavedModels with
`tf.saved_model.load`.

Works for any model that implements the export protocol (VAE, SBN, DLGM, ...):

  export_outputs(x) -> {name: [B, k]}          posterior parameters of q(h | x), named
  export_noise_spec() -> {name: size}          noise inputs of export_sample, size per example
  export_sample(x, noise) -> {name: [B, k]}    a posterior sample (VAE: "sample"; DLGM/SBN: per layer) as a
                                               deterministic function of (x, noise)
  export_decoder_outputs(z) -> {name: [B, k]}  parameters of p(x | z); z a tensor or a list of layers
  latent_sizes                                 sizes of the latent layers, bottom first

Notes on tf2onnx (1.17) with TensorFlow 2.21 / Keras 3.15, found while writing this module:
  * `tf2onnx.convert.from_keras` converts a model's `call` (it does work for a plain functional Keras 3 model),
    but what we export are other methods (`export_outputs`, `export_sample`, ...) with named dict outputs. What
    works is `tf2onnx.convert.from_function` on a `tf.function` with an explicit `input_signature` whose body
    calls the model's Keras layers, the same methods the SavedModel endpoints serve. tf2onnx freezes the
    variables into constants and runs grappler, so the VAE encoder becomes MatMul/Add/Tanh/MatMul/Slice, and the
    encoder shared by the parameter and sample outputs is computed once.
  * A dict returned by the function names the ONNX outputs after its keys (listed in sorted order); TensorSpec
    names become the ONNX input names, but a dict *argument* gives '<arg>_<key>' (e.g. 'noise_noise'), so the
    noise inputs are flat positional arguments. Both name sets are checked after conversion.
  * Opset 17 converts everything the protocol needs (including SBN/fDARN's greedy autoregressive passes and
    DLGM's rank-one sampling); the graph also imports the `ai.onnx.ml` domain (harmless).
  * A sample needs randomness; ONNX random ops are not reproducible across runtimes, so the sample is computed
    from noise *inputs* (e.g. `noise` ~ N(0, I) [B, d]) and the graph stays a deterministic function.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path

from tfrecog import io, version
from tfrecog._tf import keras, tf

__all__ = [
    "FORMATS",
    "KINDS",
    "METADATA_KEY",
    "METADATA_ASSET",
    "ExportError",
    "OUTPUTS",
    "BATCH_DIMENSION",
    "encoder",
    "decoder",
    "export_model",
    "build_metadata",
]

FORMATS = ("onnx", "saved_model")
KINDS = ("encoder", "decoder")
# What an encoder computes (`outputs`): the posterior means alone (no noise input), every posterior parameter, the
# noise-driven sample alone, or the parameters and the sample.
OUTPUTS = ("mean", "parameters", "sample", "all")
BATCH_DIMENSION = "batch"  # the name of the dynamic first dimension of every input and output in the ONNX graph
METADATA_KEY = "tfrecog"  # ONNX metadata_props key holding the whole metadata as JSON
METADATA_ASSET = "tfrecog_metadata.json"  # the SavedModel asset (assets/tfrecog_metadata.json)
METADATA_FORMAT_VERSION = 1
ONNX_OPSET = 17

# What the runtime checks about the encoder's input, by likelihood, and the preprocessing that produces it.
_INPUT_DOMAIN = {"bernoulli": "binary", "gaussian": "unit_interval", "categorical": "nonnegative"}
_PREPROCESSING = {
    "bernoulli": "binarize: x in {0,1} (flattened, row-major)",
    "gaussian": "scale to [0,1]: x = pixels / 255 (flattened, row-major)",
    "categorical": "bag of words: x = non-negative word counts over the training vocabulary",
}
# Keys that describe the graph itself: user metadata may not contradict them.
_GRAPH_KEYS = (
    "kind",
    "format",
    "inputs",
    "input_name",
    "input_size",
    "input_domain",
    "output_names",
    "sample_outputs",
    "noise_inputs",
    "batch_size",
    "outputs",
)


class ExportError(ValueError):
    """A model cannot be exported as asked; the message says what was expected."""


# ----------------------------------------------------------------------------------------------------------------
# Public API


def encoder(
    model,
    path,
    format: str = "onnx",
    with_sample: bool = True,
    metadata: dict | None = None,
    batch_size: int | None = None,
    outputs: str | None = None,
) -> str:
    """Exports the recognition model q(h | x) of `model`: x [B, D] -> named posterior parameters (and a sample).

    Outputs: `model.export_outputs(x)` by name (e.g. VAE: `mean`, `log_scale`); with `with_sample`, also
    `sample = model.export_sample(x, noise)`, computed from extra float32 inputs named by
    `model.export_noise_spec()` (VAE: `noise` [B, d] ~ N(0, I), so sample = mean + exp(log_scale) * noise).

    SavedModel: endpoints `encode(x)` and (with_sample) `sample_with_noise(x, noise_dict)`, metadata in
    `assets/tfrecog_metadata.json`. ONNX: one graph with inputs `x` (+ noise inputs when with_sample) and all
    outputs, metadata in `metadata_props["tfrecog"]` (JSON) plus one flat string entry per key.

    Args:
      model: a built (or buildable) tfrecog model implementing the export protocol.
      path: where to write: a file for ONNX (e.g. 'encoder.onnx'), a directory for SavedModel. Written to a
        temporary path beside it and renamed at the end, so a failed export leaves nothing half-written; an
        existing artifact at `path` is replaced only once the new one is complete.
      format: 'onnx' or 'saved_model'.
      with_sample: also export the noise-driven sample (the default of `outputs`: 'all' if True, else
        'parameters').
      metadata: extra entries (e.g. {'model_name': 'vae-mnist', 'zoo_version': '1'}); see `build_metadata`.
      batch_size: None (default) for a dynamic batch dimension (named 'batch' in the ONNX graph), or a fixed size.
      outputs: what the graph computes, one of `OUTPUTS`:
        'mean'        the posterior means E[h | x] alone (VAE: `mean`; DLGM: `mean_1`, ..., `mean_L`), input x only;
        'parameters'  every posterior parameter of `export_outputs` (VAE: `mean`, `log_scale`), input x only;
        'sample'      the noise-driven sample alone (inputs x and the noise);
        'all'         parameters and sample (inputs x and the noise).

    Returns:
      The path written, as a string.

    Example:
      >>> from tfrecog.models import VAE
      >>> model = VAE(784, 20); model.build()                          # doctest: +SKIP
      >>> encoder(model, "/tmp/vae_encoder.onnx")                       # doctest: +SKIP
      '/tmp/vae_encoder.onnx'
    """
    return export_model(
        model, path, format=format, kind="encoder", metadata=metadata, with_sample=with_sample, batch_size=batch_size,
        outputs=outputs,
    )


def decoder(model, path, format: str = "onnx", metadata: dict | None = None, batch_size: int | None = None) -> str:
    """Exports p(x | z): z -> `model.export_decoder_outputs(z)` by name (VAE Bernoulli: `logits`).

    Inputs: `z` [B, K] when the model's decoder takes one tensor (VAE), or `z_1`, ..., `z_L` [B, K_l] when it
    takes a list of per-layer latents (DLGM), or the names of `model.export_decoder_input_spec()` if defined.
    SavedModel endpoint: `decode(z)` (`decode([z_1, ..., z_L])` for a list). Otherwise as `encoder`.
    """
    return export_model(model, path, format=format, kind="decoder", metadata=metadata, batch_size=batch_size)


def export_model(
    model,
    out_path,
    format: str = "onnx",
    kind: str = "encoder",
    metadata: dict | None = None,
    with_sample: bool = True,
    batch_size: int | None = None,
    outputs: str | None = None,
) -> str:
    """The one entry point behind `encoder`/`decoder` (and `tfrecog export`): kind 'encoder' or 'decoder'; `outputs`
    (encoders: one of `OUTPUTS`, see `encoder`; default 'all', or 'parameters' without `with_sample`)."""
    if outputs is None:
        outputs = "all" if with_sample or kind == "decoder" else "parameters"
    if outputs not in OUTPUTS:
        raise ExportError(f"outputs must be one of {', '.join(OUTPUTS)}; got {outputs!r}")
    if kind == "decoder" and outputs != "all":
        raise ExportError(f"outputs={outputs!r} applies to encoders; a decoder exports all of p(x | z)'s parameters")
    if not with_sample and outputs in ("sample", "all") and kind == "encoder":
        raise ExportError(f"outputs={outputs!r} needs the sample; got with_sample=False")
    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if kind not in KINDS:
        raise ExportError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
        raise ExportError(f"batch_size must be None (dynamic) or a positive integer; got {batch_size!r}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ExportError(f"metadata must be a dict of JSON-serialisable values; got {type(metadata).__name__}")
    _check_protocol(model, kind)
    _ensure_built(model)
    graph = _Graph(model, kind, outputs, None if batch_size is None else int(batch_size))
    meta = build_metadata(model, graph, format, metadata)
    path = Path(out_path)
    if format == "onnx":
        _write_atomically(path, lambda tmp: _write_onnx(graph, meta, tmp), directory=False)
    else:
        _write_atomically(path, lambda tmp: _write_saved_model(model, graph, meta, tmp), directory=True)
    return str(path)


def build_metadata(model, graph: _Graph, format: str, extra: dict | None = None) -> dict:
    """The metadata stored with an artifact: what it is, what it expects, where it came from.

    Keys: format_version, kind, format, model_name, zoo_version, family, likelihood; inputs {name: size} (the
    data inputs, in order), input_name and input_size (the first of them), input_domain ('binary' |
    'unit_interval' | 'nonnegative' | 'real': what the runtime accepts), preprocessing (in words); output_names,
    sample_outputs (the outputs that need noise), renamed_outputs {graph name: export_sample name} (a sample
    output named like a parameter output is exported as '<name>_sampled'), noise_inputs {name: size},
    batch_size (null = dynamic, the ONNX dimension 'batch'), outputs (the `OUTPUTS` selection); latent_sizes,
    model_config; git_commit and git_dirty (`io.git_state`; outside a checkout the commit recorded at installation
    or 'unknown', and None), tfrecog_version, tensorflow_version,
    keras_version and, for ONNX, onnx_opset and tf2onnx_version; then the `extra` entries (which may add keys or
    set model_name, zoo_version, preprocessing, ... but not contradict the graph keys).
    """
    likelihood = getattr(model, "likelihood", None)
    commit, dirty = io.git_state()
    meta = {
        "format_version": METADATA_FORMAT_VERSION,
        "kind": graph.kind,
        "format": format,
        "model_name": model.name,
        "zoo_version": None,
        "family": type(model).__name__,
        "likelihood": likelihood,
        "inputs": dict(graph.inputs),
        "input_name": next(iter(graph.inputs)),
        "input_size": next(iter(graph.inputs.values())),
        "input_domain": _INPUT_DOMAIN.get(likelihood, "real") if graph.kind == "encoder" else "real",
        "preprocessing": (
            _PREPROCESSING.get(likelihood, "none stated")
            if graph.kind == "encoder"
            else "none: z is a latent vector (e.g. a posterior sample or a prior draw)"
        ),
        "output_names": list(graph.output_names),
        "sample_outputs": list(graph.sample_names),
        "renamed_outputs": dict(graph.renamed),
        "noise_inputs": dict(graph.noise_spec),
        "batch_size": graph.batch_size,
        "outputs": graph.outputs,
        "latent_sizes": [int(s) for s in model.latent_sizes],
        "model_config": _jsonable(model.get_config()),
        "git_commit": commit or io.git_commit(),
        "git_dirty": dirty,
        "tfrecog_version": version.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    if format == "onnx":
        import tf2onnx

        meta["onnx_opset"] = ONNX_OPSET
        meta["tf2onnx_version"] = tf2onnx.__version__
    for key, value in (extra or {}).items():
        if key == METADATA_KEY:
            raise ExportError(f"metadata key {METADATA_KEY!r} is reserved (it holds the whole metadata in ONNX)")
        if key in _GRAPH_KEYS and meta.get(key) != value:
            raise ExportError(f"metadata[{key!r}] describes the exported graph ({meta.get(key)!r}); got {value!r}")
        meta[str(key)] = value
    try:
        json.dumps(meta)
    except TypeError as err:
        raise ExportError(f"metadata values must be JSON-serialisable: {err}") from err
    return meta


# ----------------------------------------------------------------------------------------------------------------
# The graph: tf.functions with named inputs and outputs, shared by both formats


class _Graph:
    """What to export: named data inputs, noise inputs and outputs, and the functions that compute them.

    Encoder: one data input `x` [B, D]. Decoder: `z` [B, K_1] when `export_decoder_outputs` takes a tensor, or
    `z_1`, ..., `z_L` (sizes `latent_sizes`) when it takes a list of per-layer latents (DLGM's xi); a model may
    also name its inputs itself with `export_decoder_input_spec() -> {name: size}` (several names: a list).
    """

    def __init__(self, model, kind: str, outputs: str, batch_size: int | None):
        self.model = model
        self.kind = kind
        self.batch_size = batch_size
        self.outputs = outputs
        with_sample = kind == "encoder" and outputs in ("sample", "all")
        self.with_sample = with_sample
        self.as_list = False
        if kind == "encoder":
            self.inputs = {"x": int(model.event_size)}
        else:
            self.inputs, self.as_list = self._decoder_inputs(model)
        self.noise_spec = {str(k): int(v) for k, v in model.export_noise_spec().items()} if with_sample else {}
        clash = set(self.inputs) & set(self.noise_spec)
        if clash:
            raise ExportError(f"noise input names {sorted(clash)} clash with the data inputs {list(self.inputs)}")
        self.input_specs = [
            tf.TensorSpec([batch_size, size], tf.float32, name=name) for name, size in self.inputs.items()
        ]
        self.noise_specs = {
            name: tf.TensorSpec([batch_size, size], tf.float32, name=name) for name, size in self.noise_spec.items()
        }
        # Call once on a probe batch to learn the output names (and fail early, eagerly, with a clear message).
        probe = [tf.zeros([1, size]) for size in self.inputs.values()]
        main = self.main_outputs(*probe)
        self.parameter_names = [str(name) for name in main]
        self.all_parameter_names = list(self.parameter_names)  # what export_outputs computes
        # A sample output named like a parameter output (SBN: 'logits_1', which for an autoregressive q depends
        # on the sampled units) is a different tensor: it is exported as '<name>_sampled'.
        self.sample_names, self.renamed = [], {}
        if with_sample:
            noise = {name: tf.zeros([1, size]) for name, size in self.noise_spec.items()}
            for name in map(str, model.export_sample(probe[0], noise)):
                graph_name = f"{name}_sampled" if name in self.parameter_names else name
                if graph_name != name:
                    self.renamed[graph_name] = name
                self.sample_names.append(graph_name)
            if len(set(self.parameter_names + self.sample_names)) != len(self.parameter_names + self.sample_names):
                raise ExportError(f"output names are not unique: {self.parameter_names + self.sample_names}")
        if outputs == "sample":
            self.parameter_names = []
        elif outputs == "mean":
            means = [name for name in self.parameter_names if re.fullmatch(r"mean(_\d+)?", name)]
            if not means:
                raise ExportError(f"outputs='mean': {type(model).__name__} exports no posterior mean (its parameters "
                                  f"are {', '.join(self.parameter_names)}); use outputs='parameters'")
            self.parameter_names = means
        self.output_names = self.parameter_names + self.sample_names
        clash = set(self.output_names) & (set(self.inputs) | set(self.noise_spec))
        if clash:
            raise ExportError(f"output names {sorted(clash)} clash with input names")

    @staticmethod
    def _decoder_inputs(model):
        spec = getattr(model, "export_decoder_input_spec", None)
        if spec is not None:
            inputs = {str(k): int(v) for k, v in spec().items()}
            return inputs, len(inputs) > 1
        sizes = [int(k) for k in model.latent_sizes]
        if len(sizes) == 1:
            try:  # VAE-style: a tensor z; DLGM-style: a list of per-layer latents even for one layer
                model.export_decoder_outputs(tf.zeros([1, sizes[0]]))
                return {"z": sizes[0]}, False
            except (ValueError, TypeError):
                pass
        return {f"z_{layer}": k for layer, k in enumerate(sizes, start=1)}, True

    def main_outputs(self, *inputs):
        """export_outputs(x) for an encoder, export_decoder_outputs(z or [z_1, ..., z_L]) for a decoder."""
        if self.kind == "encoder":
            return self.model.export_outputs(inputs[0])
        return self.model.export_decoder_outputs(list(inputs) if self.as_list else inputs[0])

    # SavedModel endpoints: (function, input_signature) by name; ExportArchive wraps each in a tf.function.

    def endpoints(self):
        model = self.model
        if self.kind == "decoder":
            if self.as_list:
                return {"decode": (lambda z: self.main_outputs(*z), [list(self.input_specs)])}
            return {"decode": (lambda z: self.main_outputs(z), self.input_specs)}
        names = self.parameter_names
        out = {}
        if names:
            out["encode"] = (lambda x: {n: v for n, v in model.export_outputs(x).items() if n in names},
                             self.input_specs)
        if self.with_sample:
            out["sample_with_noise"] = (
                lambda x, noise: model.export_sample(x, noise),
                [*self.input_specs, self.noise_specs],
            )
        return out

    # ONNX: one function of every input (flat positional arguments) returning every output.

    def onnx_function(self):
        noise_names, num_inputs = list(self.noise_spec), len(self.inputs)
        signature = [*self.input_specs, *(self.noise_specs[name] for name in noise_names)]

        def compute(*args):
            out = {}
            if self.parameter_names or self.kind == "decoder":
                out = {n: v for n, v in self.main_outputs(*args[:num_inputs]).items()
                       if self.kind == "decoder" or n in self.parameter_names}
            if noise_names:
                noise = dict(zip(noise_names, args[num_inputs:], strict=True))
                sample = self.model.export_sample(args[0], noise)
                out.update(
                    {
                        (f"{name}_sampled" if name in self.all_parameter_names else name): value
                        for name, value in sample.items()
                    }
                )
            # An Identity per output, so that each is its own node named after its key (and never an input).
            return {name: tf.identity(value) for name, value in out.items()}

        # Flat positional arguments: a dict argument would name the ONNX inputs '<arg>_<key>'.
        return tf.function(compute, input_signature=signature), signature


# ----------------------------------------------------------------------------------------------------------------
# Writers


def _write_onnx(graph: _Graph, meta: dict, tmp: Path):
    import onnx
    import tf2onnx

    function, signature = graph.onnx_function()
    with _quiet_tf2onnx():
        model_proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET)
    inputs = [i.name for i in model_proto.graph.input]
    outputs = [o.name for o in model_proto.graph.output]
    expected_inputs = [*graph.inputs, *graph.noise_spec]
    if sorted(inputs) != sorted(expected_inputs) or sorted(outputs) != sorted(graph.output_names):
        raise ExportError(
            f"tf2onnx produced inputs {inputs} and outputs {outputs}; expected inputs {expected_inputs} and "
            f"outputs {graph.output_names}"
        )
    if graph.batch_size is None:
        _name_batch_dimension(model_proto)
    model_proto.doc_string = f"tfrecog {meta['kind']} of {meta['family']} {meta['model_name']!r}"
    del model_proto.metadata_props[:]
    for key, value in meta.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(tmp))


def _name_batch_dimension(model_proto):
    """Names the dynamic first dimension of every input and output `BATCH_DIMENSION` (tf2onnx leaves 'unk__N'
    names, one per tensor), and of the intermediate tensors that carried the same names."""
    renamed = set()
    for value in [*model_proto.graph.input, *model_proto.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            if dims[0].dim_param:
                renamed.add(dims[0].dim_param)
            dims[0].dim_param = BATCH_DIMENSION
    for value in model_proto.graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renamed:
                dim.dim_param = BATCH_DIMENSION


def _write_saved_model(model, graph: _Graph, meta: dict, tmp: Path):
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (function, signature) in graph.endpoints().items():
        archive.add_endpoint(name, function, input_signature=signature)
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / METADATA_ASSET
        source.write_text(json.dumps(meta, indent=2) + "\n")
        # A tracked Asset is copied into assets/ and its path is restored on load (loaded.metadata_asset).
        archive._tf_trackable.metadata_asset = tf.saved_model.Asset(str(source))
        archive.write_out(str(tmp), verbose=False)
    if not (tmp / "assets" / METADATA_ASSET).is_file():  # pragma: no cover - depends on TF's asset handling
        raise ExportError(f"SavedModel written without its metadata asset assets/{METADATA_ASSET}")


def _write_atomically(path: Path, write, directory: bool):
    """Calls write(tmp) on a temporary path beside `path` (`io.atomic_path`), which then replaces `path`; refuses to
    replace what an export did not write (a directory that is not a SavedModel, or a directory for an ONNX file)."""
    if path.exists():
        if directory and not (path.is_dir() and (path / "saved_model.pb").is_file()):
            raise ExportError(f"{path} exists and is not a SavedModel directory; refusing to replace it")
        if not directory and path.is_dir():
            raise ExportError(f"{path} is a directory; expected a file path for an ONNX export (e.g. model.onnx)")
    with io.atomic_path(path) as tmp:
        write(tmp)


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _check_protocol(model, kind: str):
    needed = (
        ["export_outputs", "export_noise_spec", "export_sample", "latent_sizes"]
        if kind == "encoder"
        else ["export_decoder_outputs", "latent_sizes"]
    )
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise ExportError(
            f"{type(model).__name__} does not implement the export protocol: missing {', '.join(missing)} "
            "(see tfrecog.export's module docstring)"
        )
    if kind == "encoder" and not hasattr(model, "event_size"):
        raise ExportError(f"{type(model).__name__} has no event_size; expected the input size D of x [B, D]")


def _ensure_built(model):
    # Variables must exist before tracing: a tf.function that creates variables cannot be exported.
    if not model.built:
        model.build((None, int(model.event_size)))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return repr(value)


@contextlib.contextmanager
def _quiet_tf2onnx():
    import logging

    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
