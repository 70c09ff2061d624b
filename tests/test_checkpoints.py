import json
import shutil
import warnings

import numpy as np
import pytest

from tfrecog import checkpoints, io, training


def _writer(payload: bytes):
    return lambda path: path.write_bytes(payload)


def _publish(ckpt_dir, epoch, previous, best=None):
    state = {"epoch": epoch, "wall_seconds": float(epoch), "updates": 10 * epoch}
    return checkpoints.publish(ckpt_dir, state, _writer(b"last%d" % epoch),
                               None if best is None else _writer(best), previous)


def test_publish_keeps_the_last_two_each_naming_its_files(tmp_path):
    previous = None
    for epoch in range(1, 5):
        previous = _publish(tmp_path, epoch, previous, best=b"best" if epoch == 2 else None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000003", "ckpt-000004"]
    newest = checkpoints.latest(tmp_path)
    assert newest.state["epoch"] == 4 and newest.last.read_bytes() == b"last4"
    assert newest.best.read_bytes() == b"best"  # carried over from epoch 2 although that folder is gone
    assert newest.state["files"]["last"]["sha256"] == io.sha256(newest.last)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_with_one_line(tmp_path):
    first = _publish(tmp_path, 1, None)
    second = _publish(tmp_path, 2, first)
    for damage in ("truncate", "flip", "state", "delete"):
        shutil.rmtree(tmp_path / second.name)
        second = _publish(tmp_path, 2, first)
        if damage == "truncate":
            second.last.write_bytes(second.last.read_bytes()[:2])
        elif damage == "flip":
            second.last.write_bytes(b"LAST2")
        elif damage == "state":
            (second.folder / "state.json").write_text('{"epoch": ')
        else:
            second.last.unlink()
        with pytest.warns(checkpoints.CheckpointWarning) as record:
            chosen = checkpoints.latest(tmp_path)
        assert chosen.name == first.name and chosen.state["epoch"] == 1
        message = str(record[0].message)
        assert second.name in message and "using the previous one" in message and "\n" not in message
    # Both damaged: an error naming each, never a silent restart.
    first.last.write_bytes(b"")
    with pytest.raises(checkpoints.CheckpointError, match="no usable checkpoint.*ckpt-000002.*ckpt-000001.*backup"):
        checkpoints.latest(tmp_path)


@pytest.mark.parametrize("text, expected", [
    ("", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"wall_seconds": 1}', "'epoch' a non-negative"),
    ('{"epoch": -1}', "'epoch' a non-negative"), ('{"epoch": 1.5}', "'epoch' a non-negative"),
    ('{"epoch": 1, "wall_seconds": "x"}', "'wall_seconds'"), ('{"epoch": 1, "files": {"last": "w.h5"}}', "'files'"),
])
def test_a_malformed_state_is_named_with_the_fault(tmp_path, text, expected):
    (tmp_path / "state.json").write_text(text)
    (tmp_path / "last.weights.h5").write_bytes(b"w")
    with pytest.raises(checkpoints.CheckpointError, match=f"state.json.*{expected}"):
        checkpoints.latest(tmp_path)


def test_cleanup_removes_what_interrupted_writes_left(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    leftovers = [tmp_path / ".config.abc.tmp.json", ckpt / ".last.x1.tmp.weights.h5", ckpt / ".tmp-ckpt-x2",
                 ckpt / ".trash-ckpt-000001"]
    for path in leftovers:
        path.mkdir() if "ckpt-" in path.name else path.write_text("half")
    kept = _publish(ckpt, 1, None)
    assert set(checkpoints.cleanup(tmp_path)) == set(leftovers)
    assert sorted(p.name for p in ckpt.iterdir()) == [kept.name]


def test_repair_history_keeps_one_whole_row_per_checkpointed_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,1.0\n1,2.0\n1,2.5\n2,3.0\n3,4")  # a duplicate, a row past the checkpoint, a torn row
    assert checkpoints.repair_history(path, 3) == 3
    assert path.read_text() == "epoch,loss\n0,1.0\n1,2.5\n2,3.0\n"
    path.write_text("epo")  # a header cut off by a kill
    checkpoints.repair_history(path, 3)
    assert not path.exists()
    for text, expected in [("loss,epoch\n", "line 1: expected a CSV header starting with 'epoch'"),
                           ("epoch,loss\n0\n", "line 2: expected 2 comma-separated fields"),
                           ("epoch,loss\nx,1\n", "line 2: expected an integer epoch"),
                           (b"epoch,loss\n\xff,1\n", "not UTF-8")]:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(checkpoints.CheckpointError, match=f"history.csv: .*{expected}.*move it aside"):
            checkpoints.repair_history(path, 3)


# ---------------------------------------------------------------------------------------------------------------
# Through training: the damaged newest checkpoint, the older layout, a damaged recipe


def _tiny(**overrides):
    settings = {"model": {"latent_size": 2, "hidden_sizes": [8]}, "epochs": 2, "checkpoint_every_seconds": 0,
                "jit_compile": False, "steps_per_execution": 20, **overrides}
    return training.default_config("vae", "mnist5k", **settings)


STEPS = 40  # mnist5k: 4,000 training digits / batch 100


def test_resume_and_evaluate_fall_back_from_a_damaged_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    training.train(_tiny(), run, verbose=0)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["ckpt-000001", "ckpt-000002"]
    newest = run / "checkpoints" / names[1] / "last.weights.h5"
    newest.write_bytes(newest.read_bytes()[:1000])  # a half-copied file
    with pytest.warns(checkpoints.CheckpointWarning, match="using the previous one, ckpt-000001 .epoch 1"):
        model, _ = training.load_run(run, "last")
    assert int(model.optimizer.iterations.numpy()) == STEPS
    with pytest.warns(checkpoints.CheckpointWarning):
        model, state = training.train(None, run, verbose=0)
    # Epoch 2 is trained again from epoch 1: exactly the updates of an uninterrupted run.
    assert state["epoch"] == 2 and state["updates"] == int(model.optimizer.iterations.numpy()) == 2 * STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training.run_state(run)["updates"] == 2 * STEPS


def test_a_run_folder_of_the_older_layout_resumes_and_evaluates(tmp_path):
    run = tmp_path / "run"
    training.train(_tiny(epochs=1), run, verbose=0)
    ckpt = run / "checkpoints"
    folder = ckpt / "ckpt-000001"
    state = json.loads((folder / "state.json").read_text())
    del state["files"]
    (folder / "last.weights.h5").rename(ckpt / "last.weights.h5")
    (ckpt / "state.json").write_text(json.dumps(state))
    shutil.rmtree(folder)
    model, _ = training.load_run(run)
    assert int(model.optimizer.iterations.numpy()) == STEPS
    model, state = training.train(None, run, epochs=2, verbose=0)
    assert state["updates"] == 2 * STEPS
    # The older checkpoint stays as the fallback until two of the new layout supersede it.
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt-000001", "last.weights.h5", "state.json"]
    model, state = training.train(None, run, epochs=3, verbose=0)
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt-000001", "ckpt-000002"]
    # An older-layout folder whose weights are newer than its state (killed between the two renames) is refused.
    (ckpt / "ckpt-000002" / "last.weights.h5").rename(ckpt / "last.weights.h5")
    (ckpt / "state.json").write_text(json.dumps({"epoch": 1, "updates": STEPS, "wall_seconds": 1.0}))
    shutil.rmtree(ckpt / "ckpt-000001")
    shutil.rmtree(ckpt / "ckpt-000002")
    with pytest.raises(checkpoints.CheckpointError, match=f"holds {3 * STEPS} updates but its state.json records"):
        training.train(None, run, epochs=4, verbose=0)


@pytest.mark.parametrize("text, expected", [
    ("{", "not valid JSON"), ("[]", "expected a JSON object"), ('{"family": "vae"}', "expected 'model'"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_damaged_config_is_named_with_what_to_do(tmp_path, text, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    for call in (lambda: training.train(None, run), lambda: training.load_run(run)):
        with pytest.raises(training.RunError, match=f"config.json: .*{expected}.*start a new run folder"):
            call()
    assert np.array_equal(sorted(p.name for p in run.iterdir()), ["config.json"])  # nothing written
