"""A/B timing of `model.fit` across versions of tfrecog in one process, interleaved with the jax.jit reference.

  python -m bench.ab_fit sbn|vae|dlgm PACKAGE [PACKAGE ...] [--windows 5]

Each PACKAGE is an importable copy of tfrecog under another name, e.g. the last commit as `tfrecog_old`:

  mkdir -p /tmp/ab && git archive HEAD tfrecog | tar -x -C /tmp/ab && mv /tmp/ab/tfrecog /tmp/ab/tfrecog_old
  grep -rl tfrecog /tmp/ab/tfrecog_old --include=*.py | xargs sed -i 's/\\btfrecog\\([._ ]\\)/tfrecog_old\\1/g'
  PYTHONPATH=/tmp/ab python -m bench.ab_fit sbn tfrecog_old tfrecog

(`tfrecog` itself is this checkout.) Candidates take turns in every timing window (`common.interleaved`), so the
ratios of one run compare versions under the same load.
"""

from __future__ import annotations

import argparse
import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .common import (  # noqa: E402
    BATCH_SIZE,
    LEARNING_RATE,
    Candidate,
    binary_data,
    build_tfrecog_model,
    interleaved,
    print_against,
)


def fit_candidate(package: str, model_name: str, x):
    """The benchmark's model (bench/common.py) built from `package`; a unit is one epoch of `fit`."""
    keras = importlib.import_module(f"{package}._tf").keras
    adam = lambda: keras.optimizers.Adam(LEARNING_RATE)  # noqa: E731
    model = build_tfrecog_model(model_name, package)
    if model_name == "sbn":
        model.compile(optimizer=adam(), baseline_optimizer=adam(), steps_per_execution=50)
    else:
        model.compile(optimizer=adam(), steps_per_execution=50)

    def run(epochs):
        model.fit(x, batch_size=BATCH_SIZE, epochs=int(epochs), verbose=0, shuffle=True)

    return Candidate(package, run, len(x))


def tf_only_xla_flags(flags: str):
    """Gives TensorFlow's XLA `flags` without letting JAX's XLA (another copy, parsing the same variable later)
    see them: both read XLA_FLAGS once, at their first compilation."""
    import tensorflow as tf

    before = os.environ.get("XLA_FLAGS")
    os.environ["XLA_FLAGS"] = f"{before or ''} {flags}".strip()
    tf.function(lambda t: t + 1.0, jit_compile=True)(tf.zeros([1]))
    if before is None:
        del os.environ["XLA_FLAGS"]
    else:
        os.environ["XLA_FLAGS"] = before
    print(f"TensorFlow XLA flags: {flags}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("vae", "sbn", "dlgm"))
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--tf-xla-flags", default="",
                        help="XLA flags for TensorFlow's XLA only: set, parsed by a first TF compile, then unset "
                             "again so that the jax.jit reference (which parses XLA_FLAGS at its own first "
                             "compile) keeps its defaults")
    args = parser.parse_args(argv)
    if args.tf_xla_flags:
        tf_only_xla_flags(args.tf_xla_flags)

    from . import ref_jax as rj

    x = binary_data(10000, seed=0)
    candidates = [fit_candidate(package, args.model, x) for package in args.packages]
    if args.model in ("vae", "sbn"):  # no DLGM reference: the first package is the yardstick
        candidates.append(rj.training_candidate("jax.jit", args.model, x))
    timings, failed = interleaved(candidates, args.windows, args.window_seconds)
    print_against(args.model, timings, failed, reference="jax.jit" if args.model != "dlgm" else args.packages[0])


if __name__ == "__main__":
    main()
