"""Timing as users run: every candidate in its own process, the processes taking turns (A B C A B C ...).

Each candidate (tfrecog, torch eager, torch.compile, jax.jit) is a worker process that imports only its own
library, with that library's default settings (the parent's `OMP_WAIT_POLICY=PASSIVE`, which the in-process mode
needs, is not passed on unless the user had set it), builds its workload, warms up alone (compilation), and then
waits on its stdin. The parent gives each worker in turn a window of work (`units` chosen so that a window lasts
about `window_seconds`), one worker at a time, with a short pause between turns so that the previous library's
idle threads have gone to sleep; the order rotates every round so that no candidate always follows the same one.
A ratio is taken pair by pair: tfrecog's throughput in round r over the reference's in round r, so that the drift
of a shared machine cancels; the reported ratio is the median over rounds.

  python -m bench.processes training vae          # prints the rows of one table (bench.run uses it for every table)

Worker protocol (internal): `python -m bench.processes --worker SECTION MODEL NAME ...` prints one line
`@@bench {"unit_seconds": ..., "warmup_seconds": ..., "examples": ..., "note": ...}` when ready, then for every line
`N` on stdin runs N units and prints `@@bench {"seconds": ...}`; an empty line or EOF ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO, binary_data, summarize

TAG = "@@bench "
PAUSE_SECONDS = 0.5  # between turns: OpenMP and Eigen pools spin for up to ~0.2 s after work before they sleep


def _build(section: str, model_name: str, name: str, settings: dict):
    """The candidate `name` of one table, built inside the worker process (only its library imported)."""
    if section == "training":
        x = binary_data(settings["train_examples"], seed=0)
        if name == "tfrecog":
            from . import tfrecog_bench as tb

            return tb.training_candidate(name, model_name, x)
        if name.startswith("torch"):
            from . import ref_torch as rt

            return rt.training_candidate(name, model_name, x, compile=name == "torch.compile")
        if name == "jax.jit":
            from . import ref_jax as rj

            return rj.training_candidate(name, model_name, x)
    elif section == "evaluation":
        x = binary_data(settings["test_points"], seed=1)
        samples = settings["samples"]
        if name == "tfrecog":
            from . import tfrecog_bench as tb

            return tb.evaluation_candidate(name, model_name, x, samples, batch_size=len(x))
        if name.startswith("torch"):
            from . import ref_torch as rt

            return rt.evaluation_candidate(name, model_name, x, samples, compile=name == "torch.compile")
        if name == "jax.jit":
            from . import ref_jax as rj

            return rj.evaluation_candidate(name, model_name, x, samples)
    raise ValueError(f"no candidate {name!r} for {section} {model_name}; expected tfrecog, torch eager, "
                     "torch.compile or jax.jit")


def _say(message: dict):
    sys.stdout.write(TAG + json.dumps(message) + "\n")
    sys.stdout.flush()


def worker(section: str, model_name: str, name: str, settings: dict) -> int:
    started = time.perf_counter()
    cand = _build(section, model_name, name, settings)
    cand.run(1)
    warm = time.perf_counter() - started
    started = time.perf_counter()
    cand.run(1)
    _say({"unit_seconds": time.perf_counter() - started, "warmup_seconds": warm, "examples": cand.examples,
          "note": cand.note})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            break
        units = int(line)
        started = time.perf_counter()
        cand.run(units)
        _say({"seconds": time.perf_counter() - started})
    return 0


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, section, model_name, name, settings, env, log_dir: Path, timeout: float):
        self.name = name
        self.timeout = timeout
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{section}-{model_name}-{name.replace(' ', '_')}.log"
        command = [sys.executable, "-m", "bench.processes", "--worker", section, model_name, name,
                   "--settings", json.dumps(settings)]
        with open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)

    def read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {self.timeout:.0f} s (log: {self.stderr_path})")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if not ready:
                continue
            line = self.process.stdout.readline()
            if not line:
                tail = self.stderr_path.read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(f"worker exited (code {self.process.wait()}): {tail[0][:300]}")
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])

    def run(self, units: int) -> float:
        self.process.stdin.write(f"{units}\n")
        self.process.stdin.flush()
        return float(self.read()["seconds"])

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def child_environment(parent_set_omp: bool) -> dict:
    """The workers' environment: the user's, without the OMP_WAIT_POLICY that the in-process mode sets."""
    env = dict(os.environ)
    if parent_set_omp:
        env.pop("OMP_WAIT_POLICY", None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def interleaved_processes(section: str, model_name: str, names, settings: dict, *, windows: int,
                          window_seconds: float, env: dict | None = None, log=print, log_dir: Path | None = None,
                          timeout: float = 900.0):
    """Rows {name: summarize(throughput per round) + note, examples_per_unit, warmup_seconds} for the candidates of
    one table, each in its own process, plus for every other candidate `tfrecog_over_this`: summarize(tfrecog's
    throughput / its throughput, round by round). A candidate that cannot be built or dies gets {"error": ...}."""
    env = env if env is not None else child_environment(False)
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "tfrecog-bench-workers"
    workers, rows, info = {}, {}, {}
    try:
        for name in names:  # one at a time, so that no warm-up (compilation) overlaps another
            try:
                w = Worker(section, model_name, name, settings, env, log_dir, timeout)
                workers[name] = w
                info[name] = w.read()
            except Exception as err:  # noqa: BLE001 - a failing reference is reported, not fatal
                rows[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
                workers.pop(name, None)
                log(f"    {name}: FAILED {rows[name]['error']}")
                continue
            repeats = max(1, round(window_seconds / max(info[name]["unit_seconds"], 1e-6)))
            info[name]["repeats"] = repeats
            log(f"    {name} (own process): warm-up {info[name]['warmup_seconds']:.1f} s, unit "
                f"{info[name]['unit_seconds'] * 1e3:.0f} ms, {repeats} units per window")
        values = {name: [] for name in workers}
        order = list(workers)
        for _ in range(windows):
            for name in order:
                if name in rows:  # died in an earlier round
                    continue
                time.sleep(PAUSE_SECONDS)
                try:
                    seconds = workers[name].run(info[name]["repeats"])
                except Exception as err:  # noqa: BLE001
                    rows[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
                    log(f"    {name}: FAILED in a timed round: {rows[name]['error']}")
                    continue
                values[name].append(info[name]["repeats"] * info[name]["examples"] / seconds)
            order = order[1:] + order[:1]  # the next round starts with the next candidate
    finally:
        for w in workers.values():
            w.close()
    for name in names:
        if name in rows:
            continue
        rows[name] = {**summarize(values[name]), "note": info[name]["note"] + " (own process)",
                      "examples_per_unit": info[name]["examples"], "warmup_seconds": info[name]["warmup_seconds"]}
    ours = rows.get("tfrecog", {}).get("windows")
    if ours:
        for name, row in rows.items():
            if name != "tfrecog" and "windows" in row and len(row["windows"]) == len(ours):
                row["tfrecog_over_this"] = summarize([a / b for a, b in zip(ours, row["windows"])])
    return {name: rows[name] for name in names}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", nargs="?", choices=["training", "evaluation"])
    parser.add_argument("model", nargs="?", choices=["vae", "sbn"])
    parser.add_argument("--worker", nargs=3, metavar=("SECTION", "MODEL", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--candidates", default="tfrecog,torch eager,torch.compile,jax.jit")
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    settings = {"train_examples": 10000, "test_points": 20, "samples": 5000}
    if args.settings:
        settings.update(json.loads(args.settings))
    if args.worker:
        return worker(*args.worker, settings)
    if not args.section or not args.model:
        parser.error("give SECTION and MODEL (e.g. training vae)")
    rows = interleaved_processes(args.section, args.model, [c.strip() for c in args.candidates.split(",")],
                                 settings, windows=args.windows, window_seconds=args.window_seconds,
                                 env=child_environment(False))
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
