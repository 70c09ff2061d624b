"""Run folders started from weights trained elsewhere (training.seed_run), the progress snapshots that carry a long
run across machines (scripts/progress.py), and scripts/gpu_sbn.py's weight mapping (JAX, where installed)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tfrecog import training

ROOT = Path(__file__).resolve().parent.parent


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_sbn(**overrides):
    # mnist5k has no validation split; its test split stands in for one, so that `best` is tracked
    settings = {"model": {"latent_sizes": [8, 4]}, "epochs": 2, "checkpoint_every_seconds": 0,
                "valid_split": "test", **overrides}
    return training.default_config("sbn", "mnist5k", **settings)


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_snapshot_restore_resume(tmp_path):
    progress = _script("progress")
    runs, snapshots = tmp_path / "runs", tmp_path / "progress"
    trained, _ = training.train(tiny_sbn(), runs / "sbn-tiny", verbose=0)
    state = training.run_state(runs / "sbn-tiny")
    assert progress.save("sbn-tiny", runs, 0.0, snapshots)
    snapshot = json.loads((snapshots / "sbn-tiny" / "state.json").read_text())
    assert snapshot["epoch"] == state["best_epoch"] and snapshot["best_val_elbo"] == state["best_val_elbo"]
    # Nothing new to save: the snapshot is kept unless the best value rose by the minimum gain.
    assert not progress.save("sbn-tiny", runs, 0.0, snapshots)

    # A new machine: the run folder is gone; restore starts it from the snapshot, at its best epoch.
    progress.restore("sbn-tiny", tmp_path / "new", snapshots)
    best, _ = training.load_run(runs / "sbn-tiny", "best")
    restored, _ = training.load_run(tmp_path / "new" / "sbn-tiny", "best")
    for a, b in zip(_weights(best), _weights(restored)):
        np.testing.assert_array_equal(a, b)  # NVIL's running statistics (non-trainable) included
    restored_state = training.run_state(tmp_path / "new" / "sbn-tiny")
    assert restored_state["epoch"] == snapshot["epoch"]
    assert restored_state["updates"] == snapshot["updates"] > 0
    # ... and training goes on from there with the recipe, one more epoch.
    model, state = training.train(None, tmp_path / "new" / "sbn-tiny", epochs=snapshot["epoch"] + 1, verbose=0)
    assert state["epoch"] == snapshot["epoch"] + 1
    assert int(model.optimizer.iterations.numpy()) == snapshot["updates"] + snapshot["updates"] // snapshot["epoch"]
    rows = (tmp_path / "new" / "sbn-tiny" / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + snapshot["epoch"] + 1


def test_restore_refuses_damaged_snapshot_and_existing_run(tmp_path):
    progress = _script("progress")
    runs, snapshots = tmp_path / "runs", tmp_path / "progress"
    training.train(tiny_sbn(epochs=1), runs / "sbn-tiny", verbose=0)
    progress.save("sbn-tiny", runs, 0.0, snapshots)
    with pytest.raises(training.RunError, match="already holds a run"):
        progress.restore("sbn-tiny", runs, snapshots)
    weights = snapshots / "sbn-tiny" / "best.weights.h5"
    weights.write_bytes(weights.read_bytes()[:-16] + bytes(16))
    with pytest.raises(SystemExit, match="sha256"):
        progress.restore("sbn-tiny", tmp_path / "new", snapshots)
    assert not (tmp_path / "new" / "sbn-tiny").exists()


def test_snapshot_of_a_run_without_validation(tmp_path):
    progress = _script("progress")
    runs, snapshots = tmp_path / "runs", tmp_path / "progress"
    training.train(tiny_sbn(valid_split=None, epochs=1), runs / "sbn-tiny", verbose=0)
    assert progress.save("sbn-tiny", runs, 0.2, snapshots)
    assert not progress.save("sbn-tiny", runs, 0.2, snapshots)  # no further epoch
    training.train(None, runs / "sbn-tiny", epochs=2, verbose=0)
    assert progress.save("sbn-tiny", runs, 0.2, snapshots)
    progress.restore("sbn-tiny", tmp_path / "new", snapshots)
    assert training.run_state(tmp_path / "new" / "sbn-tiny")["epoch"] == 2


def test_seed_run_checks_state(tmp_path):
    config = tiny_sbn()
    config["model"]["event_size"] = 784
    with pytest.raises(training.RunError, match="updates"):
        training.seed_run(tmp_path / "run", config, lambda model: None, {"epoch": 1})
    assert not (tmp_path / "run").exists()


def test_gpu_weights_round_trip(tmp_path):
    """gpu_sbn's `export` names every trainable variable as `import` expects it: a run's best weights exported
    and imported again give the same model."""
    gpu = _script("gpu_sbn")
    config = tiny_sbn(model={"latent_sizes": [8, 4], "estimator": "vimco", "num_samples": 3}, epochs=1,
                      select_by="iwae_bound")
    training.train(config, tmp_path / "run", verbose=0)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(config))
    gpu.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "gpu")])
    meta = json.loads((tmp_path / "gpu" / "meta.json").read_text())
    assert meta["samples"] == 3 and meta["layers"] == [8, 4]
    meta.update(best_bounds=[meta["best_val_iwae_bound"]], device="cpu", jax="-", optax="-")  # what `train` adds
    (tmp_path / "gpu" / "meta.json").write_text(json.dumps(meta))
    gpu.main(["import", str(tmp_path / "gpu"), str(recipe), str(tmp_path / "back")])
    original, _ = training.load_run(tmp_path / "run", "best")
    back, _ = training.load_run(tmp_path / "back", "best")
    for a, b in zip(original.trainable_weights, back.trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
