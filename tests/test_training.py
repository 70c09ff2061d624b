import json

import numpy as np
import pytest

from tfrecog import checkpoints, io, loader, training
from tfrecog._tf import keras


def tiny_config(**overrides):
    settings = {"model": {"latent_size": 2, "hidden_sizes": [16]}, "epochs": 2, **overrides}
    return training.default_config("vae", "mnist5k", **settings)


def test_run_folder_layout_and_resume(tmp_path):
    run = tmp_path / "run"
    model, state = training.train(tiny_config(), run, verbose=0)
    assert state["epoch"] == 2
    for name in ("config.json", "history.csv", "checkpoints/ckpt-000001/last.weights.h5",
                 "checkpoints/ckpt-000001/state.json", "logs"):
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
    saved = training.run_state(run)
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
    state = training.run_state(run)
    assert "best_val_elbo" in state and checkpoints.latest(run / "checkpoints").best.exists()
    model, loaded_config = training.load_run(run)
    assert loaded_config["dataset"] == "mnist5k"
    result = training.evaluate_run(run, samples=5, limit=50, progress=False)
    assert np.isfinite(result.log_likelihood)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_K5_n50"]["num_examples"] == 50


def test_load_reads_a_run_folder_or_a_zoo_name(tmp_path):
    from tfrecog import zoo

    run = tmp_path / "run"
    trained, _ = training.train(tiny_config(epochs=1), run, verbose=0)
    model, config = loader.load(run)
    assert config == io.read_json(run / "config.json")
    x = np.zeros((2, 784), np.float32)
    np.testing.assert_array_equal(model(x).numpy(), trained(x).numpy())
    name = "dlgm-frey"  # the zoo's smallest card
    model, config = loader.load(name)
    assert config == zoo.info(name)["recipe"] and model.event_size == zoo.info(name)["config"]["event_size"]
    with pytest.raises(training.RunError, match="neither a run folder .* nor a zoo model: no zoo model named"):
        loader.load(tmp_path / "no-such-run")


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
    newest = checkpoints.latest(run / "checkpoints")
    saved = newest.last.read_bytes()
    callback = training.RunCheckpoint(run, dict(state), every_seconds=0, previous=newest)
    callback.set_model(model)
    with pytest.warns(RuntimeWarning, match="training loss is nan at epoch 3: stopped"):
        callback.on_epoch_end(2, {"loss": float("nan"), "val_elbo": float("nan")})
    callback.on_train_end()
    assert model.stop_training
    newest = checkpoints.latest(run / "checkpoints")
    assert newest.last.read_bytes() == saved  # not overwritten by NaN weights
    assert training.run_state(run)["diverged_at_epoch"] == 3


def _weights_and_averages(model):
    optimizer = model.optimizer
    return ([v.numpy() for v in optimizer._trainable_variables],
            [a.numpy() for a in optimizer._model_variables_moving_average])


def test_polyak_averaging_checkpoints_hold_the_average_and_resume_exactly(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(valid_split="test", optimizer={"class_name": "Adam", "config": {
        "learning_rate": 1e-3, "use_ema": True, "ema_momentum": 0.9}})
    model, state = training.train(config, run, verbose=0)
    in_memory = [v.numpy() for v in model.trainable_variables]
    # The checkpoint holds the average in the model and the training weights in the optimizer's slots ...
    saved, raw = _weights_and_averages(training.load_run(run, "last")[0])
    assert max(np.abs(a - b).max() for a, b in zip(saved, raw)) > 1e-4  # the average lags the weights
    # ... `fit` ends with the average in the model, as users load it (best = last here: validation improves) ...
    for a, b in zip(in_memory, saved):
        np.testing.assert_array_equal(a, b)
    best, _ = _weights_and_averages(training.load_run(run, "best")[0])
    assert state["best_epoch"] == 2
    for a, b in zip(best, saved):
        np.testing.assert_array_equal(a, b)
    # ... a finished run loads as the average ...
    finished, _ = training.train(None, run, epochs=2, verbose=0)
    for a, b in zip(_weights_and_averages(finished)[0], saved):
        np.testing.assert_array_equal(a, b)
    # ... and a resumed run trains on from the training weights, with the average back in its slots.
    seen = []

    class AtStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(_weights_and_averages(self.model))

    training.train(None, run, epochs=3, verbose=0, callbacks=[AtStart()])
    weights, averages = seen[0]
    for a, b in zip(weights, raw):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(averages, saved):
        np.testing.assert_array_equal(a, b)


def test_polyak_average_follows_its_definition(tmp_path):
    """After each update theta_bar <- m theta_bar + (1 - m) theta (theta_bar = theta at the first update)."""
    model = training.build_model(tiny_config(), 784)
    optimizer = keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5)
    model.compile(optimizer=optimizer, steps_per_execution=1)
    x = np.random.default_rng(0).integers(0, 2, (200, 784)).astype("float32")
    model.build_for_training()
    history = []  # theta after each update (one a step, one step an epoch), read before `fit` ends with the average
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: history.append([v.numpy() for v in optimizer._trainable_variables]))
    model.fit(x, batch_size=200, epochs=3, verbose=0, callbacks=[record])
    expected = history[0]
    for theta in history[1:]:
        expected = [0.5 * e + 0.5 * t for e, t in zip(expected, theta)]
    for a, e in zip(optimizer._model_variables_moving_average, expected):
        np.testing.assert_allclose(a.numpy(), e, rtol=1e-5, atol=1e-6)


def test_select_by_picks_the_best_checkpoint_by_that_validation_metric(tmp_path, monkeypatch):
    """select_by='iwae_bound': `best` is the epoch with the highest val_iwae_bound of history.csv, recorded as
    best_val_iwae_bound (not best_val_elbo) with its epoch, and a published card says so."""
    from tfrecog import zoo

    run = tmp_path / "run"
    config = tiny_config(epochs=4, valid_split="test", select_by="iwae_bound")
    config["model"].update(estimator="iwae", num_samples=2)
    _, state = training.train(config, run, verbose=0)
    header, *rows = (run / "history.csv").read_text().strip().splitlines()
    column = header.split(",").index("val_iwae_bound")
    values = [float(row.split(",")[column]) for row in rows]
    assert state["best_epoch"] == int(np.argmax(values)) + 1
    assert state["best_val_iwae_bound"] == pytest.approx(max(values), rel=1e-6)
    assert "best_val_elbo" not in state
    assert checkpoints.latest(run / "checkpoints").best.exists()
    (tmp_path / "zoo" / "weights").mkdir(parents=True)
    monkeypatch.setattr(zoo, "zoo_dir", lambda: tmp_path / "zoo")
    card = io.read_json(zoo.publish(run, "tiny-iwae", evaluate=False))
    assert card["training"]["select_by"] == "iwae_bound"
    assert card["training"]["best_val_iwae_bound"] == state["best_val_iwae_bound"]
    assert card["training"]["best_epoch"] == state["best_epoch"]


def test_select_by_an_unknown_metric_is_a_clear_error(tmp_path):
    config = tiny_config(epochs=1, valid_split="test", select_by="iwae_bound")  # SGVB logs no iwae_bound
    with pytest.raises(training.RunError, match="select_by='iwae_bound' is not among the validation metrics.*elbo"):
        training.train(config, tmp_path / "run", verbose=0)
