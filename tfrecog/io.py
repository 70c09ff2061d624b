"""Atomic file writes, checksums and provenance (the commit of the code in use): nothing a user saved is ever
half-written. Imports only the standard library (setup.py loads this file by path).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yields a temporary path beside `path`; on success it is renamed onto `path`, on failure removed.

    The caller writes a file or a directory at the temporary path. A directory replaces an existing directory at
    `path` (the old one is moved aside, then removed once the new one is in place). The suffix of `path` is kept
    (Keras checks file extensions such as '.weights.h5').
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    old = f"{tmp}.old"
    try:
        yield Path(tmp)
        if os.path.isdir(tmp) and os.path.isdir(path):
            os.replace(path, old)  # a directory cannot be renamed onto a non-empty one: move the old aside
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
        else:
            os.replace(tmp, path)
    except OSError as err:
        if err.filename in (tmp, str(tmp)) and err.errno is not None:
            # Name the file the user asked for, not the temporary one (which is removed below).
            raise OSError(err.errno, f"cannot write {path}: {err.strerror}", str(path)) from err
        raise
    finally:
        for leftover in (tmp, old):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            elif os.path.exists(leftover):
                os.unlink(leftover)


def write_text(path, text: str):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def json_text(obj) -> str:
    """`obj` as indented JSON text ending in a newline; numpy scalars and arrays become numbers and lists."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path, obj):
    write_text(path, json_text(obj))


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


def _checkout_head(package: Path) -> str | None:
    """HEAD of the git checkout whose top level holds `package`, or None (no git, or not tfrecog's own checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=package, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode == 0 and len(lines) == 2 and Path(lines[0]).resolve() == package.parent:
        return lines[1]
    return None


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout tfrecog runs from; (None, None) when it does not run from its own
    checkout. A git repository that merely contains an installed copy (a Python installation kept in git, say) is
    not mistaken for tfrecog's. `dirty`: tracked files differ from the commit (None if git status fails)."""
    package = Path(__file__).resolve().parent
    head = _checkout_head(package)
    if head is None:
        return None, None
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=package,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return head, None
    return head, bool(status.stdout.strip()) if status.returncode == 0 else None


def git_commit(default: str = "unknown") -> str:
    """The commit of the tfrecog source in use: from git when tfrecog runs from its own checkout (`git_state`),
    else the commit recorded at installation (`setup.py` writes tfrecog/_commit.txt), else `default`."""
    package = Path(__file__).resolve().parent
    head = _checkout_head(package)
    if head is not None:
        return head
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
