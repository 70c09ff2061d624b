"""Outputs to a read-only folder, below a regular file or on a full disk: one line, exit 1, no temporary files left.

A full disk is simulated by an `open` that fails with ENOSPC (after half a write) for files under one folder, a
read-only folder by one that fails with EROFS on opening for writing (the tests run as root, for whom chmod does not
forbid writing).
"""

import builtins
import errno
import io as std_io
import os
from pathlib import Path

import pytest

from tfrecog import checkpoints, cli, io, training

_real_open = builtins.open


def _refuse_writes(monkeypatch, folder: Path, code: int):
    """Makes writes of files under `folder` fail as on a full disk (ENOSPC) or a read-only file system (EROFS)."""
    folder = Path(folder).resolve()

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        writing = any(c in mode for c in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(folder):
            if code == errno.EROFS:
                raise OSError(code, os.strerror(code), str(file))
            return Full(_real_open(file, mode, *args, **kwargs))
        return _real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(std_io, "open", fake_open)


def _leftovers(folder: Path):
    return [p for p in Path(folder).rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_atomic_writes_and_checkpoints_leave_nothing_on_a_failing_disk(tmp_path, monkeypatch, code):
    io.write_json(tmp_path / "state.json", {"a": 1})
    previous = checkpoints.publish(tmp_path / "checkpoints", {"epoch": 1, "wall_seconds": 0.0},
                                   lambda p: p.write_bytes(b"w"), None, None)
    _refuse_writes(monkeypatch, tmp_path, code)
    with pytest.raises(OSError) as err:
        io.write_json(tmp_path / "state.json", {"a": 2})
    assert err.value.errno == code
    with pytest.raises(OSError):
        checkpoints.publish(tmp_path / "checkpoints", {"epoch": 2, "wall_seconds": 0.0},
                            lambda p: p.write_bytes(b"w2"), None, previous)
    monkeypatch.undo()
    assert io.read_json(tmp_path / "state.json") == {"a": 1}
    assert checkpoints.latest(tmp_path / "checkpoints").name == previous.name
    assert _leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dest") / "run"
    config = training.default_config("vae", "mnist5k", model={"latent_size": 2, "hidden_sizes": [8]}, epochs=1,
                                     jit_compile=False)
    training.train(config, folder, verbose=0)
    return folder


def _one_line_failure(argv, capsys, expected):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("tfrecog")]  # not tqdm's progress bar
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    return lines[0]


def test_below_a_regular_file(run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _one_line_failure(["export", str(run), "--out", str(blocker / "enc.onnx")], capsys, str(blocker))
    _one_line_failure(["train", "vae", "--run", str(blocker / "run"), "--epochs", "1"], capsys, str(blocker))
    _one_line_failure(["sample", str(run), "--num", "4", "--out", str(blocker / "s.png")], capsys, str(blocker))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only")])
def test_full_or_read_only_destinations(run, tmp_path, capsys, monkeypatch, code, words):
    out = tmp_path / "out"
    out.mkdir()
    _refuse_writes(monkeypatch, out, code)
    _one_line_failure(["export", str(run), "--out", str(out / "enc.onnx")], capsys, words)
    _one_line_failure(["sample", str(run), "--num", "4", "--out", str(out / "s.png")], capsys, words)
    _one_line_failure(["train", "vae", "--run", str(out / "run"), "--epochs", "1"], capsys, words)
    monkeypatch.undo()
    before = (run / "metrics.json").read_bytes() if (run / "metrics.json").exists() else None
    _refuse_writes(monkeypatch, run, code)
    line = _one_line_failure(["evaluate", str(run), "--samples", "2", "--limit", "10"], capsys, words)
    assert "metrics.json" in line and ".tmp" not in line  # names the destination, not the temporary file
    monkeypatch.undo()
    after = (run / "metrics.json").read_bytes() if (run / "metrics.json").exists() else None
    assert before == after
    assert _leftovers(out) == [] and [p for p in run.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_a_real_read_only_folder(run, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        _one_line_failure(["export", str(run), "--out", str(folder / "enc.onnx")], capsys, "Permission denied")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []
