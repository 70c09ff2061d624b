"""Imputation figures and error curves for the README (Rezende et al. 2014, Figure 5 and Section 7.3).

For each model (zoo name or run folder) and each missing-data pattern, runs `tfrecog.impute` on test examples and
writes:
  docs/impute-<label>-<pattern>.png   the Figure 5 layout (truth, masked input, imputations over iterations)
  docs/imputation-error.png           mean squared error over the missing entries against iterations, every case
  docs/imputation.json                the curves, the settings and the command, for the README table

The error of a single sampled completion x_t is what the chain shows; for binary data it is the fraction of missing
pixels drawn wrong, which even the exact conditional would not drive to zero. So the report adds the error of the
chain's average over its second half, (2/T) sum_{t > T/2} x_t, a Monte-Carlo estimate of E[x_missing | x_observed]
under the chain, and compares it with filling every missing entry with the training set's per-feature mean (the best
constant guess under squared error that ignores the observed entries).

Usage:
  TFRECOG_DATA_DIR=../shared/data python scripts/imputation_report.py \
      --case dlgm-bmnist-rank1:mar:0.6 --case dlgm-bmnist-rank1:mar:0.8 --case dlgm-bmnist-rank1:square:14 \
      --case dlgm-frey:mar:0.6 --steps 100 --examples 1000
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", required=True, help="MODEL:mar:FRACTION or MODEL:square:SIZE")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--examples", type=int, default=1000, help="test examples in the error curves")
    parser.add_argument("--show", type=int, default=8, help="examples in each figure")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from tfrecog import data as data_lib
    from tfrecog import io, loader, plots
    from tfrecog.impute import imputation_error, impute, missing_at_random, missing_square, plot_imputation

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, models = [], {}
    for case in args.case:
        name, kind, value = case.split(":")
        label = Path(name).name
        if name not in models:
            models[name] = loader.load(name)
        model, config = models[name]
        binarize = config.get("binarize")
        test = data_lib.load(config["dataset"], config.get("test_split", "test"), data_dir=args.data_dir,
                             binarize=binarize)
        train = data_lib.load(config["dataset"], "train", data_dir=args.data_dir, binarize=binarize)
        # A seeded random subset: test files can be ordered by class, and the figure should show every digit.
        rows = np.sort(np.random.default_rng(args.seed).permutation(len(test.x))[: args.examples])
        x = test.x[rows]
        shape = plots.image_shape_for(config["dataset"], model.event_size)
        if kind == "mar":
            mask = missing_at_random(x.shape, float(value), seed=args.seed)
        elif kind == "square":
            mask = missing_square(shape, int(value), num_examples=len(x), seed=args.seed)
        else:
            raise SystemExit(f"--case must be MODEL:mar:FRACTION or MODEL:square:SIZE; got {case!r}")
        t0 = time.time()
        chain = impute(model, x, mask, steps=args.steps, seed=args.seed)
        seconds = time.time() - t0
        errors = imputation_error(chain, x, mask)
        baseline = float(imputation_error(np.broadcast_to(train.x.mean(axis=0), x.shape), x, mask))
        average = float(imputation_error(chain[args.steps // 2 + 1 :].mean(axis=0), x, mask)) if args.steps else None
        pattern = f"{kind}{value}"
        figure = out / f"impute-{label}-{pattern}.png"
        show = np.linspace(0, len(x) - 1, min(args.show, len(x))).astype(int)
        plot_imputation(x[show], mask[show], chain[:, show], shape, figure)
        results.append({
            "model": label, "dataset": config["dataset"], "binarize": binarize, "missing": f"{kind}:{value}",
            "examples": len(x), "steps": args.steps, "seconds": round(seconds, 1),
            "missing_fraction": float(1.0 - mask.mean()),
            "error": [float(e) for e in errors], "chain_average_error": average, "train_mean_baseline": baseline,
            "figure": str(figure),
        })
        print(f"{label} {kind}:{value}: error t=0 {errors[0]:.4f}, t=1 {errors[1]:.4f}, t={args.steps} "
              f"{errors[-1]:.4f}; chain average (second half) {average}; train-mean baseline {baseline:.4f}; "
              f"wrote {figure}")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in results:
        line, = ax.plot(np.arange(len(r["error"])), r["error"], label=f"{r['model']} {r['missing']}")
        ax.axhline(r["train_mean_baseline"], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("chain iteration t")
    ax.set_ylabel("mean squared error, missing entries")
    ax.set_title("imputation error (dotted: training-mean fill)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(out / "imputation-error.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    command = "TFRECOG_DATA_DIR=../shared/data python scripts/imputation_report.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    io.write_json(out / "imputation.json", {"command": command, "seed": args.seed, "cases": results})
    print(f"wrote {out / 'imputation-error.png'} and {out / 'imputation.json'}")


if __name__ == "__main__":
    main()
