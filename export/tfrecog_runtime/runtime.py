"""Loads an ONNX file written by `tfrecog.export` and runs it with onnxruntime and numpy only.

Never import TensorFlow or tfrecog here: this module is the whole deployment dependency (a test checks it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["Encoder", "InputError", "load", "session_options"]

METADATA_KEY = "tfrecog"  # must match tfrecog.export.METADATA_KEY


class InputError(ValueError):
    """Data given to an exported model does not match what it expects; the message says what was expected."""


def session_options(
    intra_op_threads: int | None = None, inter_op_threads: int = 1, optimization: str = "all", spin: bool | None = None
):
    """onnxruntime SessionOptions tuned for small dense graphs (our encoders/decoders).

    Args:
      intra_op_threads: threads inside one op (a MatMul); None = onnxruntime's default (one per physical core).
        1 is usually fastest at batch 1, where thread hand-off costs more than the work it splits.
      inter_op_threads: threads across independent ops; the graphs are chains, so 1.
      optimization: 'all' (default), 'extended', 'basic' or 'disable': the graph optimisation level
        (constant folding, MatMul+Add -> Gemm fusion, ...).
      spin: whether idle intra-op threads busy-wait for work (lower latency, burns CPU); None = default.
    """
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {', '.join(levels)}; got {optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = int(inter_op_threads)
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    if spin is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return options


def load(
    path, intra_op_threads: int | None = None, optimization: str = "all", check_domain: bool = True, providers=None
) -> Encoder:
    """Loads an exported encoder (or decoder) ONNX file; needs only onnxruntime and numpy.

    Args:
      path: an .onnx file written by `tfrecog.export.encoder`/`decoder` (SavedModel directories need
        TensorFlow: load those with `tf.saved_model.load`).
      intra_op_threads, optimization: see `session_options`.
      check_domain: also check the values of x against the metadata's `input_domain` (0/1 for a Bernoulli
        model, [0, 1] for a Gaussian one, >= 0 for counts).
      providers: onnxruntime execution providers (default: CPU).

    Example:
      >>> import tfrecog_runtime
      >>> encoder = tfrecog_runtime.load("vae_encoder.onnx")          # doctest: +SKIP
      >>> encoder(x)["mean"].shape                                       # doctest: +SKIP
      (N, 20)
    """
    import onnxruntime as ort

    path = Path(path)
    if path.is_dir():
        hint = " (a SavedModel: load it with tf.saved_model.load)" if (path / "saved_model.pb").is_file() else ""
        raise InputError(f"{path} is a directory{hint}; expected an .onnx file written by tfrecog.export")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected an .onnx file written by tfrecog.export")
    options = session_options(intra_op_threads=intra_op_threads, optimization=optimization)
    try:
        session = ort.InferenceSession(
            os.fspath(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types for unreadable models
        raise InputError(f"{path}: not a loadable ONNX model ({type(err).__name__}: {err})") from err
    return Encoder(session, check_domain=check_domain, path=str(path))


class Encoder:
    """An exported tfrecog encoder (or decoder): `encoder(x, noise=None) -> {name: np.ndarray}`.

    Inputs:
      x: [N, D] with D = `input_size` (N >= 0; one example is x[None, :]). A decoder whose latents come in
        layers (`inputs` has several names, e.g. z_1, z_2) takes a dict {name: [N, K_l]} or a list in order.
        Coercion rule: any real numeric or boolean array is converted to float32 (float64 is rounded to
        float32; integers and booleans are exact); complex, string and object data are refused. Values must be
        finite, and (with check_domain) within the metadata's `input_domain` (e.g. 0/1 for a Bernoulli VAE).
      noise: needed for the sample outputs (`sample_outputs`) of an encoder exported with_sample: a dict
        {name: [N, size]} (`noise_inputs` gives names, sizes and order), a list in that order, or a bare array
        when there is one noise input; the same coercion applies. The noise distribution is the model's (VAE,
        DLGM: standard normal). Without noise, only the posterior parameters are returned.

    Attributes: `metadata` (dict), `inputs` {name: size}, `input_name`, `input_size`, `noise_inputs`,
    `output_names`, `sample_outputs`, `input_domain`, `kind` ('encoder' or 'decoder').

    Thread safety: the object holds no mutable state after construction and onnxruntime's
    `InferenceSession.run` is thread-safe, so one loaded Encoder may serve many threads at once.
    """

    def __init__(self, session, check_domain: bool = True, path: str | None = None):
        self.session = session
        self.path = path
        self.check_domain = bool(check_domain)
        where = path or "model"
        raw = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in raw:
            raise InputError(f"{where} has no tfrecog metadata; expected a file written by tfrecog.export")
        self.metadata: dict = _parse_metadata(raw[METADATA_KEY], where)
        meta = self.metadata
        inputs = meta.get("inputs") or {meta["input_name"]: meta["input_size"]}
        self.inputs: dict[str, int] = dict(inputs)
        self.input_name: str = next(iter(self.inputs))
        self.input_size: int = self.inputs[self.input_name]
        self.noise_inputs: dict[str, int] = dict(meta.get("noise_inputs") or {})
        self.output_names: list[str] = list(meta["output_names"])
        self.sample_outputs: list[str] = list(meta.get("sample_outputs") or [])
        self.input_domain: str = meta.get("input_domain") or "real"
        self.kind: str = meta.get("kind") or "encoder"
        self.fixed_batch_size: int | None = meta.get("batch_size")
        graph_inputs = sorted(i.name for i in session.get_inputs())
        if graph_inputs != sorted([*self.inputs, *self.noise_inputs]):
            raise InputError(
                f"{where}: metadata names inputs {[*self.inputs, *self.noise_inputs]}, the graph has {graph_inputs}"
            )
        for graph_input in session.get_inputs():
            width = graph_input.shape[-1] if graph_input.shape else None
            size = {**self.inputs, **self.noise_inputs}[graph_input.name]
            if isinstance(width, int) and width != size:
                raise InputError(f"{where}: metadata gives input {graph_input.name!r} size {size}, the graph {width}")
        graph_outputs = sorted(o.name for o in session.get_outputs())
        if sorted(self.output_names) != graph_outputs:
            raise InputError(f"{where}: metadata names outputs {self.output_names}, the graph has {graph_outputs}")
        self._parameter_outputs = [n for n in self.output_names if n not in self.sample_outputs]
        self._preprocessing = meta.get("preprocessing")
        self._output_widths = {o.name: o.shape[-1] for o in session.get_outputs()}

    def __repr__(self):
        inputs = ", ".join(f"{name} [N, {size}]" for name, size in {**self.inputs, **self.noise_inputs}.items())
        return (
            f"Encoder({self.metadata.get('family')} {self.kind} {self.metadata.get('model_name')!r}: "
            f"{inputs} -> {', '.join(self.output_names)})"
        )

    def __call__(self, x, noise=None, batch_size: int | None = None) -> dict[str, np.ndarray]:
        return self.run(x, noise=noise, batch_size=batch_size)

    def run(self, x, noise=None, batch_size: int | None = None, outputs=None) -> dict[str, np.ndarray]:
        """Runs the model on x [N, D]; returns {output name: float32 [N, k]}.

        Args:
          x, noise: see the class docstring.
          batch_size: run in chunks of at most this many rows (bounds memory for large N); None = one run
            (or the exported fixed batch size, when there is one: N must then be a multiple of it).
          outputs: names to compute (default: all that the given inputs allow).
        """
        # A binary input passes the 0/1 check only if finite: the separate finiteness check can then be skipped.
        binary = self.check_domain and self.input_domain == "binary"
        feed = self._named(x, self.inputs, "input", finite=not binary)
        n = feed[self.input_name].shape[0]
        if self.check_domain:
            _check_domain(feed[self.input_name], self.input_domain, self.input_name, self._preprocessing)
        if self.noise_inputs:
            if noise is None:
                # The graph still has the noise inputs: zeros feed them, and the sample outputs are not returned.
                feed.update({name: np.zeros((n, size), np.float32) for name, size in self.noise_inputs.items()})
            else:
                feed.update(self._named(noise, self.noise_inputs, "noise"))
        elif noise is not None:
            raise InputError(f"this {self.kind} takes no noise (it was exported without a sample); got noise")
        for name, value in feed.items():
            if value.shape[0] != n:
                raise InputError(f"{name} must have as many rows as {self.input_name} ({n}); got {value.shape[0]}")
        names = self._output_list(outputs, noise is not None)
        if n == 0:
            return {name: np.zeros((0, self._output_widths[name]), np.float32) for name in names}
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise InputError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        chunk = int(batch_size) if batch_size is not None else self.fixed_batch_size
        if self.fixed_batch_size is not None and (chunk != self.fixed_batch_size or n % chunk):
            raise InputError(
                f"this {self.kind} was exported with a fixed batch size {self.fixed_batch_size}; "
                f"expected N a multiple of it and batch_size None or equal; got N={n}, "
                f"batch_size={batch_size}"
            )
        if chunk is None or n <= chunk:
            return dict(zip(names, self.session.run(names, feed), strict=True))
        parts = [self.session.run(names, {k: v[i : i + chunk] for k, v in feed.items()}) for i in range(0, n, chunk)]
        return {name: np.concatenate([part[j] for part in parts]) for j, name in enumerate(names)}

    def _output_list(self, outputs, with_noise: bool):
        available = self.output_names if with_noise else self._parameter_outputs
        if outputs is None:
            if not available:
                raise InputError(f"this {self.kind} computes only the sample ({', '.join(self.sample_outputs)}); "
                                 f"expected the noise inputs {', '.join(self.noise_inputs)}; got none")
            return available
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        for name in names:
            if name not in self.output_names:
                raise InputError(f"unknown output {name!r}; expected one of {', '.join(self.output_names)}")
            if name not in available:
                raise InputError(f"output {name!r} needs the noise inputs {', '.join(self.noise_inputs)}; got none")
        return names

    def _named(self, value, spec: dict[str, int], what: str, finite: bool = True) -> dict[str, np.ndarray]:
        """Checks a bare array (one name), a list (in order) or a dict against spec {name: size}."""
        if isinstance(value, dict):
            if set(value) != set(spec):
                raise InputError(f"{what} must be a dict with exactly the keys {list(spec)}; got {sorted(value)}")
        elif isinstance(value, (list, tuple)) and len(spec) > 1:
            if len(value) != len(spec):
                raise InputError(f"{what} must be {len(spec)} arrays in the order {list(spec)}; got {len(value)}")
            value = dict(zip(spec, value, strict=True))
        elif len(spec) == 1:
            value = {next(iter(spec)): value}
        else:
            raise InputError(f"{what} must be a dict with keys {list(spec)} (or a list in that order)")
        return {
            name: _check_array(value[name], name if what == "input" else f"{what}[{name!r}]", size, finite)
            for name, size in spec.items()
        }


DOMAINS = ("real", "binary", "unit_interval", "nonnegative")
KINDS = ("encoder", "decoder")


def _parse_metadata(text, where: str) -> dict:
    """The tfrecog metadata of an exported file, checked: a JSON object with `output_names` (a non-empty list of
    names), `inputs` {name: size >= 1} (or `input_name` and `input_size`), and where present `noise_inputs`
    {name: size >= 1}, `sample_outputs` (names among output_names; only with noise_inputs), `input_domain` (one of
    DOMAINS), `kind` (one of KINDS), `batch_size` (null or >= 1), `preprocessing` (text). Raises InputError saying
    which key is wrong."""
    expected = "expected the JSON object written by tfrecog.export (re-export the model)"
    try:
        meta = json.loads(text)
    except (TypeError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{where}: its tfrecog metadata is not valid JSON ({str(err)[:80]}); {expected}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{where}: its tfrecog metadata is a JSON {type(meta).__name__}; {expected}")

    def bad(key, what):
        got = repr(meta.get(key)) if key in meta else "nothing"
        return InputError(f"{where}: tfrecog metadata key {key!r} must be {what}; got {got[:80]}; {expected}")

    def name(value):
        return isinstance(value, str) and value != ""

    def size(value):
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 2**31 - 1

    def sizes(value):
        return isinstance(value, dict) and all(name(k) and size(v) for k, v in value.items())

    if meta.get("inputs") is not None:
        if not (sizes(meta["inputs"]) and meta["inputs"]):
            raise bad("inputs", "a non-empty object {name: size >= 1}")
    else:
        if not name(meta.get("input_name")):
            raise bad("input_name", "a name (or 'inputs' an object {name: size})")
        if not size(meta.get("input_size")):
            raise bad("input_size", "an integer >= 1")
    if meta.get("noise_inputs") is not None and not sizes(meta["noise_inputs"]):
        raise bad("noise_inputs", "an object {name: size >= 1}")
    outputs = meta.get("output_names")
    distinct = isinstance(outputs, list) and len(set(map(repr, outputs))) == len(outputs)
    if not (distinct and outputs and all(name(o) for o in outputs)):
        raise bad("output_names", "a non-empty list of distinct names")
    samples = meta.get("sample_outputs")
    if samples is not None and not (isinstance(samples, list) and all(name(o) and o in outputs for o in samples)):
        raise bad("sample_outputs", "a list of names among output_names")
    if samples and not meta.get("noise_inputs"):
        raise bad("sample_outputs", "empty where there are no noise_inputs (a sample is computed from its noise)")
    if meta.get("input_domain") is not None and meta["input_domain"] not in DOMAINS:
        raise bad("input_domain", f"one of {', '.join(DOMAINS)}")
    if meta.get("kind") is not None and meta["kind"] not in KINDS:
        raise bad("kind", f"one of {', '.join(KINDS)}")
    if meta.get("batch_size") is not None and not size(meta["batch_size"]):
        raise bad("batch_size", "null (dynamic) or an integer >= 1")
    if meta.get("preprocessing") is not None and not isinstance(meta["preprocessing"], str):
        raise bad("preprocessing", "text")
    return meta


def _check_array(value, what: str, size: int, finite: bool = True) -> np.ndarray:
    """float32 [N, size] from an array-like (see Encoder for the coercion rule); finite unless `finite` is False."""
    if type(value) is np.ndarray and value.dtype == np.float32:  # the common case, kept cheap for batch-1 latency
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as err:  # ragged lists
            raise InputError(f"{what} must be a numeric array [N, {size}]; got {type(value).__name__}") from err
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{what} must be real numbers (float32 preferred) [N, {size}]; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != size:
        hint = " (one example: x[None, :])" if arr.ndim == 1 and arr.shape[0] == size else ""
        raise InputError(f"{what} must have shape [N, {size}]{hint}; got shape {list(arr.shape)}")
    if arr.dtype != np.float32:
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported just below
            arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr)
    if finite and not np.isfinite(arr).all():
        raise InputError(
            f"{what} contains NaN or inf values (or values beyond float32's range); expected finite numbers [N, {size}]"
        )
    return arr


def _check_domain(x: np.ndarray, domain: str, what: str, preprocessing: str | None):
    how = f" (preprocessing: {preprocessing})" if preprocessing else ""
    if domain == "binary":
        if not ((x == 0.0) | (x == 1.0)).all():
            if not np.isfinite(x).all():
                raise InputError(
                    f"{what} contains NaN or inf values (or values beyond float32's range); expected "
                    f"finite numbers [N, {x.shape[1]}]"
                )
            raise InputError(
                f"{what} must be binary (0/1) for this model; got values in [{x.min():.3g}, {x.max():.3g}]{how}"
            )
    elif domain == "unit_interval":
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise InputError(
                f"{what} must lie in [0, 1] for this model; got values in [{x.min():.3g}, {x.max():.3g}]{how}"
            )
    elif domain == "nonnegative":
        if x.size and x.min() < 0.0:
            raise InputError(f"{what} must be non-negative counts for this model; got a minimum of {x.min():.3g}{how}")
