"""A run folder's checkpoints: weights and training state as one unit, published by one atomic rename.

Each checkpoint is a folder `checkpoints/ckpt-NNNNNN/` holding `last.weights.h5`, `best.weights.h5` (where there is
one) and `state.json`, which names those files with their sha256; the last two good checkpoints are kept.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from tfrecog import io

__all__ = ["CheckpointError", "CheckpointWarning", "Checkpoint", "cleanup", "find", "latest", "publish",
           "update_state", "read_state", "repair_history", "KEEP"]

KEEP = 2  # checkpoints kept: the newest and the one before it (the fallback when the newest is damaged)
_NAME = re.compile(r"^ckpt-(\d{6,})$")
_TMP_PREFIX = ".tmp-ckpt-"
_TRASH_PREFIX = ".trash-ckpt-"
LEGACY_FILES = ("last.weights.h5", "best.weights.h5", "state.json")  # the layout before checkpoint folders


class CheckpointError(ValueError):
    """A run folder's checkpoint or history is damaged; the message names the file, the fault and what to do."""


class CheckpointWarning(UserWarning):
    """A damaged newest checkpoint was skipped for the one before it (said in one line)."""


@dataclasses.dataclass
class Checkpoint:
    """One good checkpoint: `state` (epoch, updates, wall_seconds, ...), its `last` weights and `best` (or None).

    `folder` is None for a run folder of the older layout (`checkpoints/last.weights.h5` + `state.json`).
    """

    name: str
    state: dict
    last: Path
    best: Path | None
    folder: Path | None
    seq: int

    @property
    def legacy(self) -> bool:
        return self.folder is None


def _is_temporary(name: str) -> bool:
    """Names written by an interrupted `io.atomic_path` (`.stem.XXXX.tmp...`) or checkpoint publication."""
    return name.startswith((_TMP_PREFIX, _TRASH_PREFIX)) or (name.startswith(".") and ".tmp" in name)


def cleanup(run_dir) -> list[Path]:
    """Removes the temporary files and folders an interrupted write left in `run_dir` and its `checkpoints/`.

    Returns the paths removed. Safe only when no other process writes to the run folder (one run, one process).
    """
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if _is_temporary(path.name):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _fault(path: Path, what: str) -> str:
    return f"{path}: {what}"


def read_state(path) -> dict:
    """A checkpoint's `state.json`, checked: a JSON object with a non-negative integer `epoch`, a finite
    non-negative `wall_seconds` and, where present, a non-negative integer `updates`. Raises CheckpointError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(_fault(path, "is not UTF-8 text (expected the JSON training state)")) from None
    except OSError as err:
        raise CheckpointError(_fault(path, f"cannot be read ({err.strerror or err})")) from None
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(_fault(path, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})")
                              ) from None
    if not isinstance(state, dict):
        raise CheckpointError(_fault(path, f"expected a JSON object with 'epoch', got {type(state).__name__}"))

    def integer(key, required):
        value = state.get(key)
        if value is None and not required:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(_fault(path, f"expected {key!r} a non-negative integer, got {value!r}"))

    integer("epoch", True)
    integer("updates", False)
    wall = state.get("wall_seconds", 0.0)
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall) or wall < 0:
        raise CheckpointError(_fault(path, f"expected 'wall_seconds' a non-negative number, got {wall!r}"))
    files = state.get("files")
    if files is not None:
        ok = isinstance(files, dict) and "last" in files and all(
            isinstance(v, dict) and isinstance(v.get("file"), str) and isinstance(v.get("sha256"), str)
            and "/" not in v["file"] and "\\" not in v["file"] and v["file"] not in ("", ".", "..")
            for v in files.values())
        if not ok:
            raise CheckpointError(_fault(path, "expected 'files' to map 'last' (and 'best') to {'file': NAME, "
                                               f"'sha256': HEX}}, got {files!r}"[:300]))
    return state


def _open_folder(folder: Path, seq: int) -> Checkpoint:
    state_path = folder / "state.json"
    if not state_path.is_file():
        raise CheckpointError(_fault(state_path, "is missing"))
    state = read_state(state_path)
    if "files" not in state:
        raise CheckpointError(_fault(state_path, "names no weights files ('files')"))
    paths = {}
    for role, entry in state["files"].items():
        path = folder / entry["file"]
        if not path.is_file():
            raise CheckpointError(_fault(path, "is missing"))
        if io.sha256(path) != entry["sha256"]:
            raise CheckpointError(_fault(path, "is damaged (its sha256 differs from the one in state.json)"))
        paths[role] = path
    return Checkpoint(folder.name, state, paths["last"], paths.get("best"), folder, seq)


def _legacy(ckpt_dir: Path) -> Checkpoint | None:
    last, state_path = ckpt_dir / "last.weights.h5", ckpt_dir / "state.json"
    if not last.exists() and not state_path.exists():
        return None
    if not state_path.is_file():
        raise CheckpointError(_fault(state_path, "is missing beside last.weights.h5; restore it from a backup or "
                                                 "start a new run folder"))
    state = read_state(state_path)
    if not last.is_file():
        if state.get("epoch", 0) == 0:
            return None
        raise CheckpointError(_fault(last, f"is missing but state.json records epoch {state['epoch']}; restore it "
                                           "from a backup or start a new run folder"))
    best = ckpt_dir / "best.weights.h5"
    return Checkpoint("checkpoints (older layout)", state, last, best if best.is_file() else None, None, 0)


def _numbered(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def find(ckpt_dir) -> tuple[Checkpoint | None, list[str]]:
    """The newest good checkpoint in `ckpt_dir` (None when there is none yet) and the faults of newer ones.

    Raises CheckpointError when checkpoints exist but none is good.
    """
    ckpt_dir = Path(ckpt_dir)
    faults = []
    for seq, folder in _numbered(ckpt_dir):
        try:
            return _open_folder(folder, seq), faults
        except CheckpointError as err:
            faults.append(str(err))
    try:
        legacy = _legacy(ckpt_dir)
    except CheckpointError as err:
        faults.append(str(err))
        legacy = None
    if legacy is None and faults:
        raise CheckpointError(f"no usable checkpoint in {ckpt_dir}: {'; '.join(faults)}; restore the folder from a "
                              "backup, or start a new run folder")
    return legacy, faults


def latest(ckpt_dir) -> Checkpoint | None:
    """`find`, saying in one line (a CheckpointWarning) when a damaged newer checkpoint was skipped."""
    checkpoint, faults = find(ckpt_dir)
    if faults:
        warnings.warn(f"newest checkpoint damaged ({faults[0]}); using the previous one, {checkpoint.name} "
                      f"(epoch {checkpoint.state.get('epoch')})", CheckpointWarning, stacklevel=2)
    return checkpoint


def publish(ckpt_dir, state: dict, write_last: Callable[[Path], None], write_best: Callable[[Path], None] | None,
            previous: Checkpoint | None) -> Checkpoint:
    """Writes a new checkpoint folder and makes it visible by one rename; keeps it and `previous`, removes the rest.

    `write_last(path)` / `write_best(path)` write the weights; with `write_best` None the best weights of `previous`
    are carried over (a hard link, or a copy where links are not possible). `state` is stored with a `files` entry
    naming each weights file and its sha256. Returns the new Checkpoint.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    numbered = _numbered(ckpt_dir)
    seq = max([numbered[0][0] if numbered else 0, previous.seq if previous else 0]) + 1
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=ckpt_dir))
    try:
        files = {}
        write_last(tmp / "last.weights.h5")
        files["last"] = {"file": "last.weights.h5", "sha256": io.sha256(tmp / "last.weights.h5")}
        best = tmp / "best.weights.h5"
        if write_best is not None:
            write_best(best)
        elif previous is not None and previous.best is not None:
            try:
                os.link(previous.best, best)
            except OSError:
                shutil.copyfile(previous.best, best)
        if best.exists():
            files["best"] = {"file": "best.weights.h5", "sha256": io.sha256(best)}
        stored = {**{k: v for k, v in state.items() if k != "files"}, "files": files}
        (tmp / "state.json").write_text(io.json_text(stored))
        _fsync_tree(tmp)
        final = ckpt_dir / f"ckpt-{seq:06d}"
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    checkpoint = Checkpoint(final.name, stored, final / "last.weights.h5",
                            final / "best.weights.h5" if "best" in files else None, final, seq)
    _prune(ckpt_dir, keep={final.name, previous.name if previous and not previous.legacy else None},
           keep_legacy=previous is not None and previous.legacy)
    return checkpoint


def _fsync_tree(folder: Path):
    """Flushes a new checkpoint's files to disk before it is published (a crash of the machine, not only of the
    process, then cannot leave a published checkpoint with missing data)."""
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _prune(ckpt_dir: Path, keep: set, keep_legacy: bool):
    for _, folder in _numbered(ckpt_dir):
        if folder.name not in keep:
            # Renamed first, so a kill during the removal leaves a temporary name (cleaned up) rather than a
            # half-deleted checkpoint that would look damaged.
            trash = ckpt_dir / f"{_TRASH_PREFIX}{folder.name}"
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
    if not keep_legacy:
        for name in reversed(LEGACY_FILES):  # state.json first: without it the old weights are not a checkpoint
            (ckpt_dir / name).unlink(missing_ok=True)


def update_state(checkpoint: Checkpoint, state: dict) -> Checkpoint:
    """Rewrites the state of an existing checkpoint (e.g. to record a divergence), keeping its files entry."""
    stored = {**{k: v for k, v in state.items() if k != "files"}}
    if not checkpoint.legacy:
        stored["files"] = checkpoint.state["files"]
        io.write_json(checkpoint.folder / "state.json", stored)
    else:
        io.write_json(checkpoint.last.parent / "state.json", stored)
    return dataclasses.replace(checkpoint, state=stored)


def repair_history(path, epochs: int) -> int:
    """Rewrites `history.csv` to the rows of the epochs the checkpoint holds (0 .. epochs - 1), each once.

    A last line without its newline (a write cut off by a kill) and rows of epochs after the checkpoint are
    dropped; for an epoch logged twice the later row is kept. Any other fault (not UTF-8, no 'epoch' header, a row of
    the wrong length or without an integer epoch) is a CheckpointError naming the line. Returns the rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(_fault(path, f"is not UTF-8 text (byte {err.start}); move it aside to start a new "
                                           "history (the checkpoints are not affected)")) from None
    if not text:
        return 0
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    elif len(lines) > 1:
        lines.pop()  # torn last row
    else:
        return _rewrite(path, [], None)  # a torn header alone
    header = lines[0].split(",")
    advice = "move it aside to start a new history (the checkpoints are not affected)"
    if header[0] != "epoch":
        raise CheckpointError(_fault(path, f"line 1: expected a CSV header starting with 'epoch', got "
                                           f"{lines[0][:60]!r}; {advice}"))
    rows = {}
    for number, line in enumerate(lines[1:], 2):
        fields = line.split(",")
        try:
            epoch = int(fields[0])
        except ValueError:
            raise CheckpointError(_fault(path, f"line {number}: expected an integer epoch, got {fields[0][:30]!r}; "
                                               f"{advice}")) from None
        if not 0 <= epoch < epochs:
            continue  # trained after the checkpoint, then lost with the process
        if len(fields) != len(header):
            raise CheckpointError(_fault(path, f"line {number}: expected {len(header)} comma-separated fields, got "
                                               f"{len(fields)}; {advice}"))
        rows[epoch] = line
    kept = [rows[e] for e in sorted(rows)]
    if kept != lines[1:]:
        _rewrite(path, kept, lines[0])
    return len(kept)


def _rewrite(path: Path, rows: list[str], header: str | None) -> int:
    if header is None:
        path.unlink()
    else:
        io.write_text(path, "\n".join([header, *rows]) + "\n")
    return len(rows)
