"""SIGKILL loop: a `tfrecog train` killed at random moments (inside its first epoch, while a checkpoint is being
written, between checkpoints) and resumed with the same command ends with exactly the updates of an uninterrupted
run, one history row per epoch and nothing half-written."""

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from tfrecog import checkpoints, io, training

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 8
STEPS_PER_EPOCH = 40  # mnist5k: 4,000 training digits / batch 100, so an uninterrupted run makes EPOCHS * 40 updates


def _start(run):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "tfrecog", "train", "vae", "--run", str(run), "--verbose", "0"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, process, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end and process.poll() is None:
        if condition():
            return True
        time.sleep(0.002)
    return False


def _kill(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _published(run):
    return sorted(p.name for p in (run / "checkpoints").glob("ckpt-*")) if (run / "checkpoints").is_dir() else []


def test_sigkill_at_random_moments_then_resume_trains_exactly_the_uninterrupted_updates(tmp_path):
    rng = random.Random(20)
    run = tmp_path / "run"
    run.mkdir()
    # The recipe is placed in the folder first so that every start is the same resuming command; a checkpoint after
    # every epoch makes kills during checkpoint writes likely.
    config = training.default_config(
        "vae", "mnist5k", model={"latent_size": 2, "hidden_sizes": [8]}, epochs=EPOCHS, checkpoint_every_seconds=0,
        jit_compile=False, steps_per_execution=10)
    io.write_json(run / "config.json", config)
    kills = []

    # 1. Inside the first epoch: training has begun (TensorBoard made logs/) and no checkpoint exists yet.
    process = _start(run)
    assert _wait_for(lambda: (run / "logs").is_dir(), process)
    time.sleep(rng.uniform(0.0, 0.2))
    kills.append(("first epoch", _published(run)))
    _kill(process)

    # 2. While a checkpoint is being written: its temporary folder exists.
    process = _start(run)
    _wait_for(lambda: any(p.name.startswith(".tmp-ckpt-") for p in (run / "checkpoints").glob(".*")), process)
    kills.append(("checkpoint write", _published(run)))
    _kill(process)

    # 3. At a random moment after the next checkpoint.
    process = _start(run)
    before = _published(run)
    _wait_for(lambda: _published(run) != before, process)
    time.sleep(rng.uniform(0.0, 0.3))
    kills.append(("random", _published(run)))
    _kill(process)

    # 4. The same command runs to the end.
    process = _start(run)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()[-2000:]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no damaged checkpoint to fall back from
        newest = checkpoints.latest(run / "checkpoints")
    assert newest.state["epoch"] == EPOCHS, kills
    assert newest.state["updates"] == EPOCHS * STEPS_PER_EPOCH, kills
    model, _ = training.load_run(run, "last")
    assert int(model.optimizer.iterations.numpy()) == EPOCHS * STEPS_PER_EPOCH
    # Nothing half-written: no temporary files, at most two checkpoints, one whole history row per epoch.
    leftovers = [p for p in [*run.iterdir(), *(run / "checkpoints").iterdir()] if p.name.startswith(".")]
    assert leftovers == []
    assert len(_published(run)) <= checkpoints.KEEP
    header, *rows = (run / "history.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows] == list(range(EPOCHS))
    assert all(len(r.split(",")) == len(header.split(",")) for r in rows)
