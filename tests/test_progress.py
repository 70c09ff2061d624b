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
    settings = {"model": {"latent_sizes": [8, 4]}, "epochs": 2, "checkpoint_every_seconds": 0, "jit_compile": False,
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


def test_from_zoo_starts_a_run_from_a_published_card(tmp_path):
    """progress.py from-zoo: the card's weights (running statistics included) at its best epoch, its recipe, so
    that training the card on is `tfrecog train --run` with more epochs."""
    from tfrecog import zoo

    progress = _script("progress")
    name = "sbn-bmnist-200"
    progress.from_zoo(name, tmp_path)
    card = zoo.info(name)
    state = training.run_state(tmp_path / name)
    assert state["epoch"] == card["training"]["best_epoch"] and state["best_val_elbo"] == card["training"][
        "best_val_elbo"]
    trained = card["training"]  # the updates at its best epoch: the same number per epoch throughout
    assert state["updates"] == round(trained["updates"] * trained["best_epoch"] / trained["epochs"])
    started, config = training.load_run(tmp_path / name, "best")
    for a, b in zip(_weights(zoo.load(name, compile=False)), _weights(started)):
        np.testing.assert_array_equal(a, b)
    assert {k: v for k, v in config.items() if k != "stopping"} == {
        k: v for k, v in zoo.recipe(name).items() if k != "stopping"} | {"model": config["model"]}
    assert config["model"] == {**zoo.recipe(name)["model"], "event_size": 784}
    with pytest.raises(training.RunError, match="already holds a run"):
        progress.from_zoo(name, tmp_path)


def test_anneal_starts_a_lower_rate_run_from_the_best_epoch(tmp_path):
    """progress.py anneal: the source run's best weights (running statistics included) at its best epoch, the recipe
    with only the learning rate changed, Adam restarted, the history up to the best epoch; the source untouched."""
    progress = _script("progress")
    source, run = tmp_path / "source", tmp_path / "annealed"
    training.train(tiny_sbn(epochs=3), source, verbose=0)
    before = (source / "history.csv").read_bytes()
    state = training.run_state(source)
    progress.anneal(source, run, 1e-4)
    best, old = training.load_run(source, "best")
    started, config = training.load_run(run, "best")
    for a, b in zip(_weights(best), _weights(started)):
        np.testing.assert_array_equal(a, b)
    assert config["optimizer"]["config"]["learning_rate"] == 1e-4
    assert {k: v for k, v in config.items() if k != "optimizer"} == {k: v for k, v in old.items() if k != "optimizer"}
    new = training.run_state(run)
    assert new["epoch"] == new["best_epoch"] == state["best_epoch"]
    assert new["best_val_elbo"] == state["best_val_elbo"]
    assert new["updates"] == state["updates"] // state["epoch"] * state["best_epoch"]
    assert len((run / "history.csv").read_text().strip().splitlines()) == 1 + state["best_epoch"]
    assert (source / "history.csv").read_bytes() == before
    # Training on uses the new rate (Keras keeps it in the optimizer; the checkpoint must not restore the old one).
    model, _ = training.train(None, run, epochs=new["epoch"] + 1, verbose=0)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    with pytest.raises(training.RunError, match="already holds a run"):
        progress.anneal(source, run, 1e-4)

    # Another estimator: the weights go across by name (NVIL's baseline network stays behind), the best epoch is
    # picked by the new metric, and history.csv starts afresh with the new estimator's columns, so resuming works.
    other = tmp_path / "rws"
    progress.anneal(source, other, 1e-4, estimator="rws", num_samples=3, select_by="iwae_bound")
    started, config = training.load_run(other, "best")
    assert config["model"]["estimator"] == "rws" and config["select_by"] == "iwae_bound"
    values = {v.path.split("/", 1)[1] if v.path.startswith(best.name + "/") else v.path: np.asarray(v)
              for v in best.weights}
    for v in started.weights:
        path = v.path.split("/", 1)[1] if v.path.startswith(started.name + "/") else v.path
        np.testing.assert_array_equal(np.asarray(v), values[path])
    assert not (other / "history.csv").exists() and "best_val_elbo" not in training.run_state(other)
    for total in (state["best_epoch"] + 1, state["best_epoch"] + 2):  # a resume reads the history it wrote
        training.train(None, other, epochs=total, verbose=0)
    header, *rows = (other / "history.csv").read_text().strip().splitlines()
    assert "val_iwae_bound" in header.split(",") and len(rows) == 2
    assert "best_val_iwae_bound" in training.run_state(other)


def test_evaluate_scores_the_snapshot_for_the_nvil_tables(tmp_path, monkeypatch):
    """progress.py evaluate: the snapshot's weights scored on the whole test split, as `tfrecog evaluate` scores
    the run they came from; nvil_tables shows the score for a cell without a card, until `save` replaces them."""
    progress, tables = _script("progress"), _script("nvil_tables")
    runs, snapshots = tmp_path / "runs", tmp_path / "progress"
    training.train(tiny_sbn(epochs=2), runs / "sbn-tiny", verbose=0)
    progress.save("sbn-tiny", runs, 0.0, snapshots)
    record = progress.evaluate("sbn-tiny", 4, None, snapshots)
    direct = training.evaluate_run(runs / "sbn-tiny", samples=4, progress=False)
    ll = record["test_log_likelihood"]
    assert ll["num_examples"] == direct.num_examples == 1000 and ll["samples"] == 4
    np.testing.assert_allclose(ll["value"], direct.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(record["test_elbo"]["value"], direct.elbo, rtol=1e-5)
    assert json.loads((snapshots / "sbn-tiny" / "metrics.json").read_text()) == record
    monkeypatch.setattr(tables, "PROGRESS", snapshots)
    text = tables.cell({}, "sbn-tiny", None)
    expected = f"{-ll['value']:.2f} ± {ll['stderr']:.2f} (K=4, n=1000; {record['epoch']} epochs; not a card"
    assert text.startswith(expected)
    # Other weights in the snapshot: the scores are not theirs.
    state = json.loads((snapshots / "sbn-tiny" / "state.json").read_text())
    (snapshots / "sbn-tiny" / "state.json").write_text(json.dumps({**state, "sha256": "0" * 64}))
    assert tables.snapshot_metrics("sbn-tiny") is None and tables.cell({}, "sbn-tiny", None).startswith("no card")
    training.train(None, runs / "sbn-tiny", epochs=3, verbose=0)
    progress.save("sbn-tiny", runs, -1e9, snapshots)  # a new snapshot drops the old scores
    assert not (snapshots / "sbn-tiny" / "metrics.json").exists()


def test_seed_run_checks_state(tmp_path):
    config = tiny_sbn()
    config["model"]["event_size"] = 784
    with pytest.raises(training.RunError, match="updates"):
        training.seed_run(tmp_path / "run", config, lambda model: None, {"epoch": 1})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model", [
    {"latent_sizes": [8, 4], "estimator": "vimco", "num_samples": 3},
    {"latent_sizes": [8], "estimator": "nvil", "autoregressive_prior": True, "autoregressive_visible": True,
     "autoregressive_posterior": True},
    {"latent_sizes": [8, 4], "estimator": "wake_sleep", "autoregressive_prior": True},
], ids=["vimco", "nvil-autoregressive", "wake-sleep"])
def test_gpu_weights_round_trip(tmp_path, model):
    """gpu_sbn's `export` names every variable (NVIL's running statistics too) as `import` expects it: a run's best
    weights exported and imported again give the same model."""
    gpu = _script("gpu_sbn")
    config = tiny_sbn(model=model, epochs=1, select_by="iwae_bound" if model["estimator"] == "vimco" else "elbo")
    training.train(config, tmp_path / "run", verbose=0)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(config))
    gpu.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "gpu")])
    meta = json.loads((tmp_path / "gpu" / "meta.json").read_text())
    assert meta["spec"]["layers"] == model["latent_sizes"] and meta["spec"]["estimator"] == model["estimator"]
    meta.update(best_values=[meta["best_value"]], device="cpu", jax="-", optax="-")  # what `train` adds
    (tmp_path / "gpu" / "meta.json").write_text(json.dumps(meta))
    gpu.main(["import", str(tmp_path / "gpu"), str(recipe), str(tmp_path / "back")])
    original, _ = training.load_run(tmp_path / "run", "best")
    back, _ = training.load_run(tmp_path / "back", "best")
    compared = 0
    for a, b in zip(original.weights, back.weights):
        if a.trainable or "signal" in a.name:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            compared += 1
    assert compared == len(original.trainable_weights) + 2  # and the running mean and variance
    # A recipe of another model is refused, naming the difference.
    other = dict(config, model={**config["model"], "latent_sizes": [5]})
    recipe.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="latent"):
        gpu.main(["import", str(tmp_path / "gpu"), str(recipe), str(tmp_path / "other")])


def test_gpu_model_is_tfrecogs_sbn():
    """scripts/gpu_sbn.py's JAX model computes tfrecog's SBN densities: with the same weights (random, biases and
    masked kernels included) and the same latent samples, log p(x, h) and log q(h | x) term by term agree, for an
    SBN with every autoregressive option on (fDARN prior and visible layer, autoregressive posterior)."""
    jax = pytest.importorskip("jax")
    from tfrecog.models import SBN

    gpu = _script("gpu_sbn")
    spec = gpu.Spec(layers=[6, 4], estimator="nvil", samples=1, autoregressive_prior=True,
                    autoregressive_visible=True, autoregressive_posterior=True, baseline_hidden=100, signal_decay=0.8)
    functions = gpu.make_model(spec)
    params = functions["init"](jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [w + 0.3 * jax.random.normal(k, w.shape) for w, k in zip(leaves, keys)])
    flat = {k: np.asarray(v) for k, v in gpu.flatten(params, "").items()}

    model = SBN(784, [6, 4], autoregressive_prior=True, autoregressive_visible=True, autoregressive_posterior=True)
    x = (np.random.default_rng(0).random((3, 784)) < 0.3).astype(np.float32)
    model(x)
    trainable = {gpu._variable_key(v): v for v in model.trainable_weights}
    assert set(trainable) == set(flat)
    for key, variable in trainable.items():
        variable.assign(flat[key])

    hs, q_sampled = functions["sample_posterior"](params, x, jax.random.PRNGKey(2), 2)
    hs_np = [np.asarray(h) for h in hs]
    for ours, theirs in zip(functions["log_joint_terms"](params, x, hs), model.log_joint_terms(x, hs_np)):
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5, atol=1e-3)
    # The sleep phase's dreams: binary, of the model's shapes, and scored by tfrecog's model like any sample.
    dream_x, dream_h = functions["sample_joint"](params, jax.random.PRNGKey(3), 5)
    assert dream_x.shape == (5, 784) and [h.shape for h in dream_h] == [(5, 6), (5, 4)]
    assert set(np.unique(np.asarray(dream_x))) <= {0.0, 1.0}
    for ours, theirs in zip(functions["log_joint_terms"](params, dream_x, [h[None] for h in dream_h]),
                            model.log_joint_terms(np.asarray(dream_x), [np.asarray(h)[None] for h in dream_h])):
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5, atol=1e-3)
    for ours, sampled, theirs in zip(functions["recognition_terms"](params, x, hs), q_sampled,
                                     model.recognition_log_prob_terms(x, hs_np)):
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(np.asarray(sampled), theirs.numpy(), rtol=1e-5, atol=1e-3)
