"""AIS, BDMC and inference-gap metrics for zoo cards, with the importance-sampled number on the same examples.

    python scripts/ais_cards.py vae-frey dlgm-frey --steps 500 --chains 8 --every 2
    python scripts/ais_cards.py vae-bmnist --steps 500 --chains 8 --every 100 --bdmc 20 --gaps
    python scripts/ais_cards.py vae-bmnist --steps 300 --chains 4 --every 200 --bdmc 20 --gaps --no-ais

Writes `metrics.ais_log_likelihood` (and `metrics.bdmc`, `metrics.inference_gaps` when asked) into each card,
atomically and adding keys only, and a copy of every result under --results (one JSON file per card).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TFRECOG_ZOO_DIR"] = str(ROOT / "zoo")  # this checkout's cards and weights, also under an installed tfrecog

from tfrecog import annealing, evaluate, io, training, zoo  # noqa: E402
from tfrecog.models import SBN  # noqa: E402


def subset(card: dict, every: int, data_dir=None) -> np.ndarray:
    """Every `every`-th example of the card's test split (the binarized-MNIST test split is sorted by class, so a
    stride spans the classes where a prefix would not)."""
    return training.evaluation_data(card["recipe"], data_dir=data_dir)[::every]


def run(name: str, args, command: str) -> dict:
    card = zoo.info(name)
    model = zoo.load(name, compile=False)
    x = subset(card, args.every, args.data_dir)
    split = card["recipe"]["test_split"]
    where = f"{split}[::{args.every}]"
    samples = int(card["metrics"]["test_log_likelihood"]["samples"])
    binary = isinstance(model, SBN)
    # The MCMC transition: HMC for Gaussian latents; for binary ones --transition or the library's default.
    args.transition_name = (args.transition or annealing.DEFAULT_BINARY_TRANSITION) if binary else "hmc"
    args.settings = {"transition": args.transition} if (binary and args.transition) else {}
    out = {}
    if not args.no_ais:
        out["ais_log_likelihood"] = _ais(name, model, x, where, samples, args, command)

    if args.bdmc:
        t0 = time.time()
        b = evaluate.bdmc(model, num_examples=args.bdmc, steps=args.steps, chains=args.chains, seed=args.seed,
                          batch_size=min(args.batch_size, args.bdmc), **args.settings)
        out["bdmc"] = {**b.as_dict(), "transition": args.transition_name, "seed": args.seed,
                       "data": "simulated from the model",
                       "seconds": round(time.time() - t0, 1), "command": command}
        print(f"{name} BDMC: {b}", flush=True)

    if args.gaps:
        t0 = time.time()
        g = evaluate.inference_gaps(model, x[: args.gaps_examples], steps=args.steps, chains=args.chains,
                                    seed=args.seed, batch_size=args.batch_size, **args.settings)
        out["inference_gaps"] = {**g.as_dict(), "transition": args.transition_name, "seed": args.seed,
                                 "examples": f"{where}[:{args.gaps_examples}]",
                                 "seconds": round(time.time() - t0, 1), "command": command}
        print(f"{name} gaps: {g}", flush=True)
    return out


def _ais(name, model, x, where, samples, args, command) -> dict:
    """`metrics.ais_log_likelihood`: AIS on x, and IS with the card's K on the same examples."""
    t0 = time.time()
    ais = evaluate.ais_log_likelihood(model, x, steps=args.steps, chains=args.chains, seed=args.seed,
                                      batch_size=args.batch_size, progress=True, **args.settings)
    ais_seconds = time.time() - t0
    t0 = time.time()
    is_ = evaluate.log_likelihood(model, x, samples=samples, seed=args.seed, batch_size=args.batch_size)
    is_seconds = time.time() - t0
    diff, diff_se = evaluate.paired_difference(ais, is_)
    result = {
        **{k: v for k, v in ais.as_dict().items() if k not in ("samples", "method")},
        "transition": args.transition_name,
        "seed": args.seed,
        "examples": where,
        "seconds": round(ais_seconds, 1),
        "importance_sampled_same_examples": {"value": is_.log_likelihood, "stderr": is_.stderr, "samples": samples,
                                             "seconds": round(is_seconds, 1)},
        "ais_minus_importance_sampled": {"value": diff, "stderr": diff_se},
        "command": command,
    }
    print(f"{name}: {ais}\n  IS (K={samples}) on the same {len(x)} examples: {is_}\n  AIS - IS = {diff:.3f} +- "
          f"{diff_se:.3f}", flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--every", type=int, default=100, help="stride over the test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--transition", choices=annealing.TRANSITIONS,
                        help="binary latents: the AIS transition (default: the library's, Gibbs sweeps)")
    parser.add_argument("--bdmc", type=int, default=0, help="simulated examples for BDMC (0: skip)")
    parser.add_argument("--gaps", action="store_true", help="also the inference gaps")
    parser.add_argument("--gaps-examples", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=str(ROOT / "bench" / "ais_cards"), help="folder for per-card JSON")
    parser.add_argument("--no-ais", action="store_true",
                        help="skip AIS on the test subset (the card keeps its ais_log_likelihood): BDMC and gaps only")
    parser.add_argument("--no-card", action="store_true", help="do not write the cards")
    args = parser.parse_args(argv)
    command = "python scripts/ais_cards.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    Path(args.results).mkdir(parents=True, exist_ok=True)
    for name in args.names:
        result = run(name, args, command)
        saved = Path(args.results) / f"{name}.json"
        io.write_json(saved, {**(io.read_json(saved) if saved.exists() else {}), **result})
        if not args.no_card:
            path = zoo.zoo_dir() / f"{name}.json"
            card = io.read_json(path)
            card["metrics"].update(result)  # only the new keys; the rest of the card is untouched
            io.write_json(path, card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
