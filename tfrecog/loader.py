"""RUN_OR_NAME: a model from a run folder or from the zoo, what every `tfrecog` command (and script) accepts.

Above both the run folders (`tfrecog.training`) and the zoo (`tfrecog.zoo`), which know nothing of each other's
loading.
"""

from __future__ import annotations

from pathlib import Path

from tfrecog import training, zoo

__all__ = ["load"]


def load(name_or_run, which: str = "best"):
    """`(model, config)` from a run folder (as `tfrecog.training.load_run`: `which` = 'best' or 'last' weights) or,
    where no such path exists, a zoo name (the card's weights, checksum-verified, and its recipe as the config).

    Raises `tfrecog.training.RunError` when `name_or_run` is neither.
    """
    path = Path(name_or_run)
    if path.exists():
        return training.load_run(path, which)
    try:
        card = zoo.info(str(name_or_run))
    except zoo.ZooError as err:
        message = f"{name_or_run!r} is neither a run folder (no such path) nor a zoo model: {err}"
        raise training.RunError(message) from None
    return zoo.load(card["name"]), card["recipe"]
