"""The `tfrecog` command never shows a traceback for a user error: one line, exit 2 (usage) or 1 (failure)."""

import subprocess
import sys

import numpy as np
import pytest

from tfrecog import checks, cli


def _status(argv):
    try:
        return cli.main(argv)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.mark.parametrize("argv, expected", [
    (["evaluate", "r", "--samples", "0"], "samples must be an integer >= 1"),
    (["evaluate", "r", "--samples", "-5"], "samples must be an integer >= 1"),
    (["evaluate", "r", "--samples", "2.5"], "got '2.5'"),
    (["evaluate", "r", "--samples", "1e99"], "got '1e99'"),
    (["evaluate", "r", "--samples", str(10**12)], "<= 100,000,000"),
    (["evaluate", "r", "--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["evaluate", "r", "--limit", "-1"], "limit must be an integer >= 1"),
    (["evaluate", "r", "--seed", "-1"], "seed must be an integer >= 0"),
    (["train", "vae", "--epochs", "0"], "epochs must be an integer >= 1"),
    (["train", "vae", "--max-seconds", "nan"], "seconds must be a finite number"),
    (["train", "vae", "--max-seconds", "0"], "seconds must lie in (0, 10,000,000]"),
    (["train", "vae", "--lr", "-1"], "learning rate must lie in (0, 10]"),
    (["train", "vae", "--hidden", "16", "0"], "size must be an integer >= 1"),
    (["train", "vae", "--verbose", "7"], "invalid choice: 7"),
    (["impute", "r", "--steps", "-1"], "steps must be an integer >= 0"),
    (["impute", "r", "--missing", "mar:1.5"], "expected mar:FRACTION"),
    (["impute", "r", "--missing", "square:x"], "expected mar:FRACTION"),
    (["sample", "r", "--num", "100000"], "num must be an integer >= 1 and <= 10,000"),
    (["quickstart", "--seconds", "inf"], "seconds must be a finite number"),
    (["zoo", "verify"], "needs a model NAME"),
    (["nonsense"], "invalid choice"),
])
def test_bad_arguments_are_one_line_usage_errors(argv, expected, capsys):
    assert _status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err


def test_failures_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    assert _status(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "config.json: is not valid JSON" in err and len(err.splitlines()) == 1, err
    with pytest.raises(ValueError, match="not valid JSON"):
        cli.main(["--debug", "evaluate", str(run)])
    with pytest.raises(ValueError, match="not valid JSON"):
        cli.main(["evaluate", str(run), "--debug"])
    monkeypatch.setenv("TFRECOG_DEBUG", "1")
    with pytest.raises(ValueError, match="not valid JSON"):
        cli.main(["evaluate", str(run)])


def test_ctrl_c_and_bugs_are_one_line(tmp_path, capsys, monkeypatch):
    from tfrecog import training

    (tmp_path / "run").mkdir()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "evaluate_run", interrupted)
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert "interrupted" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(training, "evaluate_run", lambda *a, **k: {}["missing"])
    assert cli.main(["evaluate", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "internal error: KeyError" in err and "--debug" in err and len(err.splitlines()) == 1


def test_api_entry_points_check_their_numbers():
    from tfrecog import evaluate, impute, models

    model = models.VAE(event_size=4, latent_size=2, hidden_sizes=[4])
    x = np.zeros((3, 4), np.float32)
    for kwargs, expected in [({"samples": 0}, "samples must be an integer >= 1"),
                             ({"samples": 2.5}, "samples must be an integer"),
                             ({"samples": True}, "samples must be an integer"),
                             ({"batch_size": -1}, "batch_size must be an integer >= 1"),
                             ({"samples": 10**9}, "<= 100,000,000")]:
        with pytest.raises(ValueError, match=expected):
            evaluate.log_likelihood(model, x, **kwargs)
    with pytest.raises(ValueError, match="steps must be an integer >= 0"):
        impute(model, x, np.ones_like(x), steps=1.5)
    assert checks.integer(3.0, "n") == 3 and checks.number(0.5, "m", 0.0, 1.0, open_high=True) == 0.5


def test_a_subprocess_user_error_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tfrecog", "evaluate", str(tmp_path / "nope"), "--samples", "5"],
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stderr.splitlines() if line.startswith("tfrecog")]
    assert out.returncode == 1 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr
