"""How close each training workload runs to this machine's matrix-multiply limit (issue 27).

  python -m bench.matmul_limit [--json PATH]

Two measurements, combined with the training throughputs of `python -m bench.run` in RESULTS.md:

- **Dot FLOPs per example** of one training update, read from the optimised HLO that XLA compiles for tfrecog's
  `train_step` (one minibatch of 100): every `dot` instruction contributes

      2 * prod(result shape) * prod(lhs sizes along its contracting dimensions)

  (a multiply and an add per term), summed and divided by the minibatch size. The references (jax.jit, torch) run
  the same matrix products: the same layers forward, the same weight gradients, the same input gradients (none
  through sampled binary units), so one count serves every candidate.
- **The machine's fp32 GEMM rate**: the best of square products of sizes 1024 and 2048 through numpy's BLAS,
  TensorFlow's `tf.matmul` and the same product compiled by XLA, each the best of several timed repeats. A training
  step made of small products ([100, 784] x [784, 200] and the like) and elementwise work cannot beat it, so

      limit, examples/s = GEMM rate / dot FLOPs per example,

  and a candidate's fraction of the limit is its examples/s over that. The products of one update are also timed on
  their own (`matmul-only examples/s`: the same dots, shapes and order, one after another, no elementwise work):
  what a step could reach if everything but its matrix products were free, at this minibatch size; and once more
  with the products that share a left operand merged into one wider product (`merged_by_shared_operand`), what a
  dot-merging rewrite of the step would gain on its products.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np

from .common import BATCH_SIZE, binary_data

# One HLO instruction: `%name = f32[100,784]{1,0} op(...)`, also for parameters and tuples' elements.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\w+)\[([\d,]*)\](?:\{[^}]*\})?\s+([\w\-]+)\((.*)$")


def hlo_dots(hlo_text: str) -> list[dict]:
    """Every `dot` of an HLO module: name, result shape, lhs and rhs shapes, contracting size and FLOPs
    (2 * prod(result) * prod(lhs contracting sizes)). Raises if the module has a loop, whose trip count would
    multiply its body's products (compile one update, not the fused loop)."""
    shapes, dots = {}, []
    for line in hlo_text.splitlines():
        if " while(" in line:
            raise ValueError("the HLO has a while loop: count the dots of a single update (steps_per_execution=1)")
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, _dtype, dims, op, rest = match.groups()
        shape = tuple(int(d) for d in dims.split(",") if d)
        shapes[name] = shape
        if op != "dot":
            continue
        operands = rest.split(")", 1)[0]
        # operands may be printed with their shapes (`f32[100,784]{1,0} %a`): the name is the last word
        names = [o.strip().split()[-1].lstrip("%") for o in operands.split(",")]
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", line)
        lhs = shapes[names[0]]
        k = int(np.prod([lhs[int(d)] for d in contracting.group(1).split(",") if d])) if contracting else 1
        flops = 2 * int(np.prod(shape)) * k
        dots.append({"name": name, "shape": shape, "lhs": lhs, "rhs": shapes.get(names[1]), "k": k, "flops": flops,
                     "lhs_operand": names[0], "lhs_contracting": contracting.group(1) if contracting else ""})
    return dots


def merged_by_shared_operand(dots: list[dict]) -> list[dict]:
    """The same products with those that share their left operand and its contracting dimensions merged into one
    (the right operands concatenated: [m, k] x [k, n1 + n2 + ...]), as XLA's dot-merger pass would: e.g. the SBN's
    x W_q1 and x W_baseline, h1 W_px and h1 W_q2, and their weight gradients x^T [g_q1, g_b]. Same FLOPs, fewer and
    wider products."""
    groups: dict = {}
    for d in dots:
        key = (d.get("lhs_operand"), d.get("lhs_contracting"), d["k"], int(np.prod(d["shape"])) // d["shape"][-1])
        groups.setdefault(key, []).append(d)
    merged = []
    for (_, _, k, m), members in groups.items():
        n = sum(d["shape"][-1] for d in members)
        merged.append({"shape": (m, n), "k": k, "flops": 2 * m * n * k, "merged": len(members)})
    return merged


def train_step_hlo(model_name: str) -> str:
    """The optimised HLO of one tfrecog training update (minibatch of 100) of a bench workload."""
    from . import tfrecog_bench as tb

    _, step, indices = tb.compiled_train_step(model_name, binary_data(BATCH_SIZE, seed=0), steps_per_execution=1)
    return step.experimental_get_compiler_ir(indices)(stage="optimized_hlo")


def _best_rate(run, flops: float, seconds: float = 1.0, repeats: int = 5) -> float:
    """The best FLOP/s over `repeats` timed batches of calls, each batch lasting about `seconds`."""
    run()
    start = time.perf_counter()
    run()
    calls = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = max(best, flops * calls / (time.perf_counter() - start))
    return best


def gemm_rates(sizes=(1024, 2048), seconds: float = 1.0) -> dict:
    """GFLOP/s of square fp32 products C = A B through numpy, tf.matmul and XLA; {'library, n': rate}."""
    from tfrecog._tf import tf

    rng = np.random.default_rng(0)
    xla_matmul = tf.function(tf.matmul, jit_compile=True)
    rates = {}
    for n in sizes:
        a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
        ta, tb_ = tf.constant(a), tf.constant(b)
        flops = 2.0 * n**3
        runs = {"numpy @": lambda a=a, b=b: a @ b,
                "tf.matmul": lambda ta=ta, tb_=tb_: tf.matmul(ta, tb_).numpy(),
                "tf.matmul under XLA": lambda ta=ta, tb_=tb_: xla_matmul(ta, tb_).numpy()}
        for library, run in runs.items():
            rates[f"{library}, n={n}"] = _best_rate(run, flops, seconds) / 1e9
    return rates


def matmuls_only_rate(dots: list[dict], seconds: float = 1.0, updates_per_call: int = 50) -> float:
    """Examples/s of an XLA loop that runs just the given products, `updates_per_call` updates per call as `fit`'s
    fused loop does: in each update every product at its shape, one after another, the smaller operand scaled by a
    scalar carried from the previous update (so nothing is hoisted out of the loop or pruned). The bound on a step
    whose elementwise work were free."""
    from tfrecog._tf import tf

    rng = np.random.default_rng(0)
    pairs = []
    for d in dots:
        m = int(np.prod(d["shape"])) // d["shape"][-1]
        n = d["shape"][-1]
        pairs.append((tf.constant(rng.standard_normal((m, d["k"])).astype(np.float32)),
                      tf.constant(rng.standard_normal((d["k"], n)).astype(np.float32))))

    @tf.function(jit_compile=True)
    def products():
        def update(i, s):
            total = tf.constant(0.0)
            for a, b in pairs:
                if a.shape.num_elements() <= b.shape.num_elements():
                    a = a * s
                else:
                    b = b * s
                total += tf.matmul(a, b)[0, 0]
            return i + 1, 1.0 + 1e-30 * total

        return tf.while_loop(lambda i, s: i < updates_per_call, update, (tf.constant(0), tf.constant(1.0)))[1]

    calls_per_second = _best_rate(lambda: products().numpy(), 1.0, seconds)
    return calls_per_second * updates_per_call * BATCH_SIZE


def measure(models=("vae", "sbn", "dlgm"), seconds: float = 1.0, log=print) -> dict:
    """{'gemm': {...}, 'gemm_best': (name, GFLOP/s), 'models': {name: {'dot_flops_per_example', 'dots',
    'matmul_only_examples_per_s'}}}."""
    rates = gemm_rates(seconds=seconds)
    best = max(rates.items(), key=lambda kv: kv[1])
    log(f"  best fp32 GEMM: {best[1]:.1f} GFLOP/s ({best[0]})")
    out = {"gemm": rates, "gemm_best": list(best), "models": {}}
    for name in models:
        dots = hlo_dots(train_step_hlo(name))
        per_example = sum(d["flops"] for d in dots) / BATCH_SIZE
        only = matmuls_only_rate(dots, seconds=seconds)
        merged = merged_by_shared_operand(dots)
        merged_rate = matmuls_only_rate(merged, seconds=seconds)
        out["models"][name] = {"dot_flops_per_example": per_example, "dots": len(dots),
                               "matmul_only_examples_per_s": only, "merged_dots": len(merged),
                               "merged_matmul_only_examples_per_s": merged_rate,
                               "products": [{"lhs": list(d["lhs"]), "rhs": list(d["rhs"] or ()),
                                             "shape": list(d["shape"]), "k": d["k"]} for d in dots]}
        log(f"  {name}: {len(dots)} dots, {per_example / 1e6:.3f} MFLOP per example; limit "
            f"{best[1] * 1e9 / per_example:,.0f} examples/s; matmuls alone {only:,.0f} examples/s; merged by shared "
            f"operand ({len(merged)} dots) {merged_rate:,.0f} examples/s")
    return out


def fractions(limit: dict, training: dict | None) -> dict:
    """Per workload: {'per_example', 'cap' (the limit, examples/s), 'only' (products alone, examples/s),
    'candidates': {name: (examples/s, GFLOP/s, fraction of the limit, fraction of the products alone)}}, from
    `measure`'s output and the training section's rows of `python -m bench.run` (their medians)."""
    rate = limit["gemm_best"][1]
    out = {}
    for model, m in limit["models"].items():
        per_example, only = m["dot_flops_per_example"], m["matmul_only_examples_per_s"]
        cap = rate * 1e9 / per_example
        speeds = {c: row["median"] for c, row in (training or {}).get(model, {}).items() if "median" in row}
        out[model] = {"per_example": per_example, "cap": cap, "only": only,
                      "candidates": {c: (v, v * per_example / 1e9, v / cap, v / only) for c, v in speeds.items()}}
    return out


def markdown(limit: dict, training: dict | None) -> list[str]:
    """RESULTS.md's section: per workload the dot FLOPs, the limit, and each candidate's fraction of it."""
    name, rate = limit["gemm_best"]
    lines = ["", "## Fraction of this machine's matrix-multiply limit (training)", "",
             f"Best fp32 GEMM measured here: **{rate:.0f} GFLOP/s** ({name}; all: "
             + ", ".join(f"{k} {v:.0f}" for k, v in limit["gemm"].items()) + "). Dot FLOPs per example: every "
             "`dot` of the optimised HLO of tfrecog's training update (2 x result size x contracted size, over "
             f"the minibatch of {BATCH_SIZE}); the references compute the same products. Limit = GEMM rate / "
             "FLOPs per example; 'matmuls only' times just that update's products, in order, at their shapes, "
             "50 updates per compiled call as in `fit` (`python -m bench.matmul_limit`): a candidate near 100% of "
             "it spends its time in matrix products that XLA's kernels run at that rate for these shapes.", "",
             "| workload | dots per update | MFLOP per example | limit, examples/s | matmuls only, examples/s "
             "(merged by shared operand) | "
             "candidate | examples/s | GFLOP/s | fraction of limit | fraction of matmuls only |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, f in fractions(limit, training).items():
        m = limit["models"][model]
        merged = (f" ({m['merged_matmul_only_examples_per_s']:,.0f}, {m['merged_dots']} dots)"
                  if "merged_dots" in m else "")
        head = (f"| {model} | {m['dots']} | {f['per_example'] / 1e6:.2f} | {f['cap']:,.0f} | "
                f"{f['only']:,.0f}{merged} |")
        if not f["candidates"]:
            lines.append(head + " | | | | |")
        for i, (cand, (speed, gflops, of_limit, of_only)) in enumerate(f["candidates"].items()):
            lines.append((head if i == 0 else "| | | | | |") + f" {cand} | {speed:,.0f} | {gflops:.0f} | "
                         f"{of_limit:.0%} | {of_only:.0%} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=None, help="write the measurements here")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed batch of calls")
    args = parser.parse_args(argv)
    out = measure(seconds=args.seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
