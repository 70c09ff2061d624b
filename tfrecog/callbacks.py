"""Keras callbacks for tfrecog models: TensorBoard images of what a model generates and reconstructs.

`TensorBoardImages` writes, at the end of an epoch, two image summaries beside Keras's `TensorBoard` scalars:

- `samples`: E[x | h] for h ~ p(h), the same prior draws every time (a fixed seed), so that successive images show
  one set of latent codes as the decoder learns them;
- `reconstructions`: fixed examples x_i, each followed by E[x | h_i] for h_i ~ q(h | x_i) (one posterior draw).

`tfrecog.training.train` adds it to every run on an image dataset (logs/images, beside logs/train and
logs/validation). Read them with `tensorboard --logdir RUN/logs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfrecog import plots
from tfrecog._tf import keras, tf

__all__ = ["TensorBoardImages"]


class TensorBoardImages(keras.callbacks.Callback):
    """Logs a grid of model samples and a grid of reconstructions as TensorBoard images every `every` epochs.

    Args:
      log_dir: the folder of the image event file (e.g. RUN/logs/images).
      examples: [R, D] fixed examples to reconstruct (at most 32 are used), in the model's data range.
      image_shape: (H, W) or (H, W, C) of one example, with H * W (* C) = D.
      num_samples: how many samples in the sample grid (a square grid of side ceil(sqrt(n))).
      every: log at the end of epochs e (counted from 1) with e % every == 0, and at the last epoch of `fit`.
      seed: the seed of the prior draws and of the posterior draws; the same at every epoch.
    """

    def __init__(self, log_dir, examples, image_shape, num_samples: int = 64, every: int = 1, seed: int = 0):
        super().__init__()
        examples = np.asarray(examples, np.float32)[:32]
        image_shape = tuple(int(d) for d in image_shape)
        if examples.ndim != 2 or len(examples) == 0 or int(np.prod(image_shape)) != examples.shape[1]:
            raise ValueError(f"TensorBoardImages needs examples [R, D] with D = prod(image_shape) = "
                             f"{int(np.prod(image_shape))}; got an array of shape {examples.shape}")
        if len(image_shape) not in (2, 3) or (len(image_shape) == 3 and image_shape[2] not in (1, 3, 4)):
            raise ValueError(f"image_shape must be (H, W) or (H, W, C) with C in 1, 3, 4; got {image_shape}")
        if int(num_samples) < 1 or int(every) < 1:
            raise ValueError(f"num_samples and every must be at least 1; got {num_samples} and {every}")
        self.log_dir = Path(log_dir)
        self.examples = examples
        self.image_shape = image_shape
        self.num_samples = int(num_samples)
        self.every = int(every)
        self.seed = int(seed)
        self._writer = None
        self._last_logged = None

    def _images(self):
        """The two mosaics as uint8 [1, H', W', C] images: round(255 clip(v, 0, 1)) of each value v."""
        samples = np.asarray(self.model.sample(self.num_samples, seed=self.seed))
        reconstructed = np.asarray(self.model.reconstruct(self.examples, seed=self.seed + 1))
        columns = 2 * int(np.ceil(np.sqrt(len(self.examples) / 2)))  # even: data and reconstruction side by side
        grids = {"samples": plots.tile(samples, self.image_shape),
                 "reconstructions": plots.tile(plots.interleave(self.examples, reconstructed), self.image_shape,
                                               columns)}
        return {name: np.round(255.0 * np.clip(grid.reshape(1, *grid.shape[:2], -1), 0.0, 1.0)).astype(np.uint8)
                for name, grid in grids.items()}

    def write(self, step: int):
        """Writes both images at TensorBoard step `step` (the epoch count)."""
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        with self._writer.as_default():
            for name, image in self._images().items():
                tf.summary.image(name, image, step=step)
        self._writer.flush()
        self._last_logged = step

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.params.get("epochs"):
            self.write(epoch + 1)

    def on_train_end(self, logs=None):
        done = getattr(self, "_epochs_done", None)
        if done is not None and self._last_logged != done:
            self.write(done)  # a run stopped early (a time budget, early stopping) shows where it stopped
        if self._writer is not None:
            self._writer.close()
            self._writer = None
