"""Where one compiled training update spends its time, op by op: TensorFlow's profiler over the fused step of `fit`.

  python -m bench.profile_ops [vae|sbn|dlgm] [--calls 10] [--steps-per-execution 50] [--top 25] [--json PATH]

The model's `train_step` runs under `tf.function(jit_compile=True)` on blocks of S minibatches (S updates per call,
as `fit` runs them) while `tf.profiler.experimental` records; the XLA:CPU runtime marks every operation it runs (one
event per HLO instruction: a `dot`, a loop fusion, a copy, a random-bit `call`) on the thread that ran it. Each
event is matched with its instruction in the step's optimised HLO and put in one class:

- **dot**: a matrix product (`dot`, or a library fusion of one);
- **optimizer**: elementwise work of the optimizers' updates (the instruction's TensorFlow op lies in an optimizer's
  name scope, e.g. `adam`);
- **random**: the random-bit generator and the conversion of its bits (`StatelessRandom*` ops);
- **copy**: copies XLA inserted (loop-carried weights, layout changes);
- **other**: everything else (activations, log-densities, their gradients, gathers, reductions).

Times are microseconds per update, each operation's self time (less the events nested in it) summed over the
threads that ran it (the profiler adds its own overhead, so compare shares, not absolute times, with `fit`). The
sum can exceed the update's wall time where XLA's runtime runs independent operations concurrently.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .common import BATCH_SIZE, binary_data  # noqa: E402

# An HLO instruction line: its name, its opcode, and (if printed) the TensorFlow op it came from.
_LINE = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*.*?\s([\w\-]+)\(")
_OP_TYPE = re.compile(r'op_type="([^"]*)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPTIMIZER_SCOPES = ("adam", "sgd", "rmsprop", "adagrad", "optimizer")


def classify_hlo(hlo_text: str) -> dict[str, str]:
    """{instruction name: class} for the instructions of an optimised HLO module (the classes of the docstring)."""
    classes = {}
    for line in hlo_text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        name, opcode = match.groups()
        op_type = (_OP_TYPE.search(line) or [None, ""])[1]
        op_name = (_OP_NAME.search(line) or [None, ""])[1].lower()
        result = line.split("=", 1)[1].lstrip()
        if opcode == "dot" or (opcode == "fusion" and op_type in ("MatMul", "BatchMatMulV2", "Einsum")):
            classes[name] = "dot"  # a product, or a library (YNNPACK, oneDNN) fusion of one
        elif opcode == "copy":
            classes[name] = "copy"
        elif op_type.startswith("StatelessRandom") or result.startswith(("u32[", "u64[", "(u64")):
            classes[name] = "random"  # the generator, and the fusions that cut its state into bits
        elif any(f"/{scope}" in op_name or op_name.startswith(scope) for scope in _OPTIMIZER_SCOPES):
            classes[name] = "optimizer"
        else:
            classes[name] = "other"
    return classes


def event_times(logdir: str) -> tuple[dict, dict, dict]:
    """({event name: total microseconds}, {event name: self microseconds}, {event name: count}) over the host's
    threads, from the profile written into `logdir`. An event's self time leaves out the events nested in it on its
    thread (a `call` of a generator holds the fusion that computes its bits, and the runtime's own events)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))
    if not paths:
        raise RuntimeError(f"the profiler wrote no .xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals, selves, counts = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
            own = [e.duration_ps for e in events]
            open_events = []  # (end, index) of the events enclosing the current one, innermost last
            for i, event in enumerate(events):
                while open_events and open_events[-1][0] <= event.offset_ps:
                    open_events.pop()
                if open_events:
                    own[open_events[-1][1]] -= event.duration_ps
                open_events.append((event.offset_ps + event.duration_ps, i))
            for event, self_ps in zip(events, own, strict=True):
                name = names.get(event.metadata_id, "")
                totals[name] += event.duration_ps / 1e6
                selves[name] += self_ps / 1e6
                counts[name] += 1
    return dict(totals), dict(selves), dict(counts)


def profile(model_name: str, calls: int = 10, steps_per_execution: int = 50, examples: int = 5000) -> dict:
    """Microseconds per update of every HLO instruction of the model's fused training step, and their classes."""
    from tfrecog._tf import tf

    from . import tfrecog_bench as tb

    steps = steps_per_execution
    x = binary_data(max(examples, BATCH_SIZE * steps), seed=0)
    _, step, indices = tb.compiled_train_step(model_name, x, steps, shuffle_seed=0)
    hlo = step.experimental_get_compiler_ir(indices)(stage="optimized_hlo")
    for _ in range(3):  # compile and warm up
        logs = step(indices)
    [v.numpy() for v in logs.values()]
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(calls):
            logs = step(indices)
        [v.numpy() for v in logs.values()]
        tf.profiler.experimental.stop()
        totals, selves, counts = event_times(logdir)
    classes = classify_hlo(hlo)
    updates = calls * steps
    ops = {name: {"us": us / updates, "per_update": counts[name] / updates, "class": classes[name]}
           for name, us in selves.items() if name in classes}
    wall = max((us for name, us in totals.items() if name.startswith("__inference_train_step")), default=0.0)
    return {"model": model_name, "updates": updates, "wall_us_per_update": wall / updates, "ops": ops}


def summary(result: dict) -> dict[str, float]:
    """Microseconds per update by class, and their sum."""
    by_class = collections.Counter()
    for op in result["ops"].values():
        by_class[op["class"]] += op["us"]
    by_class["total"] = sum(by_class.values())
    return dict(by_class)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="vae", choices=("vae", "sbn", "dlgm"))
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = profile(args.model, args.calls, args.steps_per_execution)
    by_class = summary(result)
    total = by_class["total"]
    print(f"{args.model}: {result['updates']} updates profiled; wall {result['wall_us_per_update']:.0f} us per update "
          f"(profiled), operations {total:.0f} us per update summed over threads")
    for name in ("dot", "optimizer", "random", "copy", "other"):
        print(f"  {name:10s} {by_class.get(name, 0.0):8.0f} us  {100 * by_class.get(name, 0.0) / total:5.1f}%")
    print(f"top {args.top} operations, us per update:")
    for name, op in sorted(result["ops"].items(), key=lambda kv: -kv[1]["us"])[: args.top]:
        print(f"  {op['us']:8.1f}  {op['class']:9s}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**result, "by_class": by_class}, f, indent=1)


if __name__ == "__main__":
    main()
