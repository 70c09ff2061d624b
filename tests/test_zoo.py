import json
import shutil

import numpy as np
import pytest

from tfrecog import data, zoo
from tfrecog._tf import keras
from tfrecog.evaluate import log_likelihood

NAMES = zoo.list()


def test_zoo_has_cards_and_every_card_is_complete():
    assert NAMES, "the zoo has no models"
    for card in zoo.list(details=True):
        for key in ("name", "version", "family", "config", "dataset", "recipe", "metrics", "training", "weights"):
            assert key in card, (card["name"], key)
        assert set(card["weights"]) >= {"file", "bytes", "sha256"}
        assert set(card["training"]) >= {"wall_seconds", "hardware", "commit", "epochs"}
        ll = card["metrics"]["test_log_likelihood"]
        assert ll["samples"] >= 1000 and ll["num_examples"] > 0 and ll["stderr"] > 0
        assert card["metrics"]["test_elbo"]["value"] <= ll["value"] + 3 * ll["stderr"]


def test_all_weights_together_stay_compact():
    total = sum(zoo.weights_path(c).stat().st_size for c in zoo.list(details=True))
    assert total < 60e6


@pytest.mark.parametrize("name", NAMES)
def test_entry_loads_encodes_samples_and_roundtrips(name, tmp_path):
    model = zoo.load(name)
    card = zoo.info(name)
    x = np.zeros((3, model.event_size), np.float32)
    if card["dataset"]["name"] == "frey_faces":
        x += 0.5
    assert np.isfinite(model(x).numpy()).all()  # posterior means of every latent layer
    assert model.sample(4, seed=0).shape == (4, model.event_size)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_recorded_metric_matches_a_fast_reevaluation(name, data_dir):
    card = zoo.info(name)
    model = zoo.load(name, compile=False)
    ds = card["dataset"]
    test = data.load(ds["name"], ds["test_split"], data_dir=data_dir, binarize=ds.get("binarize"))
    subset = test.x[:200]
    fast = log_likelihood(model, subset, samples=100, seed=0)
    recorded = card["metrics"]["check"]
    # A 200-example subset of the 1000 in the card's check differs by sampling (4 of its standard errors) and
    # K=100 instead of 1000 lowers the estimate by at most a few nats for these models: a wide, fixed-seed check.
    assert abs(fast.log_likelihood - recorded["value"]) < 4 * fast.stderr + 3.0


def test_unknown_name_lists_close_matches():
    if not NAMES:
        pytest.skip("empty zoo")
    with pytest.raises(zoo.ZooError, match="close matches"):
        zoo.info(NAMES[0] + "x")


@pytest.fixture
def private_zoo(tmp_path, monkeypatch):
    if not NAMES:
        pytest.skip("empty zoo")
    name = NAMES[0]
    card = zoo.info(name)
    (tmp_path / "weights").mkdir()
    shutil.copy(zoo.weights_path(card), tmp_path / "weights" / card["weights"]["file"])
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    monkeypatch.setattr(zoo, "zoo_dir", lambda: tmp_path)
    return name, tmp_path / "weights" / card["weights"]["file"], card


def test_altered_truncated_or_missing_weights_are_refused(private_zoo):
    name, weights, card = private_zoo
    assert zoo.load(name) is not None
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(zoo.ZooError) as err:
        zoo.load(name)
    message = str(err.value)
    assert str(weights) in message and card["weights"]["sha256"] in message and "altered or truncated" in message
    weights.write_bytes(bytes(blob[: len(blob) // 3]))
    with pytest.raises(zoo.ZooError, match="altered or truncated"):
        zoo.load(name)
    weights.unlink()
    with pytest.raises(zoo.ZooError, match="missing"):
        zoo.load(name)


def test_verify_reports_checksum_and_usability():
    if not NAMES:
        pytest.skip("empty zoo")
    report = zoo.verify(NAMES[0])
    assert "sha256 ok" in report and "loads, encodes and samples ok" in report
