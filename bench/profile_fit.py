"""Where tfrecog's training time goes: `model.fit` against its compiled training step alone (no tf.data, no Keras loop)
and the jax.jit reference, the candidates taking turns in each timing window (bench/common.py's `interleaved`).

  python -m bench.profile_fit [vae|sbn|dlgm] [--windows 3] [--steps-per-execution 50] [--hlo-dir DIR]

"fit" is what users run (`model.fit(x, batch_size=100, epochs=n)` after `compile()`); "train_step only" calls the
model's `train_step` under `tf.function(jit_compile=True)` on a fixed block of S minibatches, so the gap between the
two is the cost of the feed and of Keras's loop. With --hlo-dir the optimised HLO of that step is written there.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .common import BATCH_SIZE, Candidate, binary_data, interleaved, print_against  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="vae", choices=("vae", "sbn", "dlgm"))
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--hlo-dir", default=None)
    args = parser.parse_args(argv)

    from . import tfrecog_bench as tb

    x = binary_data(args.examples, seed=0)
    steps = args.steps_per_execution
    candidates = [tb.training_candidate("fit", args.model, x, steps_per_execution=steps)]

    _, step, indices = tb.compiled_train_step(args.model, x[: BATCH_SIZE * steps], steps)
    calls_per_epoch = args.examples // (BATCH_SIZE * steps)

    def step_only(epochs):
        for _ in range(int(epochs) * calls_per_epoch):
            logs = step(indices)
        [v.numpy() for v in logs.values()]

    candidates.append(Candidate("train_step only", step_only, calls_per_epoch * BATCH_SIZE * steps,
                                "tf.function(train_step, jit_compile=True) on fixed row indices"))
    if args.model in ("vae", "sbn"):
        from . import ref_jax as rj

        candidates.append(rj.training_candidate("jax.jit", args.model, x))
    timings, failed = interleaved(candidates, args.windows, args.window_seconds)
    print_against(args.model, timings, failed)
    if args.hlo_dir:
        Path(args.hlo_dir).mkdir(parents=True, exist_ok=True)
        path = Path(args.hlo_dir) / f"{args.model}_train_step.hlo"
        path.write_text(step.experimental_get_compiler_ir(indices)(stage="optimized_hlo"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
