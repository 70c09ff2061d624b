"""Active latent units of a DLGM (Burda et al. 2016): unit u is active when Var_x(E_q[xi_u | x]) > 0.01.

The posterior means are those of `DLGM.recognition_parameters` (with top-down recognition: each layer's mean given
the layers above at their means) over the first N digits of a split. Prints, per layer, how many of its units are
active and the mean analytic KL(q || p) per digit.

Usage: TFRECOG_DATA_DIR=../shared/data python scripts/active_units.py NAME_OR_RUN [--split valid] [--limit 2000]
"""

import argparse
import sys

import numpy as np

from tfrecog import data, loader

parser = argparse.ArgumentParser()
parser.add_argument("run", help="run folder or zoo name")
parser.add_argument("--split", default="valid")
parser.add_argument("--limit", type=int, default=2000)
parser.add_argument("--threshold", type=float, default=0.01)
args = parser.parse_args()

model, recipe = loader.load(args.run)  # a run folder or a zoo name, as every `tfrecog` command reads it
if not hasattr(model, "recognition_parameters"):
    sys.exit(f"{args.run}: active units need a DLGM (a model with recognition_parameters); got {recipe['family']}")
x = data.load(recipe["dataset"], args.split, binarize=recipe.get("binarize")).x[: args.limit]
for layer, parameters in enumerate(model.recognition_parameters(x), start=1):
    variance = np.var(np.asarray(parameters[0]), axis=0)
    print(
        f"layer {layer}: {int(np.sum(variance > args.threshold))} of {variance.size} units active "
        f"(Var_x E[xi | x] > {args.threshold}, {len(x)} {args.split} digits)"
    )
_, kl = model.sample_posterior_and_kl(x, 1, np.array([0, 1], np.int32))
print(f"KL(q || p) per digit: {float(np.mean(kl)):.2f} nats")
