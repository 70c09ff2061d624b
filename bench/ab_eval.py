"""A/B timing of `log_likelihood` (importance-sampled log p(x)) across versions of tfrecog in one process, interleaved
with the jax.jit and torch.compile references.

  python -m bench.ab_eval vae|sbn PACKAGE [PACKAGE ...] [--windows 4] [--no-torch]

Each PACKAGE is an importable copy of tfrecog under another name, made as in `bench/ab_fit.py`'s docstring (e.g. the
last commit as `tfrecog_old`), and `tfrecog` itself is this checkout:

  PYTHONPATH=/tmp/ab python -m bench.ab_eval vae tfrecog_old tfrecog

A PACKAGE may carry settings of `log_likelihood`: `tfrecog:rows=5000` (rows_per_chunk), `tfrecog:nojit`
(jit_compile=False), `tfrecog:rows=default` (the library's default instead of the suite's ROWS_PER_CHUNK).

The workload is the suite's (`bench/run.py --sections evaluation`): K=5000, 20 test points per call in one batch,
`ROWS_PER_CHUNK` rows per chunk; a unit is one `log_likelihood(model, x, samples=K)` call over the 20 points.
"""

from __future__ import annotations

import argparse
import importlib
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from .common import (  # noqa: E402
    EVENT_SIZE,
    ROWS_PER_CHUNK,
    Candidate,
    binary_data,
    build_tfrecog_model,
    interleaved,
)


def build_model(package: str, model_name: str):
    """The benchmark's model (bench/common.py) built from `package`."""
    model = build_tfrecog_model(model_name, package)
    model.build((None, EVENT_SIZE))
    return model


def evaluation_candidate(spec: str, model_name: str, x, samples: int):
    """A unit is `package.evaluate.log_likelihood(model, x, samples=K)` over all of x in one batch; `spec` is
    `package[:rows=N|rows=default][:nojit]`."""
    package, *options = spec.split(":")
    kwargs = {"rows_per_chunk": ROWS_PER_CHUNK}
    for option in options:
        if option == "nojit":
            kwargs["jit_compile"] = False
        elif option == "rows=default":
            kwargs.pop("rows_per_chunk")
        elif option.startswith("rows="):
            kwargs["rows_per_chunk"] = int(option[len("rows="):])
        else:
            raise ValueError(f"unknown option {option!r} in {spec!r}")
    log_likelihood = importlib.import_module(f"{package}.evaluate").log_likelihood
    model = build_model(package, model_name)
    counter = [0]

    def run(units):
        for _ in range(int(units)):
            counter[0] += 1
            log_likelihood(model, x, samples=samples, batch_size=len(x), seed=counter[0], **kwargs)

    return Candidate(spec, run, len(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=("vae", "sbn"))
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-seconds", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--test-points", type=int, default=20)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch.compile reference")
    parser.add_argument("--no-jax", action="store_true", help="skip the jax.jit reference")
    parser.add_argument("--jax-rows", type=int, default=None, help="also time jax.jit with this rows_per_chunk")
    args = parser.parse_args(argv)

    x = binary_data(args.test_points, seed=1)
    candidates = [evaluation_candidate(package, args.model, x, args.samples) for package in args.packages]
    if not args.no_jax:
        from . import ref_jax as rj

        candidates.append(rj.evaluation_candidate("jax.jit", args.model, x, args.samples))
        if args.jax_rows:
            candidates.append(rj.evaluation_candidate(f"jax.jit:rows={args.jax_rows}", args.model, x, args.samples,
                                                      rows_per_chunk=args.jax_rows))
    if not args.no_torch:
        from . import ref_torch as rt

        candidates.append(rt.evaluation_candidate("torch.compile", args.model, x, args.samples, compile=True))
    timings, failed = interleaved(candidates, args.windows, args.window_seconds)
    references = [timings[name]["median"] for name in ("jax.jit", "torch.compile") if name in timings]
    best = max(references) if references else None
    for name, row in timings.items():
        ratio = f"  {row['median'] / best:.2f}x fastest reference" if best else ""
        print(f"{args.model} {name:22s} {row['median']:8.2f} points/s [{row['min']:.2f}-{row['max']:.2f}]{ratio}")
    for name, fail in failed.items():
        print(f"{name}: FAILED {fail.error}")


if __name__ == "__main__":
    main()
