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
    assert results["matmul"]["models"]["vae"]["dot_flops_per_example"] == VAE_DOT_FLOPS
    report = out.read_text()
    assert "matrix-multiply limit" in report
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


# VAE 784-500-20 (tanh), one update: the four layers forward (784x500, 500x40 for mean and log-scale, 20x500,
# 500x784), all four weight gradients, and the input gradients of every layer but the first (the data needs none):
# 2 * (3 * (392,000 + 20,000 + 10,000 + 392,000) - 392,000) FLOPs per example.
VAE_DOT_FLOPS = 2 * (3 * (784 * 500 + 500 * 40 + 20 * 500 + 500 * 784) - 784 * 500)


def test_dot_flops_are_read_exactly_from_the_compiled_hlo():
    """bench.matmul_limit counts 2 m k n per product of the optimised HLO: a two-layer chain and its gradient, and the
    VAE's training update, against the counts written out by hand; a loop (whose trip count would multiply its
    products) is refused."""
    from bench import matmul_limit
    from tfrecog._tf import tf

    w1, w2 = tf.Variable(tf.ones([784, 30])), tf.Variable(tf.ones([30, 7]))

    @tf.function(jit_compile=True)
    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.tanh(x @ w1) @ w2)
        return loss, tape.gradient(loss, [w1, w2])

    x = tf.ones([16, 784])
    dots = matmul_limit.hlo_dots(loss_and_grads.experimental_get_compiler_ir(x)(stage="optimized_hlo"))
    # forward x w1 and h w2; gradients of w2 (h^T g), of h (g w2^T) and of w1 (x^T g_h); none for x
    expected = 2 * 16 * (784 * 30 + 30 * 7 + 30 * 7 + 30 * 7 + 784 * 30)
    assert sum(d["flops"] for d in dots) == expected and len(dots) == 5

    @tf.function(jit_compile=True)
    def two_heads(x, wa, wb):  # two products with the same left operand: one [16, 784] x [784, 37] when merged
        return x @ wa, x @ wb

    heads = matmul_limit.hlo_dots(two_heads.experimental_get_compiler_ir(x, tf.ones([784, 30]), tf.ones([784, 7]))(
        stage="optimized_hlo"))
    merged = matmul_limit.merged_by_shared_operand(heads)
    assert [(d["shape"], d["k"], d["flops"]) for d in merged] == [((16, 37), 784, 2 * 16 * 784 * 37)]

    vae = matmul_limit.hlo_dots(matmul_limit.train_step_hlo("vae"))
    assert sum(d["flops"] for d in vae) / 100 == VAE_DOT_FLOPS

    @tf.function(jit_compile=True)
    def looped(x):
        return tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y @ tf.ones([784, 784])), (0, x))[1]

    with pytest.raises(ValueError, match="while loop"):
        matmul_limit.hlo_dots(looped.experimental_get_compiler_ir(x)(stage="optimized_hlo"))


def test_profile_ops_puts_each_compiled_operation_in_its_class():
    """bench.profile_ops: in a compiled step, the products are 'dot', the generator's work 'random' and what runs in
    an optimizer's name scope 'optimizer'; profiling the VAE's fused step times each of its 11 products once per
    update."""
    from bench import profile_ops
    from tfrecog._tf import tf

    w = tf.Variable(tf.ones([784, 30]))

    @tf.function(jit_compile=True)
    def step(x, seed):
        noise = tf.random.stateless_uniform([16, 30], seed, alg="threefry")
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.tanh(x @ w) * noise)
        grad = tape.gradient(loss, w)
        with tf.name_scope("adam"):
            w.assign_sub(1e-3 * grad / (tf.sqrt(grad * grad) + 1e-7))
        return loss

    hlo = step.experimental_get_compiler_ir(tf.ones([16, 784]), tf.constant([1, 2]))(stage="optimized_hlo")
    classes = profile_ops.classify_hlo(hlo)
    dots = [line for line in hlo.splitlines() if " dot(" in line]
    assert len(dots) == 2 and all(classes[line.split("=")[0].strip().lstrip("%")] == "dot" for line in dots)
    assert "random" in classes.values() and "optimizer" in classes.values()

    result = profile_ops.profile("vae", calls=2, steps_per_execution=2, examples=200)
    dot_ops = {name: op for name, op in result["ops"].items() if op["class"] == "dot"}
    assert len(dot_ops) == 11 and all(op["per_update"] == 1 for op in dot_ops.values())
    by_class = profile_ops.summary(result)
    assert by_class["dot"] > 0 and by_class["optimizer"] > 0 and by_class["total"] == pytest.approx(
        sum(op["us"] for op in result["ops"].values()))


def test_scaling_runs_join_the_report_and_render_rewrites_it(tmp_path):
    """`bench.run`'s report shows bench.scaling's own runs (user-facing rows, not the diagnostic ones) with their
    command, and `--render` rewrites the report from its JSON without measuring."""
    import shutil

    from bench import run

    row = {"processes": 1, "replicas": 1}
    scaling = {"rows": [{**row, "configuration": "one device (fused, default strategy)", "examples_per_second": 100.0,
                         "min": 90.0, "max": 110.0},
                        {**row, "configuration": "MirroredStrategy, 1 replica, loop only (diagnostic: no gradient)",
                         "examples_per_second": 300.0, "min": 290.0, "max": 310.0},
                        {**row, "configuration": "MirroredStrategy, 2 replicas (2 logical CPUs)", "replicas": 2,
                         "examples_per_second": 40.0, "min": 30.0, "max": 50.0}],
               "cores": 2, "load_average_before": [1.0, 1.0, 1.0], "load_average_after": [2.0, 2.0, 2.0],
               "epochs": 6, "rounds": 3, "date": "2026-12-05 08:48 UTC"}
    (tmp_path / "scaling_sbn.json").write_text(json.dumps(scaling))
    text = "\n".join(run.scaling_section([tmp_path / "scaling.json", tmp_path / "scaling_sbn.json"]))
    assert "**SBN 200-200-200 trained by NVIL**: `python -m bench.scaling --family sbn --epochs 6 --rounds 3`" in text
    assert "| MirroredStrategy, 2 replicas (2 logical CPUs) | 1 | 2 | 40 [30-50] | 0.40x |" in text
    assert "loop only" not in text and "VAE 784-500-20" not in text
    assert run.scaling_section([tmp_path / "scaling.json"]) == []

    shutil.copy(run.RESULTS_DIR / "results.json", tmp_path / "report.json")
    run.main(["--render", "--out", str(tmp_path / "REPORT.md")])
    expected = run.markdown(json.loads((tmp_path / "report.json").read_text()))
    assert (tmp_path / "REPORT.md").read_text() == expected and "## Training throughput" in expected
