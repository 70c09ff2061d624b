"""tfrecog: recognition models (amortised variational inference) for deep directed latent-variable models.

Keras 3 models on TensorFlow with TFP distributions, a zoo of pretrained models and encoders for deployment.
"""

__version__ = "0.1.0"

from tfrecog import _tf  # noqa: F401  (sets the Keras backend before anything else imports Keras)
from tfrecog import data, estimators, evaluate, models  # noqa: E402
from tfrecog.evaluate import log_likelihood  # noqa: E402
from tfrecog.models import VAE, LatentVariableModel  # noqa: E402

__all__ = ["VAE", "LatentVariableModel", "data", "estimators", "evaluate", "log_likelihood", "models"]
