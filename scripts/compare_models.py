"""Paired comparison of two models' test log-likelihoods on the same examples.

Both models are scored by `tfrecog.evaluate.log_likelihood` (K importance samples, the same seed) on the same test
examples; the difference is reported per example, so its standard error,

  se(A - B) = std_n(log p_A(x_n) - log p_B(x_n)) / sqrt(N),

is free of the spread between examples that dominates each model's own standard error.

Usage: TFRECOG_DATA_DIR=../shared/data python scripts/compare_models.py A B [--samples 1000] [--split test]
(A and B: zoo names or run folders trained on the same dataset.)
"""

import sys  # noqa: I001
from pathlib import Path

# This checkout's tfrecog and zoo/, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse

from tfrecog import evaluate, loader, training

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("a", help="run folder or zoo name")
parser.add_argument("b", help="run folder or zoo name")
parser.add_argument("--samples", type=int, default=1000, help="K, importance samples per example")
parser.add_argument("--split", default=None, help="default: the recipes' test split")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

(model_a, recipe_a), (model_b, recipe_b) = loader.load(args.a), loader.load(args.b)
same = ("dataset", "binarize")
if any(recipe_a.get(k) != recipe_b.get(k) for k in same):
    sys.exit(
        f"{args.a} and {args.b} must be trained on the same data to be compared; got "
        f"{ {k: recipe_a.get(k) for k in same} } and { {k: recipe_b.get(k) for k in same} }"
    )
split = args.split or recipe_a["test_split"]
x = training.evaluation_data(recipe_a, split, seed=args.seed)  # the same examples (and binarization) for both
results = [evaluate.log_likelihood(m, x, samples=args.samples, seed=args.seed) for m in (model_a, model_b)]
for name, result in zip((args.a, args.b), results, strict=True):
    print(f"{name}: {result}")
mean, stderr = evaluate.paired_difference(*results)
print(
    f"{args.a} - {args.b}: {mean:.2f} +- {stderr:.2f} nats per example "
    f"(paired, K={args.samples}, {recipe_a['dataset']} {split}, n={len(x)})"
)
