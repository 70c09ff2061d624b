"""Encoder inference speed: Keras (eager, tf.function), SavedModel, ONNX Runtime and a numpy lower bound.

For the VAE 784-500-20 encoder (posterior mean and log-scale), batch-1 latency (median microseconds per call)
and batch-1000 throughput (examples/s). Candidates are timed in interleaved windows (every candidate once per
window, in turn) so that noise from a shared machine falls on all of them alike; we report the median over
windows and the spread (min and max of the window values).

  python -m bench.bench_encoder [--quick] [--out bench/results/encoder_results.json]

Project targets: ONNX Runtime batch-1 latency within 2x of numpy and >= 10x faster than calling the Keras model;
batch-1000 throughput within 1.5x of numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------------
# Candidates: name -> function(x) computing the posterior mean and log-scale of the encoder


def numpy_encoder(model):
    """The same matmuls and tanh as the Keras encoder, with the weights pulled out (float32, no checks)."""
    layers = model.encoder.dense_layers
    (w1, b1), (w2, b2) = ((layer.kernel.numpy(), layer.bias.numpy()) for layer in layers)
    if len(layers) != 2 or layers[0].activation.__name__ != "tanh":
        raise SystemExit("the numpy bound is written for the 784-500-20 tanh encoder")
    d = model.latent_size

    def forward(x):
        out = np.tanh(x @ w1 + b1) @ w2 + b2
        return {"mean": out[:, :d], "log_scale": out[:, d:]}

    return forward


def build_candidates(model, folder: Path, onnx_configs):
    import onnxruntime as ort
    import tfrecog_runtime as runtime

    from tfrecog import export
    from tfrecog._tf import tf

    onnx_path = export.encoder(model, folder / "encoder.onnx", with_sample=False)
    saved_path = export.encoder(model, folder / "encoder_sm", format="saved_model", with_sample=False)
    loaded = tf.saved_model.load(saved_path)
    spec = tf.TensorSpec([None, model.event_size], tf.float32)
    compiled = tf.function(model.export_outputs, input_signature=[spec])

    candidates = {
        "numpy (lower bound)": numpy_encoder(model),
        "keras eager": lambda x: {k: v.numpy() for k, v in model.export_outputs(x).items()},
        "keras tf.function": lambda x: {k: v.numpy() for k, v in compiled(x).items()},
        "saved_model": lambda x: {k: v.numpy() for k, v in loaded.encode(x).items()},
    }
    sessions = {}
    for name, config in onnx_configs.items():
        options = runtime.session_options(**config)
        session = ort.InferenceSession(onnx_path, sess_options=options, providers=["CPUExecutionProvider"])
        sessions[name] = session
        candidates[f"onnxruntime {name}"] = lambda x, s=session: dict(
            zip(("mean", "log_scale"), s.run(["mean", "log_scale"], {"x": x}), strict=True)
        )
    # The deployment path: tfrecog_runtime.Encoder (input checks included) with the default-best options.
    encoder = runtime.load(onnx_path, intra_op_threads=1)
    candidates["tfrecog_runtime.Encoder (threads=1, checks)"] = lambda x: encoder(x)
    return candidates, loaded  # keep `loaded` alive: it owns the SavedModel's variables


# ----------------------------------------------------------------------------------------------------------------
# Timing


def latency_window(fn, x, calls: int) -> float:
    """Median microseconds per call over `calls` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn(x)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e3


def throughput_window(fn, x, calls: int) -> float:
    """Examples per second over `calls` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return calls * len(x) / (time.perf_counter() - start)


def interleaved(candidates, measure, x, windows: int, calls: int, warmup: int):
    for fn in candidates.values():
        for _ in range(warmup):
            fn(x)
    values = {name: [] for name in candidates}
    for _ in range(windows):
        for name, fn in candidates.items():
            values[name].append(measure(fn, x, calls))
    return {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v), "windows": v} for name, v in values.items()
    }


def check_agreement(candidates, x):
    reference = candidates["numpy (lower bound)"](x)
    worst = {}
    for name, fn in candidates.items():
        out = fn(x)
        worst[name] = max(float(np.max(np.abs(np.asarray(out[k]) - reference[k]))) for k in reference)
    return worst


def machine():
    from tfrecog.io import cpu_model

    cpu = cpu_model()
    import onnxruntime
    import tensorflow

    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tensorflow.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and calls (~30 s)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--windows", type=int, default=None, help="timing windows per candidate")
    args = parser.parse_args(argv)

    windows = args.windows or (3 if args.quick else 7)
    latency_calls, throughput_calls = (100, 3) if args.quick else (300, 10)

    from tfrecog.models import VAE

    model = VAE(784, 20, (500,), seed=0)
    model.build()
    rng = np.random.default_rng(0)
    x1 = (rng.random((1, 784)) < 0.13).astype(np.float32)
    x1000 = (rng.random((1000, 784)) < 0.13).astype(np.float32)

    onnx_configs = {
        "default": {},
        "threads=1": {"intra_op_threads": 1},
        "threads=2": {"intra_op_threads": 2},
        "threads=1 opt=disable": {"intra_op_threads": 1, "optimization": "disable"},
        "threads=2 no-spin": {"intra_op_threads": 2, "spin": False},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        candidates, _keep = build_candidates(model, Path(folder), onnx_configs)
        agreement = check_agreement(candidates, x1000)
        latency = interleaved(candidates, latency_window, x1, windows, latency_calls, warmup=50)
        throughput = interleaved(candidates, throughput_window, x1000, windows, throughput_calls, warmup=3)
    elapsed = time.perf_counter() - started

    bound_latency = latency["numpy (lower bound)"]["median"]
    bound_throughput = throughput["numpy (lower bound)"]["median"]
    keras_latency = latency["keras eager"]["median"]
    rows = []
    for name in candidates:
        lat, thr = latency[name], throughput[name]
        rows.append(
            {
                "candidate": name,
                "batch1_latency_us": lat["median"],
                "batch1_latency_us_min": lat["min"],
                "batch1_latency_us_max": lat["max"],
                "batch1000_examples_per_s": thr["median"],
                "batch1000_examples_per_s_min": thr["min"],
                "batch1000_examples_per_s_max": thr["max"],
                "latency_vs_numpy": lat["median"] / bound_latency,
                "speedup_vs_keras_eager": keras_latency / lat["median"],
                "throughput_vs_numpy": bound_throughput / thr["median"],
                "max_abs_diff_vs_numpy": agreement[name],
            }
        )
    onnx_rows = [r for r in rows if r["candidate"].startswith("onnxruntime")]
    best_latency = min(onnx_rows, key=lambda r: r["batch1_latency_us"])
    best_throughput = max(onnx_rows, key=lambda r: r["batch1000_examples_per_s"])
    targets = {
        "latency_within_2x_numpy": {
            "best": best_latency["candidate"],
            "ratio": best_latency["latency_vs_numpy"],
            "met": best_latency["latency_vs_numpy"] <= 2.0,
        },
        "latency_10x_faster_than_keras_eager": {
            "best": best_latency["candidate"],
            "speedup": best_latency["speedup_vs_keras_eager"],
            "met": best_latency["speedup_vs_keras_eager"] >= 10.0,
        },
        "throughput_within_1.5x_numpy": {
            "best": best_throughput["candidate"],
            "ratio": best_throughput["throughput_vs_numpy"],
            "met": best_throughput["throughput_vs_numpy"] <= 1.5,
        },
    }

    print(
        f"\nVAE 784-500-20 encoder (mean, log_scale); {windows} windows x {latency_calls} calls (batch 1), "
        f"x {throughput_calls} calls (batch 1000); median [min-max] over windows; {elapsed:.0f} s\n"
    )
    print("| candidate | batch-1 latency, us | vs numpy | vs Keras eager | batch-1000, examples/s | numpy / it |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['candidate']} | {r['batch1_latency_us']:.1f} [{r['batch1_latency_us_min']:.1f}-"
            f"{r['batch1_latency_us_max']:.1f}] | {r['latency_vs_numpy']:.2f}x | "
            f"{r['speedup_vs_keras_eager']:.1f}x faster | {r['batch1000_examples_per_s']:,.0f} "
            f"[{r['batch1000_examples_per_s_min']:,.0f}-{r['batch1000_examples_per_s_max']:,.0f}] | "
            f"{r['throughput_vs_numpy']:.2f}x |"
        )
    print()
    for name, target in targets.items():
        value = target.get("ratio", target.get("speedup"))
        print(f"target {name}: {'MET' if target['met'] else 'MISSED'} ({target['best']}: {value:.2f})")

    result = {
        "benchmark": "bench/bench_encoder.py",
        "command": " ".join(["python -m bench.bench_encoder", *sys.argv[1:]]),
        "model": "VAE(784, 20, hidden_sizes=(500,)) encoder: mean, log_scale",
        "machine": machine(),
        "settings": {
            "windows": windows,
            "latency_calls": latency_calls,
            "throughput_calls": throughput_calls,
            "onnx_configs": onnx_configs,
            "env": {
                k: os.environ.get(k)
                for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
            },
        },
        "rows": rows,
        "targets": targets,
        "elapsed_s": elapsed,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
