"""Tests of tfrecog_runtime (export/tfrecog_runtime/): loading, input checks, batching, threads, no TensorFlow import.

The runtime and Keras agree to float32 round-off; parity within 3e-5 (5e-5 for fDARN's visible layer), relative
beyond magnitude one, for every family is in test_export.py. Here runtime results are compared with the runtime
itself (exactly, or to 1e-6 where the batch split changes).
"""

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import tfrecog_runtime

import tfrecog
from tfrecog import export

REPO = Path(__file__).resolve().parents[1]


runtime = tfrecog_runtime
InputError = runtime.InputError


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    bernoulli = tfrecog.models.VAE(784, 4, (16,), seed=0)
    gaussian = tfrecog.models.VAE(20, 3, (8,), likelihood="gaussian", seed=0)
    return {
        "bernoulli": export.encoder(bernoulli, folder / "bernoulli.onnx", metadata={"model_name": "tiny"}),
        "gaussian": export.encoder(gaussian, folder / "gaussian.onnx", with_sample=False),
        "saved_model": export.encoder(gaussian, folder / "gaussian_sm", format="saved_model"),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def encoder(paths):
    return runtime.load(paths["bernoulli"])


def binary(n, seed=0, size=784):
    return (np.random.default_rng(seed).random((n, size)) < 0.3).astype(np.float32)


def gaussian_noise(n, seed=1, size=4):
    return np.random.default_rng(seed).standard_normal((n, size)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Loading and outputs


def test_attributes_and_outputs(encoder):
    assert encoder.input_size == 784 and encoder.input_name == "x"
    assert encoder.output_names == ["mean", "log_scale", "sample"]
    assert encoder.sample_outputs == ["sample"] and encoder.noise_inputs == {"noise": 4}
    assert encoder.metadata["model_name"] == "tiny" and encoder.metadata["family"] == "VAE"
    assert encoder.kind == "encoder" and "VAE encoder 'tiny'" in repr(encoder)
    x, noise = binary(5), gaussian_noise(5)
    out = encoder(x)
    assert sorted(out) == ["log_scale", "mean"]
    assert all(v.shape == (5, 4) and v.dtype == np.float32 for v in out.values())
    full = encoder.run(x, noise=noise)
    np.testing.assert_allclose(full["sample"], full["mean"] + np.exp(full["log_scale"]) * noise, atol=1e-5)
    np.testing.assert_array_equal(full["mean"], out["mean"])
    assert list(encoder.run(x, noise={"noise": noise}, outputs=["sample"])) == ["sample"]


@pytest.mark.parametrize("n", [0, 1, 2, 1001])
def test_any_batch_size(encoder, n):
    x = binary(n, seed=n)
    out = encoder(x, gaussian_noise(n))
    assert {k: v.shape for k, v in out.items()} == {k: (n, 4) for k in encoder.output_names}
    if n > 1:  # each row on its own gives the same answer as in a batch (to round-off: MatMul tiling differs)
        np.testing.assert_allclose(encoder(x[-1:])["mean"], out["mean"][-1:], atol=1e-6)


def test_chunked_equals_whole(encoder):
    x, noise = binary(10), gaussian_noise(10)
    whole, chunked = encoder(x, noise), encoder(x, noise, batch_size=3)
    for name in whole:
        np.testing.assert_allclose(chunked[name], whole[name], atol=1e-6)


def test_dtype_coercion(encoder):
    x = binary(6)
    reference = encoder(x)["mean"]
    for converted in (x.astype(np.float64), x.astype(np.int64), x.astype(bool), x.astype(np.uint8), x.tolist()):
        np.testing.assert_array_equal(encoder(converted)["mean"], reference)
    noise = gaussian_noise(6)
    np.testing.assert_allclose(encoder(x, noise.astype(np.float64))["sample"], encoder(x, noise)["sample"], atol=0)


def test_session_options_give_the_same_results(paths, encoder):
    other = runtime.load(paths["bernoulli"], intra_op_threads=1, optimization="disable")
    x = binary(7)
    np.testing.assert_allclose(other(x)["mean"], encoder(x)["mean"], atol=1e-6)
    with pytest.raises(ValueError, match="optimization must be one of"):
        runtime.session_options(optimization="max")


# ----------------------------------------------------------------------------------------------------------------
# Bad input: one clear error naming what was expected


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(784, np.float32), r"shape \[N, 784\] \(one example: x\[None, :\]\); got shape \[784\]"),
        (np.zeros((2, 783), np.float32), r"shape \[N, 784\]; got shape \[2, 783\]"),
        (np.zeros((2, 1, 784), np.float32), r"shape \[N, 784\]"),
        (np.full((2, 784), "0"), "must be real numbers"),
        (np.zeros((2, 784), np.complex64), "must be real numbers"),
        ([[0, 1], [1]], "numeric array"),
        (np.full((2, 784), np.nan, np.float32), "NaN or inf values.*expected finite numbers"),
        (np.where(np.eye(2, 784) > 0, np.inf, 0.0), "NaN or inf"),
        (np.full((2, 784), 0.5, np.float32), r"must be binary \(0/1\).*binarize"),
        (np.full((2, 784), 1e39), "NaN or inf"),  # overflows float32
    ],
)
def test_bad_x(encoder, bad, message):
    with pytest.raises(InputError, match=message):
        encoder(bad)


def test_domain_check_can_be_switched_off(paths):
    grey = np.full((2, 784), 0.5, np.float32)
    assert runtime.load(paths["bernoulli"], check_domain=False)(grey)["mean"].shape == (2, 4)


def test_unit_interval_domain(paths):
    encoder = runtime.load(paths["gaussian"])
    assert encoder.noise_inputs == {} and encoder.output_names == ["mean", "log_scale"]
    assert encoder(np.full((3, 20), 0.25))["mean"].shape == (3, 3)
    with pytest.raises(InputError, match=r"must lie in \[0, 1\].*scale to \[0,1\]"):
        encoder(np.full((3, 20), 255.0))
    with pytest.raises(InputError, match="takes no noise"):
        encoder(np.zeros((3, 20)), noise=np.zeros((3, 3)))


@pytest.mark.parametrize(
    "noise, message",
    [
        (np.zeros((3, 5), np.float32), r"noise\['noise'\] must have shape \[N, 4\]"),
        (np.zeros((2, 4), np.float32), "as many rows as x"),
        ({"eps": np.zeros((3, 4))}, r"exactly the keys \['noise'\]"),
        (np.full((3, 4), np.nan), r"noise\['noise'\] contains NaN"),
    ],
)
def test_bad_noise(encoder, noise, message):
    with pytest.raises(InputError, match=message):
        encoder(binary(3), noise)


def test_bad_run_arguments(encoder):
    x = binary(3)
    with pytest.raises(InputError, match="needs the noise inputs noise"):
        encoder.run(x, outputs=["sample"])
    with pytest.raises(InputError, match="unknown output 'median'; expected one of mean, log_scale, sample"):
        encoder.run(x, outputs="median")
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        encoder(x, batch_size=0)


def test_bad_paths(paths, tmp_path):
    with pytest.raises(InputError, match="SavedModel: load it with tf.saved_model.load"):
        runtime.load(paths["saved_model"])
    with pytest.raises(FileNotFoundError, match="no such file"):
        runtime.load(tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        runtime.load(tmp_path / "garbage.onnx")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 2])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "plain.onnx")
    with pytest.raises(InputError, match="has no tfrecog metadata"):
        runtime.load(tmp_path / "plain.onnx")


# ----------------------------------------------------------------------------------------------------------------
# Threads


def test_many_threads_share_one_encoder(encoder):
    """8 threads x 25 calls on one Encoder, each call with its own input and batch size, against serial runs."""
    jobs = [(binary(1 + (i % 5) * 7, seed=i), gaussian_noise(1 + (i % 5) * 7, seed=1000 + i)) for i in range(200)]
    expected = [encoder(x, noise) for x, noise in jobs]
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(8)

    def worker(thread):
        try:
            barrier.wait()
            for i in range(thread, len(jobs), 8):
                results[i] = encoder(*jobs[i])
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got, want in zip(results, expected, strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


# ----------------------------------------------------------------------------------------------------------------
# No TensorFlow: in a fresh interpreter, from the source tree and from an installed-like layout


PROBE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tfrecog_runtime
    encoder = tfrecog_runtime.load(sys.argv[1])
    out = encoder(np.zeros((2, 784), np.float32), np.zeros((2, 4), np.float32))
    assert sorted(out) == ["log_scale", "mean", "sample"], out
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tfrecog", "tf_keras"))
    print("LOCATION", tfrecog_runtime.__file__)
    print("HEAVY", heavy)
    """
)

def run_probe(model_path, env=None, cwd=None):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(model_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return lines["LOCATION"], lines["HEAVY"]


def test_importing_the_runtime_does_not_import_tensorflow(paths, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "export")}  # this checkout's runtime, as pytest imports it
    location, heavy = run_probe(paths["bernoulli"], env=env, cwd=tmp_path)
    assert Path(location).parent == REPO / "export" / "tfrecog_runtime"
    assert heavy == "[]", f"tfrecog_runtime imported {heavy}"


def test_installed_layout_from_another_directory(paths, tmp_path):
    """The layout setup.py installs (tfrecog_runtime from export/tfrecog_runtime/), imported from elsewhere."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "export" / "tfrecog_runtime", site / "tfrecog_runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    location, heavy = run_probe(paths["bernoulli"], env=env, cwd=work)
    assert Path(location).parent == site / "tfrecog_runtime"
    assert heavy == "[]", f"tfrecog_runtime imported {heavy}"
