"""RUN_OR_NAME: a model from a run folder or from the zoo, what every `tfrecog` command (and script) accepts.

Above both the run folders (`tfrecog.training`) and the zoo (`tfrecog.zoo`), which know nothing of each other's
loading; also the source of `LatentVariableModel.from_preset`.
"""

from __future__ import annotations

from pathlib import Path

from tfrecog import models, training, zoo

__all__ = ["evaluate", "load", "load_model", "model_class"]


def _card(name_or_run) -> dict:
    try:
        return zoo.info(str(name_or_run))
    except zoo.ZooError as err:
        message = f"{name_or_run!r} is neither a run folder (no such path) nor a zoo model: {err}"
        raise training.RunError(message) from None


def load(name_or_run, which: str = "best"):
    """`(model, config)` from a run folder (as `tfrecog.training.load_run`: `which` = 'best' or 'last' weights) or,
    where no such path exists, a zoo name (the card's weights, checksum-verified, and its recipe as the config).

    Raises `tfrecog.training.RunError` when `name_or_run` is neither.
    """
    path = Path(name_or_run)
    if path.exists():
        return training.load_run(path, which)
    card = _card(name_or_run)
    return zoo.load(card["name"]), card["recipe"]


def model_class(name_or_run) -> type:
    """The model class a run folder's recipe or a zoo card names (its family's `model_class`), without loading."""
    path = Path(name_or_run)
    family = (training.read_config(path / "config.json") if path.exists() else _card(name_or_run))["family"]
    return models.family(family).model_class


def load_model(name_or_run, compile: bool = True):
    """The model alone of `load` (compiled with the recipe's optimizer where `compile`)."""
    path = Path(name_or_run)
    if path.exists():
        return training.load_run(path)[0]  # compiled: run folders hold the optimizer state
    return zoo.load(_card(name_or_run)["name"], compile=compile)


def evaluate(name_or_run, samples: int = 5000, split: str | None = None, data_dir=None, batch_size: int = 100,
             limit: int | None = None, seed: int = 0, progress: bool = True):
    """Importance-sampled log p(x) (`tfrecog.evaluate.log_likelihood`) of a run folder's model or a zoo model on a
    split of its recipe's dataset (default the recipe's test split).

    A run folder's result is also merged into its `metrics.json` (`tfrecog.training.evaluate_run`); a zoo model's is
    only returned. For bag-of-words models the result carries the perplexity.
    """
    from tfrecog.evaluate import log_likelihood, perplexity

    if Path(name_or_run).exists():
        return training.evaluate_run(name_or_run, samples=samples, split=split, data_dir=data_dir,
                                     batch_size=batch_size, limit=limit, seed=seed, progress=progress)
    model, config = load(name_or_run)
    x = training.evaluation_data(config, split, data_dir, limit, seed)
    result = log_likelihood(model, x, samples=samples, batch_size=batch_size, seed=seed, progress=progress)
    if config["model"].get("likelihood") == "categorical":
        result.perplexity = perplexity(result.per_example, x)["perplexity"]
    return result
