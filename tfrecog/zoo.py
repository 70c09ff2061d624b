"""The model zoo: pretrained recognition models by name, each a JSON card plus a verified weights file.

Cards live in the top-level `zoo/` folder (installed as `tfrecog._zoo`); weights are checked against the card's
sha256 before anything is loaded.
"""

from __future__ import annotations

import builtins
import difflib
import json
import time
from pathlib import Path

from tfrecog import io, models, training
from tfrecog.evaluate import log_likelihood, perplexity

__all__ = ["ZooError", "list", "info", "load", "verify", "reproduce", "publish", "zoo_dir"]


class ZooError(ValueError):
    """An unknown model name, or a weights file that is missing, truncated or altered."""


def zoo_dir() -> Path:
    """The folder of cards: the installed package data, or the source tree's `zoo/`."""
    try:
        import tfrecog._zoo as installed

        return Path(installed.__file__).parent
    except ImportError:
        return Path(__file__).resolve().parent.parent / "zoo"


def _cards() -> dict:
    cards = {}
    for path in sorted(zoo_dir().glob("*.json")):
        card = json.loads(path.read_text())
        cards[card["name"]] = card
    return cards


def list(details: bool = False):  # noqa: A001 - the zoo's public verb
    """Names of the zoo's models (or their cards, with `details`)."""
    cards = _cards()
    return builtins.list(cards.values()) if details else builtins.list(cards)


def info(name: str) -> dict:
    """The card of `name`: architecture, dataset, recipe, measured metrics, weights file and checksum."""
    cards = _cards()
    if name not in cards:
        close = difflib.get_close_matches(name, builtins.list(cards), n=3, cutoff=0.4)
        hint = f"; close matches: {', '.join(close)}" if close else f"; available: {', '.join(cards) or 'none'}"
        raise ZooError(f"no zoo model named {name!r}{hint}")
    return cards[name]


def weights_path(card: dict) -> Path:
    return zoo_dir() / "weights" / card["weights"]["file"]


def _check_weights(card: dict) -> Path:
    path = weights_path(card)
    if not path.exists():
        raise ZooError(f"zoo model {card['name']!r}: weights file {path} is missing (expected sha256 "
                       f"{card['weights']['sha256']})")
    actual = io.sha256(path)
    if actual != card["weights"]["sha256"]:
        raise ZooError(f"zoo model {card['name']!r}: weights file {path} is altered or truncated: sha256 {actual} "
                       f"(size {path.stat().st_size} bytes), expected {card['weights']['sha256']} "
                       f"(size {card['weights']['bytes']} bytes); refusing to load")
    return path


def load(name: str, compile: bool = True):
    """A ready Keras model with the card's weights, verified against its sha256 first.

    With `compile`, the model is compiled with the card's optimizer settings so `fit` fine-tunes at once.
    """
    card = info(name)
    path = _check_weights(card)
    model = models.from_config(card["family"], card["config"])
    model.load_weights(str(path))
    if compile:
        # optimizer slots exist, so `.keras` files of the model restore cleanly
        training.compile_for_recipe(model, card["recipe"])
    return model


def verify(name: str, metrics: bool = False, data_dir=None, tolerance_stderr: float = 4.0) -> str:
    """Checks a zoo model: checksum, load, encode and sample; with `metrics`, re-evaluates the recorded check.

    The card's `check` entry is the log-likelihood on the first `limit` test examples with K=`samples` and seed 0;
    the re-evaluation must agree within `tolerance_stderr` standard errors of that estimate.
    """
    import numpy as np

    card = info(name)
    lines = [f"{name}: sha256 ok ({card['weights']['sha256'][:12]}...)"]
    model = load(name, compile=False)
    x = np.zeros((2, model.event_size), np.float32)
    model(x).numpy()  # posterior means of every latent layer
    model.sample(2, seed=0)
    lines.append(f"{name}: loads, encodes and samples ok")
    if metrics:
        check = card["metrics"].get("check")
        if check is None:
            raise ZooError(f"zoo model {name!r} has no recorded check metric")
        # The recipe's test split, as `reproduce` (which trains the recipe) and `publish` read it.
        x = training.evaluation_data(card["recipe"], data_dir=data_dir, limit=check["num_examples"])
        result = log_likelihood(model, x, samples=check["samples"], seed=0)
        diff = abs(result.log_likelihood - check["value"])
        ok = diff <= tolerance_stderr * max(check["stderr"], 1e-3)
        lines.append(f"{name}: log p(x) on {check['num_examples']} test examples, K={check['samples']}: "
                     f"{result.log_likelihood:.3f} vs card {check['value']:.3f} (|diff| {diff:.3f}, "
                     f"stderr {check['stderr']:.3f}) {'ok' if ok else 'MISMATCH'}")
        if not ok:
            raise ZooError("\n".join(lines))
    return "\n".join(lines)


def reproduce(name: str, run_dir=None, data_dir=None, max_seconds=None, samples: int | None = None):
    """Trains the card's recipe from scratch into `run_dir` (resuming if it exists) and evaluates it."""
    card = info(name)
    run_dir = Path(run_dir or f"runs/reproduce-{name}")
    training.train(card["recipe"], run_dir, data_dir=data_dir, max_seconds=max_seconds)
    protocol = card["metrics"]["test_log_likelihood"]
    result = training.evaluate_run(run_dir, samples=samples or protocol["samples"], data_dir=data_dir)
    print(f"{name} reproduced in {run_dir}: {result}")
    print(f"card: {protocol['value']:.3f} +- {protocol['stderr']:.3f}")
    return result


def _hardware():
    import os

    return f"{io.cpu_model()}, {os.cpu_count()} cores"


def publish(run_dir, name: str, description: str = "", paper: dict | None = None, samples: int = 5000,
            data_dir=None, which: str = "best", version: str = "1", check_samples: int = 1000,
            check_examples: int = 1000, evaluate: bool = True) -> Path:
    """Makes (or refreshes) the card and compact weights of `name` from a run folder (maintainers' tool).

    Weights are saved without optimizer state; metrics come from the importance-sampled evaluator on the full test
    split (K=`samples`) and on a fixed subset (the `check` that `verify --metrics` repeats).
    """
    run_dir = Path(run_dir)
    trained, config = training.load_run(run_dir, which)
    model = training.build_model(config, trained.event_size)
    model.build((None, model.event_size))
    model.set_weights(trained.get_weights())
    weights_file = f"{name}.weights.h5"
    target = zoo_dir() / "weights" / weights_file
    io.save_weights(model, target)
    state = io.read_json(run_dir / "checkpoints" / "state.json")
    card_path = zoo_dir() / f"{name}.json"
    old = json.loads(card_path.read_text()) if card_path.exists() else {}
    metrics = dict(old.get("metrics", {}))
    if evaluate:
        x = training.evaluation_data(config, data_dir=data_dir)
        t0 = time.time()
        full = log_likelihood(model, x, samples=samples, seed=0, progress=True)
        seconds = time.time() - t0
        check = log_likelihood(model, x[:check_examples], samples=check_samples, seed=0)
        metrics = {
            "test_log_likelihood": {"value": full.log_likelihood, "stderr": full.stderr, "samples": samples,
                                    "num_examples": full.num_examples, "split": config["test_split"],
                                    "seconds": round(seconds, 1),
                                    "command": f"tfrecog evaluate {run_dir} --samples {samples}"},
            "test_elbo": {"value": full.elbo, "stderr": full.elbo_stderr, "samples_per_example": samples},
            "check": {"value": check.log_likelihood, "stderr": check.stderr, "samples": check_samples,
                      "num_examples": check.num_examples, "seed": 0},
        }
        if config["model"].get("likelihood") == "categorical":
            metrics["test_perplexity"] = {**perplexity(full.per_example, x), "samples": samples,
                                          "definition": "exp(-mean over documents of log p(doc) / words in doc)"}
    select_by = config.get("select_by", "elbo")
    selection = {} if select_by == "elbo" else {"select_by": select_by,
                                                f"best_val_{select_by}": state.get(f"best_val_{select_by}")}
    card = {
        "name": name,
        "version": version,
        "family": config["family"],
        "description": description or old.get("description", ""),
        "config": model.get_config(),
        "dataset": {"name": config["dataset"], "train_split": config["train_split"],
                    "test_split": config["test_split"], "binarize": config.get("binarize"),
                    "train_examples": int(float(trained.num_train_examples.numpy()))},
        "recipe": config,
        "metrics": metrics,
        "training": {"epochs": state["epoch"], "updates": state.get("updates"),
                     "wall_seconds": round(state["wall_seconds"], 1), "hardware": _hardware(),
                     "commit": (state.get("commits") or [io.git_commit()])[-1],
                     "commits": state.get("commits", []), "published_at": io.git_commit(),
                     "best_epoch": state.get("best_epoch"),
                     "best_val_elbo": state.get("best_val_elbo"),
                     **selection,
                     "command": f"tfrecog train {config['family']} --run {run_dir} ... (recipe above)"},
        "paper": paper or old.get("paper"),
        "weights": {"file": weights_file, "bytes": target.stat().st_size, "sha256": io.sha256(target)},
    }
    io.write_json(card_path, card)
    return card_path
