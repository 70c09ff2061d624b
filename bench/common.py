"""Shared pieces of the benchmark suite: the workloads' sizes, random MNIST-shaped data, interleaved timing windows,
summary statistics, machine description and peak-RSS probes run in a fresh subprocess.

Every framework module (tfrecog_bench, ref_torch, ref_jax) builds *candidates*: objects with `run(n)` doing n units
of work and `examples`, the number of examples one unit processes. `interleaved` times them in turn.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Where the reports go: bench/ holds the code, bench/results/ what it measured.
RESULTS_DIR = REPO / "bench" / "results"

# The workloads (the same for every framework).
EVENT_SIZE = 784
BATCH_SIZE = 100
VAE_HIDDEN, VAE_LATENT = 500, 20
SBN_LAYERS = (200, 200, 200)
SBN_BASELINE_HIDDEN = 100
NVIL_DECAY = 0.8
LEARNING_RATE = 1e-3
# The IS evaluators push this many (sample, example) rows through the networks at once: tfrecog's default.
ROWS_PER_CHUNK = 20000
PIXEL_ON = 0.13  # the fraction of "on" pixels in binarized MNIST


def binary_data(num_examples: int, seed: int = 0, event_size: int = EVENT_SIZE) -> np.ndarray:
    """Random binary float32 data of MNIST shape [N, 784] (no data folder needed)."""
    rng = np.random.default_rng(seed)
    return (rng.random((num_examples, event_size)) < PIXEL_ON).astype(np.float32)


@dataclasses.dataclass
class Candidate:
    """One implementation of one workload: `run(n)` does n units of work, each over `examples` examples.

    (Training: a unit is one epoch, and `run(n)` is what a user writes for n epochs, e.g. one `fit(epochs=n)`.)
    """

    name: str
    run: Callable[[int], object]
    examples: int
    note: str = ""


@dataclasses.dataclass
class Failed:
    """A candidate that could not be built or run; the error is written into the results instead of a number."""

    name: str
    error: str


def summarize(values):
    """median, min, max, quartiles (of the window values) and the values themselves."""
    values = [float(v) for v in values]
    q = np.percentile(values, [25, 75]) if len(values) > 1 else [values[0], values[0]]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": float(q[0]),
        "q3": float(q[1]),
        "windows": values,
    }


def interleaved(candidates, windows: int, window_seconds: float, warmup: int = 1, log=print):
    """Examples/s of every candidate over `windows` timing windows, the candidates taking turns in each window.

    Each candidate first runs `warmup` units (compilation, caches), then one timed unit that sets how many units
    fill a window of about `window_seconds`. Interleaving makes the load of a shared machine fall on all alike.
    Returns {name: summarize(examples/s per window)}, and {name: Failed} for candidates that raised.
    """
    live, failed = {}, {}
    for cand in candidates:
        if isinstance(cand, Failed):
            failed[cand.name] = cand
            continue
        try:
            started = time.perf_counter()
            cand.run(warmup)
            warm = time.perf_counter() - started
            started = time.perf_counter()
            cand.run(1)
            unit = time.perf_counter() - started
        except Exception as err:  # noqa: BLE001 - a failing reference is reported, not fatal
            failed[cand.name] = Failed(cand.name, f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
            log(f"    {cand.name}: FAILED {failed[cand.name].error}")
            continue
        repeats = max(1, round(window_seconds / max(unit, 1e-6)))
        live[cand.name] = (cand, repeats)
        log(f"    {cand.name}: warm-up {warm:.1f} s, unit {unit * 1e3:.0f} ms, {repeats} units per window")
    values = {name: [] for name in live}
    for _ in range(windows):
        for name, (cand, repeats) in live.items():
            started = time.perf_counter()
            cand.run(repeats)
            values[name].append(repeats * cand.examples / (time.perf_counter() - started))
    return {name: summarize(v) for name, v in values.items()}, failed


# ----------------------------------------------------------------------------------------------------------------
# Peak memory: one fresh process per measurement


def current_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmRSS in /proc/self/status")


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Resets the kernel's high-water mark (VmHWM) to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_peak_rss(prepare: Callable[[], Callable[[], object]]):
    """Peak RSS of running the callable that `prepare()` returns, above the RSS just before it (in this process).

    `prepare` imports and builds (its memory is the baseline); the returned callable is the measured work,
    compilation included (that is what a user pays).
    """
    work = prepare()
    before = current_rss_bytes()
    exact = reset_peak_rss()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    return {"rss_before_mb": before / 2**20, "peak_rss_mb": peak / 2**20, "delta_mb": (peak - before) / 2**20,
            "seconds": seconds, "peak_reset": exact}


def memory_in_subprocess(framework: str, model: str, samples: int, num_examples: int, timeout: float = 300):
    """Runs `python -m bench.memory_probe` in a fresh interpreter and returns its JSON (or {'error': ...}).

    It runs from the repository root, so it imports the same tfrecog as the suite that called it."""
    cmd = [sys.executable, "-m", "bench.memory_probe", framework, model, str(samples), str(num_examples)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr or done.stdout).strip().splitlines()
    return {"error": tail[-1][:300] if tail else f"exit code {done.returncode}"}


# ----------------------------------------------------------------------------------------------------------------
# Machine


def cpu_model() -> str:
    from tfrecog.io import cpu_model as tfrecog_cpu_model

    return tfrecog_cpu_model()


def _version(module: str):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "?")
    except Exception as err:  # noqa: BLE001
        return f"not importable ({type(err).__name__})"


def machine_info() -> dict:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile", "fma") if f" {f}" in flags]
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    import tfrecog
    from tfrecog.io import git_commit

    return {
        "tfrecog": {"path": str(Path(tfrecog.__file__).parent), "commit": git_commit()},
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "simd": simd,
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in ("tensorflow", "keras", "tensorflow_probability", "torch", "jax", "jaxlib", "optax", "numpy",
                         "onnxruntime")
        },
    }


def build_tfrecog_model(model_name: str, package: str = "tfrecog"):
    """The benchmark's tfrecog model ('vae', 'sbn' or 'dlgm'), unbuilt, from `package` (a renamed copy for A/B runs):
    VAE 784-500-20 (tanh), SGVB-B; SBN 200-200-200 with NVIL (every variance-reduction technique); DLGM with one layer
    of 50 latents, rank-one recognition covariance, 200 tanh units both ways."""
    import importlib

    models = importlib.import_module(f"{package}.models")
    if model_name == "vae":
        return models.VAE(EVENT_SIZE, VAE_LATENT, (VAE_HIDDEN,), activation="tanh", estimator="sgvb_b", seed=0)
    if model_name == "sbn":
        return models.SBN(EVENT_SIZE, SBN_LAYERS, estimator="nvil", baseline_hidden_size=SBN_BASELINE_HIDDEN,
                          signal_decay=NVIL_DECAY, seed=0)
    if model_name == "dlgm":
        return models.DLGM(EVENT_SIZE, latent_sizes=(50,), hidden_sizes=(200,), recognition_hidden_sizes=(200,),
                           covariance="rank_one", seed=0)
    raise ValueError(f"unknown benchmark model {model_name!r}: expected 'vae', 'sbn' or 'dlgm'")


def print_against(model_name: str, timings: dict, failed: dict, reference: str = "jax.jit", unit: str = "examples/s"):
    """One line per candidate: median [min-max] and its ratio to `reference`'s median, then the failures."""
    best = timings.get(reference, {}).get("median")
    for name, row in timings.items():
        ratio = f"  {row['median'] / best:.2f}x {reference}" if best else ""
        print(f"{model_name} {name:16s} {row['median']:9,.0f} {unit} [{row['min']:,.0f}-{row['max']:,.0f}]{ratio}")
    for name, fail in failed.items():
        print(f"{name}: FAILED {fail.error}")
