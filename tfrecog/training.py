"""Run folders: train a model from a plain-data recipe, checkpoint atomically, resume, evaluate.

A run folder holds `config.json`, `checkpoints/ckpt-NNNNNN/` (weights and state as one unit, see
`tfrecog.checkpoints`), `history.csv`, TensorBoard `logs/`, `metrics.json` and plots. Training again on the same
folder resumes from its last good checkpoint.
"""

from __future__ import annotations

import copy
import csv
import difflib
import json
import math
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from tfrecog import checkpoints, checks, distribute, io, models, recipes
from tfrecog import data as data_lib
from tfrecog._tf import keras, tf

__all__ = ["RunError", "build_model", "compile_for_recipe", "continue_run", "default_config", "evaluate_run",
           "evaluation_data", "load_run", "read_config", "run_state", "train", "train_schedule"]


class RunError(ValueError):
    """A run folder is missing or incomplete; the message names what was expected."""


def default_config(family: str = "vae", dataset: str = data_lib.DEFAULT_DATASET, **overrides) -> dict:
    """A complete training recipe as plain data; `overrides` replace top-level keys, `model` is merged.

    The family (`tfrecog.models.FAMILIES`) gives the constructor arguments its name implies and its extra recipe
    entries; the dataset (`tfrecog.data.DATASETS`) the likelihood and the validation split.
    """
    spec = _family(family)
    dataset_spec = data_lib.DATASETS.get(dataset)
    model = {**spec.defaults, **({"likelihood": dataset_spec.likelihood} if dataset_spec else {})}
    config = {
        "family": family,
        "model": model,
        "dataset": dataset,
        "binarize": None,
        "train_split": "train",
        "valid_split": dataset_spec.valid_split if dataset_spec else None,
        "test_split": "test",
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "batch_size": 100,
        "epochs": 10,
        "seed": 0,
        "steps_per_execution": 50,
        "jit_compile": True,
        "checkpoint_every_seconds": 60,
        "max_seconds": None,
    }
    config.update(copy.deepcopy(spec.recipe))
    for key, value in overrides.items():
        if key == "model":
            config["model"].update(value)
        else:
            config[key] = value
    if family == "fdarn" and config["model"].get("likelihood") == "categorical":
        # Word counts are exchangeable: fDARN for documents is autoregressive in its latent layer only.
        config["model"]["autoregressive_visible"] = False
    return config


def _family(name: str) -> models.Family:
    try:
        return models.family(name)
    except ValueError as err:
        raise RunError(str(err)) from None


def build_model(config: dict, event_size: int):
    """Instantiates the recipe's model for data of `event_size` features.

    Raises RunError (one line) for a `model` key the family's constructor does not take, naming the close match and
    the allowed keys; the constructor's own ValueError for a value it refuses.
    """
    family = _family(config["family"])
    kwargs = dict(config["model"])
    allowed = sorted([*recipes.model_arguments(config["family"]), "name"])
    unknown = [key for key in kwargs if key not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(f"unknown model argument {unknown[0]!r} for {config['family']}{hint}: expected one of "
                       f"{', '.join(allowed)}")
    kwargs.setdefault("event_size", event_size)
    kwargs.setdefault("seed", config.get("seed", 0))
    if kwargs["event_size"] != event_size:
        raise RunError(f"recipe says event_size={kwargs['event_size']} but the dataset has {event_size} features")
    return family.model_class(**kwargs)


def compile_for_recipe(model, config: dict):
    """Compiles `model` with the recipe's optimizers (and NVIL's baseline optimizer where the recipe has one), XLA
    and fused-step settings, and creates every variable (optimizer slots too), ready to train or to load a
    checkpoint with optimizer state."""
    optimizer = keras.optimizers.get(copy.deepcopy(config["optimizer"]))
    kwargs = {}
    if "baseline_optimizer" in config:
        kwargs["baseline_optimizer"] = keras.optimizers.get(copy.deepcopy(config["baseline_optimizer"]))
    model.compile(optimizer=optimizer, jit_compile=config.get("jit_compile", True),
                  steps_per_execution=config.get("steps_per_execution", 50), **kwargs)
    model.build_for_training()
    return model


class RunCheckpoint(keras.callbacks.Callback):
    """Saves `last` (and `best`: the highest validation value of `select_by`, the ELBO by default) weights with
    optimizer state at most every `every_seconds` and at the end, as one checkpoint folder with the epoch count, the
    accumulated wall time and `best_val_<select_by>` / `best_epoch` (`tfrecog.checkpoints.publish`: one atomic
    rename, the last two kept); stops training once `max_seconds` of this call have passed. `previous` is the
    checkpoint the run resumed from."""

    def __init__(self, run_dir: Path, state: dict, every_seconds: float = 60, max_seconds: float | None = None,
                 select_by: str = "elbo", previous: checkpoints.Checkpoint | None = None):
        super().__init__()
        self.dir = Path(run_dir) / "checkpoints"
        self.state = state
        self.previous = previous
        self.monitor = f"val_{select_by}"  # a validation log of `fit`, higher is better
        self.best_key = f"best_val_{select_by}"
        self.every_seconds = every_seconds
        self.max_seconds = max_seconds
        self._start = time.time()
        self._last_save = time.time()
        self._wall_at_start = float(state.get("wall_seconds", 0.0))
        self._epoch = state.get("epoch", 0)
        self.diverged_at = None

    def _save(self, logs):
        state = dict(self.state)
        state["epoch"] = self._epoch
        state["wall_seconds"] = self._wall_at_start + (time.time() - self._start)
        state["updates"] = int(self.model.optimizer.iterations.numpy())
        val = (logs or {}).get(self.monitor)
        improved = val is not None and np.isfinite(val) and val > state.get(self.best_key, -np.inf)
        if improved:
            state[self.best_key] = float(val)
            state["best_epoch"] = self._epoch
        ema = _uses_ema(self.model)
        if ema:
            _swap_ema(self.model)  # the files hold the averaged weights in the model, the training ones in the slots
        try:
            write = lambda path: self.model.save_weights(str(path))  # noqa: E731
            self.previous = checkpoints.publish(self.dir, state, write, write if improved else None, self.previous)
        finally:
            if ema:
                _swap_ema(self.model)
        self.state.clear()
        self.state.update({k: v for k, v in self.previous.state.items() if k != "files"})
        self._last_save = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        loss = logs.get("loss")
        if loss is not None and not np.isfinite(loss):
            # Diverged: keep the last finite checkpoint (never overwrite it with NaN weights) and stop, saying so.
            self.diverged_at = epoch + 1
            self.state["diverged_at_epoch"] = epoch + 1
            if self.previous is not None:
                self.previous = checkpoints.update_state(self.previous, self.state)
            self.model.stop_training = True
            warnings.warn(f"training loss is {loss} at epoch {epoch + 1}: stopped; the checkpoints keep the last "
                          f"finite weights (epoch {self.state.get('epoch', 0)}), lower the learning rate to go on",
                          RuntimeWarning, stacklevel=2)
            return
        self._epoch = epoch + 1
        over = self.max_seconds is not None and time.time() - self._start >= self.max_seconds
        val = logs.get(self.monitor)
        if val is None and any(k.startswith("val_") for k in logs):
            known = ", ".join(sorted(k[4:] for k in logs if k.startswith("val_")))
            raise RunError(f"select_by={self.monitor[4:]!r} is not among the validation metrics of this model: {known} "
                           f"(the recipe is saved in {self.dir.parent / 'config.json'}: start a new run folder)")
        improved = val is not None and val > self.state.get(self.best_key, -np.inf)
        final = epoch + 1 == self.params.get("epochs")  # saved before `fit` overwrites the weights with their average
        if over or improved or final or time.time() - self._last_save >= self.every_seconds:
            self._save(logs)
        if over:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.diverged_at is not None:
            return  # the weights in memory are not finite; the saved checkpoints are the last good ones
        if self.state.get("epoch") != self._epoch or self.previous is None:
            self._save({})


CONFIG_KEYS = {"family": str, "model": dict, "dataset": str, "train_split": str, "test_split": str,
               "optimizer": dict, "batch_size": int, "epochs": int}


def read_config(path) -> dict:
    """A run folder's `config.json` (its recipe), checked: a JSON object with the keys `train` needs, of their types.

    Raises RunError naming the file, the fault and what to do.
    """
    path = Path(path)
    advice = ("it is the run's recipe: restore it from a backup (`tfrecog zoo show NAME` prints a zoo model's), "
              "or start a new run folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{path}: is not UTF-8 text (expected the JSON recipe); {advice}") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); {advice}"
                       ) from None
    except OSError as err:
        raise RunError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: expected a JSON object (the recipe), got {type(config).__name__}; {advice}")
    for key, kind in CONFIG_KEYS.items():
        value = config.get(key)
        if key not in config or not isinstance(value, kind) or isinstance(value, bool):
            raise RunError(f"{path}: expected {key!r} of type {kind.__name__}, got {value!r}"[:200] + f"; {advice}")
    if config["family"] not in models.FAMILIES:
        raise RunError(f"{path}: unknown family {config['family']!r}, expected one of "
                       f"{', '.join(models.FAMILIES)}; {advice}")
    for key in ("batch_size", "epochs"):
        if config[key] < (1 if key == "batch_size" else 0):
            raise RunError(f"{path}: expected {key!r} a positive integer, got {config[key]!r}; {advice}")
    return config


def _restore(model, checkpoint: checkpoints.Checkpoint, path: Path | None = None):
    """Loads a checkpoint's weights (`path`, default its last) into a compiled, built model."""
    path = path or checkpoint.last
    try:
        model.load_weights(str(path))
    except Exception as err:  # noqa: BLE001 - h5py and Keras raise many types for a damaged or foreign file
        raise checkpoints.CheckpointError(
            f"{path}: cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}); "
            "restore the run folder from a backup, or start a new run folder") from None


def _load_split(config, split, data_dir):
    if split is None:
        return None
    return data_lib.load(config["dataset"], split, data_dir=data_dir, binarize=config.get("binarize"))


def train(config: dict | None = None, run_dir=None, data_dir=None, verbose="auto", epochs: int | None = None,
          max_seconds: float | None = None, callbacks=None, strategy=None):
    """Trains the recipe `config` into `run_dir`, or resumes the run already there.

    Resuming reads the folder's own `config.json` (a new `config` must be None or identical in everything but
    `epochs`), restores weights and optimizer state from `checkpoints/last.weights.h5` and continues from the
    recorded epoch. `epochs` (the total to reach) and `max_seconds` (a budget for this call) override the recipe;
    `callbacks` are added to the run's own (checkpoints, history.csv, TensorBoard).

    `strategy` (a `tf.distribute.Strategy`, default the current one) holds the model; each minibatch of the recipe's
    `batch_size` is split evenly over its replicas. Under `MultiWorkerMirroredStrategy` only the chief
    (`tfrecog.distribute.is_chief`) writes `run_dir`; every other worker reads the recipe from the command (or from
    `run_dir` where it sees it), writes its callbacks' files into a temporary folder that it deletes at the end, and
    takes the chief's weights, optimizer state and epoch count after the chief has resumed from its checkpoint.

    Returns `(model, state)` where `state` holds the epoch count, updates and accumulated wall time.
    """
    if run_dir is None:
        raise RunError("train needs a run folder (run_dir)")
    strategy = strategy or tf.distribute.get_strategy()
    if distribute.is_chief(strategy):
        return _train(config, run_dir, data_dir, verbose, epochs, max_seconds, callbacks, strategy)
    if config is None:
        config = read_config(Path(run_dir) / "config.json")  # read only: a worker never writes the run folder
    scratch = tempfile.mkdtemp(prefix="tfrecog-worker-")
    try:
        return _train(config, scratch, data_dir, verbose, epochs, max_seconds, callbacks, strategy)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train(config, run_dir, data_dir, verbose, epochs, max_seconds, callbacks, strategy):
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    fresh = not config_path.exists()
    if not fresh:
        saved = read_config(config_path)
        if config is not None:
            given = copy.deepcopy(config)
            if isinstance(given.get("model"), dict) and "event_size" not in given["model"]:
                given["model"]["event_size"] = saved["model"].get("event_size")  # recorded by the first start
            differ = recipes.diff(saved, given)
            if differ:
                raise RunError(f"run folder {run_dir} holds a different recipe ({'; '.join(differ)}); resume with "
                               "the saved recipe (config=None), or train into a new folder")
        config = saved
    elif config is None:
        raise RunError(f"run folder {run_dir} has no config.json; give a recipe to start a new run")
    config = copy.deepcopy(config)
    if epochs is not None:
        config["epochs"] = checks.integer(epochs, "epochs", 1, checks.LIMITS["epochs"])
    if max_seconds is not None:
        max_seconds = checks.number(max_seconds, "max_seconds", 0.0, checks.LIMITS["seconds"])
    checkpoint = None
    if not fresh:
        checkpoints.cleanup(run_dir)  # temporary files of a write interrupted by a kill
        checkpoint = checkpoints.latest(run_dir / "checkpoints")  # before the data loads: a damaged folder stops here

    # The recipe, the data and the model are checked before a new run folder is written: a command that fails here
    # leaves nothing behind, so the corrected command starts afresh instead of resuming the faulty recipe.
    _family(config["family"])
    train_split = _load_split(config, config["train_split"], data_dir)
    valid_split = _load_split(config, config.get("valid_split"), data_dir)
    if config["model"].get("event_size") is None:
        # Recorded so that loading the run later (evaluate, export) needs no data.
        config["model"]["event_size"] = train_split.event_size
    keras.utils.set_random_seed(int(config.get("seed", 0)))
    distribute.check_batch(config["batch_size"], strategy)
    with strategy.scope():
        model = build_model(config, train_split.event_size)
        compile_for_recipe(model, config)
    select_by = config.get("select_by", "elbo")
    if select_by not in [metric.name for metric in model.metrics]:
        raise RunError(f"select_by={select_by!r} is not among the validation metrics of this model: expected one of "
                       f"{', '.join(metric.name for metric in model.metrics)}")
    if fresh:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoints.cleanup(run_dir)
        checkpoint = checkpoints.latest(run_dir / "checkpoints")
    io.write_json(config_path, config)

    state = {"epoch": 0, "wall_seconds": 0.0}
    if checkpoint is not None:
        state = {k: v for k, v in checkpoint.state.items() if k != "files"}
        _restore(model, checkpoint)
        updates = int(model.optimizer.iterations.numpy())
        if state.get("updates") is not None and updates != state["updates"]:
            raise checkpoints.CheckpointError(
                f"{checkpoint.last}: holds {updates} updates but its state.json records {state['updates']} (epoch "
                f"{state['epoch']}): weights and state were written apart (an older tfrecog killed between them); "
                "restore the run folder from a backup, or start a new run folder")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        state = _from_chief(model, state, strategy)
    if state["epoch"] >= config["epochs"]:
        return model, state  # with Polyak averaging, the model holds the average (as `fit` leaves it)
    if checkpoint is not None and _uses_ema(model):
        _swap_ema(model)  # train on from the training weights, the average back in its slots (RunCheckpoint._save)
    commit = io.git_commit()
    if not state.setdefault("commits", []) or state["commits"][-1] != commit:
        state["commits"].append(commit)  # every commit whose code trained this run, oldest first

    checkpoints.repair_history(run_dir / "history.csv", state["epoch"])
    budget = max_seconds if max_seconds is not None else config.get("max_seconds")
    # Polyak averaging (optimizer `use_ema`): validation sees the averaged weights (Keras's SwapEMAWeights), so do
    # `best` and `last` (RunCheckpoint), and `fit` leaves them in the model at its end.
    ema = [keras.callbacks.SwapEMAWeights()] if _uses_ema(model) else []
    # history.csv's row of an epoch is written before its checkpoint: a kill between the two leaves a row past the
    # checkpoint, which the next start drops (checkpoints.repair_history), never a checkpoint without its row.
    callbacks = [
        *ema,
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        RunCheckpoint(run_dir, state, config.get("checkpoint_every_seconds", 60), budget,
                      config.get("select_by", "elbo"), previous=checkpoint),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False),
        *_image_logger(run_dir, config, train_split, valid_split),
        *(callbacks or []),
    ]
    x = train_split.x
    validation = valid_split.x if valid_split is not None else None
    if train_split.dynamic_binarization:
        model.set_num_train_examples(len(train_split))
        x = train_split.as_dataset(config["batch_size"], shuffle=True, seed=config.get("seed", 0))
        if validation is not None:
            validation = valid_split.as_dataset(config["batch_size"], seed=1)
    elif validation is not None:
        validation = (validation,)
    model.fit(x, batch_size=config["batch_size"], epochs=config["epochs"], initial_epoch=state["epoch"],
              validation_data=validation, callbacks=callbacks, verbose=verbose)
    return model, state


def _image_logger(run_dir: Path, config: dict, train_split, valid_split) -> list:
    """TensorBoard images of samples and reconstructions (`tfrecog.callbacks.TensorBoardImages`, in logs/images) for
    an image dataset: every epoch up to 200 epochs, else every ceil(epochs / 200) epochs (at most about 200 pairs of
    images in the event file) and at the last; none for documents."""
    if train_split.image_shape is None:
        return []
    from tfrecog.callbacks import TensorBoardImages

    examples = (valid_split if valid_split is not None else train_split).x[:32]
    every = max(1, math.ceil(config["epochs"] / 200))
    return [TensorBoardImages(run_dir / "logs" / "images", examples, train_split.image_shape, every=every,
                              seed=int(config.get("seed", 0)))]


def _from_chief(model, state: dict, strategy) -> dict:
    """Every worker takes the chief's weights, optimizer state and epoch count (the chief alone reads the run
    folder's checkpoint); returns the state with the chief's epoch."""
    with strategy.scope():
        epoch = tf.Variable(int(state.get("epoch", 0)), dtype=tf.int64, trainable=False)
    variables = [*model.weights, *model.optimizer.variables, epoch]
    baseline_optimizer = getattr(model, "baseline_optimizer", None)
    if baseline_optimizer is not None:
        variables += list(baseline_optimizer.variables)
    distribute.broadcast_from_chief(variables, strategy)
    return {**state, "epoch": int(epoch.numpy())}


def _uses_ema(model) -> bool:
    return bool(getattr(model.optimizer, "use_ema", False))


def _swap_ema(model):
    """Exchanges the model's trainable weights with the optimizer's moving averages of them.

    Through a host copy rather than `SwapEMAWeights`'s in-place swap by additions (a + b - b), which is exact only up
    to rounding: a resumed run must continue from exactly the weights it stopped with.
    """
    optimizer = model.optimizer
    for var, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        value = var.numpy()
        var.assign(average)
        average.assign(value)


def load_run(run_dir, which: str = "best"):
    """The model of a run folder with its `best` (falling back to `last`) or `last` weights."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} is not a run folder: expected {run_dir / 'config.json'} (made by `tfrecog train`)")
    if which not in ("best", "last"):
        raise RunError(f"which must be 'best' or 'last'; got {which!r}")
    config = read_config(run_dir / "config.json")
    checkpoint = checkpoints.latest(run_dir / "checkpoints")
    if checkpoint is None:
        raise RunError(f"run folder {run_dir} has no checkpoint yet: train it first (`tfrecog train ... --run "
                       f"{run_dir}` resumes it)")
    path = checkpoint.best if which == "best" and checkpoint.best is not None else checkpoint.last
    event_size = config["model"].get("event_size") or _load_split(config, config["test_split"], None).event_size
    model = build_model(config, event_size)
    compile_for_recipe(model, config)
    _restore(model, checkpoint, path)
    return model, config


def seed_run(run_dir, config: dict, assign, state: dict, history: list[dict] | None = None):
    """Starts a new run folder from weights trained elsewhere, so that `tfrecog train --run RUN_DIR` resumes it and
    `evaluate`, `export` and `publish` read it like any run: config.json (the recipe), one checkpoint whose `last`
    and `best` both hold the weights `assign(model)` puts into the recipe's model, with a fresh optimizer whose
    step count is `state['updates']` (Adam's moments start again from zero), and history.csv from `history`.

    `state` needs `epoch` and `updates` (and keeps whatever else it holds: best_val_*, best_epoch, commits, where
    the weights came from). Refuses a folder that already holds a run. Returns the checkpoint.
    """
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run (config.json); give a new folder")
    for key in ("epoch", "updates"):
        if not isinstance(state.get(key), int) or state[key] < 0:
            raise RunError(f"seed_run: state[{key!r}] must be a non-negative integer; got {state.get(key)!r}")
    config = copy.deepcopy(config)
    model = build_model(config, config["model"]["event_size"])
    model.build((None, model.event_size))
    compile_for_recipe(model, config)
    assign(model)
    for optimizer in {id(o): o for o in (model.optimizer, getattr(model, "baseline_optimizer", None))
                      if o is not None}.values():
        optimizer.build(model.trainable_variables if optimizer is model.optimizer else
                        getattr(model, "baseline_variables", model.trainable_variables))
    model.optimizer.iterations.assign(state["updates"])
    run_dir.mkdir(parents=True, exist_ok=True)
    if history:
        columns = list(history[0])
        with io.atomic_path(run_dir / "history.csv") as tmp:
            Path(tmp).write_text(",".join(columns) + "\n" + "".join(
                ",".join(str(row.get(c, "")) for c in columns) + "\n" for row in history))
    write = lambda path: model.save_weights(str(path))  # noqa: E731
    state = {"wall_seconds": 0.0, **state}
    checkpoint = checkpoints.publish(run_dir / "checkpoints", state, write, write, None)
    # The recipe last: a folder killed before this line holds no run yet, and seeding it again is safe.
    io.write_json(run_dir / "config.json", config)
    return checkpoint


def best_key(state: dict) -> str | None:
    """The checkpoint state's `best_val_*` entry, or None for a run without validation data (its last epoch is what
    it has)."""
    keys = [k for k in state if k.startswith("best_val_")]
    if len(keys) > 1:
        raise RunError(f"expected one best_val_* entry in the checkpoint state; got {keys}")
    return keys[0] if keys else None


def state_at_best(state: dict, key: str | None) -> dict:
    """The training state at the run's best epoch (`key`: its best_val_* entry; None: its last epoch), as a run
    started from it records it: the epoch, the updates up to it, the wall time and commits."""
    epoch = int(state.get("best_epoch") or state["epoch"]) if key is not None else state["epoch"]
    steps = state["updates"] // max(state["epoch"], 1)
    return {**({key: state[key], "best_epoch": epoch} if key is not None else {}), "epoch": epoch,
            "updates": epoch * steps, "wall_seconds": state["wall_seconds"], "commits": state.get("commits", [])}


def history_before(run_dir, epoch: int) -> list[dict]:
    """The rows of run_dir/history.csv for the epochs before `epoch` ([] without a history)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(float(row["epoch"])) < epoch]


def variables_by_path(model) -> dict:
    """A model's variables by path, its own name replaced by `model` (two builds of one recipe differ there)."""
    prefix = model.name + "/"
    return {("model/" + v.path[len(prefix):]) if v.path.startswith(prefix) else v.path: v for v in model.weights}


def continue_run(source, run_dir, config: dict, note: str = "") -> dict:
    """Starts the run folder `run_dir` with the recipe `config` from the best checkpoint of the run folder `source`
    (its last where it has no validation data): the weights go across by variable path (every variable of the new
    model must be in the source; one the new recipe has no use for, e.g. an NVIL baseline network, stays behind),
    the epoch count and updates go on from the source's best epoch, Adam's moments start again from zero
    (`seed_run`), and the history up to that epoch is kept when the estimator is the same (another estimator logs
    other columns). A new `select_by` drops the source's best value: the new run's first epoch sets its own.
    Returns the state the new run starts from."""
    state = run_state(source)
    key = best_key(state)
    model, old = load_run(source, "best" if key is not None else "last")
    config = copy.deepcopy(config)
    if config["model"].get("event_size") is None:
        config["model"]["event_size"] = model.event_size  # as `train` records it
    best = state_at_best(state, key)
    if config.get("select_by", "elbo") != old.get("select_by", "elbo"):
        best = {k: v for k, v in best.items() if k not in (key, "best_epoch")}
    kept = {**best, "restored_from": f"{source} (epoch {best['epoch']}{'; ' + note if note else ''})"}
    same_estimator = config["model"].get("estimator", model.estimator) == model.estimator
    history = history_before(source, best["epoch"]) if same_estimator else None
    values = {path: variable.numpy() for path, variable in variables_by_path(model).items()}

    def assign(target):
        missing = [path for path in variables_by_path(target) if path not in values]
        if missing:
            raise RunError(f"{source}: has no weights for {', '.join(missing)} of the new recipe's model")
        for path, variable in variables_by_path(target).items():
            variable.assign(values[path])

    seed_run(run_dir, config, assign, kept, history)
    return kept


def train_schedule(config: dict, run_dir, data_dir=None, verbose="auto", max_seconds: float | None = None,
                   strategy=None, epochs: int | None = None):
    """Trains a recipe with `stages` (`tfrecog.recipes`, a schedule) into `run_dir`, or resumes it: stage k < n
    into run_dir/stages/k, the last (the recipe itself, whose config.json keeps the whole schedule) into run_dir.
    The latest stage that has begun resumes until its `epochs` (the stages before it are done); the next starts
    from its best checkpoint (`continue_run`). `max_seconds` bounds the whole call; when it runs out the same call
    resumes where it stopped. `epochs` replaces the recipe's own stop (the last stage's). A recipe without stages
    is `train(config, run_dir)`. Returns what the last stage's `train` returned, or None when the budget ran out
    before the last stage."""
    if epochs is not None:
        config = {**config, "epochs": epochs}
    stages = recipes.stage_recipes(config)
    if len(stages) == 1:
        return train(config, run_dir, data_dir, verbose, max_seconds=max_seconds, strategy=strategy)
    strategy = strategy or tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise RunError("a recipe with stages trains in one process (its stages hand over through the run folder): "
                       "expected --strategy default or mirrored")
    run_dir = Path(run_dir)
    folders = [run_dir / "stages" / str(k) for k in range(1, len(stages))] + [run_dir]
    stages[-1] = copy.deepcopy(config)  # the last stage's config.json records the whole schedule
    for k, (stage, folder) in enumerate(zip(stages, folders), 1):  # every folder checked before any training
        if (folder / "config.json").exists():
            differ = recipes.diff(read_config(folder / "config.json"), stage)
            if differ:
                raise RunError(f"{folder} holds another recipe than stage {k} of the schedule ({'; '.join(differ)}): "
                               "train the schedule into a new run folder")
    # The latest stage that has started is where the schedule stands (the stages before it handed over already;
    # a last stage seeded some other way, e.g. from a zoo card, has no earlier stages to run).
    begun = max([k for k, folder in enumerate(folders, 1) if (folder / "config.json").exists()], default=1)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    source = folders[begun - 2] if begun > 1 else None
    result = None
    for k, (stage, folder) in enumerate(zip(stages, folders), 1):
        if k < begun:
            continue
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if left == 0.0:
            return None
        if (folder / "config.json").exists():
            if k == len(stages) or _epoch_reached(folder) < stage["epochs"]:  # the last returns the model
                result = train(None, folder, data_dir, verbose, epochs=stage["epochs"], max_seconds=left,
                               strategy=strategy)
        elif source is None:
            result = train(stage, folder, data_dir, verbose, max_seconds=left, strategy=strategy)
        else:
            changes = recipes.diff(read_config(source / "config.json"), stage, recipes.IGNORED_BY_DIFF + ("stages",))
            continue_run(source, folder, stage, note=f"stage {k} of {len(stages)}: {'; '.join(changes)}")
            result = train(None, folder, data_dir, verbose, epochs=stage["epochs"], max_seconds=left,
                           strategy=strategy)
        if _epoch_reached(folder) < stage["epochs"]:
            return None  # the budget ran out inside this stage
        source = folder
    return result


def _epoch_reached(run_dir) -> int:
    """The epoch of a run folder's newest good checkpoint; 0 before its first."""
    checkpoint = checkpoints.latest(Path(run_dir) / "checkpoints")
    return 0 if checkpoint is None else int(checkpoint.state["epoch"])


def current_stage(run_dir) -> Path:
    """The folder of a schedule's stage in training: `run_dir` once its last stage has started (or for a run
    without stages), else the latest `run_dir/stages/K` with a recipe."""
    run_dir = Path(run_dir)
    started = sorted((int(p.parent.name), p.parent) for p in run_dir.glob("stages/*/config.json")
                     if p.parent.name.isdigit())
    return run_dir if (run_dir / "config.json").exists() or not started else started[-1][1]


def schedule_stopped(config: dict, run_dir) -> str | None:
    """None when `run_dir`'s schedule has reached its last stage; else one line saying in which stage it stopped (the
    budget ran out) and that the same command resumes it."""
    stage = current_stage(run_dir)
    if stage == Path(run_dir):
        return None
    return (f"the schedule stopped in {stage} (stage {stage.name} of {len(config['stages']) + 1}); the same command "
            "resumes it")


def run_state(run_dir) -> dict:
    """The training state (epoch, updates, wall_seconds, best_val_*, commits) of a run folder's newest good
    checkpoint."""
    checkpoint = checkpoints.latest(Path(run_dir) / "checkpoints")
    if checkpoint is None:
        raise RunError(f"run folder {run_dir} has no checkpoint yet: train it first")
    return {k: v for k, v in checkpoint.state.items() if k != "files"}



def evaluation_data(config: dict, split: str | None = None, data_dir=None, limit: int | None = None,
                    seed: int = 0) -> np.ndarray:
    """The examples a recipe's model is scored on: the first `limit` of `split` (default the test split), with one
    fixed Bernoulli draw (`seed`) where the dataset is binarized dynamically, so every evaluation sees the same x."""
    data = _load_split(config, split or config["test_split"], data_dir)
    x = data.x if limit is None else data.x[:limit]
    if data.dynamic_binarization:
        x = (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)
    return x


def evaluate_run(run_dir, samples: int = 5000, split: str | None = None, data_dir=None, batch_size: int = 100,
                 which: str = "best", limit: int | None = None, seed: int = 0, progress: bool = True):
    """Importance-sampled log-likelihood of a run's model on a split; merged into the folder's `metrics.json`."""
    from tfrecog.evaluate import log_likelihood

    run_dir = Path(run_dir)
    samples = checks.integer(samples, "samples", 1, checks.LIMITS["samples"])
    batch_size = checks.integer(batch_size, "batch_size", 1, checks.LIMITS["batch_size"])
    if limit is not None:
        limit = checks.integer(limit, "limit", 1, checks.LIMITS["limit"])
    model, config = load_run(run_dir, which)
    split = split or config["test_split"]
    x = evaluation_data(config, split, data_dir, limit, seed)
    metrics_path = run_dir / "metrics.json"
    metrics = _read_metrics(metrics_path)  # a damaged file stops here, before the long evaluation
    t0 = time.time()
    result = log_likelihood(model, x, samples=samples, batch_size=batch_size, seed=seed, progress=progress)
    extra = {}
    if config["model"].get("likelihood") == "categorical":
        from tfrecog.evaluate import perplexity

        extra = perplexity(result.per_example, x)
        result.perplexity = extra["perplexity"]
    metrics[f"{split}_K{samples}" + ("" if limit is None else f"_n{limit}")] = {
        **result.as_dict(),
        **extra,
        "split": split,
        "weights": which,
        "seconds": round(time.time() - t0, 1),
        "dataset": config["dataset"],
        "binarize": config.get("binarize"),
    }
    if distribute.is_chief():  # under a multi-worker strategy, every worker evaluates its share; the chief writes
        io.write_json(metrics_path, metrics)
    return result


def _read_metrics(path: Path) -> dict:
    """A run folder's metrics.json (results by name), or {} where there is none yet; RunError when damaged."""
    if not path.exists():
        return {}
    advice = "move it aside (evaluate writes a new one) or restore it from a backup"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{path}: is not UTF-8 text (expected JSON results); {advice}") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: is not valid JSON ({err.msg} at line {err.lineno}); {advice}") from None
    if not isinstance(metrics, dict):
        raise RunError(f"{path}: expected a JSON object of results, got {type(metrics).__name__}; {advice}")
    return metrics


def epochs_for_updates(updates: int, num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(updates * batch_size / num_examples))
