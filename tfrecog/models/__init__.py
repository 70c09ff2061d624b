"""Model families, one module each; every model is a `LatentVariableModel` (see `base`).

VAE (Kingma & Welling), SBN and fDARN (Mnih & Gregor), DLGM (Rezende, Mohamed & Wierstra).
"""

from tfrecog.models.base import InputError, LatentVariableModel
from tfrecog.models.dlgm import DLGM
from tfrecog.models.sbn import SBN, BernoulliLayer
from tfrecog.models.vae import VAE

__all__ = ["DLGM", "SBN", "VAE", "BernoulliLayer", "InputError", "LatentVariableModel"]
