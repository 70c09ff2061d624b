"""Scaling of `fit` over tf.distribute: examples/s of the VAE workload (784-500-20, minibatch 100, 50 updates per
call, random binary MNIST-shaped data) on one device (the single-process fused path), under MirroredStrategy with 1
and 2 replicas (2 logical CPU devices), and under MultiWorkerMirroredStrategy with 1 and 2 worker processes on
127.0.0.1, with diagnostic rows that split the 1-replica cost (the gradient alone, the loop alone, Keras's own
optimizer step, glibc's default heap pad). Each configuration runs in fresh processes (logical devices and
TF_CONFIG must be set before TensorFlow starts): one warm-up epoch (tracing, XLA), then `--epochs` timed epochs of
5000 examples.

Usage (from the repository root):
  python -m bench.scaling                     # writes bench/results/scaling.json and bench/results/SCALING.md
  python -m bench.scaling --family sbn        # the SBN trained by NVIL: scaling_sbn.json and SCALING_SBN.md
  python -m bench.scaling --epochs 2 --out /tmp/SCALING.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import BATCH_SIZE, REPO, RESULTS_DIR

CONFIGURATIONS = [
    ("one device (fused, default strategy)", "default", 1),
    ("MirroredStrategy, 1 replica", "mirrored1", 1),
    # Diagnostics of the 1-replica row (not configurations a user runs): the same loop without the optimizer step
    # (each update's XLA gradient only), and the loop alone (no gradient, no step).
    ("MirroredStrategy, 1 replica, gradient only (diagnostic: no optimizer step)", "mirrored1-gradient", 1),
    ("MirroredStrategy, 1 replica, loop only (diagnostic: no gradient, no step)", "mirrored1-loop", 1),
    # What the two measures of tfrecog.distribute give (round 8 of bench/results/SPEED_NOTES.md): the 1-replica row
    # with Keras's own per-variable optimizer step, and with glibc's default heap pad (TFRECOG_HEAP_TOP_PAD=0).
    ("MirroredStrategy, 1 replica, Keras's optimizer step (diagnostic)", "mirrored1-keras-step", 1),
    ("MirroredStrategy, 1 replica, glibc's default heap pad (diagnostic)", "mirrored1-default-heap", 1),
    ("MirroredStrategy, 2 replicas (2 logical CPUs)", "mirrored2", 1),
    ("MultiWorkerMirroredStrategy, 1 worker process", "multi-worker", 1),
    ("MultiWorkerMirroredStrategy, 2 worker processes (loopback)", "multi-worker", 2),
]
# `--family sbn`: the SBN 200-200-200 trained by NVIL (bench.common.build_tfrecog_model), whose update under a
# strategy has its own gradient part (`nvil_gradients`); the diagnostic row runs that part without XLA.
SBN_CONFIGURATIONS = [
    ("one device (fused, default strategy)", "default", 1),
    ("MirroredStrategy, 1 replica", "mirrored1", 1),
    ("MirroredStrategy, 1 replica, NVIL's gradient without XLA (diagnostic)", "mirrored1-no-xla-gradient", 1),
    ("MirroredStrategy, 2 replicas (2 logical CPUs)", "mirrored2", 1),
    ("MultiWorkerMirroredStrategy, 1 worker process", "multi-worker", 1),
    ("MultiWorkerMirroredStrategy, 2 worker processes (loopback)", "multi-worker", 2),
]


def worker(mode: str, epochs: int, family: str = "vae") -> dict:
    """Runs in a fresh interpreter: one configuration's timed `fit`; returns examples/s and the updates made."""
    import dataclasses

    import tensorflow as tf

    if mode == "mirrored2":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from bench.common import BATCH_SIZE, binary_data, build_tfrecog_model
    from tfrecog import distribute, estimators
    from tfrecog._tf import keras
    from tfrecog.models import VAE

    if mode == "default":
        strategy = tf.distribute.get_strategy()
    elif mode.startswith("mirrored1"):
        strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
        if mode in ("mirrored1-gradient", "mirrored1-loop"):
            _strip_replica_update(VAE, keep_gradient=mode == "mirrored1-gradient")
        elif mode == "mirrored1-keras-step":
            distribute.compile_optimizer_step = lambda optimizer: False
        elif mode == "mirrored1-no-xla-gradient":
            estimators.ESTIMATORS["nvil"] = dataclasses.replace(estimators.ESTIMATORS["nvil"], gradients=None)
    elif mode == "mirrored2":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = distribute.make_strategy("multi-worker", timeout_seconds=120)
    x = binary_data(5000)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_tfrecog_model(family)  # the suite's VAE 784-500-20 or SBN 200-200-200 (NVIL)
        model.compile(steps_per_execution=50)
    model.fit(x, batch_size=BATCH_SIZE, epochs=1, verbose=0)  # warm-up: tracing and XLA compilation
    start_updates = int(model.optimizer.iterations.numpy())
    start_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    model.fit(x, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start_faults
    updates = int(model.optimizer.iterations.numpy()) - start_updates
    if mode in ("mirrored1-gradient", "mirrored1-loop"):  # no optimizer step counts them: one per minibatch
        updates = epochs * -(-len(x) // BATCH_SIZE)
    return {"examples_per_second": updates * BATCH_SIZE / seconds, "updates": updates, "seconds": seconds,
            "replicas": strategy.num_replicas_in_sync, "page_faults_per_update": faults / updates}


def _strip_replica_update(model_class, keep_gradient: bool):
    """Replaces the per-replica update of the multi-replica loop (`_replica_train_update`) by its XLA gradient alone
    (`keep_gradient`), or by nothing at all: what is left is timed, to split the 1-replica row's cost."""
    from tfrecog._tf import tf as tf_

    def update(self, x):
        seed = self._step_seed()
        if keep_gradient:
            _, logs = self._xla_gradient(x, seed)
            return logs
        return {name: tf_.reduce_sum(x) * 0.0 for name in self._metric_trackers}

    model_class._replica_train_update = update


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def measure(mode: str, processes: int, epochs: int, family: str = "vae") -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    if mode == "mirrored1-default-heap":
        env["TFRECOG_HEAP_TOP_PAD"] = "0"
    ports = _free_ports(processes)
    running = []
    for index in range(processes):
        if mode == "multi-worker":
            env = {**env, "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                                   "task": {"type": "worker", "index": index}})}
        running.append(subprocess.Popen([sys.executable, "-m", "bench.scaling", "--worker", mode, "--epochs",
                                         str(epochs), "--family", family], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    reports = []
    for process in running:
        out, err = process.communicate(timeout=1200)
        if process.returncode != 0:
            raise RuntimeError(f"{mode} x{processes}: {err.strip().splitlines()[-1] if err.strip() else 'failed'}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports[0]  # the chief's (worker 0's) view; every worker makes the same updates


def command(family: str, epochs: int, rounds: int) -> str:
    """The command line of a scaling run (recorded in its JSON and its report)."""
    return f"python -m bench.scaling{' --family sbn' if family == 'sbn' else ''} --epochs {epochs} " \
           f"--rounds {rounds}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--family", choices=("vae", "sbn"), default="vae",
                        help="the workload: the VAE 784-500-20 (default) or the SBN 200-200-200 trained by NVIL")
    parser.add_argument("--out", help="the report (default: bench/results/SCALING.md, SCALING_SBN.md for the SBN; "
                                      "its JSON beside it)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every configuration this many times, in turn (A B C ... A B C): the figure is "
                             "the median, the spread min-max")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.family)))
        return
    configurations = SBN_CONFIGURATIONS if args.family == "sbn" else CONFIGURATIONS
    suffix = "_SBN" if args.family == "sbn" else ""
    out = Path(args.out or RESULTS_DIR / f"SCALING{suffix}.md")
    load_before = os.getloadavg()
    measured = {label: [] for label, _, _ in configurations}
    for round_ in range(args.rounds):
        for label, mode, processes in configurations:
            report = measure(mode, processes, args.epochs, args.family)
            measured[label].append(report)
            print(f"round {round_ + 1}: {label}: {report['examples_per_second']:.0f} examples/s", flush=True)
    rows = []
    for label, _, processes in configurations:
        speeds = sorted(r["examples_per_second"] for r in measured[label])
        rows.append({"configuration": label, "processes": processes, **measured[label][0],
                     "examples_per_second": statistics.median(speeds), "min": speeds[0], "max": speeds[-1],
                     "rounds": speeds, "faults": [r["page_faults_per_update"] for r in measured[label]]})
    load_after = os.getloadavg()
    results = {"rows": rows, "cores": os.cpu_count(), "load_average_before": load_before,
               "load_average_after": load_after, "epochs": args.epochs, "rounds": args.rounds,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": command(args.family, args.epochs, args.rounds)}
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / f"scaling{suffix.lower()}.json").write_text(json.dumps(results, indent=2) + "\n")
    base = rows[0]["examples_per_second"]
    lines = [
        "# Scaling of fit over tf.distribute",
        "",
        f"`{results['command']}` on {results['date']}: {os.cpu_count()} cores, load average {load_before[0]:.1f} "
        f"before and {load_after[0]:.1f} after (1-minute; other jobs share the machine). "
        f"{'SBN 200-200-200 trained by NVIL' if suffix else 'VAE 784-500-20'}, minibatch 100 (the global batch, split "
        "over the replicas), "
        f"50 updates per call, in fresh processes: one warm-up epoch then {args.epochs} timed epochs of 5000 "
        f"examples; every configuration measured {args.rounds} time(s), the configurations taking turns; figure: "
        "the median [min-max] over the rounds, and the median's ms per update.",
        "",
        "| configuration | processes | replicas | examples/s | ms per update | vs one device | page faults per "
        "update |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        speed = row["examples_per_second"]
        lines.append(f"| {row['configuration']} | {row['processes']} | {row['replicas']} | "
                     f"{speed:.0f} [{row['min']:.0f}-{row['max']:.0f}] | {1000 * BATCH_SIZE / speed:.2f} | "
                     f"{speed / base:.2f}x | {statistics.median(row['faults']):.0f} |")
    lines += ["", "Every configuration shares the same cores: on a machine with C cores, R replicas or workers can at "
              "best split the work C ways, and two CPU replicas on two cores compete with each other (and with the "
              "other jobs) for the cores that the one-device path already uses through its thread pools. So no "
              "speed-up can show here; the rows measure the cost of the distribution machinery (gradient all-reduce "
              "per update, tf.data splitting, and for workers the gRPC collectives on loopback). Page faults: the "
              "minor faults of the (chief's) process during the timed epochs, per update (the kernel's count, not "
              "a timing).", ""]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
