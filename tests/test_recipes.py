"""Recipes as data: every zoo entry's recipe file is valid, complete and describes how its card was trained; every
experiment's recipe is valid; a faulty recipe is refused in one line naming the key and the allowed values; the
schema accepts what `tfrecog train` writes; `tfrecog train --recipe` and scripts/train_zoo.sh train them."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrecog import cli, data, io, models, recipes, training, zoo

REPO = Path(__file__).resolve().parents[1]
ZOO_NAMES = zoo.list()


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_recipe_is_valid_and_trains_what_the_card_describes(name):
    card = zoo.info(name)
    recipe = zoo.recipe(name)
    assert card["recipe"] == recipe and "recipe" not in json.loads((REPO / "zoo" / f"{name}.json").read_text())
    # The stopping rule the card was trained with: the epochs it reached, stated in words too.
    assert recipe["epochs"] == card["training"]["epochs"], (name, recipe["epochs"], card["training"]["epochs"])
    assert recipe["max_seconds"] is None and recipe["stopping"]
    # The recipe builds the card's model: every constructor argument it sets is the card's.
    for key, value in recipe["model"].items():
        assert card["config"][key] == value, (name, key)
    assert recipe["family"] == card["family"] and recipe["dataset"] == card["dataset"]["name"]
    assert recipe["train_split"] == card["dataset"]["train_split"]
    if recipe.get("valid_split") is not None:  # the card holds the best validation checkpoint, inside the epochs
        assert 1 <= card["training"]["best_epoch"] <= recipe["epochs"]


def test_experiment_recipes_are_valid_and_apart_from_the_zoo():
    names = recipes.experiment_names()
    assert {"vae-bmnist-wake-sleep", "dlgm-bmnist-rank1-v1"} <= set(names)
    assert not set(names) & set(ZOO_NAMES)  # one file per name
    for name in names:
        recipe = recipes.read(recipes.experiments_dir() / f"{name}.json")
        assert zoo.find_recipe(name) == recipe


def _good():
    return training.default_config("sbn", "binarized_mnist", model={"latent_sizes": [200]}, epochs=3)


# (change, the words the one-line error must contain: the key and the allowed values)
FAULTS = [
    (lambda r: r.update(epoch=3), ["unknown key 'epoch'", "did you mean 'epochs'", "allowed keys: family"]),
    (lambda r: r["model"].update(latent_sise=[3]), ["'model.latent_sise'", "latent_sizes"]),
    (lambda r: r["model"].update(estimator="sgvb_b"), ["'model.estimator'", "nvil", "vimco", 'got "sgvb_b"']),
    (lambda r: r.update(family="gan"), ["'family'", "vae, sbn, fdarn, dlgm"]),
    (lambda r: r.update(dataset="mnits"), ["'dataset'", "binarized_mnist", "mnist5k"]),
    (lambda r: r.update(valid_split="validation"), ["'valid_split'", "train, valid, test, train+valid"]),
    (lambda r: r.update(batch_size="100"), ["'batch_size'", "an integer >= 1", 'got "100"']),
    (lambda r: r.update(batch_size=True), ["'batch_size'", "an integer >= 1"]),
    (lambda r: r.update(epochs=0), ["'epochs'", ">= 1"]),
    (lambda r: r.update(jit_compile="yes"), ["'jit_compile'", "true or false"]),
    (lambda r: r.update(max_seconds=-5), ["'max_seconds'", "null or a number > 0"]),
    (lambda r: r.update(binarize="random"), ["'binarize'", "static, dynamic, threshold"]),
    (lambda r: r["model"].update(latent_sizes=200), ["'model.latent_sizes'", "list of integers"]),
    (lambda r: r["model"].update(likelihood="poisson"), ["'model.likelihood'", "bernoulli, gaussian, categorical"]),
    (lambda r: r["model"].update(event_size=100), ["'model.event_size'", "784"]),
    (lambda r: r["optimizer"].update(class_name="Adamm"), ["'optimizer.class_name'", "Adam", "SGD"]),
    (lambda r: r["optimizer"]["config"].update(lr=1e-3), ["'optimizer.config.lr'", "learning_rate"]),
    (lambda r: r.pop("dataset"), ["missing key 'dataset'", "required keys"]),
    (lambda r: r.update(family="vae", model={}), ["'baseline_optimizer'", "sbn, fdarn"]),
]


@pytest.mark.parametrize("change, words", FAULTS, ids=[w[0] for _, w in FAULTS])
def test_a_faulty_recipe_is_refused_in_one_line_naming_key_and_allowed_values(change, words, tmp_path):
    recipes.validate(_good())  # the unchanged recipe passes
    recipe = _good()
    change(recipe)
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))
    with pytest.raises(recipes.RecipeError) as err:
        recipes.read(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    for word in words:
        assert word in message, (word, message)


def test_files_that_are_not_recipes_are_refused(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(recipes.RecipeError, match="is not valid JSON"):
        recipes.read(tmp_path / "a.json")
    with pytest.raises(recipes.RecipeError, match="expected a JSON object"):
        recipes.read(tmp_path / "b.json")
    with pytest.raises(recipes.RecipeError, match="no such recipe file"):
        recipes.read(tmp_path / "c.json")
    with pytest.raises(zoo.ZooError, match="no recipe named 'vae-bmnsit'.*close matches: vae-bmnist"):
        zoo.find_recipe("vae-bmnsit")


def test_the_schema_accepts_every_default_recipe():
    for family in models.FAMILIES:
        for dataset in data.available():
            recipes.validate(training.default_config(family, dataset))


def _tiny(**overrides):
    overrides = {"epochs": 1, **overrides}
    config = training.default_config("vae", "mnist5k", model={"latent_size": 2, "hidden_sizes": [8]},
                                     steps_per_execution=1, jit_compile=False, **overrides)
    config["stopping"] = "one epoch (a test)"
    return config


def test_train_writes_what_the_schema_reads_and_train_recipe_resumes_or_refuses(tmp_path, capsys):
    recipe_file = tmp_path / "tiny.json"
    io.write_json(recipe_file, _tiny())
    run = tmp_path / "run"
    assert cli.main(["train", "--recipe", str(recipe_file), "--run", str(run), "--verbose", "0"]) == 0
    saved = training.read_config(run / "config.json")
    assert recipes.validate(saved) == saved and saved["model"]["event_size"] == 784  # what train wrote
    assert recipes.diff(saved, _tiny()) == []  # event_size added by train, absent from the recipe: not a change
    assert training.run_state(run)["epoch"] == 1
    # The same recipe with more epochs resumes; another recipe is refused with the keys that differ.
    io.write_json(recipe_file, _tiny(epochs=2))
    assert cli.main(["train", "--recipe", str(recipe_file), "--run", str(run), "--verbose", "0"]) == 0
    assert training.run_state(run)["epoch"] == 2
    io.write_json(recipe_file, _tiny(epochs=2, batch_size=50))
    capsys.readouterr()
    assert cli.main(["train", "--recipe", str(recipe_file), "--run", str(run), "--verbose", "0"]) == 2
    err = capsys.readouterr().err
    assert "holds another recipe" in err and "batch_size: 100 -> 50" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["train", "vae", "--recipe", str(recipe_file), "--run", str(tmp_path / "other")]) == 2
    assert not (tmp_path / "other").exists()


def test_diff_names_nested_keys_and_ignores_what_a_resume_may_change():
    a = _tiny()
    b = _tiny(epochs=7, max_seconds=5.0)
    b["model"]["hidden_sizes"] = [16]
    b["stopping"] = "other words"
    assert recipes.diff(a, b) == ["model.hidden_sizes: [8] -> [16]"]


def test_reproduce_trains_the_recipe_file_with_the_cards_stopping_rule(monkeypatch, tmp_path):
    name = "vae-frey"
    seen = {}

    def fake_train(config, run_dir, **kwargs):
        seen["config"] = config
        raise RuntimeError("stop here")

    monkeypatch.setattr(training, "train", fake_train)
    with pytest.raises(RuntimeError, match="stop here"):
        zoo.reproduce(name, run_dir=tmp_path / "run")
    assert seen["config"] == zoo.recipe(name) and seen["config"]["epochs"] == zoo.info(name)["training"]["epochs"]
    # An existing run folder: resumed when it holds the recipe (train's own copy adds event_size), else refused.
    name = "vae-bmnist"  # its recipe file has no event_size
    assert "event_size" not in zoo.recipe(name)["model"]
    saved = {**zoo.recipe(name), "epochs": 5}
    saved["model"] = {**saved["model"], "event_size": 784}
    io.write_json(tmp_path / "run" / "config.json", saved)
    with pytest.raises(RuntimeError, match="stop here"):
        zoo.reproduce(name, run_dir=tmp_path / "run")
    assert seen["config"] is None
    io.write_json(tmp_path / "run" / "config.json", {**saved, "seed": 1})
    with pytest.raises(zoo.ZooError, match=r"holds another recipe than zoo model 'vae-bmnist' \(seed: 1 -> 0\)"):
        zoo.reproduce(name, run_dir=tmp_path / "run")


def _fake_tfrecog(tmp_path):
    """A `tfrecog` on PATH that prints its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tfrecog"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    # The run folders go under tmp_path: the test must neither read nor write the machine's real ../runs.
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TFRECOG_RUNS": str(tmp_path / "runs"),
            "TFRECOG_DATA_DIR": "../shared/data", "TFRECOG_PROGRESS": str(tmp_path / "progress")}


@pytest.mark.parametrize("name, where", [("vae-bmnist", "zoo/recipes"),
                                         ("vae-bmnist-wake-sleep", "recipes")])
def test_train_zoo_sh_trains_the_recipe_file_into_runs_name(name, where, tmp_path):
    env = _fake_tfrecog(tmp_path)
    done = subprocess.run(["bash", "scripts/train_zoo.sh", name, "--max-seconds", "60"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    runs = tmp_path / "runs"
    assert lines == ["train", "--recipe", str(REPO / where / f"{name}.json"), "--data-dir", "../shared/data",
                     "--run", str(runs / name), "--verbose", "2", "--max-seconds", "60"]
    missing = subprocess.run(["bash", "scripts/train_zoo.sh", "no-such-recipe"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "unknown recipe no-such-recipe" in missing.stderr


def test_train_zoo_sh_starts_a_missing_run_from_its_snapshot(tmp_path):
    """A new machine: no run folder, a snapshot in the progress folder (scripts/progress.py save) -> train_zoo.sh
    restores the run folder from it (its best epoch, its weights), then trains on with the recipe."""
    env = _fake_tfrecog(tmp_path)
    name, old_runs, progress = "vae-bmnist", tmp_path / "old-runs", tmp_path / "progress"
    config = training.default_config("vae", "mnist5k", model={"hidden_sizes": [8], "latent_size": 2}, epochs=2,
                                     valid_split="test", jit_compile=False, checkpoint_every_seconds=0)
    training.train(config, old_runs / name, verbose=0)
    saved = subprocess.run([sys.executable, "scripts/progress.py", "save", name, "--runs", str(old_runs),
                            "--progress", str(progress), "--min-gain", "0"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0 and (progress / name / "state.json").exists(), saved.stderr[-2000:]
    done = subprocess.run(["bash", "scripts/train_zoo.sh", name, "--epochs", "3"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = tmp_path / "runs"
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{runs / name}: restored from {progress / name} at epoch "), lines
    assert lines[1:] == ["train", "--recipe", str(REPO / "zoo" / "recipes" / f"{name}.json"), "--data-dir",
                         "../shared/data", "--run", str(runs / name), "--verbose", "2", "--epochs", "3"]
    best, _ = training.load_run(old_runs / name, "best")
    restored, _ = training.load_run(runs / name, "best")
    for a, b in zip(best.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Run again: the run folder exists now, so nothing is restored over it.
    again = subprocess.run(["bash", "scripts/train_zoo.sh", name], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "train", again.stdout


def test_train_recipe_by_name_builds_the_cards_model():
    """`tfrecog train --recipe NAME` (a zoo name) gives the card's architecture: same weights shapes."""
    name = "vae-frey"
    config = zoo.find_recipe(name)
    model = training.build_model(config, data.info(config["dataset"]).event_size)
    model.build((None, model.event_size))
    card_model = zoo.load(name, compile=False)
    assert [w.shape for w in model.weights] == [w.shape for w in card_model.weights]
    assert np.isfinite(card_model(np.full((1, 560), 0.5, np.float32)).numpy()).all()


def test_publish_writes_the_card_and_its_recipe_file_apart(tmp_path, monkeypatch):
    config = _tiny(epochs=2)
    run = tmp_path / "run"
    training.train(config, run, verbose=0)
    saved = training.read_config(run / "config.json")
    io.write_json(run / "config.json", {**saved, "epochs": 5})  # a run stopped (by time, by hand) at epoch 2 of 5
    (tmp_path / "zoo" / "weights").mkdir(parents=True)
    monkeypatch.setattr(zoo, "zoo_dir", lambda: tmp_path / "zoo")
    card = io.read_json(zoo.publish(run, "tiny", evaluate=False))
    assert "recipe" not in card
    recipe = recipes.read(tmp_path / "zoo" / "recipes" / "tiny.json")
    assert recipe["epochs"] == card["training"]["epochs"] == 2 and "to epoch 2 of 5" in recipe["stopping"]
    assert recipes.diff(training.read_config(run / "config.json"), recipe) == []
    assert zoo.info("tiny")["recipe"] == recipe and zoo.recipe("tiny") == recipe
