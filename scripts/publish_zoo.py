"""Publish (or refresh) a zoo card and its compact weights from a run folder. Maintainers' tool.

Usage: python scripts/publish_zoo.py RUN_DIR NAME [--samples 5000] [--description ...] [--version 2]

The card, recipe and weights are written into this checkout's `zoo/`, also when the tfrecog that runs is an
installed (non-editable) copy, whose own package data would otherwise receive them.
"""

import argparse
import json
import os
from pathlib import Path

from tfrecog import zoo

ROOT = Path(__file__).resolve().parent.parent
os.environ["TFRECOG_ZOO_DIR"] = str(ROOT / "zoo")  # this checkout's cards and weights

PAPERS = {
    "vae-bmnist": {"reference": "Kingma & Welling 2014 (AEVB), 500 tanh hidden, 20 latents",
                   "test_nll": None, "note": "the paper reports lower-bound curves, not a test NLL"},
    "vae-bmnist-2d": {"reference": "Kingma & Welling 2014, Figure 4 (2-D latent manifold)", "test_nll": None},
    "vae-frey": {"reference": "Kingma & Welling 2014, Frey faces, 200 hidden", "test_nll": None},
    "sbn-bmnist-200-200-200": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200-200, NVIL", "test_nll": 96.7},
    "sbn-bmnist-200": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200, NVIL", "test_nll": 113.1},
    "sbn-bmnist-200-200": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200, NVIL", "test_nll": 99.8},
    "sbn-bmnist-200-200-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200, wake-sleep",
                                      "test_nll": 107.7},
    "sbn-bmnist-200-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200, wake-sleep", "test_nll": 120.8},
    "sbn-bmnist-500": {"reference": "Mnih & Gregor 2014, Table 1, SBN 500, NVIL", "test_nll": 112.8},
    "sbn-bmnist-500-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, SBN 500, wake-sleep", "test_nll": 121.4},
    "sbn-bmnist-200-200-200-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200-200, wake-sleep",
                                          "test_nll": 102.2},
    "sbn-bmnist-200-200-500-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200-500, wake-sleep",
                                          "test_nll": 102.3},
    "fdarn-bmnist-200-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, fDARN 200, wake-sleep",
                                    "test_nll": 95.9},
    "fdarn-bmnist-500-wake-sleep": {"reference": "Mnih & Gregor 2014, Table 1, fDARN 500, wake-sleep",
                                    "test_nll": 97.2},
    "sbn-bmnist-200-200-500": {"reference": "Mnih & Gregor 2014, Table 1, SBN 200-200-500, NVIL", "test_nll": 97.0},
    "sbn-bmnist-200-200-200-vimco": {"reference": "Mnih & Rezende 2016 (VIMCO), SBN 200-200-200, K=50 training "
                                                   "samples", "test_nll": 91.9},
    "sbn-bmnist-200-arq": {"reference": "Mnih & Gregor 2014, Table 2, SBN 200 with an autoregressive inference "
                                        "network, NVIL", "test_nll": None,
                           "note": "compared with its factorial twin sbn-bmnist-200 in docs/nvil-tables.md"},
    "sbn-bmnist-200-200-arq": {"reference": "Mnih & Gregor 2014, Table 2, SBN 200-200 with autoregressive inference "
                                            "layers, NVIL", "test_nll": None,
                               "note": "compared with its factorial twin sbn-bmnist-200-200 in docs/nvil-tables.md"},
    "fdarn-bmnist-200-arq": {"reference": "Mnih & Gregor 2014, Table 2, fDARN 200 with an autoregressive inference "
                                          "network, NVIL", "test_nll": None,
                             "note": "compared with its factorial twin fdarn-bmnist-200 in docs/nvil-tables.md"},
    "fdarn-bmnist-200": {"reference": "Mnih & Gregor 2014, Table 1, fDARN 200, NVIL", "test_nll": 92.5},
    "fdarn-bmnist-500": {"reference": "Mnih & Gregor 2014, Table 1, fDARN 500, NVIL", "test_nll": 90.7},
    "sbn-20news-50": {"reference": "Mnih & Gregor 2014, Table 3, SBN 50, 20 Newsgroups (2,000-word vocabulary: "
                                   "a reference, not an exact match)", "test_nll": None, "test_perplexity": 909},
    "fdarn-20news-50": {"reference": "Mnih & Gregor 2014, Table 3, fDARN 50, 20 Newsgroups (2,000-word "
                                     "vocabulary: a reference, not an exact match)", "test_nll": None,
                        "test_perplexity": 917},
    "dlgm-bmnist-diag": {"reference": "Rezende et al. 2014, Table 2, DLGM diagonal", "test_nll": 87.30},
    "dlgm-bmnist-rank1": {"reference": "Rezende et al. 2014, Table 2, DLGM rank-one", "test_nll": 86.60},
}

parser = argparse.ArgumentParser()
parser.add_argument("run")
parser.add_argument("name")
parser.add_argument("--samples", type=int, default=5000)
parser.add_argument("--description", default="")
parser.add_argument("--data-dir")
parser.add_argument("--no-evaluate", action="store_true")
parser.add_argument("--version", default="1", help="the card's version (raise it when new weights replace old ones)")
args = parser.parse_args()
path = zoo.publish(args.run, args.name, description=args.description, paper=PAPERS.get(args.name),
                   samples=args.samples, data_dir=args.data_dir, evaluate=not args.no_evaluate,
                   version=args.version)
print(json.dumps(json.loads(open(path).read())["metrics"], indent=2))
