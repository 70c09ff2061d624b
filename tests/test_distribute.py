"""Training and evaluation under `tf.distribute` (tfrecog.distribute, FusedTrainer's multi-replica loop, sharded
`log_likelihood`) and the checks of TF_CONFIG, the batch size and the cluster.

Two logical CPU devices must be configured before TensorFlow initialises, so the multi-replica checks run in one
fresh interpreter (`REPLICAS_SCRIPT`) whose JSON report the tests below read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfrecog import distribute

ROOT = Path(__file__).resolve().parents[1]

REPLICAS_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrecog._tf import keras
    from tfrecog import evaluate
    from tfrecog.models import SBN, VAE
    from tfrecog.models.trainer import InputError

    rng = np.random.default_rng(0)
    x = (rng.random((400, 12)) < rng.random(12) * 0.6 + 0.1).astype("float32")
    one = tf.distribute.get_strategy()
    from tfrecog import distribute
    two = distribute.make_strategy("mirrored")  # over /cpu:0 and /cpu:1; the process's one MirroredStrategy
    report = {"replicas": two.num_replicas_in_sync}

    def make(family):
        if family == "vae":
            return VAE(event_size=12, latent_size=3, hidden_sizes=(16,), seed=1), {}
        return SBN(event_size=12, latent_sizes=[4, 3], seed=0), {"baseline_optimizer": keras.optimizers.SGD(0.05)}

    def run(strategy, family, epochs, spy=None):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, extra = make(family)
            model.compile(steps_per_execution=5, optimizer=keras.optimizers.SGD(0.05), **extra)
        if spy is not None:
            original = model._replica_train_update

            def spied(batch):
                replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                tf.py_function(lambda r, b: spy.append((int(r), b.numpy().tolist())), [replica, batch], [])
                return original(batch)

            model._replica_train_update = spied
        history = model.fit(x, batch_size=40, epochs=epochs, verbose=0)
        return model, history.history

    for family in ("vae", "sbn"):
        single, h1 = run(one, family, 20)
        double, h2 = run(two, family, 20)
        report[family] = {"one": h1["loss"], "two": h2["loss"],
                          "updates": [int(single.optimizer.iterations.numpy()),
                                      int(double.optimizer.iterations.numpy())]}
        if family == "sbn":
            report[family]["baseline_updates"] = int(double.baseline_optimizer.iterations.numpy())
            copies = [v.numpy().tolist() for v in double.signal_mean.value.values]
            report[family]["state_copies_equal"] = copies[0] == copies[1]
            report[family]["xla_gradient"] = getattr(double, "_xla_own_gradients_fn", None) is not None
        else:
            vae = single

    # What each replica sees in the first epoch (10 updates of 40 rows): the rows of each update, by replica.
    spy = []
    run(two, "vae", 1, spy)
    report["seen"] = spy
    report["x"] = x.tolist()

    # Adam's step compiled per device (distribute.compile_optimizer_step, the default) against Keras's own step:
    # 30 updates of the VAE on 2 replicas; the weights of both device copies, and both runs' weights.
    compiled_step = distribute.compile_optimizer_step

    def adam_weights(compiled):
        distribute.compile_optimizer_step = compiled_step if compiled else (lambda optimizer: False)
        keras.utils.set_random_seed(0)
        with two.scope():
            model, _ = make("vae")
            model.compile(steps_per_execution=5)
            model.build((None, 12))
        initial = [v.numpy() for v in model.trainable_variables]
        model.fit(x, batch_size=40, epochs=3, verbose=0, shuffle=False)
        distribute.compile_optimizer_step = compiled_step
        copies = [[c.numpy() for c in v.value.values] for v in model.trainable_variables]
        return {"weights": [c[0] for c in copies], "initial": initial,
                "copies_equal": all(np.array_equal(c[0], c[1]) for c in copies),
                "compiled": bool(getattr(model.optimizer, "_tfrecog_compiled_step", False)),
                "updates": int(model.optimizer.iterations.numpy())}

    keras_run, xla_run = adam_weights(False), adam_weights(True)
    report["adam"] = {
        "compiled": [keras_run["compiled"], xla_run["compiled"]],
        "copies_equal": [keras_run["copies_equal"], xla_run["copies_equal"]],
        "updates": [keras_run["updates"], xla_run["updates"]],
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(keras_run["weights"], xla_run["weights"])),
        "moved": min(float(np.abs(a - b).max()) for a, b in zip(keras_run["weights"], keras_run["initial"])),
        "scale": max(float(np.abs(a).max()) for a in keras_run["weights"]),
    }

    # make_strategy("mirrored") again: the same strategy, so further models train under it (a second
    # MirroredStrategy over the same devices fails at its first all-reduce: tensorflow/tensorflow#62790).
    mirrored = distribute.make_strategy("mirrored")
    report["same_strategy"] = [mirrored is distribute.make_strategy("mirrored"), mirrored.num_replicas_in_sync]
    import argparse
    from tfrecog import cli
    report["cli_mirrored_is_it"] = cli._strategy(argparse.Namespace(strategy="mirrored")) is mirrored
    losses = []
    for family in ("sbn", "vae"):
        keras.utils.set_random_seed(0)
        with distribute.make_strategy("mirrored").scope():
            model, extra = make(family)
            model.compile(steps_per_execution=5, **extra)
        losses.append(model.fit(x, batch_size=40, epochs=1, verbose=0).history["loss"][-1])
    report["second_model_loss"] = losses

    # A batch that does not split over the replicas.
    with two.scope():
        odd, _ = make("vae")
        odd.compile(steps_per_execution=5)
    try:
        odd.fit(x, batch_size=41, epochs=1, verbose=0)
        report["odd_batch"] = "no error"
    except InputError as err:
        report["odd_batch"] = str(err)

    # Sharded evaluation: 230 examples in batches of 50 = 5 batches over 2 replicas (the last round half idle).
    a = evaluate.log_likelihood(vae, x[:230], samples=20, batch_size=50, seed=3)
    b = evaluate.log_likelihood(vae, x[:230], samples=20, batch_size=50, seed=3, strategy=two)
    report["eval"] = [a.per_example.tolist(), b.per_example.tolist(), a.per_example_elbo.tolist(),
                      b.per_example_elbo.tolist()]
    print("REPORT", json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def replicas_report():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", REPLICAS_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=900, cwd=ROOT)  # ~70 s on a quiet machine; minutes when it is shared
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


@pytest.mark.parametrize("family", ["vae", "sbn"])
def test_two_replicas_follow_the_one_device_learning_curve(replicas_report, family):
    """200 SGD updates (20 epochs of 10 minibatches of 40) on one device and on 2 replicas of 20 rows each: the
    same initial weights, data order and global minibatches; only the sampling noise differs (each replica draws
    its own). So the per-epoch losses L1_e, L2_e differ by Monte-Carlo noise. Its scale sigma per epoch is estimated
    from the epoch-to-epoch changes on the plateau (last 10 epochs of both runs: sd(diff) / sqrt(2)); then
    d_e = L1_e - L2_e has sd sqrt(2) sigma: every |d_e| < 4.5 sqrt(2) sigma (two-sided p ~ 7e-6 per epoch) and the
    plateau mean |mean d| < 4 sqrt(2) sigma / sqrt(10). A gradient not averaged over the replicas (twice the SGD
    step) or a replica that trained on its half alone moves the curve by more. NVIL: both optimizers stepped
    every update, the running statistics are identical on both replicas, and each replica's gradient ran under
    XLA (`nvil_gradients`, the all-reduce of the signal's moments after it)."""
    report = replicas_report[family]
    assert report["updates"] == [200, 200]
    one, two = np.array(report["one"]), np.array(report["two"])
    sigma = np.concatenate([np.diff(one[10:]), np.diff(two[10:])]).std(ddof=1) / np.sqrt(2)
    d = one - two
    assert np.all(np.abs(d) < 4.5 * np.sqrt(2) * sigma), (d, sigma)
    assert abs(d[10:].mean()) < 4 * np.sqrt(2) * sigma / np.sqrt(10), (d[10:].mean(), sigma)
    assert one[-1] < one[0] - 1.0 and two[-1] < two[0] - 1.0  # both learned
    if family == "sbn":
        assert report["baseline_updates"] == 200 and report["state_copies_equal"]
        assert report["xla_gradient"]  # NVIL's per-replica gradient ran as one XLA computation (nvil_gradients)


def test_each_replica_sees_half_of_each_global_minibatch(replicas_report):
    """The 2-replica run is not a silent 1-replica run: each of the 10 updates of the first epoch gives each
    replica 20 rows (half the global minibatch of 40), and the 20 halves together are the 400 training rows, each
    once (N = 400 = 10 x 40: one pass over the shuffled data)."""
    seen = replicas_report["seen"]
    assert replicas_report["replicas"] == 2 and len(seen) == 20
    assert sorted(replica for replica, _ in seen) == [0] * 10 + [1] * 10
    assert all(np.array(rows).shape == (20, 12) for _, rows in seen)
    rows = np.concatenate([np.array(rows) for _, rows in seen])
    x = np.array(replicas_report["x"])
    as_sorted = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(as_sorted(rows), as_sorted(x))


def test_sharded_log_likelihood_equals_one_device(replicas_report):
    """Each batch is estimated by one replica with the seed it has on one device, so the per-example values agree
    up to float32 summation order (they came out identical here; 1e-5 relative allows for another device's
    kernels)."""
    a, b, elbo_a, elbo_b = (np.array(v) for v in replicas_report["eval"])
    assert a.shape == b.shape == (230,)
    np.testing.assert_allclose(b, a, rtol=1e-5)
    np.testing.assert_allclose(elbo_b, elbo_a, rtol=1e-5)


def test_compiled_adam_step_equals_keras_step_on_every_device(replicas_report):
    """Under a strategy the optimizer's step is one XLA computation per device (distribute.compile_optimizer_step)
    running Keras's own Adam `update_step` on that device's copies. 30 updates of the VAE on 2 replicas with it and
    with Keras's per-variable step from the same start: both device copies of every weight stay identical (a
    function that captured one device's copies would leave the other's behind), and the two runs' weights agree to
    float32 rounding of the fused arithmetic (1e-6 absolute for weights of size ~0.1-1; measured ~5e-8 after 100
    updates of the 784-500-20 VAE), while each weight tensor moved from its start by far more."""
    adam = replicas_report["adam"]
    assert adam["compiled"] == [False, True] and adam["updates"] == [30, 30]
    assert adam["copies_equal"] == [True, True]
    assert adam["max_diff"] < 1e-6, adam
    assert adam["moved"] > 1e-3, adam


def test_mirrored_strategy_is_made_once_per_process(replicas_report):
    """`make_strategy("mirrored")` returns the process's one MirroredStrategy over its 2 devices, so an SBN and then
    a VAE train one after the other in one process (with a fresh strategy for the second, TensorFlow's collectives
    fail: "Shape mismatch in the collective instance 100")."""
    assert replicas_report["same_strategy"] == [True, 2]
    assert all(np.isfinite(loss) for loss in replicas_report["second_model_loss"])


def test_cli_mirrored_over_one_device_runs_the_one_device_path(capsys):
    """`--strategy mirrored` with one local device (this process: one CPU device) runs on the one-device path and
    says so on one line; with two devices (the replicas script) it is the process's MirroredStrategy."""
    import argparse

    from tfrecog import cli

    if len(distribute.local_devices()) != 1:
        pytest.skip("this process sees several local devices")
    assert cli._strategy(argparse.Namespace(strategy="mirrored")) is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"found one local device ({distribute.local_devices()[0]})" in lines[0]
    assert "one-device path" in lines[0]


def test_cli_mirrored_over_two_devices_is_the_mirrored_strategy(replicas_report):
    assert replicas_report["cli_mirrored_is_it"] is True


def test_batch_that_does_not_split_over_replicas(replicas_report):
    message = replicas_report["odd_batch"]
    assert "batch_size=41" in message and "expected a multiple of 2" in message and "\n" not in message


# ----------------------------------------------------------------------------------------------------------------
# TF_CONFIG and the strategy's inputs (no cluster needed)


def _cluster(*ports, index=0):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize("text, expected", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["a:1"]}}', "needs the objects 'cluster' and 'task'"),
    ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "expected only 'worker'"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "'host:port' strings"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "from 0 to 1"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task type is 'chief'"),
])
def test_malformed_tf_config_names_what_was_expected(text, expected):
    environ = {} if text is None else {"TF_CONFIG": text}
    with pytest.raises(distribute.DistributeError, match=expected) as info:
        distribute.read_tf_config(environ)
    assert "\n" not in str(info.value) and "expected" in str(info.value)


def test_chief_is_worker_zero_or_the_chief_task():
    config = json.loads(_cluster(1, 2, index=0))
    assert distribute.is_chief_task(config) and distribute.num_workers(config) == 2
    assert not distribute.is_chief_task(json.loads(_cluster(1, 2, index=1)))
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert not distribute.is_chief_task(with_chief)
    assert distribute.is_chief_task({**with_chief, "task": {"type": "chief", "index": 0}})


def test_worker_count_must_divide_the_global_batch():
    class FourReplicas:  # what check_batch reads of a strategy
        num_replicas_in_sync = 4

    distribute.check_batch(100, FourReplicas())
    with pytest.raises(distribute.DistributeError, match=r"batch_size=90 does not divide over the 4 replicas.*"
                                                         r"expected a multiple of 4"):
        distribute.check_batch(90, FourReplicas())


def _cli(args, env_extra, timeout):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3", **env_extra}
    env.pop("TF_CONFIG", None) if "TF_CONFIG" not in env_extra else None
    return subprocess.run([sys.executable, "-m", "tfrecog", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_cli_multi_worker_without_tf_config(tmp_path):
    result = _cli(["train", "vae", "--dataset", "mnist5k", "--run", str(tmp_path / "run"), "--strategy",
                   "multi-worker"], {}, 120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs the TF_CONFIG environment variable: expected TF_CONFIG=" in lines[0], lines
    assert not (tmp_path / "run").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_unreachable_peer_fails_in_bounded_time(tmp_path):
    """Worker 0 of a two-worker cluster whose worker 1 never starts: a one-line error after the cluster timeout
    (TFRECOG_CLUSTER_TIMEOUT=4 s), nothing written."""
    start = time.time()
    result = _cli(["train", "vae", "--dataset", "mnist5k", "--run", str(tmp_path / "run"), "--strategy",
                   "multi-worker"], {"TF_CONFIG": _cluster(free_port(), free_port()), "TFRECOG_CLUSTER_TIMEOUT": "4"},
                  120)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not assemble within 4 s: no answer from 127.0.0.1:" in lines[0], lines
    assert "expected every address" in lines[0]
    assert time.time() - start < 100
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------------------
# Freed memory kept under a strategy (distribute.keep_freed_heap)

FAULTS_SCRIPT = textwrap.dedent("""
    import json, resource
    import numpy as np
    import tensorflow as tf
    from tfrecog import distribute
    from tfrecog.models import VAE
    x = (np.random.default_rng(0).random((2000, 784)) < 0.3).astype("float32")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = VAE(event_size=784, latent_size=20, hidden_sizes=(500,), seed=0)
        model.compile(steps_per_execution=20)
    model.fit(x, batch_size=100, epochs=1, verbose=0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.fit(x, batch_size=100, epochs=3, verbose=0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"faults_per_update": faults / 60, "pad": distribute.keep_freed_heap()}))
""")


def _faults_per_update(pad: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX", "TF_CONFIG")}
    if pad is not None:
        env["TFRECOG_HEAP_TOP_PAD"] = pad
    result = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc (Linux) is the one tuned")
def test_replicated_fit_keeps_freed_heap_pages_mapped():
    """Under MirroredStrategy every update's XLA gradient is a fresh 6 MB of buffers from malloc. With glibc's
    default pad the emptied heap is unmapped after each update and mapped again at the next, one page fault per
    4 KiB written (~1,100 per update of this VAE on this project's machines); with the pad that the replicated
    train function sets they stay mapped. Page faults are counted by the kernel, not timed, so the bound holds on
    a loaded machine: with the pad, under a quarter of the faults without it and under 300 per update."""
    kept, default = _faults_per_update(None), _faults_per_update("0")
    assert kept["pad"] == distribute.HEAP_TOP_PAD and default["pad"] is None
    assert kept["faults_per_update"] < 300, kept
    assert kept["faults_per_update"] < default["faults_per_update"] / 4, (kept, default)


def test_heap_top_pad_setting_is_checked(monkeypatch):
    monkeypatch.setattr(distribute, "_heap_top_pad_set", None)
    with pytest.raises(distribute.DistributeError, match="TFRECOG_HEAP_TOP_PAD='lots': expected a number of bytes"):
        distribute.keep_freed_heap({"TFRECOG_HEAP_TOP_PAD": "lots"})
    assert distribute.keep_freed_heap({"TFRECOG_HEAP_TOP_PAD": "0"}) is None
    assert distribute.keep_freed_heap({"MALLOC_ARENA_MAX": "2"}) is None  # the user's own malloc settings win
    assert distribute._heap_top_pad_set is None
