"""Smoke test of the benchmark suite: `python -m bench.run --quick` runs every section and writes its report.

Timings are not asserted (a shared CI machine); only that every row is there. The PyTorch and JAX references run
only where both are importable; otherwise the suite runs with --no-references (tfrecog rows only).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HAVE_REFERENCES = all(importlib.util.find_spec(name) is not None for name in ("torch", "jax", "optax"))


@pytest.mark.slow  # a benchmark smoke test: minutes of timed training (python -m pytest -m slow)
def test_quick_suite_writes_every_row(tmp_path):
    out = tmp_path / "RESULTS.md"
    # run from the repository root, as bench/README.md says, with the reports redirected out of bench/results/
    cmd = [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)]
    if not HAVE_REFERENCES:
        cmd.append("--no-references")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["errors"] == []
    assert results["machine"]["cpu"] and results["machine"]["versions"]["tensorflow"]
    # the suite times this checkout's tfrecog, not an installed copy (which once hid a week of changes)
    assert Path(results["machine"]["tfrecog"]["path"]).resolve() == REPO / "tfrecog"
    for model in ("vae", "sbn", "dlgm"):
        assert results["training"][model]["tfrecog"]["median"] > 0
    for model in ("vae", "sbn"):
        assert results["evaluation"][model]["tfrecog"]["median"] > 0
        if HAVE_REFERENCES:
            for reference in ("torch eager", "jax.jit"):
                assert results["training"][model][reference]["median"] > 0
                assert results["evaluation"][model][reference]["median"] > 0
    assert [row["samples"] for row in results["memory"]] and all("delta_mb" in r for r in results["memory"])
    assert results["encoder"]["tfrecog_runtime.Encoder (threads=1, checks)"]["latency_us"]["median"] > 0
    report = out.read_text()
    assert "## Targets" in report and "Training throughput" in report and results["command"] in report


def test_processes_report_a_candidate_that_cannot_start_and_keep_the_users_environment(monkeypatch):
    """bench.processes: a worker that fails to build its candidate becomes an error row naming what was expected
    (the table goes on); the workers do not inherit the OMP_WAIT_POLICY that the in-process mode sets."""
    from bench import processes

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert "OMP_WAIT_POLICY" not in processes.child_environment(parent_set_omp=True)
    assert processes.child_environment(parent_set_omp=False)["OMP_WAIT_POLICY"] == "PASSIVE"
    rows = processes.interleaved_processes("training", "vae", ["no-such-library"], {"train_examples": 100},
                                           windows=1, window_seconds=0.1, log=lambda s: None, timeout=120)
    assert list(rows) == ["no-such-library"]
    assert "expected tfrecog, torch eager, torch.compile or jax.jit" in rows["no-such-library"]["error"]
