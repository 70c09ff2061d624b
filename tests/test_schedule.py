"""Recipes with stages (a schedule, `tfrecog.recipes`): each stage's recipe, validation, and
`tfrecog.training.train_schedule` handing each stage's best checkpoint to the next, resuming, and refusing a folder
of another recipe; the CLI and the zoo's schedules."""

import json

import numpy as np
import pytest

from tfrecog import cli, io, recipes, training, zoo

STAGES = [
    {"epochs": 2, "learning_rate": 1e-3, "estimator": "nvil", "num_samples": 1, "select_by": "elbo"},
    {"epochs": 3, "learning_rate": 3e-4, "estimator": "nvil", "num_samples": 1, "select_by": "elbo"},
]


def schedule(**overrides):
    """A tiny SBN: NVIL at 1e-3 to epoch 2, at 3e-4 to epoch 3, then RWS (K=2, picked by the K-sample bound) at
    1e-4 to epoch 4. mnist5k has no validation split: its test split stands in, so that `best` is tracked."""
    settings = {"model": {"latent_sizes": [6], "estimator": "rws", "num_samples": 2}, "epochs": 4, "batch_size": 500,
                "checkpoint_every_seconds": 0, "jit_compile": False, "valid_split": "test",
                "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-4}}, "select_by": "iwae_bound",
                **overrides}
    config = training.default_config("sbn", "mnist5k", **settings)
    config["stages"] = json.loads(json.dumps(STAGES))
    return config


def test_stage_recipes_apply_each_stage_to_the_recipe():
    config = schedule()
    first, second, last = recipes.stage_recipes(config)
    assert (first["epochs"], second["epochs"], last["epochs"]) == (2, 3, 4)
    assert [c["optimizer"]["config"]["learning_rate"] for c in (first, second, last)] == [1e-3, 3e-4, 1e-4]
    assert (first["model"]["estimator"], first["model"]["num_samples"], first["select_by"]) == ("nvil", 1, "elbo")
    # A stage changes only what it names: without an estimator it keeps the recipe's, not the stage before's.
    config["stages"][1] = {"epochs": 3, "learning_rate": 3e-4}
    second = recipes.stage_recipes(config)[1]
    assert (second["model"]["estimator"], second["model"]["num_samples"], second["select_by"]) == ("rws", 2,
                                                                                                  "iwae_bound")
    assert "stages" not in first and "stages" not in last
    assert {k: v for k, v in last.items()} == {k: v for k, v in config.items() if k != "stages"}
    plain = schedule()
    del plain["stages"]
    assert recipes.stage_recipes(plain) == [plain]


@pytest.mark.parametrize("stages, message", [
    ([], r"'stages' must be a non-empty list"),
    ([{"epochs": 4}], r"'stages\[0\].epochs' must be an epoch after 0 .* before the recipe's epochs \(4\); got 4"),
    ([{"epochs": 2}, {"epochs": 2}], r"'stages\[1\].epochs' must be an epoch after 2"),
    ([{"learning_rate": 1e-3}], r"missing key 'stages\[0\].epochs'"),
    ([{"epochs": 2, "lr": 1e-3}], r"unknown key 'stages\[0\].lr'.*learning_rate"),
    ([{"epochs": 2, "learning_rate": 0}], r"'stages\[0\].learning_rate' must be"),
    ([{"epochs": 2, "estimator": "sgvb_b"}], r"recipe of stages\[0\]\).*'model.estimator' must be one of .*nvil"),
    (["nvil"], r"'stages\[0\]' must be a JSON object"),
])
def test_a_bad_stage_is_a_one_line_error_naming_it(stages, message):
    config = schedule()
    config["stages"] = stages
    with pytest.raises(recipes.RecipeError, match=message):
        recipes.validate(config, "schedule.json")


def _state(folder):
    return training.run_state(folder)


def test_schedule_hands_each_stage_its_predecessors_best_checkpoint_and_resumes(tmp_path):
    config = schedule()
    run = tmp_path / "run"
    stages = recipes.stage_recipes(config)
    # A session that ended after the first stage: the schedule goes on from it without training it again.
    training.train(stages[0], run / "stages" / "1", verbose=0)
    first = _state(run / "stages" / "1")
    best_first, _ = training.load_run(run / "stages" / "1", "best")
    model, state = training.train_schedule(config, run, verbose=0)
    assert _state(run / "stages" / "1") == first
    second = _state(run / "stages" / "2")
    assert second["epoch"] == 3 and "stage 2 of 3" in second["restored_from"]
    assert f"epoch {first['best_epoch']}" in second["restored_from"]
    # Stage 2 started at stage 1's best epoch with its updates, and kept its history up to there (same estimator).
    steps = first["updates"] // first["epoch"]
    assert second["updates"] == steps * 3
    history = (run / "stages" / "2" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 3
    # The last stage: the recipe itself with the whole schedule in its config.json, another estimator (fresh history).
    saved = io.read_json(run / "config.json")
    assert saved["stages"] == STAGES and saved["model"]["estimator"] == "rws"
    assert state["epoch"] == 4 and model.estimator == "rws" and model.num_samples == 2
    assert "best_val_iwae_bound" in _state(run)
    assert len((run / "history.csv").read_text().strip().splitlines()) == 1 + (4 - _started_at(run))
    # The weights stage 3 started from are stage 2's best: an RWS model holds no baseline network, so its variables
    # are a subset of the NVIL model's, by path.
    assert set(training.variables_by_path(model)) < set(training.variables_by_path(best_first))
    # Again: nothing to do; with a later stop, only the last stage trains on.
    training.train_schedule(config, run, verbose=0)
    assert _state(run)["epoch"] == 4
    _, state = training.train_schedule(config, run, verbose=0, epochs=5)
    assert state["epoch"] == 5 and _state(run / "stages" / "2") == second


def _started_at(run):
    text = _state(run)["restored_from"]
    return int(text.split("(epoch ")[1].split(";")[0])


def test_a_last_stage_started_elsewhere_resumes_without_the_earlier_stages(tmp_path):
    """A run folder whose last stage was seeded directly (e.g. `scripts/progress.py from-zoo` with a card whose recipe
    is a schedule) trains on from there: the stages before it do not run."""
    config = schedule()
    run = tmp_path / "run"
    training.train(recipes.stage_recipes(config)[0], tmp_path / "elsewhere", verbose=0)
    training.continue_run(tmp_path / "elsewhere", run, config)
    _, state = training.train_schedule(config, run, verbose=0)
    assert state["epoch"] == 4 and not (run / "stages").exists()


def test_schedule_resumes_after_a_kill_at_a_stage_boundary(tmp_path):
    """Killed after stage 1 wrote its recipe but before its first checkpoint, and killed while stage 2 was being
    seeded (its checkpoint written, its recipe not yet): the same call trains both stages as if nothing happened."""
    config = schedule()
    del config["stages"][1]
    run = tmp_path / "run"
    first = recipes.stage_recipes(config)[0]
    (run / "stages" / "1").mkdir(parents=True)
    io.write_json(run / "stages" / "1" / "config.json", first)
    assert training.train_schedule(config, run, verbose=0, max_seconds=0.01) is None
    assert training.run_state(run / "stages" / "1")["epoch"] >= 1
    training.train_schedule(config, run, verbose=0)
    (run / "config.json").unlink()  # as a kill between the checkpoint and the recipe of the seeded stage leaves it
    state = training.run_state(run)
    _, again = training.train_schedule(config, run, verbose=0)
    assert again["epoch"] == 4 and state["restored_from"] == training.run_state(run)["restored_from"]


def test_schedule_weights_go_across_exactly(tmp_path):
    """A stage's starting weights are its predecessor's best, variable by variable (a time budget of 0 seconds
    for the last stage's own training leaves them as they were handed over)."""
    config = schedule()
    del config["stages"][1]
    run = tmp_path / "run"
    stages = recipes.stage_recipes(config)
    training.train(stages[0], run / "stages" / "1", verbose=0)
    best, _ = training.load_run(run / "stages" / "1", "best")
    training.continue_run(run / "stages" / "1", run, config)
    started, saved = training.load_run(run, "last")
    source = training.variables_by_path(best)
    for path, variable in training.variables_by_path(started).items():
        np.testing.assert_array_equal(variable.numpy(), source[path].numpy())
    assert saved["stages"] == config["stages"]
    assert int(started.optimizer.iterations.numpy()) == _state(run)["updates"]


def test_schedule_refuses_a_stage_folder_of_another_recipe(tmp_path):
    config = schedule()
    run = tmp_path / "run"
    training.train(recipes.stage_recipes(schedule(batch_size=250))[0], run / "stages" / "1", verbose=0)
    with pytest.raises(training.RunError, match=r"stages/1 holds another recipe than stage 1 .*batch_size: 250 -> 500"):
        training.train_schedule(config, run, verbose=0)
    # A run folder that holds a single-stage run (an older recipe of the same card) is refused before any stage
    # trains into it.
    other = tmp_path / "old"
    training.train(recipes.stage_recipes(config)[0], other, verbose=0)
    with pytest.raises(training.RunError, match=r"old holds another recipe than stage 3 of the schedule"):
        training.train_schedule(config, other, verbose=0)
    assert not (other / "stages").exists()


def test_cli_trains_a_schedule_and_resumes_it(tmp_path, capsys):
    recipe = tmp_path / "schedule.json"
    recipe.write_text(json.dumps(schedule()))
    run = tmp_path / "run"
    argv = ["train", "--recipe", str(recipe), "--run", str(run), "--verbose", "0"]
    # A budget that ends inside the first stage: the command says where it stopped and the same command resumes.
    assert cli.main(argv + ["--max-seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert f"the schedule stopped in {run / 'stages' / '1'} (stage 1 of 3)" in out
    assert (run / "stages" / "1" / "curves.png").exists() and not (run / "config.json").exists()
    assert cli.main(argv) == 0
    assert _state(run / "stages" / "1")["epoch"] == 2 and _state(run)["epoch"] == 4
    assert cli.main(argv + ["--epochs", "5"]) == 0
    assert _state(run)["epoch"] == 5


def test_zoo_schedules_validate_and_start_where_their_cards_say():
    fdarn = zoo.recipe("fdarn-bmnist-500")
    first, second, last = recipes.stage_recipes(fdarn)
    assert (first["model"]["estimator"], first["model"]["num_samples"], first["select_by"]) == ("nvil", 1, "elbo")
    assert (first["epochs"], second["epochs"], last["epochs"]) == (459, 601, 790)
    assert [c["optimizer"]["config"]["learning_rate"] for c in (first, second, last)] == [3e-4, 1e-4, 1e-4]
    assert (last["model"]["estimator"], last["model"]["num_samples"]) == ("rws", 10)
    vimco = recipes.stage_recipes(zoo.recipe("sbn-bmnist-200-200-200-vimco"))
    assert [(c["epochs"], c["optimizer"]["config"]["learning_rate"]) for c in vimco] == [(880, 1e-3), (1160, 1e-4)]
