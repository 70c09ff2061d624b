"""Model families: one module each. Every model is a `LatentVariableModel` (see `base`)."""

from tfrecog.models.base import InputError, LatentVariableModel
from tfrecog.models.vae import VAE

__all__ = ["InputError", "LatentVariableModel", "VAE"]
from tfrecog.models.dlgm import DLGM  # noqa: E402

__all__ += ["DLGM"]
from tfrecog.models.sbn import SBN, BernoulliLayer  # noqa: E402

__all__ += ["SBN", "BernoulliLayer"]
