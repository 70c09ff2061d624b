"""Zoo cards as plain data, read without TensorFlow: what `tfrecog zoo list` and `zoo show` print.

Also holds the source of presets that `LatentVariableModel.from_preset` loads from (registered by the package,
which sits above both the models and the zoo).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

ZOO_DIR_ENV = "TFRECOG_ZOO_DIR"

__all__ = ["CardError", "ZOO_DIR_ENV", "zoo_dir", "read_cards", "find", "summary",
           "table", "set_preset_source", "preset_source"]


class CardError(ValueError):
    """An unknown zoo name or an unreadable card; the message names what was expected."""


def zoo_dir() -> Path:
    """The folder of cards: $TFRECOG_ZOO_DIR where set (a folder laid out as the source tree's `zoo/`: NAME.json,
    recipes/, weights/), else the installed package data (`tfrecog._zoo`), else the source tree's `zoo/`.

    The same rule as `tfrecog.zoo.zoo_dir`, without importing TensorFlow.
    """
    env = os.environ.get(ZOO_DIR_ENV, "").strip()
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise CardError(f"{ZOO_DIR_ENV}={env} is not a folder: expected a folder of zoo cards (NAME.json, "
                            "recipes/, weights/), e.g. the zoo/ of a tfrecog source checkout")
        return folder
    try:
        import tfrecog._zoo as installed

        return Path(installed.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "zoo"


def read_cards(folder=None) -> dict:
    """Every card of `folder` (default `zoo_dir()`) by name, in name order."""
    cards = {}
    for path in sorted(Path(folder or zoo_dir()).glob("*.json")):
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CardError(f"{path}: is not a valid JSON card ({err})") from None
        if not isinstance(card, dict) or not isinstance(card.get("name"), str):
            raise CardError(f"{path}: expected a JSON object with a 'name' (a zoo card)")
        cards[card["name"]] = card
    return dict(sorted(cards.items()))


def find(name: str, folder=None) -> dict:
    """The card named `name`; CardError with the close matches (or every name) otherwise."""
    cards = read_cards(folder)
    if name not in cards:
        close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.4)
        hint = f"; close matches: {', '.join(close)}" if close else f"; available: {', '.join(cards) or 'none'}"
        raise CardError(f"no zoo model named {name!r}{hint}")
    return cards[name]


def summary(card: dict) -> dict:
    """One card in brief: name, family, dataset, the test log p(x) with its K and n, the paper's number."""
    metric = card.get("metrics", {}).get("test_log_likelihood")
    paper = card.get("paper") or {}
    perplexity = card.get("metrics", {}).get("test_perplexity", {}).get("perplexity")
    return {
        "name": card["name"],
        "family": card.get("family"),
        "dataset": (card.get("dataset") or {}).get("name"),
        "test_log_likelihood": None if metric is None else {
            key: metric.get(key) for key in ("value", "stderr", "samples", "num_examples")},
        "test_perplexity": perplexity,
        "paper": {key: paper[key] for key in ("reference", "test_nll", "test_perplexity") if key in paper} or None,
    }


def _paper_text(paper: dict | None) -> str:
    if not paper:
        return "n/a"
    number = (f"perplexity {paper['test_perplexity']}" if paper.get("test_perplexity")
              else f"{-paper['test_nll']:.1f}" if paper.get("test_nll") is not None else "")
    source = ", ".join(paper.get("reference", "").split(", ")[:2])  # e.g. "Rezende et al. 2014, Table 2"
    return f"{number} ({source})" if number else "n/a"  # as the README's table: only a number to compare with


def table(summaries: list[dict]) -> str:
    """A plain-text table with a header: name, family, dataset, test log p(x) (nats) with its K, paper."""
    header = ("name", "family", "dataset", "test log p(x), nats (K)", "paper")
    rows = []
    for s in summaries:
        metric = s["test_log_likelihood"]
        value = "not evaluated" if metric is None else (f"{metric['value']:.2f} +- {metric['stderr']:.2f} "
                                                        f"(K={metric['samples']})")
        if s.get("test_perplexity"):
            value += f"; perplexity {s['test_perplexity']:.0f}"
        rows.append((s["name"], s["family"] or "", s["dataset"] or "", value, _paper_text(s["paper"])))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


# The source of presets: an object with `model_class(name) -> type` and `load(name, compile) -> model`.
_preset_source = None


def set_preset_source(source) -> None:
    """Registers where `LatentVariableModel.from_preset` finds presets (the package registers the zoo's loader)."""
    global _preset_source
    _preset_source = source


def preset_source():
    """The registered source of presets (see `set_preset_source`)."""
    if _preset_source is None:
        raise CardError("no source of presets is registered (import tfrecog)")
    return _preset_source
