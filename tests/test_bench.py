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
