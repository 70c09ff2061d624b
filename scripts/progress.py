"""Snapshots of long zoo runs in the repository, so that a lost machine costs only the last stretch of training.
Maintainers' tool.

  python scripts/progress.py save NAME [NAME ...] [--runs ../runs] [--min-gain 0.2]
  python scripts/progress.py restore NAME [--runs ../runs]
  python scripts/progress.py list
  python scripts/progress.py evaluate NAME [--samples 5000] [--data-dir ../shared/data]
  python scripts/progress.py from-zoo NAME [--runs ../runs]
  python scripts/progress.py anneal SOURCE_RUN NEW_RUN --learning-rate LR [--estimator E --num-samples K
                                    --select-by METRIC]

`from-zoo` starts ../runs/NAME from a published zoo card's weights at its best epoch (the card's recipe, its training
state; no history), so that `scripts/train_zoo.sh NAME --epochs E` trains the card on past the epochs it was
published at; `scripts/publish_zoo.py ../runs/NAME NAME --version V` then replaces the card when it is better.

`anneal` starts the run folder NEW_RUN from SOURCE_RUN's best checkpoint with the recipe's learning rate set to LR
(Adam's moments start again from zero; history up to the best epoch kept; everything else in the recipe unchanged,
unless --estimator, --num-samples or --select-by change those too), for the stretch that ends a schedule:
`tfrecog train --recipe NEW_RUN/config.json --run NEW_RUN --epochs E` trains it; the card's recipe then records the
schedule as `stages` (docs/guide.md, "Schedules"), which `tfrecog train --recipe` replays.

`save` writes progress/NAME/ from the run folder ../runs/NAME: its recipe (config.json), its best weights without
optimizer state (best.weights.h5, with its sha256 in state.json), the checkpoint's state at the best epoch and the
history up to it (a run without validation data: its last weights). It does nothing unless the best validation
value has risen by more than --min-gain (without validation: the run has gone on) since the snapshot already there.
Commit progress/ afterwards.

`evaluate` scores a snapshot's weights by importance sampling on the recipe's whole test split (K samples per
example, seed 0, as `tfrecog evaluate`) and writes progress/NAME/metrics.json, tied to the weights by their sha256:
the record of a model that is not (yet) a zoo card, e.g. a cell of docs/nvil-tables.md still short of its paper.
`save` removes it when new weights replace the snapshot.

`restore` (what scripts/train_zoo.sh does when ../runs/NAME does not exist and progress/NAME does) starts the run
folder again from the snapshot, at its best epoch (tfrecog.training.seed_run: Adam's moments start from zero);
`scripts/train_zoo.sh NAME` then trains on. A snapshot whose weights do not match their sha256 is refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = ROOT / "progress"


def _best_key(state: dict) -> str | None:
    from tfrecog import training

    try:
        return training.best_key(state)
    except training.RunError as err:
        raise SystemExit(str(err)) from None


def _describe(state: dict) -> str:
    key = _best_key(state)
    return f"epoch {state['epoch']}" + ("" if key is None else f", {key} {state[key]:.3f}")


def save(name: str, runs: Path, min_gain: float, progress: Path = PROGRESS) -> bool:
    from tfrecog import io, training

    run = runs / name
    state = training.run_state(run)
    key = _best_key(state)
    target = progress / name
    if (target / "state.json").exists():
        old = json.loads((target / "state.json").read_text())
        better = (state["epoch"] > old["epoch"] if key is None
                  else state[key] > old.get(key, -float("inf")) + min_gain)
        if not better:
            print(f"{name}: the run is at {_describe(state)}; the snapshot holds {_describe(old)}: kept")
            return False
    model, config = training.load_run(run, "best" if key is not None else "last")
    compact = training.build_model(config, model.event_size)
    compact.build((None, model.event_size))
    compact.set_weights(model.get_weights())
    target.mkdir(parents=True, exist_ok=True)
    io.save_weights(compact, target / "best.weights.h5")
    snapshot = {**training.state_at_best(state, key),
                **({"trained_by": state["trained_by"]} if "trained_by" in state else {}),
                "trained_epochs_when_saved": state["epoch"],
                "sha256": io.sha256(target / "best.weights.h5"), "source": str(run)}
    rows = training.history_before(run, snapshot["epoch"])
    with io.atomic_path(target / "history.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
    io.write_json(target / "config.json", config)
    io.write_json(target / "state.json", snapshot)
    (target / "metrics.json").unlink(missing_ok=True)  # it scored the weights just replaced
    print(f"{name}: saved {_describe(snapshot)} (trained to epoch {state['epoch']}) to {target}")
    return True


def restore(name: str, runs: Path, progress: Path = PROGRESS):
    from tfrecog import io, training

    source = progress / name
    state = json.loads((source / "state.json").read_text())
    weights = source / "best.weights.h5"
    if io.sha256(weights) != state["sha256"]:
        raise SystemExit(f"{weights}: sha256 differs from {source / 'state.json'}; not restored")
    config = json.loads((source / "config.json").read_text())
    with open(source / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    run = runs / name
    kept = {k: v for k, v in state.items() if k not in ("sha256", "source", "trained_epochs_when_saved")}
    kept["restored_from"] = f"progress/{name} (epoch {state['epoch']})"
    def assign(model):  # the file holds no optimizer state: load it into a plain model, then copy the values
        plain = training.build_model(config, model.event_size)
        plain.build((None, model.event_size))
        plain.load_weights(str(weights))
        model.set_weights(plain.get_weights())

    training.seed_run(run, config, assign, kept, history)
    print(f"{run}: restored from {source} at {_describe(state)}")


def from_zoo(name: str, runs: Path):
    from tfrecog import training, zoo

    card = zoo.info(name)
    trained = card["training"]
    config = zoo.recipe(name)
    config["model"] = {**config["model"], "event_size": card["config"]["event_size"]}
    best = trained.get("best_epoch", trained["epochs"])
    state = {"epoch": int(best), "updates": int(round(trained["updates"] * best / trained["epochs"])),
             "wall_seconds": float(trained.get("wall_seconds", 0.0)), "best_epoch": int(best),
             "restored_from": f"zoo card {name} (version {card.get('version', '1')}, epoch {best})"}
    if "best_val_elbo" in trained:
        state["best_val_elbo"] = float(trained["best_val_elbo"])

    def assign(model):
        model.set_weights(zoo.load(name, compile=False).get_weights())

    training.seed_run(runs / name, config, assign, state)
    print(f"{runs / name}: started from zoo card {name} at {_describe(state)}")


def evaluate(name: str, samples: int, data_dir=None, progress: Path = PROGRESS) -> dict:
    """Importance-sampled test log p(x) of the snapshot progress/NAME (all of the recipe's test split, K=`samples`,
    seed 0), written to progress/NAME/metrics.json with the weights' sha256 and epoch. Returns the record."""
    import tempfile

    from tfrecog import io, training

    source = progress / name
    state = json.loads((source / "state.json").read_text())
    with tempfile.TemporaryDirectory(prefix="tfrecog-progress-") as tmp:
        restore(name, Path(tmp), progress)  # checks the weights' sha256
        result = training.evaluate_run(Path(tmp) / name, samples=samples, data_dir=data_dir)
        entry = json.loads((Path(tmp) / name / "metrics.json").read_text())
    metrics = {
        "test_log_likelihood": {"value": result.log_likelihood, "stderr": result.stderr, "samples": samples,
                                "num_examples": result.num_examples, "split": entry[next(iter(entry))]["split"],
                                "seconds": entry[next(iter(entry))]["seconds"],
                                "command": f"python scripts/progress.py evaluate {name} --samples {samples}"},
        "test_elbo": {"value": result.elbo, "stderr": result.elbo_stderr, "samples_per_example": samples},
        "epoch": state["epoch"], "sha256": state["sha256"], "commit": io.git_commit(),
    }
    io.write_json(source / "metrics.json", metrics)
    print(f"{name}: {result}")
    return metrics


def anneal(source: Path, run: Path, learning_rate: float, estimator: str | None = None,
           num_samples: int | None = None, select_by: str | None = None):
    """Starts `run` from `source`'s best weights with the learning rate `learning_rate` (and optionally another
    estimator, its `num_samples` and the validation metric that picks the best epoch): `training.continue_run`
    with the source's recipe so changed (one stage of a schedule, as `tfrecog.recipes` describes)."""
    from tfrecog import training

    config = training.read_config(source / "config.json")
    old = config["optimizer"].get("config", {}).get("learning_rate")
    if not isinstance(old, (int, float)):
        raise SystemExit(f"{source}: expected a constant learning rate in the recipe's optimizer; got {old!r}")
    config["optimizer"] = {**config["optimizer"], "config": {**config["optimizer"]["config"],
                                                             "learning_rate": learning_rate}}
    changes = [f"learning rate {old} -> {learning_rate}"]
    if estimator is not None:
        changes.append(f"estimator {config['model'].get('estimator')} -> {estimator}")
        config["model"]["estimator"] = estimator
    if num_samples is not None:
        changes.append(f"num_samples {config['model'].get('num_samples', 1)} -> {num_samples}")
        config["model"]["num_samples"] = num_samples
    if select_by is not None and select_by != config.get("select_by", "elbo"):
        changes.append(f"select_by {config.get('select_by', 'elbo')} -> {select_by}")
        config["select_by"] = select_by
    kept = training.continue_run(source, run, config, note=", ".join(changes))
    print(f"{run}: started from {source} at epoch {kept['epoch']} ({'; '.join(changes)})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("save")
    p.add_argument("names", nargs="+")
    p.add_argument("--runs", default=str(ROOT.parent / "runs"))
    p.add_argument("--min-gain", type=float, default=0.2)
    p = sub.add_parser("restore")
    p.add_argument("name")
    p.add_argument("--runs", default=str(ROOT.parent / "runs"))
    sub.add_parser("list")
    p = sub.add_parser("from-zoo")
    p.add_argument("name")
    p.add_argument("--runs", default=str(ROOT.parent / "runs"))
    p = sub.add_parser("evaluate")
    p.add_argument("name")
    p.add_argument("--samples", type=int, default=5000)
    p.add_argument("--data-dir")
    p = sub.add_parser("anneal")
    p.add_argument("source", type=Path)
    p.add_argument("run", type=Path)
    p.add_argument("--learning-rate", type=float, required=True)
    p.add_argument("--estimator", help="train on with another estimator (e.g. rws, vimco)")
    p.add_argument("--num-samples", type=int, help="its samples per example")
    p.add_argument("--select-by", help="the validation metric that picks the best epoch (e.g. iwae_bound)")
    for p in sub.choices.values():
        p.add_argument("--progress", default=str(PROGRESS), help="the snapshots' folder (default: progress/)")
    args = parser.parse_args(argv)
    progress = Path(args.progress)
    if args.command == "save":
        for name in args.names:
            save(name, Path(args.runs), args.min_gain, progress)
    elif args.command == "restore":
        if (Path(args.runs) / args.name / "config.json").exists():
            raise SystemExit(f"{Path(args.runs) / args.name} exists: nothing to restore")
        restore(args.name, Path(args.runs), progress)
    elif args.command == "from-zoo":
        if (Path(args.runs) / args.name / "config.json").exists():
            raise SystemExit(f"{Path(args.runs) / args.name} exists: nothing to start")
        from_zoo(args.name, Path(args.runs))
    elif args.command == "evaluate":
        evaluate(args.name, args.samples, args.data_dir, progress)
    elif args.command == "anneal":
        if (args.run / "config.json").exists():
            raise SystemExit(f"{args.run} exists: give a new run folder")
        anneal(args.source, args.run, args.learning_rate, args.estimator, args.num_samples, args.select_by)
    else:
        for folder in sorted(progress.glob("*/state.json")):
            state = json.loads(folder.read_text())
            print(f"{folder.parent.name}: {_describe(state)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
