"""Property-based fuzzing (hypothesis) of every reader, the run-folder loader, the runtime's metadata and input checks
and the CLI's argument parsing. Each property: the input is either refused with one line (the module's own error
type, naming the file) or accepted and then equal to what an independent oracle says it holds; never another
exception. Bounded: `max_examples` per fuzzer and a per-example deadline (the whole file well under a minute).
"""

import contextlib
import gzip
import io as std_io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tfrecog_runtime as runtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tfrecog import checkpoints, cli, data, models, training
from tfrecog.checks import LIMITS

FUZZ = settings(deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                derandomize=True, database=None)  # the same inputs on every run: failures reproduce, CI is stable


def fuzz(max_examples: int):
    return settings(FUZZ, max_examples=max_examples)


def _one_line(err, path=None):
    message = str(err)
    assert "\n" not in message, message
    if path is not None:
        assert str(path) in message, message


@st.composite
def mutated(draw, valid: bytes):
    """`valid` unchanged, truncated, with a byte replaced, inserted or deleted, or random bytes instead."""
    kind = draw(st.sampled_from(["same", "truncate", "replace", "insert", "delete", "random"]))
    if kind == "random" or not valid:
        return draw(st.binary(max_size=2 * len(valid) + 16))
    if kind == "same":
        return valid
    i = draw(st.integers(0, len(valid) - 1))
    if kind == "truncate":
        return valid[:i]
    if kind == "delete":
        return valid[:i] + valid[i + 1:]
    b = bytes([draw(st.integers(0, 255))])
    return valid[:i] + b + valid[i + (kind == "replace"):]


def _tmp_file(content: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="tfrecog-fuzz-"))
    path = folder / name
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Readers: 100 + 100 + 200 + 40 inputs


def _amat_bytes(rows):
    return "".join(" ".join(map(str, r)) + "\n" for r in rows).encode()


@st.composite
def amat_files(draw):
    rows = draw(hnp.arrays(np.uint8, st.tuples(st.integers(1, 2), st.just(784)), elements=st.integers(0, 1)))
    return draw(mutated(_amat_bytes(rows)))


@fuzz(100)
@given(amat_files())
def test_fuzz_amat(content):
    path = _tmp_file(content, "binarized_mnist_test.amat")
    try:
        x = data.read_amat(path)
    except data.DatasetError as err:
        _one_line(err, path)
        return
    # Accepted only if it is exactly the text of N lines of 784 space-separated 0/1 values.
    assert x.ndim == 2 and x.shape[1] == 784 and set(np.unique(x)) <= {0, 1}
    assert _amat_bytes(x) == content


def _idx_bytes(array):
    return bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape) + array.tobytes()


@st.composite
def idx_files(draw):
    array = draw(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)))
    raw = draw(mutated(_idx_bytes(array)))
    compress = draw(st.booleans())
    return (draw(mutated(gzip.compress(raw))) if compress else raw), compress


@fuzz(100)
@given(idx_files())
def test_fuzz_idx(case):
    content, compressed = case
    path = _tmp_file(content, "x-idx.gz" if compressed else "x-idx")
    try:
        array = data.read_idx(path)
    except data.DatasetError as err:
        _one_line(err, path)
        return
    plain = gzip.decompress(content) if compressed else content
    assert array.dtype == np.uint8 and _idx_bytes(array) == plain


VOCAB = 7
_ITEMS = st.one_of(
    st.builds(lambda i, c: f"{i}:{c}", st.integers(1, VOCAB), st.integers(1, 9)),  # valid
    st.builds(lambda i, c: f"{i}:{c}", st.integers(-3, VOCAB + 3), st.integers(-3, 9)),
    st.builds(lambda i, c: f"{i}:{c}", st.integers(1, VOCAB), st.floats(allow_nan=True, allow_infinity=True)),
    st.text(alphabet="0123456789:.-e\u0663 x", max_size=6).filter(lambda t: t.strip() == t and t),
)


@st.composite
def feat_files(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=60))
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        label = draw(st.sampled_from(["1", "20", "x", "-1"]))
        lines.append(" ".join([label, *draw(st.lists(_ITEMS, max_size=4))]))
    return ("\n".join(lines) + draw(st.sampled_from(["", "\n"]))).encode(draw(st.sampled_from(["utf-8", "utf-16"])))


def _feat_oracle(content: bytes):
    """Counts [N, VOCAB], or None where the format is violated anywhere."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        if not re.fullmatch(r"-?[0-9]+", parts[0]):
            return None
        row = np.zeros(VOCAB, np.float32)
        for item in parts[1:]:
            m = re.fullmatch(r"([0-9]+):([0-9]+)", item)
            if not m or not 1 <= int(m.group(1)) <= VOCAB or int(m.group(2)) < 1:
                return None
            row[int(m.group(1)) - 1] += int(m.group(2))
        rows.append(row)
    return np.stack(rows) if rows else None


@fuzz(200)
@given(feat_files())
def test_fuzz_bag_of_words(content):
    path = _tmp_file(content, "train.feat")
    expected = _feat_oracle(content)
    try:
        counts = data.read_bag_of_words(path, VOCAB)
    except data.DatasetError as err:
        _one_line(err, path)
        assert expected is None, "refused a valid file"
        return
    assert expected is not None, "accepted an invalid file"
    np.testing.assert_array_equal(counts, expected)


def _valid_mat() -> bytes:
    from scipy.io import savemat

    buffer = std_io.BytesIO()
    savemat(buffer, {"ff": np.random.default_rng(0).integers(0, 256, (560, 1965)).astype(np.uint8)})
    return buffer.getvalue()


_MAT = _valid_mat()


@st.composite
def mat_files(draw):
    if draw(st.booleans()):
        return draw(mutated(_MAT[:4000])) if draw(st.booleans()) else draw(mutated(_MAT))
    from scipy.io import savemat

    shape = draw(st.sampled_from([(560, 1965), (560, 10), (1965, 560), (3,)]))
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float64]))
    buffer = std_io.BytesIO()
    savemat(buffer, {draw(st.sampled_from(["ff", "x"])): np.full(shape, draw(st.integers(-5, 300))).astype(dtype)})
    return buffer.getvalue()


@fuzz(40)
@given(mat_files())
def test_fuzz_frey(content):
    path = _tmp_file(content, "frey_rawface.mat")
    try:
        ff = data.read_frey(path)
    except data.DatasetError as err:
        _one_line(err, path)
        return
    assert ff.shape == (560, 1965) and ff.dtype.kind in "ui" and 0 <= ff.min() and ff.max() <= 255


# ---------------------------------------------------------------------------------------------------------------
# Run-folder loader: 100 + 100 + 150 + 40 inputs

JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=8)


def _json_text(value):
    return json.dumps(value)  # NaN and Infinity as Python writes them, which strict JSON readers refuse


@st.composite
def states(draw):
    good = {"epoch": 3, "wall_seconds": 1.5, "updates": 120, "commits": ["abc"]}
    kind = draw(st.sampled_from(["any", "edit", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "any":
        return _json_text(draw(JSON))
    key = draw(st.sampled_from([*good, "files"]))
    edited = {**good, key: draw(JSON)} if draw(st.booleans()) else {k: v for k, v in good.items() if k != key}
    return _json_text(edited)


@fuzz(100)
@given(states())
def test_fuzz_checkpoint_state(text):
    path = _tmp_file(text.encode("utf-8", "surrogatepass"), "state.json")
    try:
        state = checkpoints.read_state(path)
    except checkpoints.CheckpointError as err:
        _one_line(err, path)
        return
    assert isinstance(state["epoch"], int) and state["epoch"] >= 0 and not isinstance(state["epoch"], bool)
    assert math.isfinite(state.get("wall_seconds", 0.0)) and state.get("wall_seconds", 0.0) >= 0
    assert state.get("updates") is None or (isinstance(state["updates"], int) and state["updates"] >= 0)


@st.composite
def configs(draw):
    good = training.default_config("vae", "mnist5k")
    kind = draw(st.sampled_from(["any", "edit", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "any":
        return _json_text(draw(JSON))
    key = draw(st.sampled_from(list(training.CONFIG_KEYS)))
    edited = {**good, key: draw(JSON)} if draw(st.booleans()) else {k: v for k, v in good.items() if k != key}
    return _json_text(edited)


@fuzz(100)
@given(configs())
def test_fuzz_run_config(text):
    path = _tmp_file(text.encode("utf-8", "surrogatepass"), "config.json")
    try:
        config = training.read_config(path)
    except training.RunError as err:
        _one_line(err, path)
        return
    for key, kind in training.CONFIG_KEYS.items():
        assert isinstance(config[key], kind) and not isinstance(config[key], bool)
    assert config["family"] in models.FAMILIES and config["batch_size"] >= 1 and config["epochs"] >= 0


_ROWS = st.one_of(
    st.builds(lambda e, a, b: f"{e},{a},{b}", st.integers(0, 6), st.floats(allow_nan=False), st.floats()),  # whole
    st.builds(lambda e: f"{e},1.0", st.integers(0, 6)),  # too short
    st.text(alphabet="0123456789,.-x", max_size=8),
)


@fuzz(150)
@given(st.sampled_from(["epoch,loss,val_loss", "loss,epoch", ""]), st.lists(_ROWS, max_size=6), st.booleans(),
       st.integers(0, 6))
def test_fuzz_history(header, rows, final_newline, epochs):
    text = "\n".join([header, *rows]) + ("\n" if final_newline else "")
    path = _tmp_file(text.encode(), "history.csv")
    try:
        kept = checkpoints.repair_history(path, epochs)
    except checkpoints.CheckpointError as err:
        _one_line(err, path)
        return
    if not path.exists() or not path.read_text():
        assert kept == 0
        return
    head, *body = path.read_text().split("\n")[:-1]
    numbers = [int(r.split(",")[0]) for r in body]
    # One whole row per checkpointed epoch, in order, each from the input.
    assert numbers == sorted(set(numbers)) and all(0 <= n < epochs for n in numbers) and len(body) == kept
    assert all(len(r.split(",")) == len(head.split(",")) and r in rows for r in body)


DAMAGES = ["truncate", "flip", "delete_weights", "garbage_state", "delete_state", "wrong_sha"]


@fuzz(40)
@given(st.lists(st.tuples(st.sampled_from([0, 1]), st.sampled_from(DAMAGES)), max_size=3))
def test_fuzz_checkpoint_choice(damages):
    folder = Path(tempfile.mkdtemp(prefix="tfrecog-fuzz-")) / "checkpoints"
    previous = None
    for epoch in (1, 2, 3):
        previous = checkpoints.publish(folder, {"epoch": epoch, "wall_seconds": 0.0},
                                       lambda p, e=epoch: p.write_bytes(b"weights-%d" % e * 50), None, previous)
    kept = sorted(folder.iterdir())  # [older, newer]
    damaged = set()
    for which, damage in damages:
        target = kept[which]
        weights, state = target / "last.weights.h5", target / "state.json"
        if damage == "truncate" and weights.exists():
            weights.write_bytes(weights.read_bytes()[:7])
        elif damage == "flip" and weights.exists():
            raw = bytearray(weights.read_bytes())
            raw[3] ^= 0xFF
            weights.write_bytes(bytes(raw))
        elif damage == "delete_weights":
            weights.unlink(missing_ok=True)
        elif damage == "garbage_state":
            state.write_text("{\"epoch\": ")
        elif damage == "delete_state":
            state.unlink(missing_ok=True)
        elif damage == "wrong_sha" and state.exists() and "{\"epoch\": " != state.read_text():
            content = json.loads(state.read_text())
            content["files"]["last"]["sha256"] = "0" * 64
            state.write_text(json.dumps(content))
        damaged.add(which)
    with pytest.warns(checkpoints.CheckpointWarning) if 1 in damaged and 0 not in damaged else \
            contextlib.nullcontext():
        try:
            chosen = checkpoints.latest(folder)
        except checkpoints.CheckpointError as err:
            _one_line(err)
            assert damaged == {0, 1}
            return
    assert chosen.folder == kept[1 if 1 not in damaged else 0]
    assert chosen.last.read_bytes() == b"weights-%d" % chosen.state["epoch"] * 50


# ---------------------------------------------------------------------------------------------------------------
# Runtime: 100 metadata documents, 150 inputs

GOOD_META = {"kind": "encoder", "inputs": {"x": 3}, "input_name": "x", "input_size": 3, "output_names": ["mean"],
             "sample_outputs": [], "input_domain": "binary", "batch_size": None}


def _onnx(metadata: str) -> Path:
    import onnx

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["mean"])], "tiny",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])],
        [onnx.helper.make_tensor_value_info("mean", onnx.TensorProto.FLOAT, [None, 3])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.helper.set_model_props(model, {"tfrecog": metadata})
    path = Path(tempfile.mkdtemp(prefix="tfrecog-fuzz-")) / "m.onnx"
    onnx.save(model, str(path))
    return path


@st.composite
def metadata(draw):
    kind = draw(st.sampled_from(["any", "edit", "drop", "text"]))
    if kind == "text":
        return draw(st.text(max_size=30))
    if kind == "any":
        return _json_text(draw(JSON))
    key = draw(st.sampled_from([*GOOD_META, "noise_inputs", "preprocessing"]))
    if kind == "drop":
        return _json_text({k: v for k, v in GOOD_META.items() if k != key})
    return _json_text({**GOOD_META, key: draw(JSON | st.just({"x": 3}) | st.just(["mean"]))})


@fuzz(100)
@given(metadata())
def test_fuzz_runtime_metadata(text):
    path = _onnx(text)
    try:
        encoder = runtime.load(path)
    except runtime.InputError as err:
        _one_line(err, path)
        return
    # Accepted metadata describes the graph: the encoder runs on a valid input and returns the named outputs.
    n = encoder.fixed_batch_size or 2  # an exported fixed batch size is the one N accepted (or a multiple)
    out = encoder(np.ones((n, 3), np.float32))
    assert set(out) <= set(encoder.output_names) and all(v.shape[0] == n for v in out.values())


_ENCODER = runtime.load(_onnx(json.dumps(GOOD_META)))
_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_, np.complex64])


@fuzz(150)
@given(st.one_of(
    hnp.arrays(_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    hnp.arrays(_DTYPES, st.tuples(st.integers(0, 4), st.just(3))),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.just(3)), elements=st.sampled_from([0.0, 1.0, 0.5, -1.0,
                                                                                               np.nan, np.inf, 1e300])),
    st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), max_size=3),
    st.text(max_size=3), st.none()))
def test_fuzz_runtime_inputs(x):
    try:
        out = _ENCODER(x)["mean"]
    except runtime.InputError as err:
        _one_line(err)
        return
    # Accepted: an [N, 3] real array of 0/1 values (the binary domain), passed through exactly as float32.
    arr = np.asarray(x)
    assert arr.ndim == 2 and arr.shape[1] == 3 and arr.dtype.kind in "biuf"
    assert np.isin(arr, [0, 1]).all()
    np.testing.assert_array_equal(out, arr.astype(np.float32))


# ---------------------------------------------------------------------------------------------------------------
# CLI argument parsing: 200 command lines

_NUMERIC = [  # (subcommand prefix, option, minimum, maximum, integer)
    (["evaluate", "r"], "--samples", 1, LIMITS["samples"], True),
    (["evaluate", "r"], "--batch-size", 1, LIMITS["batch_size"], True),
    (["evaluate", "r"], "--limit", 1, LIMITS["limit"], True),
    (["evaluate", "r"], "--seed", 0, LIMITS["seed"], True),
    (["train", "vae"], "--epochs", 1, LIMITS["epochs"], True),
    (["train", "vae"], "--samples", 1, 10**4, True),
    (["train", "vae"], "--latent-size", 1, LIMITS["size"], True),
    (["train", "vae"], "--max-seconds", 0, LIMITS["seconds"], False),
    (["train", "vae"], "--lr", 0, 10, False),
    (["train", "vae"], "--ema", 0, 1, False),
    (["impute", "r"], "--steps", 0, LIMITS["steps"], True),
    (["impute", "r"], "--num", 1, LIMITS["num"], True),
    (["sample", "r"], "--num", 1, LIMITS["num"], True),
    (["quickstart"], "--seconds", 0, LIMITS["seconds"], False),
    (["quickstart"], "--samples", 1, LIMITS["samples"], True),
]
_PARSER = cli.build_parser()


@fuzz(200)
@given(st.sampled_from(_NUMERIC), st.one_of(
    st.integers(-10, 10).map(str), st.integers().map(str), st.floats().map(repr), st.floats(0, 2).map(str),
    st.text(max_size=8), st.sampled_from(["1e3", "0x10", " 5", "5 ", "+5", "1_000", "٣", "nan", "-inf", ""])))
def test_fuzz_cli_numbers(case, text):
    prefix, option, low, high, integer = case
    err = std_io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = _PARSER.parse_args([*prefix, f"{option}={text}"])
    except SystemExit as exit_info:
        assert exit_info.code == 2
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and "error: argument " + option in lines[0], lines
        return
    value = getattr(args, option.lstrip("-").replace("-", "_"))
    if integer:
        assert isinstance(value, int) and low <= value <= high and value == int(text)
    else:
        assert isinstance(value, float) and math.isfinite(value) and low < value <= high
        assert value == float(text)
    assert option != "--ema" or value < 1


def test_fuzz_budget_is_recorded():
    """The numbers of inputs above, as the docs state them (a changed budget must be changed there too)."""
    budgets = {"amat": 100, "idx": 100, "bag_of_words": 200, "frey": 40, "checkpoint_state": 100, "run_config": 100,
               "history": 150, "checkpoint_choice": 40, "runtime_metadata": 100, "runtime_inputs": 150,
               "cli_numbers": 200}
    for name, count in budgets.items():
        assert globals()[f"test_fuzz_{name}"]._hypothesis_internal_use_settings.max_examples == count, name
