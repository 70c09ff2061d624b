"""Atomic file writes and checksums: nothing a user saved is ever half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yields a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    The suffix of `path` is kept (Keras checks file extensions such as '.weights.h5').
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename in (tmp, str(tmp)) and err.errno is not None:
            # Name the file the user asked for, not the temporary one (which is removed below).
            raise OSError(err.errno, f"cannot write {path}: {err.strerror}", str(path)) from err
        raise
    finally:
        if os.path.exists(tmp):
            if os.path.isdir(tmp):
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.unlink(tmp)


def write_text(path, text: str):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def read_json(path):
    return json.loads(Path(path).read_text())


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_weights(model, path):
    """`model.save_weights` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp))


def git_commit(default: str = "unknown") -> str:
    """The commit of the tfrecog source in use: from git when tfrecog runs from its own checkout, else the commit
    recorded at installation (`setup.py` writes tfrecog/_commit.txt), else `default`. A git repository that merely
    contains an installed copy (a Python installation kept in git, say) is not mistaken for tfrecog's."""
    import subprocess

    package = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package, capture_output=True,
                             text=True, timeout=5)
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == package.parent:
            return lines[1]
    except (OSError, subprocess.SubprocessError):
        pass
    recorded = package / "_commit.txt"
    if recorded.exists():
        return recorded.read_text().strip() or default
    return default


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
