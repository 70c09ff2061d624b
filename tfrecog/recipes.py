"""Training recipes as data: the schema of a run folder's `config.json`, checked when a recipe is read.

A recipe is the plain-data description of one training run, the object `tfrecog train` writes to a run folder's
`config.json` (`tfrecog.training.default_config` makes one). Recipes kept as files:

  zoo/recipes/NAME.json   the recipe of zoo entry NAME, with the stopping rule the card was trained with
                          (installed with the cards; `tfrecog zoo reproduce NAME` trains it)
  recipes/NAME.json       experiments of a source checkout that are not zoo entries (yet)

`scripts/train_zoo.sh NAME` trains either (`tfrecog train --recipe FILE --run ../runs/NAME`), resumably.

`validate(recipe)` checks a recipe against `SCHEMA`: no unknown keys (top level, `model`, optimizers), every value
of its type and range, and the names it uses known: the family (`tfrecog.models.FAMILIES`), the dataset and its
splits (`tfrecog.data.DATASETS`), the estimator (`tfrecog.estimators.ESTIMATORS`, those the family supports), the
likelihood, the constructor arguments of the family's model class. A fault is one line naming the key, what is
allowed and what was found.

The stopping rule is `epochs` (the total number of passes over the training split), optionally with `max_seconds`
(a wall-clock budget per call; machine dependent, so the zoo's recipes state the epochs their card reached) and the
best checkpoint chosen by `select_by` on the validation split (the ELBO by default); `stopping` says in words how
the original run was stopped.

A schedule is a recipe with `stages`: the stretches trained before the recipe itself, in order, each a JSON object
with `epochs` (the epoch, counted over the whole schedule, at which the stage stops) and what it changes in the
recipe: `learning_rate` (the optimizer's), `estimator`, `num_samples`, `select_by`. Each stage after the first
starts from the previous stage's best checkpoint (epochs go on from there; Adam's moments start again from zero;
weights go across by variable path, so a baseline network the next estimator has no use for is left behind), and
the recipe's own settings make the last stage, up to `epochs`. `stage_recipes(recipe)` gives the single-stage
recipes; `tfrecog.training.train_schedule` trains them (`tfrecog train --recipe`, `tfrecog zoo reproduce`).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import numbers
from pathlib import Path

from tfrecog import checks, estimators, models
from tfrecog import data as data_lib
from tfrecog.models.base import LIKELIHOODS

__all__ = ["RecipeError", "SCHEMA", "REQUIRED", "BINARIZATIONS", "STAGE_KEYS", "validate", "read", "diff",
           "stage_recipes", "experiments_dir", "experiment_names", "model_arguments"]

BINARIZATIONS = ("static", "dynamic", "threshold")


class RecipeError(ValueError):
    """A recipe that does not fit the schema; the message names the key, what is allowed and what was found."""


def _integer(minimum):
    return lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum, \
        f"an integer >= {minimum}"


def _number(minimum, strict=False):
    def ok(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and (v > minimum if strict else v >= minimum)

    return ok, f"a number {'>' if strict else '>='} {minimum}"


def _optional(check):
    ok, what = check
    return (lambda v: v is None or ok(v)), f"null or {what}"


_TEXT = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_OBJECT = (lambda v: isinstance(v, dict), "a JSON object")

# Top-level keys: (check, description). The names (family, dataset, splits, estimator, ...) are checked against the
# registries after the types.
SCHEMA = {
    "family": (_TEXT, "the model family"),
    "model": (_OBJECT, "constructor arguments of the family's model class"),
    "dataset": (_TEXT, "a dataset name"),
    "binarize": (_optional((lambda v: v in BINARIZATIONS, f"one of {', '.join(BINARIZATIONS)}")), "binarization"),
    "train_split": (_TEXT, "the split trained on"),
    "valid_split": (_optional(_TEXT), "the split that picks the best checkpoint (null: none)"),
    "test_split": (_TEXT, "the split scored by evaluate"),
    "optimizer": (_OBJECT, "{class_name, config} of a keras optimizer"),
    "baseline_optimizer": (_OBJECT, "NVIL's baseline optimizer (sbn, fdarn)"),
    "batch_size": (_integer(1), "examples per update"),
    "epochs": (_integer(1), "passes over the training split: the stopping rule"),
    "seed": (_integer(0), "the seed of initialisation and sampling"),
    "steps_per_execution": (_integer(1), "updates per compiled call"),
    "jit_compile": (_BOOL, "XLA"),
    "checkpoint_every_seconds": (_number(0), "checkpoint interval"),
    "max_seconds": (_optional(_number(0, strict=True)), "a wall-clock budget per call (null: none)"),
    "select_by": (_TEXT, "the validation metric (higher is better) of the best checkpoint"),
    "stopping": (_TEXT, "how the original run was stopped, in words"),
    "stages": ((lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of stage objects"),
               "the stretches trained before this recipe, in order (a schedule)"),
}
# The keys of a stage: what it changes in the recipe, and the epoch at which it stops.
STAGE_KEYS = {
    "epochs": (_integer(1), "the epoch (over the whole schedule) at which the stage stops"),
    "learning_rate": (_number(0, strict=True), "the optimizer's learning rate during the stage"),
    "estimator": (_TEXT, "the estimator during the stage"),
    "num_samples": (_integer(1), "the estimator's samples per example during the stage"),
    "select_by": (_TEXT, "the validation metric of the stage's best checkpoint (the next stage starts there)"),
}
REQUIRED = ("family", "model", "dataset", "train_split", "test_split", "optimizer", "batch_size", "epochs")
_OPTIMIZER_KEYS = ("class_name", "config")


def _fail(where: str, key: str, allowed: str, got) -> RecipeError:
    text = json.dumps(got) if _jsonable(got) else repr(got)
    return RecipeError(f"{where}: {key!r} must be {allowed}; got {text[:80]}")


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _unknown(where: str, prefix: str, keys, allowed) -> None:
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RecipeError(f"{where}: unknown key {prefix + str(key)!r}{hint}; allowed keys: {', '.join(allowed)}")


def model_arguments(family: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments a recipe's `model` may set for `family`: those of its model class and of every
    `LatentVariableModel` base, by name (not `self`, `*args`, `**kwargs`)."""
    arguments = {}
    for cls in models.family(family).model_class.__mro__:
        if not (isinstance(cls, type) and issubclass(cls, models.LatentVariableModel)) or "__init__" not in vars(cls):
            continue
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                arguments.setdefault(name, parameter)
    return arguments


def _check_model_value(where: str, key: str, value, default) -> None:
    """Type of a model argument, from its default: int, float, bool, str, a tuple/list of sizes; None: any."""
    if default is inspect.Parameter.empty or default is None:
        if key == "event_size" and not _integer(1)[0](value):
            raise _fail(where, f"model.{key}", "an integer >= 1", value)
        return
    if isinstance(default, bool):
        ok, allowed = _BOOL
    elif isinstance(default, int):
        ok, allowed = _integer(0)
    elif isinstance(default, float):
        ok, allowed = (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)), "a number"
    elif isinstance(default, str):
        ok, allowed = _TEXT
    elif isinstance(default, (tuple, list)):
        ok = (lambda v: isinstance(v, list) and v != [] and all(_integer(1)[0](s) for s in v))
        allowed = "a non-empty list of integers >= 1"
    else:
        return
    if not ok(value):
        raise _fail(where, f"model.{key}", allowed, value)


def _check_optimizer(where: str, key: str, value) -> None:
    from tfrecog._tf import keras

    _unknown(where, f"{key}.", value, _OPTIMIZER_KEYS)
    name = value.get("class_name")
    known = sorted(n for n, c in vars(keras.optimizers).items()
                   if isinstance(c, type) and issubclass(c, keras.optimizers.Optimizer)
                   and c is not keras.optimizers.Optimizer and n[0].isupper())
    if name not in known:
        raise _fail(where, f"{key}.class_name", f"one of {', '.join(known)}", name)
    config = value.get("config", {})
    if not isinstance(config, dict):
        raise _fail(where, f"{key}.config", "a JSON object of the optimizer's arguments", config)
    allowed = [n for n in inspect.signature(getattr(keras.optimizers, name).__init__).parameters
               if n not in ("self", "kwargs")]
    _unknown(where, f"{key}.config.", config, allowed)


def validate(recipe, where: str = "recipe") -> dict:
    """`recipe` checked against `SCHEMA` (see the module docstring); returns a deep copy. Raises RecipeError with
    one line: `where` (a file name), the key, the allowed values and the value found."""
    if not isinstance(recipe, dict):
        raise RecipeError(f"{where}: expected a JSON object (a training recipe), got {type(recipe).__name__}")
    _unknown(where, "", recipe, SCHEMA)
    for key in REQUIRED:
        if key not in recipe:
            raise RecipeError(f"{where}: missing key {key!r} ({SCHEMA[key][1]}); required keys: {', '.join(REQUIRED)}")
    for key, value in recipe.items():
        (ok, allowed), _ = SCHEMA[key]
        if not ok(value):
            raise _fail(where, key, allowed, value)
    family = recipe["family"]
    if family not in models.FAMILIES:
        raise _fail(where, "family", f"one of {', '.join(models.FAMILIES)}", family)
    spec = data_lib.DATASETS.get(recipe["dataset"])
    if spec is None:
        raise _fail(where, "dataset", f"one of {', '.join(data_lib.available())}", recipe["dataset"])
    for key in ("train_split", "valid_split", "test_split"):
        if recipe.get(key) is not None and recipe[key] not in spec.splits:
            raise _fail(where, key, f"a split of {spec.name}: {', '.join(spec.splits)}", recipe[key])
    if "baseline_optimizer" in recipe and "baseline_optimizer" not in models.family(family).recipe:
        nvil = ", ".join(n for n, f in models.FAMILIES.items() if "baseline_optimizer" in f.recipe)
        raise RecipeError(f"{where}: key 'baseline_optimizer' applies to the families {nvil}; got family {family!r}")
    for key in ("optimizer", "baseline_optimizer"):
        if key in recipe:
            _check_optimizer(where, key, recipe[key])
    model = recipe["model"]
    arguments = model_arguments(family)
    _unknown(where, "model.", model, arguments)
    for key, value in model.items():
        _check_model_value(where, key, value, arguments[key].default)
    if model.get("likelihood") is not None and model["likelihood"] not in LIKELIHOODS:
        raise _fail(where, "model.likelihood", f"one of {', '.join(LIKELIHOODS)}", model["likelihood"])
    estimator = model.get("estimator", arguments["estimator"].default)
    supported = [n for n, e in estimators.ESTIMATORS.items() if models.family(family).model_class.family in e.families]
    if estimator not in supported:
        raise _fail(where, "model.estimator", f"one of {', '.join(supported)} (the {family} estimators)", estimator)
    if model.get("event_size") is not None and model["event_size"] != spec.event_size:
        raise _fail(where, "model.event_size", f"{spec.event_size} (the features of {spec.name})",
                    model["event_size"])
    checks.integer(recipe["epochs"], "epochs", 1, checks.LIMITS["epochs"])  # an upper bound too
    if "stages" in recipe:
        _check_stages(recipe, where)
    return copy.deepcopy(recipe)


def _check_stages(recipe: dict, where: str) -> None:
    """Each stage an object of `STAGE_KEYS` with its `epochs`, the stops strictly increasing and before the recipe's
    own `epochs`, and the single-stage recipe it makes valid."""
    previous = 0
    for i, stage in enumerate(recipe["stages"]):
        at = f"stages[{i}]"
        if not isinstance(stage, dict):
            raise _fail(where, at, f"a JSON object with keys among {', '.join(STAGE_KEYS)}", stage)
        _unknown(where, f"{at}.", stage, STAGE_KEYS)
        if "epochs" not in stage:
            raise RecipeError(f"{where}: missing key '{at}.epochs' (the epoch at which the stage stops)")
        for key, value in stage.items():
            ok, allowed = STAGE_KEYS[key][0]
            if not ok(value):
                raise _fail(where, f"{at}.{key}", allowed, value)
        if not previous < stage["epochs"] < recipe["epochs"]:
            raise _fail(where, f"{at}.epochs", f"an epoch after {previous} (the stage before) and before the recipe's "
                        f"epochs ({recipe['epochs']})", stage["epochs"])
        previous = stage["epochs"]
    for i, stage in enumerate(stage_recipes(recipe, checked=False)[:-1]):
        validate(stage, f"{where} (the recipe of stages[{i}])")


def stage_recipes(recipe: dict, checked: bool = True) -> list[dict]:
    """The single-stage recipes of a schedule, in order: each stage's changes applied to the recipe (without
    `stages`, `epochs` = the stage's stop), then the recipe itself; [recipe] when it has no stages."""
    if checked:
        recipe = validate(recipe)
    final = {k: copy.deepcopy(v) for k, v in recipe.items() if k != "stages"}
    out = []
    for stage in recipe.get("stages", []):
        config = copy.deepcopy(final)
        config["epochs"] = stage["epochs"]
        if "learning_rate" in stage:
            optimizer = config["optimizer"]
            config["optimizer"] = {**optimizer, "config": {**optimizer.get("config", {}),
                                                           "learning_rate": stage["learning_rate"]}}
        for key in ("estimator", "num_samples"):
            if key in stage:
                config["model"][key] = stage[key]
        if "select_by" in stage:
            config["select_by"] = stage["select_by"]
        config.pop("stopping", None)
        out.append(config)
    return out + [final]


def read(path) -> dict:
    """The recipe in the JSON file `path`, validated (`validate`); RecipeError names the file and the fault."""
    path = Path(path)
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: is not UTF-8 text (expected a JSON recipe)") from None
    except json.JSONDecodeError as err:
        raise RecipeError(f"{path}: is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    return validate(recipe, str(path))


IGNORED_BY_DIFF = ("epochs", "max_seconds", "stopping")


def diff(saved: dict, recipe: dict, ignore=IGNORED_BY_DIFF) -> list[str]:
    """Where `recipe` differs from `saved` (a run folder's config.json), as 'key: saved -> recipe' entries (dotted
    keys, sorted), the one comparison behind every resume (`tfrecog train`, `train --recipe`, `zoo reproduce`).

    Not differences: top-level keys in `ignore` (what a resumed run may change), a key absent on one side and null on
    the other, a `model` argument left out where the other side gives its constructor default (`latent_size` absent
    equals `latent_size=20` for a VAE), and the `model.event_size` that `train` adds to the saved copy when the
    recipe has none.
    """

    def complete(config: dict) -> dict:
        config = json.loads(json.dumps({k: v for k, v in config.items() if k not in ignore}, default=str))
        model = config.get("model")
        if config.get("family") in models.FAMILIES and isinstance(model, dict):
            spec = models.FAMILIES[config["family"]]
            defaults = {name: parameter.default for name, parameter in model_arguments(config["family"]).items()
                        if parameter.default is not inspect.Parameter.empty}
            config["model"] = {**json.loads(json.dumps(defaults, default=str)), **spec.defaults, **model}
        return config

    def flatten(config: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in config.items():
            if isinstance(value, dict) and value:
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    a, b = flatten(complete(saved)), flatten(complete(recipe))
    if "model.event_size" not in b or b["model.event_size"] is None:
        b.pop("model.event_size", None)
        a.pop("model.event_size", None)
    return [f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]  # an absent key reads as null


def experiments_dir() -> Path:
    """recipes/ of the source checkout: experiments that are not zoo entries."""
    return Path(__file__).resolve().parent.parent / "recipes"


def experiment_names() -> list[str]:
    return sorted(path.stem for path in experiments_dir().glob("*.json"))
