"""Regenerate the `metrics.check` entry of zoo cards (what `tfrecog zoo verify NAME --metrics` re-estimates).

Usage: TFRECOG_DATA_DIR=../shared/data python scripts/refresh_checks.py [NAME ...]   (default: every card)
       TFRECOG_DATA_DIR=../shared/data python scripts/refresh_checks.py --calibrate NAME ...

Only `metrics.check` changes: the card's weights (checksum-verified) are scored with `tfrecog.zoo.check_entry`
(every s-th test example, K=100, seed 0, the Monte-Carlo variance of the mean from split halves of the draws), and
the command is recorded on the card. The cards written are this checkout's `zoo/*.json` (run it from the checkout
whose tfrecog is installed, `pip install -e .`).

--calibrate writes nothing: it scores the check subset with 8 seeds and prints the standard deviation of the mean
across seeds next to the two per-seed estimates of it (split halves, delta method), averaged over the seeds.
"""

import argparse
import json
import os
import time
from pathlib import Path

from tfrecog import io, training, zoo

parser = argparse.ArgumentParser()
parser.add_argument("names", nargs="*", help="cards to refresh (default: all)")
parser.add_argument("--data-dir")
parser.add_argument("--calibrate", action="store_true", help="compare the variance estimates; write nothing")
args = parser.parse_args()
# The cards of this checkout (an editable install elsewhere would otherwise provide its own `tfrecog._zoo`).
ROOT = Path(__file__).resolve().parent.parent
os.environ["TFRECOG_ZOO_DIR"] = str(ROOT / "zoo")

for name in args.names or zoo.list():
    card = zoo.info(name)
    model = zoo.load(name, compile=False)
    test_x = training.evaluation_data(card["recipe"], data_dir=args.data_dir)  # as `zoo.verify` reads it
    if args.calibrate:
        import numpy as np

        _, indices = zoo.check_indices(len(test_x))
        runs = [zoo.check_estimate(model, test_x[indices], seed=seed) for seed in range(8)]
        n = len(indices)
        means = [r[0].mean() for r in runs]
        split = np.mean([np.sqrt(r[1].sum()) / n for r in runs])
        delta = np.mean([np.sqrt(r[2].sum()) / n for r in runs])
        print(f"{name}: n={n}, K={zoo.CHECK_SAMPLES}: sd of the mean across 8 seeds {np.std(means, ddof=1):.4f}; "
              f"estimated: split halves {split:.4f}, delta method {delta:.4f}", flush=True)
        continue
    t0 = time.time()
    entry = zoo.check_entry(model, test_x)
    entry["seconds"] = round(time.time() - t0, 1)
    entry["command"] = f"python scripts/refresh_checks.py {name}"
    card["metrics"]["check"] = entry
    card.pop("recipe", None)  # zoo.info adds it from zoo/recipes/NAME.json, its one copy
    io.write_json(zoo.zoo_dir() / f"{name}.json", card)
    print(name, json.dumps(entry))
