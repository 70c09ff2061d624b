"""Re-measure zoo cards' test log-likelihood with more importance samples, from the cards' own weights (no run folder
needed). Maintainers' tool.

  TFRECOG_DATA_DIR=../shared/data python scripts/reevaluate.py NAME [NAME ...] --samples 5000

For each card: the checksum-verified weights (`tfrecog.zoo.load`) are scored by `tfrecog.log_likelihood` on the
card's whole test split with K=--samples and seed 0, as `publish_zoo.py` does; `metrics.test_log_likelihood` and
`metrics.test_elbo` (and a bag-of-words card's `metrics.test_perplexity`) are replaced (the earlier measurement is
kept under `metrics.earlier_test_log_likelihood`), the rest of the card is left as it is. The card is written
atomically. Run `python scripts/make_docs.py` afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tfrecog import io, training, zoo
from tfrecog.evaluate import log_likelihood

ROOT = Path(__file__).resolve().parent.parent


def reevaluate(name: str, samples: int, data_dir=None) -> dict:
    path = zoo.zoo_dir() / f"{name}.json"  # main() sets TFRECOG_ZOO_DIR to this checkout's zoo/
    card = json.loads(path.read_text())
    recipe = zoo.recipe(name)
    model = zoo.load(name)
    x = training.evaluation_data(recipe, data_dir=data_dir)
    started = time.time()
    result = log_likelihood(model, x, samples=samples, seed=0, progress=True)
    metrics = card["metrics"]
    metrics["earlier_test_log_likelihood"] = {k: metrics["test_log_likelihood"].get(k) for k in
                                              ("value", "stderr", "samples", "num_examples")}
    metrics["test_log_likelihood"] = {"value": result.log_likelihood, "stderr": result.stderr, "samples": samples,
                                      "num_examples": result.num_examples, "split": recipe["test_split"],
                                      "seconds": round(time.time() - started, 1),
                                      "command": f"tfrecog evaluate {name} --samples {samples}"}
    metrics["test_elbo"] = {"value": result.elbo, "stderr": result.elbo_stderr, "samples_per_example": samples}
    if recipe["model"].get("likelihood") == "categorical":  # documents: their perplexity from the same estimates
        metrics["test_perplexity"] = zoo.perplexity_metric(result.per_example, x, samples)
    io.write_json(path, card)
    return metrics["test_log_likelihood"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    os.environ["TFRECOG_ZOO_DIR"] = str(ROOT / "zoo")  # this checkout's cards and weights
    for name in args.names:
        row = reevaluate(name, args.samples, args.data_dir)
        print(f"{name}: {row['value']:.2f} +- {row['stderr']:.2f} (K={row['samples']}, n={row['num_examples']}, "
              f"{row['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
