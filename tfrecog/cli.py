"""The `tfrecog` command: a thin layer over the library's functions.

A user error prints one line on stderr: exit status 2 for a usage error (a bad argument), 1 for a failure (a missing
or damaged file, an unwritable destination); `--debug` or TFRECOG_DEBUG=1 shows the full traceback instead.

Building the parser imports no TensorFlow (the family and estimator names are listed here, and a test checks them
against the registries), so `--help`, `--version`, `zoo list` and `zoo show` answer at once; TensorFlow's start-up
logs stay hidden unless `--verbose` (`tfrecog._tf`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from tfrecog import cards, data
from tfrecog.checks import LIMITS, arg_integer, arg_number
from tfrecog.version import __version__

_START = time.time()  # the quick start reports its total time from here, TensorFlow's import included


class UsageError(ValueError):
    """A command-line argument is wrong (exit status 2); the message says what was expected."""


# The names the parser offers, without importing the registries (and TensorFlow) to build it; tests/test_cli.py
# checks them against `tfrecog.models.FAMILIES` and `tfrecog.estimators.ESTIMATORS`.
FAMILY_NAMES = ("vae", "sbn", "fdarn", "dlgm")
ESTIMATOR_NAMES = ("sgvb_a", "sgvb_b", "iwae", "wake_sleep", "nvil", "vimco", "rws", "rws_sleep", "rws_wake_sleep",
                   "disarm", "mcem")

# Defaults of `tfrecog train` options that are None in the parser, so that a resumed run can tell the options given
# from the ones left out.
TRAIN_DEFAULTS = {"dataset": data.DEFAULT_DATASET, "batch_size": 100, "lr": 1e-3, "optimizer": "Adam", "seed": 0}


def _parse_set(items):
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"--set expects key=value (value in JSON, e.g. hidden_sizes=[500]); got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _progress(args) -> int:
    """Keras's `verbose` for training: `--verbose LEVEL` where given as a number, else 1 (a progress bar)."""
    return args.verbose if isinstance(args.verbose, int) and not isinstance(args.verbose, bool) else 1


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _train_options(args) -> dict:
    """The recipe entries that the options given on the command line set (those left out are absent)."""
    model = _parse_set(args.set)
    for flag, key in [("latent_size", "latent_size"), ("hidden", "hidden_sizes"), ("activation", "activation"),
                      ("estimator", "estimator"), ("samples", "num_samples"),
                      ("weight_prior_scale", "weight_prior_scale"), ("likelihood", "likelihood")]:
        if getattr(args, flag) is not None:
            model[key] = getattr(args, flag)
    recipe = {"model": model} if model else {}
    for key in ("seed", "batch_size", "epochs", "binarize", "train_split", "select_by"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    if args.valid_split is not None:
        recipe["valid_split"] = None if args.valid_split == "none" else args.valid_split
    optimizer = {"class_name": args.optimizer} if args.optimizer is not None else {}
    settings = {"learning_rate": args.lr} if args.lr is not None else {}
    if args.ema is not None:
        settings.update(use_ema=True, ema_momentum=args.ema)
    if settings:
        optimizer["config"] = settings
    if optimizer:
        recipe["optimizer"] = optimizer
    if args.baseline_lr is not None:
        from tfrecog import models

        if "baseline_optimizer" not in models.family(args.family).recipe:
            nvil = ", ".join(name for name, f in models.FAMILIES.items() if "baseline_optimizer" in f.recipe)
            raise UsageError(f"--baseline-lr applies to NVIL-trained families ({nvil}) only")
        recipe["baseline_optimizer"] = {"class_name": "Adam", "config": {"learning_rate": args.baseline_lr}}
    if args.dataset is not None:
        recipe["dataset"] = args.dataset
    return recipe


def _free_folder(run: Path) -> Path:
    """`run` itself if it holds no run yet, else the first RUN-2, RUN-3, ... that does not exist."""
    if not (run / "config.json").exists():
        return run
    number = 2
    while Path(f"{run}-{number}").exists():
        number += 1
    return Path(f"{run}-{number}")


def _strategy(args):
    """The `tf.distribute` strategy of `--strategy` (None: TensorFlow's default, one device, also for "mirrored" where
    there is one local device); a malformed or missing TF_CONFIG is a usage error, a cluster that does not assemble in
    time a failure."""
    name = getattr(args, "strategy", None) or "default"
    if name == "default":
        return None
    from tfrecog import distribute

    devices = distribute.local_devices() if name == "mirrored" else ()
    if len(devices) == 1:
        # A one-replica MirroredStrategy makes the same updates as the one-device path, at 0.64x its speed here
        # (the loop around strategy.run and the all-reduce outside XLA: docs/scaling.md).
        print(f"tfrecog: --strategy mirrored found one local device ({devices[0]}): running on "
              "the one-device path (the same computation; a one-replica all-reduce would only add time)",
              file=sys.stderr)
        return None
    if name == "multi-worker":
        try:
            distribute.read_tf_config()
        except distribute.DistributeError as err:
            raise UsageError(str(err)) from None
    return distribute.make_strategy(name, timeout_seconds=float(os.environ.get("TFRECOG_CLUSTER_TIMEOUT", 120)))


def cmd_train(args):
    from tfrecog import recipes, training

    args.strategy = _strategy(args)
    if args.recipe is not None:
        return _train_recipe(args)
    if args.family is None:
        raise UsageError("train needs a model FAMILY (e.g. `tfrecog train vae`) or --recipe FILE_OR_NAME")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dataset = args.dataset or TRAIN_DEFAULTS["dataset"]
    run = Path(args.run) if args.run else Path("runs") / f"{args.family}-{dataset}-{stamp}"
    options = _train_options(args)
    if args.new_run and (run / "config.json").exists():
        previous, run = run, _free_folder(run)
        print(f"{previous} holds a run already: starting a new run in {run}")
    progress = _progress(args)
    if (run / "config.json").exists():
        saved = training.read_config(run / "config.json")
        given = _merge(saved, {"family": args.family, **options})
        differ = recipes.diff(saved, given)
        if differ:
            raise UsageError(f"run folder {run} was started with a different recipe ({'; '.join(differ)}): "
                             "leave these options out to resume it, or pass --new-run to start a new run")
        print(f"resuming {run}")
        training.train(None, run, data_dir=args.data_dir, epochs=args.epochs, max_seconds=args.max_seconds,
                       verbose=progress, strategy=args.strategy)
    else:
        optimizer = _merge({"class_name": TRAIN_DEFAULTS["optimizer"],
                            "config": {"learning_rate": TRAIN_DEFAULTS["lr"]}}, options.pop("optimizer", {}))
        overrides = {"seed": TRAIN_DEFAULTS["seed"], "batch_size": TRAIN_DEFAULTS["batch_size"], **options,
                     "optimizer": optimizer}
        overrides.pop("dataset", None)
        config = training.default_config(args.family, dataset, **overrides)
        training.train(config, run, data_dir=args.data_dir, max_seconds=args.max_seconds, verbose=progress,
                       strategy=args.strategy)
    _finish(run, args.strategy)


def _finish(run: Path, strategy):
    """The learning curves and the run folder's name, on the chief only (the other workers wrote nothing there)."""
    from tfrecog import distribute, plots

    if distribute.is_chief(strategy):
        if (run / "history.csv").exists():  # a stage started from another estimator's weights may not have one yet
            plots.learning_curves(run / "history.csv", run / "curves.png")
        print(f"run folder: {run}")
    else:
        print(f"worker done: the chief wrote the run folder {run}")


def _train_recipe(args):
    """`tfrecog train --recipe FILE_OR_NAME --run DIR`: the recipe file (validated, `tfrecog.recipes`) into DIR; on an
    existing DIR it resumes, refusing a recipe that differs from the saved one but for epochs and max_seconds."""
    from tfrecog import recipes, training, zoo

    if args.family is not None or args.set or any(getattr(args, flag) is not None for flag in _MODEL_FLAGS):
        raise UsageError("--recipe takes the model and its training from the recipe file; give no FAMILY, --set or "
                         f"--{'/--'.join(f.replace('_', '-') for f in _MODEL_FLAGS)} with it")
    if not args.run:
        raise UsageError("--recipe needs --run DIR (e.g. --run ../runs/NAME)")
    config = zoo.find_recipe(args.recipe)
    run = Path(args.run)
    progress = _progress(args)
    if config.get("stages"):
        # A schedule: its stages into RUN/stages/K and the last into RUN, each resumed where it stopped; --epochs
        # moves the last stage's stop.
        training.train_schedule(config, run, data_dir=args.data_dir, max_seconds=args.max_seconds,
                                verbose=progress, strategy=args.strategy, epochs=args.epochs)
        stopped = training.schedule_stopped(config, run)
        if stopped:
            print(stopped)
        return _finish(training.current_stage(run), args.strategy)
    elif (run / "config.json").exists():
        changed = recipes.diff(training.read_config(run / "config.json"), config)
        if changed:
            raise UsageError(f"run folder {run} holds another recipe than {args.recipe} ({'; '.join(changed)}): "
                             "use a new --run folder")
        print(f"resuming {run}")
        training.train(None, run, data_dir=args.data_dir, epochs=args.epochs or config["epochs"],
                       max_seconds=args.max_seconds, verbose=progress, strategy=args.strategy)
    else:
        if args.epochs is not None:
            config["epochs"] = args.epochs
        training.train(config, run, data_dir=args.data_dir, max_seconds=args.max_seconds, verbose=progress,
                       strategy=args.strategy)
    _finish(run, args.strategy)


# The `tfrecog train` flags that describe the model or its training (None unless given): a --recipe says them all.
_MODEL_FLAGS = ("latent_size", "hidden", "activation", "likelihood", "estimator", "samples", "weight_prior_scale",
                "ema", "baseline_lr", "train_split", "valid_split", "select_by", "binarize", "dataset", "batch_size",
                "lr", "optimizer", "seed")


def _load(name_or_run):
    """A model from a run folder or a zoo name; returns (model, config, label)."""
    from tfrecog import loader

    model, config = loader.load(name_or_run)
    return model, config, str(name_or_run)


def cmd_evaluate(args):
    from tfrecog import loader

    if args.method != "is":
        return _evaluate_annealed(args)
    if os.sep in args.run and not Path(args.run).exists():  # a path, not a zoo name
        raise FileNotFoundError(f"run folder {args.run} does not exist: expected a folder made by `tfrecog train` "
                                "(or a zoo name)")
    strategy = _strategy(args)
    if strategy is None:
        result = loader.evaluate(args.run, samples=args.samples, split=args.split, data_dir=args.data_dir,
                                 batch_size=args.batch_size, limit=args.limit, seed=args.seed)
    else:  # the model loads under the strategy, and log_likelihood shares the batches over its replicas
        with strategy.scope():
            result = loader.evaluate(args.run, samples=args.samples, split=args.split, data_dir=args.data_dir,
                                     batch_size=args.batch_size, limit=args.limit, seed=args.seed)
    print(result)


def _evaluate_annealed(args):
    """`--method ais|bdmc|gaps`: AIS estimates batch by batch, each appended to a JSON-lines file as it finishes
    (a rerun of the same command skips the batches already there), then the summary beside it."""
    import numpy as np

    from tfrecog import annealing, io, loader, training

    model, config = loader.load(args.run)
    tag = f"{args.method}_T{args.steps}_C{args.chains}_seed{args.seed}" + (f"_n{args.limit}" if args.limit else "")
    tag += f"_{args.transition}" if args.transition else ""
    folder = Path(args.run) if Path(args.run).exists() else Path(".")
    stem = folder / (tag if folder != Path(".") else f"{Path(args.run).name}_{tag}")
    if args.method == "bdmc":
        result = annealing.bdmc(model, num_examples=args.limit or 100, steps=args.steps, chains=args.chains,
                                seed=args.seed, batch_size=args.batch_size, transition=args.transition)
        io.write_json(stem.with_suffix(".json"), result.as_dict())
        print(result)
        return
    x = training.evaluation_data(config, args.split, args.data_dir, args.limit, args.seed)
    done = {}
    parts = stem.with_suffix(".jsonl")
    if parts.exists():
        for line in parts.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["start"]] = record
    from tqdm.auto import tqdm

    starts = range(0, len(x), args.batch_size)
    bar = tqdm(total=len(starts), initial=sum(s in done for s in starts), unit="batch",
               desc=f"{args.method} T={args.steps} C={args.chains}")
    for start in starts:
        if start in done:
            continue
        batch = x[start : start + args.batch_size]
        if args.method == "ais":
            (_, log_w, accept), = annealing.ais_batches(model, batch, args.steps, args.chains, args.seed,
                                                        args.batch_size, start=start, transition=args.transition)
            record = {"start": start, "log_w": log_w.tolist(), "acceptance": accept.tolist()}
        else:
            gaps = annealing.inference_gaps(model, batch, args.steps, args.chains, args.seed + start, args.batch_size,
                                            transition=args.transition)
            record = {"start": start, "log_likelihood": gaps.log_likelihood.tolist(),
                      "optimised_elbo": gaps.optimised_elbo.tolist(), "amortised_elbo": gaps.amortised_elbo.tolist(),
                      "iterations": gaps.iterations, "converged": gaps.converged}
        with open(parts, "a") as f:  # one line per finished batch: an interrupted run keeps what it finished
            f.write(json.dumps(record) + "\n")
        done[start] = record
        bar.update(1)
    bar.close()
    records = [done[s] for s in starts]
    if args.method == "ais":
        result = annealing.ais_result(np.concatenate([np.array(r["log_w"]) for r in records], axis=1),
                                      np.concatenate([r["acceptance"] for r in records]), args.steps)
    else:
        cat = lambda key: np.concatenate([r[key] for r in records])  # noqa: E731
        ais = annealing.ais_result(cat("log_likelihood")[None], np.zeros(len(x)), args.steps)
        result = annealing.InferenceGaps(cat("log_likelihood"), cat("optimised_elbo"), cat("amortised_elbo"),
                                         max(r["iterations"] for r in records), all(r["converged"] for r in records),
                                         ais)
    io.write_json(stem.with_suffix(".json"), result.as_dict())
    print(result)


def cmd_sample(args):
    from tfrecog import plots

    model, config, label = _load(args.run)
    out = Path(args.out or (Path(args.run) / "samples.png" if Path(args.run).exists() else "samples.png"))
    shape = plots.image_shape_for(config.get("dataset"), model.event_size)
    plots.image_grid(model.sample(args.num, seed=args.seed).numpy(), shape, out, title=f"samples: {label}")
    print(f"wrote {out}")


def cmd_quickstart(args):
    from tfrecog import quickstart

    quickstart.run(out_dir=args.out, seconds=args.seconds, samples=args.samples, started=_START)


def cmd_impute(args):
    from tfrecog import plots, training
    from tfrecog.impute import imputation_error, impute, missing_at_random, missing_square, plot_imputation

    model, config, label = _load(args.run)
    x = training.evaluation_data(config, config.get("test_split", "test"), data_dir=args.data_dir, limit=args.num)
    shape = plots.image_shape_for(config["dataset"], model.event_size)
    kind, value = args.missing
    if kind == "mar":
        mask = missing_at_random(x.shape, value, seed=args.seed)
    else:
        mask = missing_square(shape, value, num_examples=len(x), seed=args.seed)
    chain = impute(model, x, mask, steps=args.steps, seed=args.seed)
    plot_imputation(x, mask, chain, shape, args.out)
    errors = imputation_error(chain, x, mask)
    print(f"imputation error (mean squared, missing entries) by iteration: first {errors[0]:.4f}, "
          f"last {errors[-1]:.4f}")
    print(f"wrote {args.out}")


def cmd_export(args):
    from tfrecog import export

    model, config, label = _load(args.name)
    meta = {"model_name": label, "dataset": config.get("dataset")}
    if not Path(args.name).exists():
        from tfrecog import zoo

        meta["zoo_version"] = zoo.info(args.name)["version"]
    path = export.export_model(model, args.out, args.format, kind=args.kind, metadata=meta,
                               outputs=None if args.kind == "decoder" else args.outputs)
    print(f"wrote {path}")


def cmd_zoo(args):
    if args.action == "list":  # from the cards alone: no TensorFlow
        summaries = [cards.summary(card) for card in cards.read_cards().values()]
        print(json.dumps(summaries, indent=2) if args.json else cards.table(summaries))
        return
    if args.action == "show":
        print(json.dumps(cards.find(_need_name(args)), indent=2))
        return
    from tfrecog import zoo

    if args.action == "verify":
        report = zoo.verify(_need_name(args), metrics=args.metrics, data_dir=args.data_dir)
        print(report)
    elif args.action == "reproduce":
        zoo.reproduce(_need_name(args), run_dir=args.run, data_dir=args.data_dir, max_seconds=args.max_seconds)


def cmd_compare(args):
    from tfrecog import evaluate, training

    (model_a, config_a, a), (model_b, config_b, b) = _load(args.a), _load(args.b)
    same = ("dataset", "binarize")
    if any(config_a.get(k) != config_b.get(k) for k in same):
        raise ValueError(f"{a} and {b} must be trained on the same data to be compared; got "
                         f"{ {k: config_a.get(k) for k in same} } and { {k: config_b.get(k) for k in same} }")
    split = args.split or config_a["test_split"]
    x = training.evaluation_data(config_a, split, data_dir=args.data_dir, limit=args.limit, seed=args.seed)
    results = [evaluate.log_likelihood(m, x, samples=args.samples, batch_size=args.batch_size, seed=args.seed)
               for m in (model_a, model_b)]  # the same examples, binarization and seed for both
    for name, result in zip((a, b), results, strict=True):
        print(f"{name}: {result}")
    mean, stderr = evaluate.paired_difference(*results)
    print(f"{a} - {b}: {mean:.2f} +- {stderr:.2f} nats per example "
          f"(paired, K={args.samples}, {config_a['dataset']} {split}, n={len(x)})")


def cmd_plot_embedding(args):
    from tfrecog import data as data_lib
    from tfrecog import plots, training

    model, config, label = _load(args.run)
    split = args.split or config["test_split"]
    x = training.evaluation_data(config, split, data_dir=args.data_dir, limit=args.limit)
    labels = data_lib.load(config["dataset"], split, data_dir=args.data_dir, binarize=config.get("binarize")).y
    labels = None if labels is None else labels[: len(x)]
    out = Path(args.out or (Path(args.run) / "embedding.png" if Path(args.run).exists() else "embedding.png"))
    plots.latent_embedding(model, x, labels, out, title=f"{Path(label).name}: {split} posterior means E[z|x]")
    print(f"wrote {out}")


def cmd_diagnose(args):
    import shlex

    import numpy as np

    from tfrecog import diagnostics, io, training

    estimators = [name.strip() for name in args.estimators.split(",")] if args.estimators else None
    unknown = [name for name in estimators or [] if name not in diagnostics.ESTIMATORS]
    if unknown:
        raise UsageError(f"unknown estimator(s) {', '.join(unknown)}: expected names from "
                         f"{', '.join(diagnostics.ESTIMATORS)}")
    model, config, label = _load(args.run)
    try:
        diagnostics.check_model(model)
    except ValueError as err:
        raise UsageError(str(err)) from None
    split = args.split or config["test_split"]
    x = training.evaluation_data(config, split, data_dir=args.data_dir)
    rows = np.sort(np.random.default_rng(args.seed).permutation(len(x))[: args.batch])  # one fixed minibatch
    report = diagnostics.nvil_variance_report(model, x[rows], estimators, repeats=args.repeats, samples=args.samples)
    print(f"{label}: recognition-gradient variance on {len(rows)} {split} examples, R={args.repeats}")
    print(diagnostics.format_report(report))
    options = [("--estimators", args.estimators), ("--repeats", args.repeats), ("--samples", args.samples),
               ("--batch", args.batch), ("--split", args.split), ("--seed", args.seed), ("--out", args.out),
               ("--plot", args.plot)]
    command = " ".join(["tfrecog diagnose", shlex.quote(args.run)]
                       + [f"{flag} {shlex.quote(str(value))}" for flag, value in options if value is not None])
    if args.out:
        io.write_json(args.out, {"command": command, "model": label, "split": split, **report})
        print(f"wrote {args.out}")
    if args.plot:
        diagnostics.plot_report(report, args.plot)
        print(f"wrote {args.plot}")


def _need_name(args):
    if not args.name:
        raise UsageError(f"`tfrecog zoo {args.action}` needs a model NAME (see `tfrecog zoo list`)")
    return args.name


def _missing(text: str):
    """--missing: ('mar', fraction in (0, 1)) or ('square', size >= 1)."""
    kind, _, value = text.partition(":")
    try:
        if kind == "mar":
            fraction = float(value or 0.6)
            if 0.0 < fraction < 1.0:
                return kind, fraction
        elif kind == "square":
            size = int(value or 14)
            if 1 <= size <= 10**4:
                return kind, size
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected mar:FRACTION (0 < FRACTION < 1) or square:SIZE (1 <= SIZE <= 10000); "
                                     f"got {text!r}")


def _dataset(name: str) -> str:
    if name not in data.available():
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r}: expected one of {', '.join(data.available())}")
    return name


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (no usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_COUNT = {name: arg_integer(1, LIMITS[name], name) for name in ("samples", "batch_size", "limit", "epochs", "steps",
                                                                "num")}
_SIZE = arg_integer(1, LIMITS["size"], "size")
_SEED = arg_integer(0, LIMITS["seed"], "seed")
_SECONDS = arg_number(0.0, LIMITS["seconds"], what="seconds")
_RATE = arg_number(0.0, 10.0, what="learning rate")


_VERBOSE_HELP = "show TensorFlow's start-up and C++ logs (hidden by default; or set TF_CPP_MIN_LOG_LEVEL)"


def build_parser():
    parser = _Parser(prog="tfrecog", description="Recognition models for deep directed generative models.")
    parser.add_argument("--version", action="version", version=f"tfrecog {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (or TFRECOG_DEBUG=1)")
    parser.add_argument("--verbose", action="store_true", help=_VERBOSE_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error (or TFRECOG_DEBUG=1)")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, **kwargs):
        return sub.add_parser(name, parents=[common] if name == "train" else [common, verbose], **kwargs)

    p = add("train", help="train a model into a run folder (resumes an existing one)")
    p.add_argument("family", nargs="?", choices=FAMILY_NAMES, help="the model family (or give --recipe)")
    p.add_argument("--recipe", metavar="FILE_OR_NAME",
                   help="train a recipe file (the config.json schema; zoo/recipes/NAME.json, recipes/NAME.json) or a "
                        "zoo or experiment name; only --run, --data-dir, --epochs, --max-seconds, --verbose apply")
    p.add_argument("--dataset", type=_dataset,
                   help=f"one of {', '.join(data.available())} (default {TRAIN_DEFAULTS['dataset']})")
    p.add_argument("--run", help="run folder (default runs/FAMILY-DATASET-TIME); an existing one is resumed with its "
                   "saved recipe: options that differ from it are refused, with the difference")
    p.add_argument("--new-run", dest="new_run", action="store_true",
                   help="start a new run even where --run holds one: the existing folder is kept and the new run "
                        "goes to RUN-2 (the first free RUN-N)")
    p.add_argument("--data-dir", help="folder with the dataset files (default $TFRECOG_DATA_DIR)")
    p.add_argument("--epochs", type=_COUNT["epochs"])
    p.add_argument("--max-seconds", type=_SECONDS, help="stop (with a checkpoint) after this many seconds")
    p.add_argument("--batch-size", type=_COUNT["batch_size"], help=f"default {TRAIN_DEFAULTS['batch_size']}")
    p.add_argument("--lr", type=_RATE, help=f"learning rate (default {TRAIN_DEFAULTS['lr']:g})")
    p.add_argument("--optimizer", help=f"a Keras optimizer name (default {TRAIN_DEFAULTS['optimizer']})")
    p.add_argument("--ema", type=arg_number(0.0, 1.0, open_high=True, what="--ema (a momentum, e.g. 0.999)"),
                   default=None, metavar="MOMENTUM",
                   help="Polyak averaging of the weights (e.g. 0.999): validation, checkpoints and the saved model "
                        "use the moving average")
    p.add_argument("--baseline-lr", dest="baseline_lr", type=_RATE, help="NVIL baseline network learning rate")
    p.add_argument("--latent-size", dest="latent_size", type=_SIZE)
    p.add_argument("--hidden", type=_SIZE, nargs="+", help="hidden layer widths")
    p.add_argument("--activation")
    p.add_argument("--likelihood")
    p.add_argument("--estimator", help=", ".join(ESTIMATOR_NAMES))
    p.add_argument("--samples", type=arg_integer(1, 10**4, "samples"),
                   help="samples per datapoint in the objective (L, or K for iwae)")
    p.add_argument("--weight-prior-scale", dest="weight_prior_scale", type=arg_number(0.0, 1e6, what="scale"))
    p.add_argument("--train-split", help="training split (default train; e.g. train+valid: the 60,000 digits of "
                   "binarized_mnist)")
    p.add_argument("--valid-split", help="validation split for the best checkpoint (default valid where the dataset "
                   "has one); 'none': no validation, the best checkpoint is the last")
    p.add_argument("--select-by", dest="select_by", metavar="METRIC",
                   help="validation metric (higher is better) that picks the best checkpoint: elbo (default), or "
                        "another the model logs, e.g. iwae_bound for --estimator iwae")
    p.add_argument("--binarize", choices=["static", "dynamic", "threshold"])
    p.add_argument("--seed", type=_SEED, help=f"default {TRAIN_DEFAULTS['seed']}")
    p.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"], default="default",
                   help="tf.distribute strategy: one device (default), every local device (mirrored; with one local "
                        "device, the one-device path), or the cluster of TF_CONFIG (multi-worker: the same command on "
                        "every machine; docs/scaling.md)")
    p.add_argument("--set", action="append", help="any model argument as key=JSON, e.g. --set hidden_sizes=[500]")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], nargs="?", const=1, default=argparse.SUPPRESS,
                   metavar="LEVEL", help="Keras's progress display (0 silent, 1 bar, 2 a line per epoch; default 1); "
                   "LEVEL 1 or 2 also shows TensorFlow's start-up and C++ logs (put it after FAMILY: "
                   "`train vae --verbose`)")
    p.set_defaults(func=cmd_train)

    p = add("evaluate", help="test log-likelihood of a run or zoo model: importance sampling or AIS")
    p.add_argument("run", help="run folder or zoo name (a zoo model is scored on its recipe's test split)")
    p.add_argument("--method", choices=("is", "ais", "bdmc", "gaps"), default="is",
                   help="is: importance sampling with q; ais: annealed importance sampling; bdmc: AIS "
                        "bounds on --limit examples simulated from the model; gaps: approximation/amortisation gaps")
    p.add_argument("--steps", type=arg_integer(1, LIMITS["steps"], "steps"), default=1000,
                   help="AIS temperatures (ais, bdmc, gaps)")
    p.add_argument("--chains", type=arg_integer(1, 10**4, "chains"), default=16,
                   help="AIS chains per example (ais, bdmc, gaps)")
    p.add_argument("--transition", choices=("gibbs", "metropolis"),
                   help="AIS transition for binary latents (SBN, fDARN): one Gibbs sweep or 10 Metropolis flips "
                        "per temperature (default: gibbs); Gaussian latents always use HMC")
    p.add_argument("--samples", type=_COUNT["samples"], default=5000)
    p.add_argument("--split")
    p.add_argument("--batch-size", type=_COUNT["batch_size"], default=100)
    p.add_argument("--limit", type=_COUNT["limit"], help="evaluate only the first N examples")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"], default="default",
                   help="share the batches over every local device (mirrored) or the cluster of TF_CONFIG "
                        "(multi-worker; docs/scaling.md)")
    p.set_defaults(func=cmd_evaluate)

    p = add("sample", help="write a grid of samples from a run or zoo model")
    p.add_argument("run", help="run folder or zoo name")
    p.add_argument("--num", type=_COUNT["num"], default=100)
    p.add_argument("--out")
    p.add_argument("--seed", type=_SEED, default=0)
    p.set_defaults(func=cmd_sample)

    p = add("quickstart", help="train a small VAE on the embedded MNIST subset, evaluate, plot, export")
    p.add_argument("--out", default="quickstart_out")
    p.add_argument("--seconds", type=_SECONDS, default=120.0, help="training budget")
    p.add_argument("--samples", type=_COUNT["samples"], default=1000,
                   help="K for the importance-sampled log-likelihood")
    p.set_defaults(func=cmd_quickstart)

    p = add("impute", help="fill in missing pixels with the recognition/generative Markov chain")
    p.add_argument("run", help="run folder or zoo name")
    p.add_argument("--missing", default="mar:0.6", type=_missing, help="mar:FRACTION or square:SIZE")
    p.add_argument("--steps", type=arg_integer(0, LIMITS["steps"], "steps"), default=100)
    p.add_argument("--num", type=_COUNT["num"], default=10)
    p.add_argument("--out", default="impute.png")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=_SEED, default=0)
    p.set_defaults(func=cmd_impute)

    p = add("export", help="export an encoder (or decoder) as ONNX or SavedModel")
    p.add_argument("name", help="run folder or zoo name")
    p.add_argument("--format", choices=["onnx", "saved_model"], default="onnx")
    p.add_argument("--kind", choices=["encoder", "decoder"], default="encoder")
    p.add_argument("--outputs", choices=["mean", "parameters", "sample", "all"], default="all",
                   help="encoder: mean (posterior means alone, no noise input), parameters (every posterior "
                        "parameter), sample (the noise-driven sample alone) or all (default)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = add("zoo", help="pretrained models: list, show, verify, reproduce")
    p.add_argument("action", choices=["list", "show", "verify", "reproduce"])
    p.add_argument("name", nargs="?")
    p.add_argument("--metrics", action="store_true", help="verify: also re-evaluate the card's recorded check")
    p.add_argument("--json", action="store_true", help="list: the cards' summary as JSON")
    p.add_argument("--run", help="reproduce: run folder")
    p.add_argument("--max-seconds", type=_SECONDS)
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_zoo)

    p = add("compare", help="paired difference of two models' log-likelihoods on the same examples")
    p.add_argument("a", help="run folder or zoo name")
    p.add_argument("b", help="run folder or zoo name (trained on the same dataset)")
    p.add_argument("--samples", type=_COUNT["samples"], default=1000, help="K, importance samples per example")
    p.add_argument("--split", help="default: the recipe's test split")
    p.add_argument("--limit", type=_COUNT["limit"], help="compare on the first N examples only")
    p.add_argument("--batch-size", type=_COUNT["batch_size"], default=100)
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=_SEED, default=0)
    p.set_defaults(func=cmd_compare)

    p = add("plot-embedding", help="posterior means of a split coloured by label (2-D, or top 2 PCs)")
    p.add_argument("run", help="run folder or zoo name")
    p.add_argument("--out", help="figure path (default RUN/embedding.png, or embedding.png for a zoo name)")
    p.add_argument("--split", help="default: the recipe's test split")
    p.add_argument("--limit", type=_COUNT["limit"], help="only the first N examples")
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_plot_embedding)

    p = add("diagnose", help="variance of the recognition-gradient estimators of an SBN/fDARN")
    p.add_argument("run", help="run folder or zoo name of an NVIL-trained SBN or fDARN")
    p.add_argument("--estimators", help="comma-separated names from tfrecog.diagnostics.ESTIMATORS (default: the "
                   "NVIL ablation reinforce,reinforce+local,reinforce+local+baselines,nvil)")
    p.add_argument("--repeats", type=arg_integer(2, 10**5, "repeats"), default=200,
                   help="R, independent estimates per estimator")
    p.add_argument("--samples", type=arg_integer(2, 10**4, "samples"), default=5,
                   help="K of the multi-sample estimators (vimco, rws)")
    p.add_argument("--plot", help="also draw the report (variance and per-layer SNR) as a PNG here")
    p.add_argument("--batch", type=_COUNT["batch_size"], default=100, help="examples in the fixed minibatch")
    p.add_argument("--split", help="default: the recipe's test split")
    p.add_argument("--out", help="also write the report as JSON here")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=_SEED, default=0, help="picks the minibatch")
    p.set_defaults(func=cmd_diagnose)
    return parser


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _show_warning(original):
    """tfrecog's own warnings (a damaged checkpoint skipped) in one line; others as Python shows them."""
    from tfrecog.checkpoints import CheckpointWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CheckpointWarning):
            print(f"tfrecog: warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    return show


# Failures a user can act on (a missing or damaged file, an unwritable destination, data that does not fit);
# anything else is a bug: one line too, with how to see the traceback.
_FAILURES = (ValueError, OSError, FloatingPointError, EOFError)


def _show_tensorflow_logs(args) -> bool:
    verbose = getattr(args, "verbose", False)
    return verbose is True or (isinstance(verbose, int) and verbose >= 1)


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Read by tfrecog._tf before TensorFlow loads; a value the user set is kept. Quiet: C++ errors that matter also
    # raise a Python exception, which is shown in one line.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _show_tensorflow_logs(args) else "3")
    debug = getattr(args, "debug", False) or os.environ.get("TFRECOG_DEBUG", "") not in ("", "0")
    where = f"tfrecog {args.command}"
    original = warnings.showwarning
    warnings.showwarning = _show_warning(original)
    try:
        args.func(args)
    except BrokenPipeError:  # `tfrecog zoo list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{where}: interrupted (Ctrl-C); files already written are complete, nothing half-written is kept",
              file=sys.stderr)
        return 130
    except UsageError as err:
        if debug:
            raise
        print(f"{where}: error: {_one_line(err)} (see `{where} --help`)", file=sys.stderr)
        return 2
    except _FAILURES as err:
        if debug:
            raise
        print(f"{where}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - a bug, still one line; --debug shows where
        if debug:
            raise
        print(f"{where}: internal error: {type(err).__name__}: {_one_line(err)} (run again with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = original
    return 0


if __name__ == "__main__":
    sys.exit(main())
