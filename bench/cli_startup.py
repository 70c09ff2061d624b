"""Wall time of the `tfrecog` command's quick answers (`--help`, `--version`, `zoo list`, `zoo show NAME`), each in a
fresh `python -m tfrecog` process, against a command that loads TensorFlow (`zoo verify NAME`), for reference.

    python -m bench.cli_startup                        # 7 runs each -> bench/results/cli_startup.json
    python -m bench.cli_startup --repeats 3 --out /tmp/cli.json

Run from the repository root (this checkout's `tfrecog` comes first on sys.path). Each command's runs take turns
(one of each, then the next round), so a load change on a shared machine touches them all alike; the median and the
range are reported, with the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cli_startup.json"

COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "zoo list": ["zoo", "list"],
    "zoo show vae-bmnist": ["zoo", "show", "vae-bmnist"],
    "zoo verify vae-bmnist-2d (loads TensorFlow)": ["zoo", "verify", "vae-bmnist-2d"],
}


def time_command(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tfrecog", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"tfrecog {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(time_command(command))
    load_after = os.getloadavg()
    from tfrecog import io

    result = {
        "command": f"python -m bench.cli_startup --repeats {args.repeats}",
        "machine": f"{io.cpu_model()}, {os.cpu_count()} cores, shared with other jobs (load average "
                   f"{load_before[0]:.1f} before, {load_after[0]:.1f} after)",
        "commit": io.git_commit(),
        "python": sys.version.split()[0],
        "seconds": {name: {"median": round(statistics.median(t), 3), "min": round(min(t), 3),
                           "max": round(max(t), 3), "runs": [round(x, 3) for x in t]} for name, t in times.items()},
    }
    io.write_json(args.out, result)
    for name, t in result["seconds"].items():
        print(f"tfrecog {name:45s} median {t['median']:.2f} s (min {t['min']:.2f}, max {t['max']:.2f})")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
