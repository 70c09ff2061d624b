"""tfrecog: recognition models (amortised variational inference) for deep directed latent-variable models.

Keras 3 models on TensorFlow with TFP distributions, a zoo of pretrained models and encoders for deployment.
"""

from tfrecog import (  # noqa: E402
    _tf,  # noqa: F401  (sets the Keras backend before anything else imports Keras)
    data,
    estimators,
    evaluate,
    io,
    loader,
    models,
    training,
    zoo,
)
from tfrecog.evaluate import ais_log_likelihood, bdmc, inference_gaps, log_likelihood  # noqa: E402
from tfrecog.impute import impute  # noqa: E402
from tfrecog.models import DLGM, SBN, VAE, LatentVariableModel  # noqa: E402
from tfrecog.version import __version__  # noqa: E402, F401

__all__ = ["DLGM", "SBN", "VAE", "LatentVariableModel", "data", "estimators", "evaluate", "export", "impute",
           "io", "loader", "log_likelihood", "models", "training", "zoo", "ais_log_likelihood", "bdmc",
           "inference_gaps"]


def __getattr__(name):
    # tf2onnx is slow to import: `tfrecog.export` loads on first use.
    if name == "export":
        import importlib

        return importlib.import_module("tfrecog.export")
    raise AttributeError(f"module 'tfrecog' has no attribute {name!r}")
