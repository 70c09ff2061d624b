"""Writes docs/nvil-tables.md: Mnih & Gregor's (2014) Tables 1 and 2 on binarized MNIST, ours beside the paper's.

Every cell of ours comes from a zoo card (`tfrecog.zoo`): the importance-sampled test log p(x) with its K, n and
standard error; a cell without a card from its progress snapshot's scores where they exist (scripts/progress.py
evaluate: a model trained for the table but short of the paper, so not published), else it says so and, with
`--runs DIR`, how far its run folder has trained.

Usage: python scripts/nvil_tables.py [--runs ../runs] [--out docs/nvil-tables.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from tfrecog import io, zoo

ROOT = Path(__file__).resolve().parent.parent
os.environ["TFRECOG_ZOO_DIR"] = str(ROOT / "zoo")  # this checkout's cards, also under an installed tfrecog
PROGRESS = ROOT / "progress"  # scripts/progress.py's snapshots, with the scores of those that are not cards

# Mnih & Gregor 2014, Table 1: test NLL (nats) on binarized MNIST, (NVIL, wake-sleep). Layer sizes bottom first,
# as in the zoo's names and `latent_sizes`.
TABLE_1 = [
    ("sbn", "200", 113.1, 120.8),
    ("sbn", "500", 112.8, 121.4),
    ("sbn", "200-200", 99.8, 107.7),
    ("sbn", "200-200-200", 96.7, 102.2),
    ("sbn", "200-200-500", 97.0, 102.3),
    ("fdarn", "200", 92.5, 95.9),
    ("fdarn", "500", 90.7, 97.2),
]
# Table 2 retrains models with autoregressive connections within each layer of the inference network; we compare each
# with its factorial twin trained by the same recipe (the `-arq` entries).
TABLE_2 = [("sbn", "200"), ("sbn", "200-200"), ("fdarn", "200")]


def card_name(family: str, sizes: str, suffix: str = "") -> str:
    return f"{family}-bmnist-{sizes}{suffix}"


def _run_state(name: str, runs: Path | None) -> dict | None:
    """The training state of the run folder runs/NAME (its newest good checkpoint), or None without one."""
    if runs is None or not (runs / name / "checkpoints").is_dir():
        return None
    from tfrecog import training

    try:
        return training.run_state(runs / name)
    except Exception:  # noqa: BLE001 - a run folder without a good checkpoint yet is not a cell
        return None


def _training_text(state: dict) -> str:
    best = state.get("best_val_elbo")
    best_text = f", best validation ELBO {best:.2f} (epoch {state.get('best_epoch')})" if best else ""
    return f"epoch {state['epoch']}{best_text}"


def snapshot_metrics(name: str, progress: Path | None = None) -> dict | None:
    """The test scores of the snapshot progress/NAME (scripts/progress.py evaluate), or None where it has none or
    they scored other weights than the snapshot holds now (the sha256s differ)."""
    progress = PROGRESS if progress is None else progress
    try:
        metrics = json.loads((progress / name / "metrics.json").read_text())
        state = json.loads((progress / name / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if metrics.get("sha256") == state.get("sha256") else None


def cell(cards: dict, name: str, runs: Path | None, budget: bool = False, estimator: str | None = None) -> str:
    """Ours for one cell: `-log p(x) ± s.e. (K, n)` from the card, else the state of its run folder. With `budget`,
    the epochs the card was trained for, and the state of a run folder training the card on past them. With
    `estimator` (the column's), a card whose recipe ends with another estimator says so."""
    card = cards.get(name)
    state = _run_state(name, runs)
    if card is not None:
        ll = card["metrics"]["test_log_likelihood"]
        epochs = f"; {card['training']['epochs']} epochs" if budget else ""
        final = card.get("recipe", {}).get("model", {}).get("estimator", estimator)
        other = f"; its last stretch by `{final}`, see the card" if estimator and final != estimator else ""
        text = (f"**{-ll['value']:.2f}** ± {ll['stderr']:.2f} (K={ll['samples']}, n={ll['num_examples']}{epochs}; "
                f"`{name}`{other})")
        if budget and state is not None and state["epoch"] > card["training"]["epochs"]:
            text += f"; training on: {_training_text(state)}"
        return text
    scored = snapshot_metrics(name)
    if scored is not None:
        ll = scored["test_log_likelihood"]
        text = (f"{-ll['value']:.2f} ± {ll['stderr']:.2f} (K={ll['samples']}, n={ll['num_examples']}; "
                f"{scored['epoch']} epochs; not a card: the snapshot `progress/{name}`, "
                f"`python scripts/progress.py evaluate {name}`)")
        if state is not None and state["epoch"] > scored["epoch"]:
            text += f"; training on: {_training_text(state)}"
        return text
    if state is not None:
        return f"training: {_training_text(state)}"
    return f"no card yet (`scripts/train_zoo.sh {name}`)"


def paper_cell(value) -> str:
    return f"{value:.1f}" if value is not None else "n/a"


def tables(runs: Path | None) -> str:
    cards = {card["name"]: card for card in zoo.list(details=True)}
    lines = [
        "# Mnih & Gregor (2014), Tables 1 and 2, reproduced",
        "",
        "Generated by `python scripts/nvil_tables.py --runs ../runs` from the zoo cards; do not edit by hand.",
        "Test negative log-likelihood in nats on binarized MNIST (static binarization, 50,000 training digits, the",
        "10,000 test digits), importance-sampled with the recognition model as proposal at the K given in each",
        "cell (`tfrecog evaluate NAME --samples K`); lower is better. Layer sizes are listed bottom (nearest the",
        "data) first.",
        "",
        "## Table 1: NVIL and wake-sleep",
        "",
        "| model | NVIL, ours | NVIL, paper | wake-sleep, ours | wake-sleep, paper |",
        "| --- | --- | --- | --- | --- |",
    ]
    for family, sizes, nvil, wake_sleep in TABLE_1:
        ours_nvil = cell(cards, card_name(family, sizes), runs, estimator="nvil")
        ours_ws = cell(cards, card_name(family, sizes, "-wake-sleep"), runs, estimator="wake_sleep")
        lines.append(f"| {family.upper() if family == 'sbn' else 'fDARN'} {sizes} | {ours_nvil} | "
                     f"{paper_cell(nvil)} | {ours_ws} | {paper_cell(wake_sleep)} |")
    lines += [
        "",
        "## Table 2: autoregressive inference networks",
        "",
        "The same models trained by NVIL with a factorial recognition model and with one that has autoregressive",
        "connections within each layer (`autoregressive_posterior=True`), on the same recipe; each cell gives the",
        "epochs it was trained for, and the comparison holds where the two budgets are equal.",
        "",
        "| model | factorial q | autoregressive q |",
        "| --- | --- | --- |",
    ]
    for family, sizes in TABLE_2:
        lines.append(f"| {family.upper() if family == 'sbn' else 'fDARN'} {sizes} | "
                     f"{cell(cards, card_name(family, sizes), runs, budget=True)} | "
                     f"{cell(cards, card_name(family, sizes, '-arq'), runs, budget=True)} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="folder of run folders, for the cells still training")
    parser.add_argument("--out", type=Path, default=Path("docs/nvil-tables.md"))
    args = parser.parse_args()
    text = tables(args.runs if args.runs and args.runs.is_dir() else None)
    io.write_text(args.out, text)
    print(json.dumps({"written": str(args.out), "lines": text.count("\n")}))


if __name__ == "__main__":
    main()
