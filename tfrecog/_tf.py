"""Quiet, single place where TensorFlow, Keras and TFP are imported.

Setting the Keras backend and TensorFlow's log level must happen before the first import.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "tfrecog needs Keras 3 with the TensorFlow backend; "
        f"KERAS_BACKEND is {keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
    )

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["keras", "tf", "tfp", "tfd", "tfb"]
