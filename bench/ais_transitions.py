"""AIS transitions for binary latents: Metropolis flips (10 proposals per temperature; T=2000, the zoo cards'
setting, and T=8000) against one Gibbs sweep per temperature (`tfrecog.annealing.GibbsSweep`) at a few T, on zoo
SBNs.

    nice -n 10 python bench/ais_transitions.py --data-dir ../shared/data

For each model: the 20 test digits x[::500], chains=4, seed=0, batch_size=20; per setting the AIS estimate of
log p(x) (mean over digits, standard error over digits), the mean log weight, the acceptance, and the wall time of
the `ais_log_likelihood` call (it includes its XLA compile: every T is a new shape; `fixed_seconds` is the time of a
T=2 call of the same transition, about the trace + compile part) with the load average beside it. Also the
importance-sampled log p(x) with K=1000 samples of q on the same digits, for reference. Writes
bench/results/ais_transitions.json (atomically) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfrecog import annealing, evaluate, io, training, zoo  # noqa: E402

SETTINGS = [("metropolis", 2000), ("metropolis", 8000), ("gibbs", 100), ("gibbs", 300), ("gibbs", 1000)]


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timed_ais(model, x, transition, steps, chains, seed):
    load = load_average()
    start = time.perf_counter()
    result = annealing.ais_log_likelihood(model, x, steps=steps, chains=chains, seed=seed, batch_size=len(x),
                                          transition=transition, proposals=10)
    seconds = time.perf_counter() - start
    return result, seconds, load


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["sbn-bmnist-200-200", "sbn-bmnist-200-200-200"])
    parser.add_argument("--every", type=int, default=500, help="test digits x[::EVERY]")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ais_transitions.json"))
    args = parser.parse_args(argv)
    report = {"command": "python bench/ais_transitions.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.node()} {os.cpu_count()} cores", "chains": args.chains, "seed": args.seed,
              "examples": f"test[::{args.every}]", "models": {}}
    for name in args.models:
        model = zoo.load(name, compile=False)
        x = training.evaluation_data(zoo.info(name)["recipe"], data_dir=args.data_dir)[:: args.every]
        start = time.perf_counter()
        is_result = evaluate.log_likelihood(model, x, samples=1000, batch_size=len(x), seed=args.seed)
        entry = {"num_examples": len(x),
                 "importance_sampled_K1000": {"value": is_result.log_likelihood, "stderr": is_result.stderr,
                                              "seconds": round(time.perf_counter() - start, 1)},
                 "runs": []}
        fixed = {}
        for transition in sorted({t for t, _ in SETTINGS}):
            _, seconds, _ = timed_ais(model, x, transition, 2, args.chains, args.seed)
            fixed[transition] = round(seconds, 1)
        entry["fixed_seconds"] = fixed
        for transition, steps in SETTINGS:
            result, seconds, load = timed_ais(model, x, transition, steps, args.chains, args.seed)
            d = result.per_example - np.array(is_result.per_example, np.float64)
            run = {"transition": transition, "steps": steps,
                   "proposals": 10 if transition == "metropolis" else None,
                   "log_likelihood": result.log_likelihood, "stderr": result.stderr,
                   "minus_importance_sampled": float(d.mean()),
                   "minus_importance_sampled_stderr": float(d.std(ddof=1) / np.sqrt(len(d))),
                   "mean_log_weight": result.elbo, "mean_log_weight_std": float(np.mean(result.log_weight_std)),
                   "acceptance": result.acceptance, "seconds": round(seconds, 1), "load_average_before": load,
                   "load_average_after": load_average()}
            entry["runs"].append(run)
            print(name, json.dumps(run), flush=True)
        report["models"][name] = entry
        io.write_json(args.out, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
