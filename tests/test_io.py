"""Provenance: the commit recorded in run folders, zoo cards and exported artifacts."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tfrecog import io

ROOT = Path(io.__file__).resolve().parent.parent


def _standalone_io(package_dir: Path):
    """tfrecog/io.py loaded from a copy in `package_dir` (it imports only the standard library)."""
    package_dir.mkdir(parents=True)
    shutil.copy(Path(io.__file__), package_dir / "io.py")
    spec = importlib.util.spec_from_file_location("copied_io", package_dir / "io.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_commit_of_the_checkout_in_use():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("tfrecog is not running from a git checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert io.git_commit() == head and re.fullmatch(r"[0-9a-f]{40}", head)


def test_an_installed_copy_inside_another_repository_uses_its_recorded_commit(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    other = tmp_path / "python-installation"
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=other, check=True)
    copied = _standalone_io(other / "site-packages" / "tfrecog")
    assert copied.git_commit() == "unknown"  # not the other repository's HEAD
    (other / "site-packages" / "tfrecog" / "_commit.txt").write_text("0123456789abcdef0123456789abcdef01234567\n")
    assert copied.git_commit() == "0123456789abcdef0123456789abcdef01234567"
