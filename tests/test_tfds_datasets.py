"""TFDS image datasets by name (issue 24): read through `tfds.testing.mock_data` (never a download in tests),
flattened and scaled to [0, 1], binarized where asked, and refused in one line when TFDS has not prepared them."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfrecog import data, training
from tfrecog.models import VAE


@pytest.mark.parametrize("name, size", [("cifar10", 32 * 32 * 3), ("fashion_mnist", 28 * 28)])
def test_tfds_images_flattened_and_scaled(name, size):
    with tfds.testing.mock_data(num_examples=9):
        split = data.load(name, "test")
        binary = data.load(name, "test", binarize="static")
    assert split.x.shape == (9, size) and split.x.dtype == np.float32 and data.info(name).event_size == size
    assert 0.0 <= split.x.min() and split.x.max() <= 1.0 and len(np.unique(split.x)) > 2  # grey levels
    assert split.y.shape == (9,) and split.source == f"tfds:{name}"
    # Mock images are random 0..255: the scaling is exactly / 255 of what TFDS gives.
    with tfds.testing.mock_data(num_examples=9):
        raw = np.stack([ex["image"] for ex in tfds.as_numpy(tfds.load(name, split="test"))])
    np.testing.assert_array_equal(split.x, raw.reshape(9, -1).astype(np.float32) / 255.0)
    assert set(np.unique(binary.x)) <= {0.0, 1.0} and binary.binary


def test_a_recipe_on_cifar10_is_a_gaussian_vae_of_3072_pixels():
    config = training.default_config("vae", "cifar10")
    assert config["model"]["likelihood"] == "gaussian" and config.get("valid_split") is None
    with tfds.testing.mock_data(num_examples=20):
        x = data.load("cifar10", "train").x
    model = VAE(event_size=x.shape[1], latent_size=2, hidden_sizes=(8,), likelihood="gaussian")
    model.compile(jit_compile=False, steps_per_execution=1)
    history = model.fit(x, batch_size=10, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_not_prepared_is_one_line_naming_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # an empty TFDS folder: nothing prepared
    monkeypatch.delenv(data.TFDS_DOWNLOAD_ENV, raising=False)
    with pytest.raises(data.DatasetError, match="TFRECOG_TFDS_DOWNLOAD=1") as error:
        data.load("svhn_cropped", "test")
    assert "\n" not in str(error.value) and "tfds build svhn_cropped" in str(error.value)


@pytest.mark.parametrize("setting, download", [(None, False), ("1", True)])
def test_downloads_only_when_allowed(monkeypatch, setting, download):
    calls = []

    def load(name, **kwargs):
        calls.append((name, kwargs.get("download")))
        raise FileNotFoundError(name)

    monkeypatch.setattr(tfds, "load", load)
    if setting is None:
        monkeypatch.delenv(data.TFDS_DOWNLOAD_ENV, raising=False)
    else:
        monkeypatch.setenv(data.TFDS_DOWNLOAD_ENV, setting)
    with pytest.raises(data.DatasetError):
        data.load("cifar10", "train")
    assert calls == [("cifar10", download)]
