"""`tfrecog train ... --strategy multi-worker` for real: two worker processes on 127.0.0.1 (free ports chosen at
run time, each process bounded in time) train one VAE on mnist5k through MultiWorkerMirroredStrategy.

Each worker runs the same command with a relative `--run` folder from its own working directory, as on two
machines: whatever worker 1 wrote there would appear under its own directory, so its absence proves that only the
chief wrote the run folder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["vae", "--dataset", "mnist5k", "--hidden", "16", "--latent-size", "2", "--strategy", "multi-worker"]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_workers(homes, args, ports):
    """Worker i runs `python -m tfrecog train ARGS` in homes[i] with TF_CONFIG's task index i; its own temporary
    folder is homes[i]/tmp (the scratch folder of a non-chief worker goes there)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index, home in enumerate(homes):
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "TMPDIR": str(home / "tmp"), "TFRECOG_CLUSTER_TIMEOUT": "60", "TF_CPP_MIN_LOG_LEVEL": "3"}
        log = open(home / f"worker{index}.log", "w")  # noqa: SIM115 - closed when the process is reaped
        processes.append(subprocess.Popen([sys.executable, "-m", "tfrecog", "train", *args], cwd=home, env=env,
                                          stdout=log, stderr=subprocess.STDOUT))
    return processes


def wait_all(processes, timeout):
    """Exit codes, each process killed (SIGKILL) once `timeout` seconds have passed since the call."""
    deadline = time.monotonic() + timeout
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait())
    return codes


def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    homes = [tmp_path / "chief", tmp_path / "worker1"]
    processes = start_workers(homes, [*TINY, "--epochs", "2", "--run", "runs/vae"], free_ports(2))
    codes = wait_all(processes, 400)
    logs = [(home / f"worker{i}.log").read_text() for i, home in enumerate(homes)]
    assert codes == [0, 0], [log[-2000:] for log in logs]
    run = homes[0] / "runs" / "vae"
    assert (run / "config.json").exists() and (run / "logs").is_dir() and (run / "curves.png").exists()
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]  # one row per epoch: a single writer
    state = json.loads(next((run / "checkpoints").glob("ckpt-*/state.json")).read_text())
    assert state["epoch"] == 2 and state["updates"] == 80  # 4000 training digits / 100 per update: the global batch
    assert not (homes[1] / "runs").exists()  # worker 1 wrote nothing at its own view of the run folder
    assert list((homes[1] / "tmp").iterdir()) == []  # and deleted its scratch folder
    assert "worker done: the chief wrote the run folder" in logs[1]

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "tfrecog", "evaluate", str(run), "--samples", "5", "--limit",
                             "100"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "log p(x)" in result.stdout or "nats" in result.stdout, result.stdout


@pytest.mark.slow
def test_a_killed_worker_resumes_with_the_same_command(tmp_path):
    """Worker 1 is killed (SIGKILL) once the chief has a checkpoint; the chief, left without its peer, is stopped
    too; the same command on both then resumes from the chief's checkpoint and finishes every epoch once."""
    homes = [tmp_path / "chief", tmp_path / "worker1"]
    args = [*TINY, "--epochs", "4", "--batch-size", "20", "--valid-split", "test", "--run", "runs/vae"]
    processes = start_workers(homes, args, free_ports(2))
    run = homes[0] / "runs" / "vae"
    deadline = time.monotonic() + 300
    while not list((run / "checkpoints").glob("ckpt-*/state.json")) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in processes), "a worker stopped before the first checkpoint"
        time.sleep(0.2)
    assert list((run / "checkpoints").glob("ckpt-*/state.json")), "no checkpoint within 300 s"
    processes[1].send_signal(signal.SIGKILL)
    wait_all(processes[1:], 30)
    wait_all(processes[:1], 5)  # the chief waits for its peer's collectives: stopped (SIGKILL) after 5 s
    saved = json.loads(sorted((run / "checkpoints").glob("ckpt-*/state.json"))[-1].read_text())
    assert 1 <= saved["epoch"] < 4

    processes = start_workers(homes, args, free_ports(2))
    codes = wait_all(processes, 400)
    assert codes == [0, 0], [(home / f"worker{i}.log").read_text()[-2000:] for i, home in enumerate(homes)]
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2", "3"]
    state = json.loads(sorted((run / "checkpoints").glob("ckpt-*/state.json"))[-1].read_text())
    assert state["epoch"] == 4 and state["updates"] == 4 * 200  # 4000 training digits / 20 per update
    assert not (homes[1] / "runs").exists()
