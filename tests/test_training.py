import json

import numpy as np
import pytest

from tfrecog import io, training


def tiny_config(**overrides):
    settings = {"model": {"latent_size": 2, "hidden_sizes": [16]}, "epochs": 2, **overrides}
    return training.default_config("vae", "mnist5k", **settings)


def test_run_folder_layout_and_resume(tmp_path):
    run = tmp_path / "run"
    model, state = training.train(tiny_config(), run, verbose=0)
    assert state["epoch"] == 2
    for name in ("config.json", "history.csv", "checkpoints/last.weights.h5", "checkpoints/state.json", "logs"):
        assert (run / name).exists(), name
    config = io.read_json(run / "config.json")
    assert config["model"]["event_size"] == 784 and config["family"] == "vae"
    updates = int(model.optimizer.iterations.numpy())
    # Resuming continues from the checkpoint: epochs 3-4 only, optimizer state restored.
    model, state = training.train(None, run, epochs=4, verbose=0)
    assert state["epoch"] == 4 and int(model.optimizer.iterations.numpy()) == 2 * updates
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    # Asking for no more epochs than done is a no-op that still returns the model.
    _, state = training.train(None, run, epochs=3, verbose=0)
    assert state["epoch"] == 4


def test_resume_refuses_a_different_recipe(tmp_path):
    run = tmp_path / "run"
    training.train(tiny_config(), run, verbose=0)
    with pytest.raises(training.RunError, match="different recipe"):
        training.train(tiny_config(batch_size=50), run, verbose=0)


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(epochs=1000, checkpoint_every_seconds=0)
    # A time budget stops training mid-way (as a killed session would), leaving a checkpoint behind.
    _, state = training.train(config, run, verbose=0, max_seconds=3)
    assert 0 < state["epoch"] < 1000
    saved = io.read_json(run / "checkpoints" / "state.json")
    assert saved["epoch"] == state["epoch"] and saved["wall_seconds"] > 0
    # Rows logged after the last checkpoint (a killed process) are dropped on resume, so epochs never repeat.
    with open(run / "history.csv", "a") as f:
        f.write(f"{saved['epoch']},1,1,1,1\n")
    _, state2 = training.train(None, run, verbose=0, max_seconds=2)
    assert state2["epoch"] > saved["epoch"] and state2["wall_seconds"] > saved["wall_seconds"]
    epochs = [int(r.split(",")[0]) for r in (run / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(state2["epoch"]))


def test_best_checkpoint_tracks_validation(tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(valid_split="test")
    training.train(config, run, verbose=0)
    state = io.read_json(run / "checkpoints" / "state.json")
    assert "best_val_elbo" in state and (run / "checkpoints" / "best.weights.h5").exists()
    model, loaded_config = training.load_run(run)
    assert loaded_config["dataset"] == "mnist5k"
    result = training.evaluate_run(run, samples=5, limit=50, progress=False)
    assert np.isfinite(result.log_likelihood)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_K5_n50"]["num_examples"] == 50


def test_missing_run_folder(tmp_path):
    with pytest.raises(training.RunError, match="config.json"):
        training.load_run(tmp_path / "nope")
    with pytest.raises(training.RunError, match="no config.json"):
        training.train(None, tmp_path / "nope")
    with pytest.raises(training.RunError, match="unknown model family"):
        training.default_config("gan")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "state.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_divergence_stops_training_and_keeps_the_last_finite_checkpoint(tmp_path):
    run = tmp_path / "run"
    model, state = training.train(tiny_config(), run, verbose=0)
    saved = (run / "checkpoints" / "last.weights.h5").read_bytes()
    callback = training.RunCheckpoint(run, dict(state), every_seconds=0)
    callback.set_model(model)
    callback.on_epoch_end(2, {"loss": float("nan"), "val_elbo": float("nan")})
    callback.on_train_end()
    assert model.stop_training
    assert (run / "checkpoints" / "last.weights.h5").read_bytes() == saved  # not overwritten by NaN weights
    assert io.read_json(run / "checkpoints" / "state.json")["diverged_at_epoch"] == 3
