"""What a run shows while it trains: TensorBoard images of samples and reconstructions, and a progress bar that
counts parameter updates (not the fused Keras steps that each make `steps_per_execution` of them)."""

import io as pyio
import re
from contextlib import redirect_stdout

import numpy as np
import pytest

from tfrecog import plots, training
from tfrecog._tf import keras, tf
from tfrecog.callbacks import TensorBoardImages
from tfrecog.models.trainer import UpdateProgbar


def read_images(folder):
    """{tag: {step: uint8 image [H, W, C]}} from the event files of `folder`."""
    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                png = tf.make_ndarray(value.tensor)[2] if value.HasField("tensor") else value.image.encoded_image_string
                found.setdefault(value.tag, {})[event.step] = tf.io.decode_png(png).numpy()
    return found


def test_tile_places_each_image_between_one_pixel_borders():
    images = np.arange(2 * 2 * 3 * 3, dtype=np.float32).reshape(2, 2 * 3 * 3) / 36.0  # two 2x3 RGB images
    canvas = plots.tile(images, (2, 3, 3), columns=2)
    assert canvas.shape == (1 + 2 + 1, 1 + 2 * (3 + 1), 3)
    np.testing.assert_array_equal(canvas[1:3, 1:4], images[0].reshape(2, 3, 3))
    np.testing.assert_array_equal(canvas[1:3, 5:8], images[1].reshape(2, 3, 3))
    assert (canvas[0] == 1).all() and (canvas[:, 4] == 1).all() and (canvas[:, 0] == 1).all()
    gray = plots.tile(images[:, :6], (2, 3), columns=1)  # (H, W): no channel axis, one column
    assert gray.shape == (1 + 2 * (2 + 1), 1 + 3 + 1)
    np.testing.assert_array_equal(gray[4:6, 1:4], images[1, :6].reshape(2, 3))
    np.testing.assert_array_equal(plots.interleave(images[:, :2], images[:, 2:4]),
                                  [images[0, :2], images[0, 2:4], images[1, :2], images[1, 2:4]])


def test_a_run_logs_sample_and_reconstruction_images_that_are_the_models_own(tmp_path):
    config = training.default_config("vae", "mnist5k", model={"latent_size": 2, "hidden_sizes": [16]}, epochs=2,
                                     seed=3)
    model, _ = training.train(config, tmp_path / "run", verbose=0)
    images = read_images(tmp_path / "run" / "logs" / "images")
    assert sorted(images) == ["reconstructions", "samples"]
    assert sorted(images["samples"]) == sorted(images["reconstructions"]) == [1, 2]  # every epoch
    # The last image is the trained model's: its samples with the callback's fixed seed, tiled 8 x 8, as PNG bytes
    # (8 bits: the decoded pixels are within half a grey level of the float values).
    expected = plots.tile(np.asarray(model.sample(64, seed=3)), (28, 28))
    logged = images["samples"][2][..., 0].astype(np.float32) / 255.0
    assert logged.shape == expected.shape == (8 * 29 + 1, 8 * 29 + 1)
    np.testing.assert_allclose(logged, expected, atol=0.5 / 255 + 1e-6)
    # Reconstructions: the first 32 validation examples (training examples where, as here, there is no validation
    # split) in the odd columns of the mosaic, each beside E[x | h], h ~ q(h | x).
    from tfrecog import data

    assert config.get("valid_split") is None
    x = data.load("mnist5k", config["train_split"]).x[:32]
    expected = plots.tile(plots.interleave(x, np.asarray(model.reconstruct(x, seed=4))), (28, 28), 8)
    np.testing.assert_allclose(images["reconstructions"][2][..., 0] / 255.0, expected, atol=0.5 / 255 + 1e-6)
    assert (tmp_path / "run" / "logs" / "train").is_dir()  # Keras's scalars are still there


def test_images_every_k_epochs_and_at_the_last(tmp_path):
    model = _tiny_model()
    x = np.random.default_rng(0).integers(0, 2, (200, 16)).astype(np.float32)
    logger = TensorBoardImages(tmp_path, x[:6], (4, 4), num_samples=9, every=2)
    model.fit(x, batch_size=50, epochs=5, verbose=0, callbacks=[logger])
    images = read_images(tmp_path)
    assert sorted(images["samples"]) == [2, 4, 5]
    assert images["samples"][5].shape == (3 * 5 + 1, 3 * 5 + 1, 1)
    assert images["reconstructions"][5].shape == (3 * 5 + 1, 4 * 5 + 1, 1)  # 6 pairs, 4 columns: 3 rows


@pytest.mark.parametrize("kwargs, expected", [
    ({"examples": np.zeros((4, 10))}, "D = prod(image_shape) = 16"),
    ({"image_shape": (4, 2, 2)}, "C in 1, 3, 4"),
    ({"every": 0}, "at least 1"),
])
def test_image_logger_refuses_bad_arguments_in_one_line(tmp_path, kwargs, expected):
    arguments = {"log_dir": tmp_path, "examples": np.zeros((4, 16)), "image_shape": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        TensorBoardImages(**arguments)
    assert len(str(info.value).splitlines()) == 1


def _tiny_model(steps_per_execution=5):
    from tfrecog import VAE

    model = VAE(event_size=16, latent_size=2, hidden_sizes=(8,), seed=0)
    model.compile(steps_per_execution=steps_per_execution)
    return model


@pytest.mark.parametrize("steps_per_execution, expected", [(5, "10/10"), (1, "10/10"), (3, "12/12")])
def test_progress_bar_counts_updates_not_fused_calls(steps_per_execution, expected):
    # 1,000 rows in minibatches of 100: 10 updates a pass. With S = 5: 2 calls of 5 updates; with S = 3: 4 calls of
    # 3 (the last wraps into the next pass), 12 updates, and the bar says so.
    model = _tiny_model(steps_per_execution)
    x = np.random.default_rng(0).integers(0, 2, (1000, 16)).astype(np.float32)
    out = pyio.StringIO()
    with redirect_stdout(out):
        model.fit(x, batch_size=100, epochs=1, verbose=1)
    text = out.getvalue()
    assert expected in text and "update" in text, text
    assert int(model.optimizer.iterations.numpy()) == int(expected.split("/")[0])


def test_a_progress_bar_of_the_users_own_is_kept():
    model = _tiny_model()
    mine = keras.callbacks.ProgbarLogger()
    x = np.random.default_rng(0).integers(0, 2, (1000, 16)).astype(np.float32)
    out = pyio.StringIO()
    with redirect_stdout(out):
        model.fit(x, batch_size=100, epochs=1, verbose=1, callbacks=[mine])
    assert "2/2" in out.getvalue() and "update" not in out.getvalue()  # Keras's own bar counts calls
    assert not isinstance(mine, UpdateProgbar)
