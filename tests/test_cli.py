import re
import subprocess
import sys

import pytest

from tfrecog import cli


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfrecog", *args], capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "quickstart", "impute", "export", "zoo"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: tfrecog" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TFRECOG_DATA_DIR", raising=False)
    cases = [  # exit status 1: failures (missing or damaged files); 2: usage errors (bad arguments)
        (["evaluate", str(tmp_path / "missing")], "does not exist", 1),
        (["train", "vae", "--dataset", "nonsense", "--run", str(tmp_path / "r")], "unknown dataset 'nonsense'", 2),
        (["train", "vae", "--dataset", "binarized_mnist", "--run", str(tmp_path / "r2")], "files not found", 1),
        (["sample", "no-such-model"], "no zoo model named", 1),
        (["train", "vae", "--run", str(tmp_path / "r3"), "--ema", "1.5"],
         "--ema (a momentum, e.g. 0.999) must lie in (0, 1)", 2),
    ]
    for argv, expected, status in cases:
        try:
            code = cli.main(argv)
        except SystemExit as exit_info:  # argparse's usage errors
            code = exit_info.code
        assert code == status, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err


def test_console_entry_point_trains_and_resumes(tmp_path):
    """Through `python -m tfrecog` (a subprocess, as a user would run it): train, then resume the run."""
    run = tmp_path / "run"
    out = run_cli("train", "vae", "--run", str(run), "--epochs", "1", "--latent-size", "2", "--hidden", "32",
                  "--verbose", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run / "curves.png").exists()
    out = run_cli("train", "vae", "--run", str(run), "--epochs", "2", "--verbose", "0")
    assert out.returncode == 0 and "resuming" in out.stdout


def test_evaluate_sample_export_impute_on_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "vae", "--run", str(run), "--epochs", "1", "--latent-size", "2", "--hidden", "32",
                     "--verbose", "0"]) == 0
    assert cli.main(["evaluate", str(run), "--samples", "10", "--limit", "100"]) == 0
    assert "log p(x)" in capsys.readouterr().out
    assert cli.main(["sample", str(run), "--num", "16", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()
    assert cli.main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "enc.onnx")]) == 0
    assert (tmp_path / "enc.onnx").exists()
    assert cli.main(["impute", str(run), "--missing", "square:10", "--steps", "5", "--num", "4",
                     "--out", str(tmp_path / "imp.png")]) == 0
    assert (tmp_path / "imp.png").exists()


def test_zoo_list_show_verify_export(capsys, tmp_path):
    from tfrecog import zoo

    assert cli.main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    names = zoo.list()
    assert all(name in out for name in names) and "test log p(x), nats (K)" in out.splitlines()[0]
    if names:
        assert cli.main(["zoo", "show", names[0]]) == 0
        assert '"sha256"' in capsys.readouterr().out
        assert cli.main(["zoo", "verify", names[0]]) == 0
        assert "sha256 ok" in capsys.readouterr().out
        onnx_path = tmp_path / "zoo-encoder.onnx"
        assert cli.main(["export", names[0], "--format", "onnx", "--out", str(onnx_path)]) == 0
        import tfrecog_runtime

        meta = tfrecog_runtime.load(str(onnx_path)).metadata
        assert meta["model_name"] == names[0] and meta["zoo_version"] == zoo.info(names[0])["version"]
    assert cli.main(["zoo", "show"]) == 2
    assert "needs a model NAME" in capsys.readouterr().err


def test_train_split_options_reach_the_recipe(tmp_path):
    import json

    run = tmp_path / "run"
    assert cli.main(["train", "vae", "--run", str(run), "--epochs", "1", "--latent-size", "2", "--hidden", "16",
                     "--train-split", "test", "--valid-split", "none", "--ema", "0.9", "--select-by", "elbo",
                     "--verbose", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train_split"] == "test" and config["valid_split"] is None and config["select_by"] == "elbo"
    assert config["optimizer"]["config"] == {"learning_rate": 1e-3, "use_ema": True, "ema_momentum": 0.9}
    # no validation split: no best checkpoint, and loading the run falls back to the last weights
    from tfrecog import checkpoints

    newest = checkpoints.latest(run / "checkpoints")
    assert newest.best is None and newest.last.exists()
    assert cli.main(["evaluate", str(run), "--samples", "5", "--limit", "20"]) == 0


@pytest.mark.parametrize("command", ["compare", "plot-embedding", "diagnose"])
def test_help_of_the_maintainer_commands(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: tfrecog {command}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Run folders of two VAEs and an SBN trained for one epoch on the embedded MNIST subset (without XLA, which
    would take longer to compile than to train)."""
    from tfrecog import training

    root = tmp_path_factory.mktemp("runs")
    runs = {"a": root / "a", "b": root / "b", "sbn": root / "sbn"}
    for name, family, seed, model in [("a", "vae", 0, {"latent_size": 2, "hidden_sizes": [16]}),
                                      ("b", "vae", 1, {"latent_size": 3, "hidden_sizes": [16]}),
                                      ("sbn", "sbn", 0, {"latent_sizes": [4]})]:
        config = training.default_config(family, "mnist5k", model=model, epochs=1, seed=seed, jit_compile=False)
        training.train(config, runs[name], verbose=0)
    return runs


def test_compare_is_the_paired_difference_of_the_evaluator(tiny_runs, capsys):
    a, b = str(tiny_runs["a"]), str(tiny_runs["b"])
    assert cli.main(["compare", a, a, "--samples", "10", "--limit", "50"]) == 0
    assert f"{a} - {a}: 0.00 +- 0.00 nats per example (paired, K=10, mnist5k test, n=50)" in capsys.readouterr().out
    assert cli.main(["compare", a, b, "--samples", "10", "--limit", "50", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the difference of the two printed estimates (each a mean over the same 50 examples), to their rounding
    (ll_a, se_a), (ll_b, _) = (map(float, re.search(r"log p\(x\) ~= (\S+) \+- (\S+)", line).groups())
                               for line in lines[:2])
    mean, stderr = map(float, re.search(rf"{re.escape(a)} - {re.escape(b)}: (\S+) \+- (\S+) nats", lines[2]).groups())
    assert abs(mean - (ll_a - ll_b)) <= 0.006
    assert 0 < stderr < se_a  # pairing removes the spread between examples


def test_plot_embedding_and_diagnose_on_runs(tiny_runs, tmp_path, capsys):
    from tfrecog import io

    out = tmp_path / "embedding.png"
    assert cli.main(["plot-embedding", str(tiny_runs["a"]), "--limit", "200", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000 and f"wrote {out}" in capsys.readouterr().out
    report = tmp_path / "variance.json"
    assert cli.main(["diagnose", str(tiny_runs["sbn"]), "--estimators", "nvil", "--repeats", "4", "--batch", "8",
                     "--out", str(report)]) == 0
    assert "| nvil | + variance normalisation" in capsys.readouterr().out
    saved = io.read_json(report)
    assert [row["estimator"] for row in saved["results"]] == ["nvil"] and saved["batch"] == 8
    assert saved["results"][0]["trace_ratio"] == 1.0 and saved["command"].startswith("tfrecog diagnose ")
    # Exit status 2 for a usage error (a bad argument), 1 for a failure such as a model that does not exist.
    for argv, expected, status in [
        (["diagnose", str(tiny_runs["sbn"]), "--estimators", "bogus"], "unknown estimator(s) bogus", 2),
        (["diagnose", str(tiny_runs["a"]), "--repeats", "2"], "need an SBN or fDARN", 2),
        (["compare", str(tiny_runs["a"]), "no-such-model"], "no zoo model named", 1),
    ]:
        assert cli.main(argv) == status
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
