"""The model zoo: pretrained recognition models by name, each a JSON card, a recipe and a verified weights file.

Cards live in the top-level `zoo/` folder (installed as `tfrecog._zoo`), each entry's training recipe in
`zoo/recipes/NAME.json` (read through `tfrecog.recipes.read`, the one copy of it; `info(NAME)["recipe"]`). Weights are
not part of the installed package: they are fetched on first use from the weights source (`weights_source`:
$TFRECOG_ZOO_URL, an HTTP(S) base URL or a folder, serving `weights/FILE`; by default the `zoo/` folder of the
source checkout), checked against the card's sha256 and cached (`keras.utils.get_file`, in
$TFRECOG_CACHE_DIR or ~/.cache/tfrecog, subfolder `zoo`) before anything is loaded.
"""

from __future__ import annotations

import builtins
import contextlib
import difflib
import json
import os
import socket
import time
import urllib.parse
from pathlib import Path

import numpy as np

from tfrecog import cards as card_files
from tfrecog import io, models, recipes, training
from tfrecog.evaluate import log_likelihood, perplexity

__all__ = ["ZooError", "check_entry", "check_estimate", "list", "info", "load", "verify", "reproduce", "publish",
           "perplexity_metric", "zoo_dir", "recipe", "find_recipe", "weights_path", "weights_source", "cache_dir",
           "URL_ENV", "CACHE_ENV"]

URL_ENV = "TFRECOG_ZOO_URL"  # where weights come from: an HTTP(S) base URL or a folder, serving weights/FILE
CACHE_ENV = "TFRECOG_CACHE_DIR"  # where downloaded weights are kept (default ~/.cache/tfrecog)
DOWNLOAD_TIMEOUT_SECONDS = 60  # a stalled connection fails after this long without data


class ZooError(ValueError):
    """An unknown model name, or a weights file that is missing, truncated or altered."""


def zoo_dir() -> Path:
    """The folder of cards: $TFRECOG_ZOO_DIR, else the installed package data, else the source tree's `zoo/`
    (`tfrecog.cards.zoo_dir`)."""
    return card_files.zoo_dir()


def _cards() -> dict:
    return card_files.read_cards(zoo_dir())


def recipe(name: str) -> dict:
    """The training recipe of zoo entry `name` (`zoo/recipes/NAME.json`), validated by `tfrecog.recipes.read`: what
    `tfrecog zoo reproduce NAME` trains, with the stopping rule the card was trained with."""
    if name not in _cards():
        info(name)  # the error with close matches
    path = zoo_dir() / "recipes" / f"{name}.json"
    if not path.exists():
        raise ZooError(f"zoo model {name!r} has no recipe file: expected {path}")
    return recipes.read(path)


def find_recipe(name_or_path) -> dict:
    """A recipe by file path, zoo name (`recipe`) or experiment name (`recipes/NAME.json` of a source checkout),
    validated; ZooError lists the names known when it is none of them."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return recipes.read(path)
    name = str(name_or_path)
    if name in _cards():
        return recipe(name)
    experiment = recipes.experiments_dir() / f"{name}.json"
    if experiment.exists():
        return recipes.read(experiment)
    known = builtins.list(_cards()) + recipes.experiment_names()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ZooError(f"no recipe named {name!r}: expected a recipe file (.json), a zoo name or an experiment in "
                   f"{recipes.experiments_dir()}{hint}")


def list(details: bool = False):  # noqa: A001 - the zoo's public verb
    """Names of the zoo's models (or their cards with their recipes, as `info` gives them, with `details`)."""
    cards = _cards()
    return [info(name) for name in cards] if details else builtins.list(cards)


def info(name: str) -> dict:
    """The card of `name`: architecture, dataset, recipe, measured metrics, weights file and checksum."""
    cards = _cards()
    if name not in cards:
        close = difflib.get_close_matches(name, builtins.list(cards), n=3, cutoff=0.4)
        hint = f"; close matches: {', '.join(close)}" if close else f"; available: {', '.join(cards) or 'none'}"
        raise ZooError(f"no zoo model named {name!r}{hint}")
    card = dict(cards[name])
    path = zoo_dir() / "recipes" / f"{name}.json"
    if path.exists():
        card["recipe"] = recipes.read(path)
    return card


def weights_source() -> str:
    """Where zoo weights come from: $TFRECOG_ZOO_URL (an http://, https:// or file:// base URL, or a folder), else
    the zoo folder of this source checkout (`zoo_dir()`, when it holds `weights/`), else the checkout tfrecog was
    installed from (recorded at installation in tfrecog/_zoo_source.txt, when it still exists). A source holds
    `weights/FILE` for every card's FILE. Raises ZooError when there is none."""
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        return env
    if (zoo_dir() / "weights").is_dir():
        return str(zoo_dir())
    recorded = Path(__file__).resolve().parent / "_zoo_source.txt"
    if recorded.exists():
        folder = Path(recorded.read_text().strip())
        if (folder / "weights").is_dir():
            return str(folder)
    raise ZooError(f"no source for the zoo's weights: set {URL_ENV} to an HTTP(S) base URL or a folder that serves "
                   "weights/FILE (e.g. the zoo/ folder of a tfrecog source checkout)")


def cache_dir() -> Path:
    """$TFRECOG_CACHE_DIR, else ~/.cache/tfrecog: downloaded weights go to its `zoo/` subfolder."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tfrecog"


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https", "file")


def weights_path(card: dict) -> Path:
    """The local weights file of `card`, verified against its sha256: in the source folder itself, or downloaded
    from the source URL into the cache on first use (a later call finds it there and sends no request).

    Raises ZooError when the file is missing, when its sha256 differs from the card's (both named; a bad download
    is deleted, not cached) or when the download fails (an interrupted download leaves nothing behind)."""
    source = weights_source()
    file, expected = card["weights"]["file"], card["weights"]["sha256"]
    if not _is_url(source):
        path = Path(source).expanduser() / "weights" / file
        if not path.exists():
            raise ZooError(f"zoo model {card['name']!r}: weights file {path} is missing (expected sha256 {expected})")
        _verify(card, path, "is altered or truncated")
        return path
    url = source.rstrip("/") + "/weights/" + urllib.parse.quote(file)
    from tfrecog._tf import keras

    target = cache_dir() / "zoo"
    target.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_SECONDS):
            path = Path(keras.utils.get_file(file, origin=url, file_hash=expected, hash_algorithm="sha256",
                                             cache_dir=str(cache_dir()), cache_subdir="zoo"))
    except ValueError:  # get_file's "Incomplete or corrupted file detected": the download is complete but wrong
        path = target / file
        if path.exists():
            _verify(card, path, f"downloaded from {url} differs from the card", delete=True)
        raise ZooError(f"zoo model {card['name']!r}: the download of {url} does not match the card's sha256 "
                       f"{expected}; nothing was cached") from None
    except Exception as err:  # noqa: BLE001 - get_file re-raises network failures as plain Exceptions
        raise ZooError(f"zoo model {card['name']!r}: could not download {url} ({_first_line(err)}); nothing was "
                       f"cached: check {URL_ENV}") from None
    _verify(card, path, f"cached from {url} is altered or truncated", delete=True)
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _verify(card: dict, path: Path, fault: str, delete: bool = False) -> None:
    """Refuses `path` unless its sha256 is the card's, naming both checksums (and deleting it with `delete`)."""
    expected = card["weights"]["sha256"]
    actual = io.sha256(path)
    if actual != expected:
        size = path.stat().st_size
        if delete:
            path.unlink()
        raise ZooError(f"zoo model {card['name']!r}: weights file {path} {fault}: sha256 {actual} (size {size} "
                       f"bytes), expected {expected} (size {card['weights']['bytes']} bytes); refusing to load")


def load(name: str, compile: bool = True):
    """A ready Keras model with the card's weights, verified against its sha256 first.

    With `compile`, the model is compiled with the card's optimizer settings so `fit` fine-tunes at once.
    """
    card = info(name)
    path = weights_path(card)
    model = models.from_config(card["family"], card["config"])
    model.load_weights(str(path))
    if compile:
        # optimizer slots exist, so `.keras` files of the model restore cleanly
        training.compile_for_recipe(model, card["recipe"])
    return model


CHECK_TARGET_EXAMPLES = 1000  # the check uses every s-th test example, s = max(1, N // 1000)
CHECK_SAMPLES = 100
CHECK_Z = 4.0


def check_indices(num_examples: int, target: int = CHECK_TARGET_EXAMPLES) -> tuple[int, np.ndarray]:
    """(stride s, indices 0, s, 2s, ...) of the check subset: every s-th test example, s = max(1, N // target).

    A stride rather than the first examples, because a test split may be sorted (binarized MNIST's is sorted by
    class: its first 1,000 digits are all zeros); every s-th example spans the whole split.
    """
    stride = max(1, int(num_examples) // int(target))
    return stride, np.arange(0, int(num_examples), stride)


def check_estimate(model, x, samples: int = CHECK_SAMPLES, seed: int = 0, batch_size: int = 100):
    """Per-example importance-sampled log p-hat(x_n) and two estimates of its Monte-Carlo variance.

      log p-hat(x_n) = log (1/K) sum_k w_nk,   w_nk = p(x_n, h_k) / q(h_k | x_n),  h_k ~ q(h | x_n)

      split:  Var[log p-hat(x_n)] ~= (log p-hat_a(x_n) - log p-hat_b(x_n))^2 / 4,  a, b the two halves of the K
              draws: two independent estimates at K/2, whose difference has variance 2 Var_{K/2} = 4 Var_K when the
              variance falls as 1/K (the delta-method regime). It uses realised log-means, so heavy-tailed weights
              show up in it.
      delta:  Var[log p-hat(x_n)] ~= Var(w) / (K E[w]^2) ~= sum_k w~_nk^2 - 1/K,  w~_nk = w_nk / sum_k' w_nk'.

    Measured on the check subsets (K=100; `python scripts/refresh_checks.py --calibrate NAME`), the delta method
    underestimated the seed-to-seed spread of the mean by a factor 2-5 (the weights are heavy-tailed) and the split
    did not, so `verify` uses the split.

    Batches of `batch_size` examples draw with the stateless seeds (seed, batch index).

    Returns:
      (log_p [N], split_variance [N], delta_variance [N]) as float64 arrays.
    """
    from tfrecog._tf import tf

    if int(samples) < 2 or int(samples) % 2:
        raise ValueError(f"the check needs an even number of samples K >= 2 (two halves); got {samples!r}")
    half = int(samples) // 2

    def estimate(batch, batch_seed):
        log_w = model.log_importance_weights(batch, samples, batch_seed)  # [K, B]
        total = tf.reduce_logsumexp(log_w, axis=0)
        squares = tf.reduce_sum(tf.exp(2.0 * (log_w - total)), axis=0)
        difference = tf.reduce_logsumexp(log_w[:half], axis=0) - tf.reduce_logsumexp(log_w[half:], axis=0)
        return total - float(np.log(samples)), tf.square(difference) / 4.0, squares - 1.0 / samples

    # A graph without XLA: the check scores ten batches once, and XLA's compile of the larger zoo models cost more
    # than the scoring (minutes on a shared 2-core machine).
    compiled = tf.function(estimate, jit_compile=False)
    x = model.check_input(x)
    outputs = [], [], []
    for index, start in enumerate(range(0, len(x), batch_size)):
        batch = x[start:start + batch_size]
        n = len(batch)
        if n < batch_size:  # padded so the compiled function is traced once
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
        values = compiled(tf.constant(batch), tf.constant([seed, index], tf.int32))
        for out, value in zip(outputs, values):
            out.append(value.numpy()[:n])
    log_p, split, delta = (np.concatenate(out).astype(np.float64) for out in outputs)
    return log_p, split, np.maximum(delta, 0.0)


def check_entry(model, test_x, samples: int = CHECK_SAMPLES, target: int = CHECK_TARGET_EXAMPLES,
                 seed: int = 0) -> dict:
    """The card's `metrics.check`: the mean log p-hat over the check subset with K = `samples` and `seed`, and the
    Monte-Carlo variance of that mean, sum_n Var[log p-hat(x_n)] / n^2 (`check_estimate`'s split estimate)."""
    stride, indices = check_indices(len(test_x), target)
    log_p, variance, _ = check_estimate(model, test_x[indices], samples, seed)
    n = len(log_p)
    return {"value": float(log_p.mean()), "mc_variance": float(variance.sum() / n**2),
            "stderr": float(log_p.std(ddof=1) / np.sqrt(n)), "samples": int(samples), "num_examples": int(n),
            "indices": f"x[0::{stride}] of the test split", "stride": int(stride),
            "seed": int(seed)}


def verify(name: str, metrics: bool = False, data_dir=None, z: float = CHECK_Z, seed: int = 1) -> str:
    """Checks a zoo model: checksum, load, encode and sample; with `metrics`, re-estimates the card's check.

    The card's `check` is the mean importance-sampled log p-hat(x) (K = `samples`) over every `stride`-th test
    example, with seed 0, and the Monte-Carlo variance of that mean, v_card = sum_n Var[log p-hat(x_n)] / n^2,
    each term estimated from the two halves of the example's K draws (`check_estimate`). `verify` draws the same
    estimate again with an independent `seed` (1), giving v_new. Both estimate the same expectation (same examples,
    same K), so the difference d = new - card has standard deviation sd = sqrt(v_card + v_new), and the check
    passes iff

      |d| <= z * sd,   z = 4   (two-sided false-alarm probability 6e-5 under the normal approximation)

    so a changed model, weights file, data file or evaluator that moves the estimate by more than a few Monte-Carlo
    standard deviations (about 0.05 nats each for the MNIST cards at K=100 on 1,000 digits) fails. The spread
    across examples does not enter: both estimates score the same examples.
    """
    card = info(name)
    lines = [f"{name}: sha256 ok ({card['weights']['sha256'][:12]}...)"]
    model = load(name, compile=False)
    x = np.zeros((2, model.event_size), np.float32)
    model(x).numpy()  # posterior means of every latent layer
    model.sample(2, seed=0)
    lines.append(f"{name}: loads, encodes and samples ok")
    if metrics:
        check = card["metrics"].get("check")
        if check is None or "mc_variance" not in check:
            raise ZooError(f"zoo model {name!r} has no recorded check metric with its Monte-Carlo variance "
                           f"(regenerate it: python scripts/refresh_checks.py {name})")
        # The recipe's test split, the one place evaluation data comes from (as `reproduce` and `publish` read it).
        test_x = training.evaluation_data(card["recipe"], data_dir=data_dir)
        indices = np.arange(0, len(test_x), check["stride"])
        if len(indices) != check["num_examples"]:
            raise ZooError(f"zoo model {name!r}: the check subset has {len(indices)} examples, the card "
                           f"{check['num_examples']}: the test split is not the one the card was made on")
        log_p, variance, _ = check_estimate(model, test_x[indices], check["samples"], seed)
        value, v_new = float(log_p.mean()), float(variance.sum() / len(log_p) ** 2)
        diff = value - check["value"]
        sd = float(np.sqrt(check["mc_variance"] + v_new))
        ok = abs(diff) <= z * sd
        lines.append(f"{name}: log p(x) on {len(indices)} test examples ({check['indices']}), K={check['samples']}, "
                     f"seed {seed}: {value:.3f} vs card {check['value']:.3f} (seed {check['seed']}): diff "
                     f"{diff:+.3f}, Monte-Carlo sd {sd:.3f}, |diff|/sd {abs(diff) / sd:.2f} "
                     f"{'<=' if ok else '>'} {z:g} {'ok' if ok else 'MISMATCH'}")
        if not ok:
            raise ZooError("\n".join(lines))
    return "\n".join(lines)


def reproduce(name: str, run_dir=None, data_dir=None, max_seconds=None, samples: int | None = None):
    """Trains the entry's recipe (`recipe(name)`: the card's model and its stopping rule, or its schedule of stages)
    from scratch into `run_dir` (resuming if it exists) and evaluates it."""
    card = info(name)
    run_dir = Path(run_dir or f"runs/reproduce-{name}")
    config = recipe(name)
    if config.get("stages"):  # a schedule: each stage resumes where it stopped (`training.train_schedule`)
        training.train_schedule(config, run_dir, data_dir=data_dir, max_seconds=max_seconds)
        stopped = training.schedule_stopped(config, run_dir)
        if stopped:  # the budget ran out before the last stage: nothing of the card's model to score yet
            print(f"{name}: {stopped}")
            return None
    elif (run_dir / "config.json").exists():  # resume: the same recipe (but for epochs and max_seconds), or refuse
        changed = recipes.diff(training.read_config(run_dir / "config.json"), config)
        if changed:
            raise ZooError(f"run folder {run_dir} holds another recipe than zoo model {name!r} ({'; '.join(changed)})"
                           ": use a new run folder")
        training.train(None, run_dir, data_dir=data_dir, epochs=config["epochs"], max_seconds=max_seconds)
    else:
        training.train(config, run_dir, data_dir=data_dir, max_seconds=max_seconds)
    protocol = card["metrics"]["test_log_likelihood"]
    result = training.evaluate_run(run_dir, samples=samples or protocol["samples"], data_dir=data_dir)
    print(f"{name} reproduced in {run_dir}: {result}")
    print(f"card: {protocol['value']:.3f} +- {protocol['stderr']:.3f}")
    return result


def _hardware():
    import os

    return f"{io.cpu_model()}, {os.cpu_count()} cores"


def perplexity_metric(per_example, x, samples: int) -> dict:
    """A card's `test_perplexity` entry (bag-of-words models): `tfrecog.evaluate.perplexity` of the per-document
    log p(x) estimates at K=`samples`, with its definition."""
    return {**perplexity(per_example, x), "samples": samples,
            "definition": "exp(-mean over documents of log p(doc) / words in doc)"}


def publish(run_dir, name: str, description: str = "", paper: dict | None = None, samples: int = 5000,
            data_dir=None, which: str = "best", version: str = "1", check_samples: int = CHECK_SAMPLES,
            check_examples: int = CHECK_TARGET_EXAMPLES, evaluate: bool = True) -> Path:
    """Makes (or refreshes) the card and compact weights of `name` from a run folder (maintainers' tool).

    Weights are saved without optimizer state; metrics come from the importance-sampled evaluator on the full test
    split (K=`samples`); the `check` that `verify --metrics` repeats is `check_entry` on every s-th test example
    (about `check_examples` of them) with K=`check_samples` and seed 0.
    """
    run_dir = Path(run_dir)
    trained, config = training.load_run(run_dir, which)
    model = training.build_model(config, trained.event_size)
    model.build((None, model.event_size))
    model.set_weights(trained.get_weights())
    weights_file = f"{name}.weights.h5"
    target = zoo_dir() / "weights" / weights_file
    io.save_weights(model, target)
    state = training.run_state(run_dir)
    card_path = zoo_dir() / f"{name}.json"
    old = json.loads(card_path.read_text()) if card_path.exists() else {}
    metrics = dict(old.get("metrics", {}))
    if evaluate:
        x = training.evaluation_data(config, data_dir=data_dir)
        t0 = time.time()
        full = log_likelihood(model, x, samples=samples, seed=0, progress=True)
        seconds = time.time() - t0
        metrics = {
            "test_log_likelihood": {"value": full.log_likelihood, "stderr": full.stderr, "samples": samples,
                                    "num_examples": full.num_examples, "split": config["test_split"],
                                    "seconds": round(seconds, 1),
                                    "command": f"tfrecog evaluate {run_dir} --samples {samples}"},
            "test_elbo": {"value": full.elbo, "stderr": full.elbo_stderr, "samples_per_example": samples},
            "check": {**check_entry(model, x, check_samples, check_examples, seed=0),
                      "command": f"python scripts/publish_zoo.py {run_dir} {name}"},
        }
        if config["model"].get("likelihood") == "categorical":
            metrics["test_perplexity"] = perplexity_metric(full.per_example, x, samples)
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
        "metrics": metrics,
        "training": {"epochs": state["epoch"], "updates": state.get("updates"),
                     "wall_seconds": round(state["wall_seconds"], 1),
                     # a run started from weights trained elsewhere (training.seed_run) records where
                     "hardware": state.get("trained_by", {}).get("hardware") or _hardware(),
                     "commit": (state.get("commits") or [io.git_commit()])[-1],
                     "commits": state.get("commits", []), "published_at": io.git_commit(),
                     "best_epoch": state.get("best_epoch"),
                     "best_val_elbo": state.get("best_val_elbo"),
                     **selection,
                     "command": state.get("trained_by", {}).get("command")
                     or f"tfrecog train --recipe zoo/recipes/{name}.json --run {run_dir}",
                     **({"trained_by": state["trained_by"]} if "trained_by" in state else {})},
        "paper": paper or old.get("paper"),
        "weights": {"file": weights_file, "bytes": target.stat().st_size, "sha256": io.sha256(target)},
    }
    # The recipe of the card: the run's, trained for the epochs the run reached (the stopping rule that reproduces
    # these weights on any machine; a time budget would not).
    recipe_file = {k: v for k, v in config.items() if k != "max_seconds"}
    recipe_file.update(epochs=int(state["epoch"]), max_seconds=None,
                       stopping=f"trained in {run_dir} to epoch {state['epoch']}"
                                + (f" of {config['epochs']}" if config["epochs"] != state["epoch"] else "")
                                + ("" if config.get("valid_split") is None else
                                   f"; weights: the checkpoint of the best validation {select_by} "
                                   f"(epoch {state.get('best_epoch')})"))
    recipe_path = zoo_dir() / "recipes" / f"{name}.json"
    io.write_json(recipe_path, recipes.validate(recipe_file, str(recipe_path)))
    io.write_json(card_path, card)
    return card_path
