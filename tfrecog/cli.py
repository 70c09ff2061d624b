"""The `tfrecog` command: a thin layer over the library's functions.

A user error prints one line on stderr: exit status 2 for a usage error (a bad argument), 1 for a failure (a missing
or damaged file, an unwritable destination); `--debug` or TFRECOG_DEBUG=1 shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from tfrecog.checks import LIMITS, arg_integer, arg_number

_START = time.time()  # the quick start reports its total time from here, TensorFlow's import included


class UsageError(ValueError):
    """A command-line argument is wrong (exit status 2); the message says what was expected."""


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


def cmd_train(args):
    from tfrecog import training

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(args.run) if args.run else Path("runs") / f"{args.family}-{args.dataset}-{stamp}"
    if (run / "config.json").exists():
        print(f"resuming {run}")
        training.train(None, run, data_dir=args.data_dir, epochs=args.epochs, max_seconds=args.max_seconds,
                       verbose=args.verbose)
    else:
        model = _parse_set(args.set)
        for flag, key in [("latent_size", "latent_size"), ("hidden", "hidden_sizes"), ("activation", "activation"),
                          ("estimator", "estimator"), ("samples", "num_samples"),
                          ("weight_prior_scale", "weight_prior_scale"), ("likelihood", "likelihood")]:
            if getattr(args, flag) is not None:
                model[key] = getattr(args, flag)
        overrides = {"model": model, "seed": args.seed, "batch_size": args.batch_size,
                     "optimizer": {"class_name": args.optimizer, "config": {"learning_rate": args.lr}}}
        if args.ema is not None:
            overrides["optimizer"]["config"].update(use_ema=True, ema_momentum=args.ema)
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.binarize is not None:
            overrides["binarize"] = args.binarize
        if args.train_split is not None:
            overrides["train_split"] = args.train_split
        if args.valid_split is not None:
            overrides["valid_split"] = None if args.valid_split == "none" else args.valid_split
        if args.select_by is not None:
            overrides["select_by"] = args.select_by
        if args.baseline_lr is not None:
            if args.family not in ("sbn", "fdarn"):
                raise UsageError("--baseline-lr applies to NVIL-trained families (sbn, fdarn) only")
            overrides["baseline_optimizer"] = {"class_name": "Adam", "config": {"learning_rate": args.baseline_lr}}
        config = training.default_config(args.family, args.dataset, **overrides)
        training.train(config, run, data_dir=args.data_dir, max_seconds=args.max_seconds, verbose=args.verbose)
    from tfrecog import plots

    plots.learning_curves(run / "history.csv", run / "curves.png")
    print(f"run folder: {run}")


def _load(name_or_run):
    """A model from a run folder or a zoo name; returns (model, config, label)."""
    from tfrecog import training

    model, config = training.load(name_or_run)
    return model, config, str(name_or_run)


def cmd_evaluate(args):
    from tfrecog import training

    path = Path(args.run)
    if not path.exists():
        raise FileNotFoundError(f"run folder {path} does not exist: expected a folder made by `tfrecog train`")
    result = training.evaluate_run(path, samples=args.samples, split=args.split, data_dir=args.data_dir,
                                   batch_size=args.batch_size, limit=args.limit, seed=args.seed)
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
    from tfrecog import data as data_lib
    from tfrecog import plots
    from tfrecog.impute import imputation_error, impute, missing_at_random, missing_square, plot_imputation

    model, config, label = _load(args.run)

    split = data_lib.load(config["dataset"], config.get("test_split", "test"), data_dir=args.data_dir,
                          binarize=config.get("binarize"))
    x = split.x[: args.num]
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
    path = export.export_model(model, args.out, args.format, kind=args.kind, metadata=meta)
    print(f"wrote {path}")


def cmd_zoo(args):
    from tfrecog import zoo

    if args.action == "list":
        for card in zoo.list(details=True):
            metric = card.get("metrics", {}).get("test_log_likelihood")
            value = f"{metric['value']:.2f} nats (K={metric['samples']})" if metric else "not yet evaluated"
            print(f"{card['name']:28s} {card['family']:6s} {card['dataset']['name']:16s} {value}")
    elif args.action == "show":
        print(json.dumps(zoo.info(_need_name(args)), indent=2))
    elif args.action == "verify":
        report = zoo.verify(_need_name(args), metrics=args.metrics, data_dir=args.data_dir)
        print(report)
    elif args.action == "reproduce":
        zoo.reproduce(_need_name(args), run_dir=args.run, data_dir=args.data_dir, max_seconds=args.max_seconds)


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
    from tfrecog import data

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


def build_parser():
    parser = _Parser(prog="tfrecog", description="Recognition models for deep directed generative models.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (or TFRECOG_DEBUG=1)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error (or TFRECOG_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    p = add("train", help="train a model into a run folder (resumes an existing one)")
    p.add_argument("family", choices=["vae", "sbn", "fdarn", "dlgm"])
    p.add_argument("--dataset", default="mnist5k", type=_dataset)
    p.add_argument("--run", help="run folder (default runs/FAMILY-DATASET-TIME); an existing one is resumed")
    p.add_argument("--data-dir", help="folder with the dataset files (default $TFRECOG_DATA_DIR)")
    p.add_argument("--epochs", type=_COUNT["epochs"])
    p.add_argument("--max-seconds", type=_SECONDS, help="stop (with a checkpoint) after this many seconds")
    p.add_argument("--batch-size", type=_COUNT["batch_size"], default=100)
    p.add_argument("--lr", type=_RATE, default=1e-3)
    p.add_argument("--optimizer", default="Adam")
    p.add_argument("--ema", type=arg_number(0.0, 1.0, open_high=True, what="--ema (a momentum, e.g. 0.999)"),
                   default=None, metavar="MOMENTUM",
                   help="Polyak averaging of the weights (e.g. 0.999): validation, checkpoints and the saved model "
                        "use the moving average")
    p.add_argument("--baseline-lr", dest="baseline_lr", type=_RATE, help="NVIL baseline network learning rate")
    p.add_argument("--latent-size", dest="latent_size", type=_SIZE)
    p.add_argument("--hidden", type=_SIZE, nargs="+", help="hidden layer widths")
    p.add_argument("--activation")
    p.add_argument("--likelihood")
    p.add_argument("--estimator", help="sgvb_b, sgvb_a, iwae, wake_sleep, nvil")
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
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--set", action="append", help="any model argument as key=JSON, e.g. --set hidden_sizes=[500]")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    p.set_defaults(func=cmd_train)

    p = add("evaluate", help="importance-sampled test log-likelihood of a run")
    p.add_argument("run")
    p.add_argument("--samples", type=_COUNT["samples"], default=5000)
    p.add_argument("--split")
    p.add_argument("--batch-size", type=_COUNT["batch_size"], default=100)
    p.add_argument("--limit", type=_COUNT["limit"], help="evaluate only the first N examples")
    p.add_argument("--data-dir")
    p.add_argument("--seed", type=_SEED, default=0)
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
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = add("zoo", help="pretrained models: list, show, verify, reproduce")
    p.add_argument("action", choices=["list", "show", "verify", "reproduce"])
    p.add_argument("name", nargs="?")
    p.add_argument("--metrics", action="store_true", help="verify: also re-evaluate the card's recorded check")
    p.add_argument("--run", help="reproduce: run folder")
    p.add_argument("--max-seconds", type=_SECONDS)
    p.add_argument("--data-dir")
    p.set_defaults(func=cmd_zoo)
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


def main(argv=None):
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TFRECOG_DEBUG", "") not in ("", "0")
    where = f"tfrecog {args.command}"
    original = warnings.showwarning
    warnings.showwarning = _show_warning(original)
    try:
        args.func(args)
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
