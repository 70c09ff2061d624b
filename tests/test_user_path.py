"""The user's path (issue 24, part A): run folders written only after the checks, resuming refused on a changed recipe,
presets by name, a quiet CLI that answers `--help`, `--version` and `zoo list | show` without TensorFlow, and one
validation of the data at every entry point of the models.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfrecog import cards, cli

REPO = Path(__file__).resolve().parents[1]


def status(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_info:  # argparse's usage errors
        return exit_info.code


# -- 1. run folders ------------------------------------------------------------------------------------------------

TINY = ["--epochs", "1", "--hidden", "8", "--latent-size", "2", "--verbose", "0"]


@pytest.mark.parametrize("argv, expected, code", [
    (["--estimator", "sgvb_c"], "unknown estimator 'sgvb_c'", 1),
    (["--set", "latnt_size=3"], "unknown model argument 'latnt_size' for vae (did you mean 'latent_size'?)", 1),
    (["--set", "min_scale=-1"], "min_scale must lie in (0, inf)", 1),
    (["--set", "hidden_sizes=500"], "hidden_sizes must be positive integers (a list of layer widths)", 1),
    (["--select-by", "elbow"], "select_by='elbow' is not among the validation metrics of this model", 1),
    (["--optimizer", "Adma"], "Adma", 1),
    (["--dataset", "binarised_mnist"], "unknown dataset 'binarised_mnist'", 2),
    (["--dataset", "binarized_mnist", "--data-dir", "EMPTY"], "files not found", 1),
])
def test_a_failed_first_train_leaves_no_run_folder(tmp_path, capsys, monkeypatch, argv, expected, code):
    monkeypatch.delenv("TFRECOG_DATA_DIR", raising=False)
    run = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    argv = [str(tmp_path / "empty") if a == "EMPTY" else a for a in argv]
    assert status(["train", "vae", "--run", str(run), "--epochs", "1", "--verbose", "0", *argv]) == code
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not run.exists()  # nothing written: the corrected command starts afresh


def test_the_python_api_writes_no_run_folder_before_its_checks(tmp_path):
    from tfrecog import training

    run = tmp_path / "run"
    for config, expected in [
        (training.default_config("vae", "mnist5k", model={"estimator": "nvil"}), "vae models support the estimators"),
        (training.default_config("vae", "no_such_dataset"), "unknown dataset 'no_such_dataset'"),
        (training.default_config("dlgm", "mnist5k", model={"covariance": "full"}), "covariance must be one of"),
    ]:
        with pytest.raises(ValueError) as info:
            training.train(config, run, verbose=0)
        assert expected in str(info.value) and not run.exists()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A VAE trained for one epoch by `tfrecog train` on the embedded MNIST subset."""
    run = tmp_path_factory.mktemp("runs") / "vae"
    assert cli.main(["train", "vae", "--run", str(run), *TINY]) == 0
    return run


def test_resuming_with_another_recipe_is_refused_with_the_difference(first_run, capsys):
    saved = (first_run / "config.json").read_text()
    assert status(["train", "vae", "--run", str(first_run), "--epochs", "2", "--latent-size", "3", "--lr", "0.01",
                   "--verbose", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert (f"run folder {first_run} was started with a different recipe (model.latent_size: 2 -> 3; "
            "optimizer.config.learning_rate: 0.001 -> 0.01)") in err and "--new-run" in err
    assert status(["train", "sbn", "--run", str(first_run), "--verbose", "0"]) == 2
    assert 'family: "vae" -> "sbn"' in capsys.readouterr().err
    assert (first_run / "config.json").read_text() == saved  # untouched


def test_options_equal_to_the_saved_recipe_resume(first_run, capsys):
    # --latent-size 2 and --lr 0.001 are what the run holds; --hidden 8 too; --epochs may grow
    assert cli.main(["train", "vae", "--run", str(first_run), "--epochs", "2", "--latent-size", "2", "--lr", "0.001",
                     "--hidden", "8", "--verbose", "0"]) == 0
    assert f"resuming {first_run}" in capsys.readouterr().out
    from tfrecog import training

    assert training.run_state(first_run)["epoch"] == 2


def test_new_run_starts_beside_the_old_one(first_run, capsys):
    before = sorted(p.name for p in first_run.iterdir())
    assert cli.main(["train", "vae", "--run", str(first_run), *TINY[:2], "--latent-size", "3", "--hidden", "8",
                     "--verbose", "0", "--new-run"]) == 0
    new = Path(f"{first_run}-2")
    assert f"starting a new run in {new}" in capsys.readouterr().out
    assert json.loads((new / "config.json").read_text())["model"]["latent_size"] == 3
    assert sorted(p.name for p in first_run.iterdir()) == before  # the old run is kept as it was


def test_recipe_diff_counts_a_left_out_argument_as_its_default():
    from tfrecog import recipes, training

    base = training.default_config("vae", "mnist5k")
    assert recipes.diff(base, training.default_config("vae", "mnist5k", model={"latent_size": 20,
                                                                                "hidden_sizes": [500]})) == []
    other = training.default_config("vae", "mnist5k", model={"latent_size": 3}, batch_size=50, epochs=99)
    assert recipes.diff(base, other) == ["batch_size: 100 -> 50", "model.latent_size: 20 -> 3"]  # epochs: ignored
    assert recipes.diff(base, other, ignore=()) == ["batch_size: 100 -> 50", "epochs: 10 -> 99",
                                                    "model.latent_size: 20 -> 3"]
    assert recipes.diff({"a": {"b": 1}}, {"a": {"b": 1}, "c": None}) == []  # absent reads as null


# -- 2. presets ----------------------------------------------------------------------------------------------------


def test_from_preset_loads_the_zoo_model_of_the_class():
    import tfrecog
    from tfrecog import zoo

    model = tfrecog.VAE.from_preset("vae-bmnist-2d")
    reference = zoo.load("vae-bmnist-2d")
    assert type(model) is tfrecog.VAE and model.get_config() == reference.get_config()
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer is not None  # compiled: ready to fine-tune
    assert getattr(tfrecog.VAE.from_preset("vae-bmnist-2d", compile=False), "optimizer", None) is None
    # fDARN is an SBN with autoregressive layers; the base class takes any family
    assert type(tfrecog.SBN.from_preset("fdarn-bmnist-200", compile=False)) is tfrecog.SBN
    assert type(tfrecog.LatentVariableModel.from_preset("vae-bmnist-2d", compile=False)) is tfrecog.VAE


@pytest.mark.parametrize("cls, name, expected", [
    ("DLGM", "vae-bmnist-2d", "'vae-bmnist-2d' is a VAE preset, not a DLGM: use tfrecog.VAE.from_preset"),
    ("VAE", "sbn-bmnist-200", "'sbn-bmnist-200' is a SBN preset, not a VAE"),
    ("SBN", "vae-bmnst", "no zoo model named 'vae-bmnst'; close matches: vae-bmnist"),
])
def test_from_preset_refuses_another_family_in_one_line(cls, name, expected):
    import tfrecog

    with pytest.raises(ValueError) as info:
        getattr(tfrecog, cls).from_preset(name)
    assert expected in str(info.value) and len(str(info.value).splitlines()) == 1


def test_from_preset_takes_a_run_folder(first_run):
    import tfrecog

    model = tfrecog.VAE.from_preset(str(first_run))
    assert model.latent_size == 2
    with pytest.raises(ValueError, match="is a VAE preset, not a SBN"):
        tfrecog.SBN.from_preset(str(first_run))


def test_evaluate_takes_a_zoo_name(data_dir, capsys):
    """`tfrecog evaluate NAME` scores the zoo model on its recipe's test split: the same numbers as the evaluator
    called on the first --limit test digits with the same seed."""
    import tfrecog
    from tfrecog import training, zoo

    assert cli.main(["evaluate", "vae-bmnist-2d", "--samples", "4", "--limit", "30", "--data-dir", str(data_dir)]) == 0
    printed = capsys.readouterr().out.strip()
    recipe = zoo.info("vae-bmnist-2d")["recipe"]
    x = training.evaluation_data(recipe, None, data_dir, 30, 0)
    expected = tfrecog.log_likelihood(zoo.load("vae-bmnist-2d"), x, samples=4, seed=0)
    assert printed.splitlines()[-1] == str(expected)


def test_sample_impute_diagnose_take_a_zoo_name(data_dir, tmp_path, capsys):
    assert cli.main(["sample", "vae-bmnist-2d", "--num", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert cli.main(["impute", "vae-bmnist-2d", "--num", "2", "--steps", "2", "--out", str(tmp_path / "i.png"),
                     "--data-dir", str(data_dir)]) == 0
    assert cli.main(["diagnose", "sbn-bmnist-200", "--estimators", "nvil", "--repeats", "2", "--batch", "4",
                     "--data-dir", str(data_dir)]) == 0
    assert (tmp_path / "s.png").exists() and (tmp_path / "i.png").exists()
    assert "sbn-bmnist-200: recognition-gradient variance" in capsys.readouterr().out


def test_zoo_list_is_a_table_with_a_header_and_json(capsys):
    every = cards.read_cards()
    assert cli.main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "dataset", "test", "log", "p(x),", "nats", "(K)", "paper"]
    assert set(lines[1]) <= {"-", " "} and len(lines) == 2 + len(every)
    card = every["dlgm-bmnist-diag"]
    row = next(line for line in lines if line.startswith("dlgm-bmnist-diag "))
    metric = card["metrics"]["test_log_likelihood"]
    assert f"{metric['value']:.2f} +- {metric['stderr']:.2f} (K={metric['samples']})" in row
    assert f"{-card['paper']['test_nll']:.1f} (Rezende et al. 2014, Table 2)" in row
    assert cli.main(["zoo", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == list(every)
    first = listed[0]
    assert first["test_log_likelihood"]["value"] == every[first["name"]]["metrics"]["test_log_likelihood"]["value"]
    assert set(first) == {"name", "family", "dataset", "test_log_likelihood", "test_perplexity", "paper"}


# -- 3. quiet, quick CLI -------------------------------------------------------------------------------------------


HEAVY = ("tensorflow", "keras", "tensorflow_probability")

# Runs `python -m tfrecog ARGV` (its __main__) in this process, then prints the heavy modules it imported. (Not
# `python -X importtime`: its report of TensorFlow's modules goes to the stderr that `tfrecog._tf` holds back.)
PROBE = """
import json, runpy, sys
sys.argv = ["tfrecog", *sys.argv[1:]]
code = None
try:
    runpy.run_module("tfrecog", run_name="__main__", alter_sys=True)
except SystemExit as exit_info:
    code = exit_info.code
print("HEAVY-MODULES", json.dumps([code, sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)]))
""".replace("HEAVY)", f"{HEAVY!r})")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["zoo", "list"], ["zoo", "show", "vae-bmnist"],
                                  ["train", "--help"], ["zoo", "list", "--json"]])
def test_answers_without_importing_tensorflow(argv):
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=REPO)
    line = next(line for line in out.stdout.splitlines() if line.startswith("HEAVY-MODULES "))
    code, heavy = json.loads(line.split(" ", 1)[1])
    assert code in (0, None) and out.stdout.strip() != line, out.stderr[-2000:]
    assert heavy == [], heavy[:5]


# A command that loads TensorFlow and trains (on the embedded MNIST subset), whichever zoo the subprocess finds
TRAIN = ["train", "vae", "--epochs", "1", "--hidden", "8", "--latent-size", "2", "--verbose", "0", "--run"]


def test_the_probe_sees_tensorflow_when_it_is_imported(tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE, *TRAIN, str(tmp_path / "run")], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    code, heavy = json.loads(out.stdout.splitlines()[-1].split(" ", 1)[1])
    assert code in (0, None) and "tensorflow" in heavy


def test_the_parser_lists_what_the_registries_hold():
    from tfrecog import data, estimators, models

    assert cli.FAMILY_NAMES == tuple(models.FAMILIES)
    assert cli.ESTIMATOR_NAMES == tuple(estimators.ESTIMATORS)
    assert cli.TRAIN_DEFAULTS["dataset"] == data.DEFAULT_DATASET


def test_version(capsys):
    from tfrecog.version import __version__

    assert status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tfrecog {__version__}"


def test_tensorflow_start_up_logs_are_held_back_unless_verbose(tmp_path):
    """A subprocess trains through the CLI: stderr stays empty; with --verbose TensorFlow's log level is 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    out = subprocess.run([sys.executable, "-m", "tfrecog", *TRAIN, str(tmp_path / "run")], capture_output=True,
                         text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr[-2000:]
    probe = ("import os, sys\nfrom tfrecog import cli\n"
             "cli.main(sys.argv[1:])\nprint(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    levels = [subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60,
                             cwd=REPO, env={**env, **extra}).stdout.split()[-1]
              for argv, extra in [(["zoo", "list"], {}), (["--verbose", "zoo", "list"], {}),
                                  (["zoo", "list", "--verbose"], {}),
                                  (["--verbose", "zoo", "list"], {"TF_CPP_MIN_LOG_LEVEL": "1"})]]
    assert levels == ["3", "0", "0", "1"]  # quiet by default, logs with --verbose, the user's own setting kept


def test_the_held_back_stderr_is_shown_when_the_import_fails():
    code = ("import os\nfrom tfrecog._tf import _native_stderr_held_back as held\n"
            "with held(True):\n    os.write(2, b'hidden\\n')\n"
            "try:\n    with held(True):\n        os.write(2, b'shown\\n')\n        raise ImportError('boom')\n"
            "except ImportError:\n    pass\n"
            "with held(False):\n    os.write(2, b'verbose\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0 and out.stderr.split() == ["shown", "verbose"], out.stderr


# -- 4. one validation for every entry point -----------------------------------------------------------------------

D = 16


@pytest.fixture(scope="module")
def models():
    import tfrecog

    built = {"vae": tfrecog.VAE(event_size=D, latent_size=2, hidden_sizes=(8,)),
             "sbn": tfrecog.SBN(event_size=D, latent_sizes=(3,), baseline_hidden_size=4),
             "dlgm": tfrecog.DLGM(event_size=D, latent_sizes=(2,), hidden_sizes=(8,), recognition_hidden_sizes=(8,)),
             "words": tfrecog.SBN(event_size=D, latent_sizes=(3,), likelihood="categorical", baseline_hidden_size=4)}
    for model in built.values():
        model.compile(jit_compile=False)
        model.build((None, D))
    return built


def entry_points():
    import tfrecog

    return {
        "encode": lambda m, x: m.encode(x),
        "__call__": lambda m, x: m(x),
        "predict": lambda m, x: m.predict(x, verbose=0),
        "fit": lambda m, x: m.fit(x, epochs=1, verbose=0),
        "log_likelihood": lambda m, x: tfrecog.log_likelihood(m, x, samples=2),
        "impute": lambda m, x: tfrecog.impute(m, x, np.ones(D), steps=1),
    }


RANGE = ("encode", "__call__", "predict", "impute")  # x only meets q(h | x): values in the data's range
DENSITY = ("fit", "log_likelihood")  # x is scored by p(x | h): its support


def binary(n=6, seed=0):
    return (np.random.default_rng(seed).random((n, D)) < 0.5).astype(np.float32)


BAD = {  # input -> what the one-line error says (for pixel models)
    "images": (lambda: binary().reshape(6, 4, 4), "flatten each example first, e.g. x.reshape(len(x), -1)"),
    "one example": (lambda: binary()[0], "one example needs a batch axis, e.g. x[None]"),
    "uint8 0-255": (lambda: (binary() * 255).astype(np.uint8), "like 8-bit pixels; expected values in [0, 1]: "
                                                               "scale them, e.g. x / 255.0"),
    "NaN": (lambda: np.where(binary() > 0, np.nan, 0.0), "contains NaN or inf values"),
    "strings": (lambda: np.full((6, D), "a"), f"must be a real numeric array [N, {D}]; got dtype <U1"),
    "wrong width": (lambda: binary()[:, :5], f"must have shape [N, {D}] (flattened); got shape [6, 5]"),
}


@pytest.mark.parametrize("entry", list(entry_points()))
@pytest.mark.parametrize("family", ["vae", "sbn", "dlgm"])
@pytest.mark.parametrize("case", list(BAD))
def test_every_entry_point_refuses_bad_data_in_one_line(models, entry, family, case):
    make, expected = BAD[case]
    if entry == "impute" and case == "NaN":
        expected = "NaN or inf at observed entries"
    with pytest.raises(ValueError) as info:
        entry_points()[entry](models[family], make())
    message = str(info.value)
    assert expected in message and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("entry", list(entry_points()))
@pytest.mark.parametrize("family", ["vae", "sbn", "dlgm"])
def test_the_bernoulli_domain_per_entry_point(models, entry, family):
    """Binary data goes everywhere; grey levels in [0, 1] to the recognition model only; outside [0, 1] nowhere."""
    model, run = models[family], entry_points()[entry]
    run(model, binary())
    grey = np.random.default_rng(1).random((6, D)).astype(np.float32)
    if entry in RANGE:
        run(model, grey)
    else:
        with pytest.raises(ValueError, match="must be binary"):
            run(model, grey)
    with pytest.raises(ValueError, match=r"Bernoulli model; got values in \[-1, 1\]"):
        run(model, binary() * 2 - 1)


@pytest.mark.parametrize("entry", list(entry_points()))
def test_the_categorical_domain_per_entry_point(models, entry):
    model, run = models["words"], entry_points()[entry]
    counts = np.random.default_rng(2).integers(0, 4, (6, D)).astype(np.float32)
    run(model, counts)
    with pytest.raises(ValueError, match="non-negative counts"):
        run(model, counts - 1)
    if entry in DENSITY:
        with pytest.raises(ValueError, match="whole word counts"):
            run(model, counts + 0.5)
    else:
        run(model, counts + 0.5)


def test_compiled_code_checks_the_static_shape(models):
    from tfrecog._tf import tf

    model = models["vae"]
    encode = tf.function(lambda x: model.encode(x).mean(), autograph=False)
    assert encode(tf.constant(binary())).shape == (6, 2)
    with pytest.raises(ValueError, match=rf"must have shape \[N, {D}\] \(flattened\); got shape \[6, 4, 4\]"):
        encode(tf.constant(binary().reshape(6, 4, 4)))


def test_fit_before_compile_says_so():
    import tfrecog

    with pytest.raises(RuntimeError, match="VAE is not compiled: call model.compile"):
        tfrecog.VAE(event_size=D, latent_size=2, hidden_sizes=(8,)).fit(binary())


@pytest.mark.parametrize("family, kwargs, expected", [
    ("VAE", {"estimator": "sgvb_c"}, "unknown estimator 'sgvb_c'"),
    ("VAE", {"estimator": "nvil"}, "vae models support the estimators"),
    ("VAE", {"likelihood": "poisson"}, "likelihood must be one of bernoulli, gaussian, categorical"),
    ("VAE", {"event_size": 2.5}, "event_size must be an integer >= 1"),
    ("VAE", {"event_size": True}, "event_size must be an integer >= 1"),
    ("VAE", {"latent_size": "a"}, "latent_size must be an integer >= 1"),
    ("VAE", {"latent_size": 0}, "latent_size must be an integer >= 1"),
    ("VAE", {"hidden_sizes": (0,)}, "hidden_sizes must be positive integers (a list of layer widths)"),
    ("VAE", {"hidden_sizes": 500}, "hidden_sizes must be positive integers (a list of layer widths)"),
    ("VAE", {"num_samples": 1.5}, "num_samples must be an integer >= 1"),
    ("VAE", {"min_scale": -1.0}, "min_scale must lie in (0, inf)"),
    ("VAE", {"weight_prior_scale": 0.0}, "weight_prior_scale (sigma of the weight prior"),
    ("VAE", {"seed": -1}, "seed must be an integer >= 0"),
    ("VAE", {"kl_warmup_steps": -1}, "kl_warmup_steps must be >= 0 (an integer)"),
    ("VAE", {"kl_warmup_steps": 2.5}, "kl_warmup_steps must be >= 0 (an integer)"),
    ("SBN", {"latent_sizes": (0,)}, "latent_sizes must list 1 to 3 positive layer sizes"),
    ("SBN", {"latent_sizes": (2.5,)}, "latent_sizes must list 1 to 3 positive layer sizes"),
    ("SBN", {"recognition_hidden_size": -1}, "recognition_hidden_size must be an integer >= 1"),
    ("SBN", {"baseline_hidden_size": 2.5}, "baseline_hidden_size must be an integer >= 1"),
    ("SBN", {"estimator": "sgvb_b"}, "sbn models support the estimators"),
    ("SBN", {"likelihood": "gaussian"}, "SBN likelihood must be 'bernoulli' or 'categorical'"),
    ("DLGM", {"latent_sizes": ()}, "latent_sizes must be a non-empty list of positive integers"),
    ("DLGM", {"hidden_sizes": (-1,)}, "hidden_sizes must be positive integers (a list of layer widths)"),
    ("DLGM", {"recognition_hidden_sizes": (0,)}, "recognition_hidden_sizes must be positive integers (a list of"),
    ("DLGM", {"covariance": "full"}, "covariance must be one of diagonal, rank_one"),
])
def test_constructor_arguments_are_checked_at_construction(family, kwargs, expected):
    import tfrecog

    with pytest.raises(ValueError) as info:
        getattr(tfrecog, family)(**{"event_size": D, **kwargs})
    assert expected in str(info.value) and len(str(info.value).splitlines()) == 1, str(info.value)
