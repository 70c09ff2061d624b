"""Model families: one module each. Every model is a `LatentVariableModel` (see `base`)."""

from tfrecog.models.base import InputError, LatentVariableModel
from tfrecog.models.vae import VAE

__all__ = ["InputError", "LatentVariableModel", "VAE"]
