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
    cases = [
        (["evaluate", str(tmp_path / "missing")], "does not exist"),
        (["train", "vae", "--dataset", "nonsense", "--run", str(tmp_path / "r")], "unknown dataset 'nonsense'"),
        (["train", "vae", "--dataset", "binarized_mnist", "--run", str(tmp_path / "r2")], "files not found"),
        (["sample", "no-such-model"], "no zoo model named"),
        (["train", "vae", "--run", str(tmp_path / "r3"), "--ema", "1.5"], "--ema is a momentum in (0, 1)"),
    ]
    for argv, expected in cases:
        assert cli.main(argv) == 2
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
    assert all(name in out for name in names) and "nats (K=" in out
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
    assert not (run / "checkpoints" / "best.weights.h5").exists()
    assert (run / "checkpoints" / "last.weights.h5").exists()
    assert cli.main(["evaluate", str(run), "--samples", "5", "--limit", "20"]) == 0
