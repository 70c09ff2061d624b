"""A masked (autoregressive) dense layer: output j sees only inputs i < j, plus an optional unmasked context.

The building block of fDARN's autoregressive latent and visible layers and of autoregressive recognition layers.
"""

from __future__ import annotations

import numpy as np

from tfrecog._tf import keras, tf
from tfrecog.layers.mlp import initializer


def autoregressive_mask(input_size: int, units: int) -> np.ndarray:
    """M [input_size, units] with M[i, j] = 1 iff i < j (the transpose of a strictly lower-triangular W)."""
    return (np.arange(input_size)[:, None] < np.arange(units)[None, :]).astype(np.float32)


@keras.saving.register_keras_serializable(package="tfrecog")
class MaskedDense(keras.layers.Layer):
    """y = x (W * M) + c V + b, with M[i, j] = 1 iff i < j, so y_j depends only on x_<j (and on c).

    In the usual matrix-vector notation y = A x + B c + b with A strictly lower-triangular: output j is a function
    of inputs 0..j-1 and of the conditioning input c only. All outputs come from one masked matmul; when a
    context c is given its term c V is computed at c's own batch shape and broadcast, so K samples of x that
    share a context [B, C] (posterior samples [K, B, D]) do not repeat that product K times.

    Args:
      units: width of the output (for an autoregressive layer, equal to the input width).
      context_size: width of the unmasked conditioning input c, or None for no conditioning input.
      use_bias: whether to add b.
      kernel_initializer: Keras initializer name or 'paper' (N(0, 0.01^2)).

    Example:
      >>> layer = MaskedDense(4, context_size=3)
      >>> layer(tf.ones([2, 4]), context=tf.ones([2, 3])).shape
      TensorShape([2, 4])
    """

    def __init__(self, units: int, context_size: int | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        if context_size is not None and int(context_size) < 1:
            raise ValueError(f"context_size must be a positive integer or None; got {context_size!r}")
        self.units = int(units)
        self.context_size = None if context_size is None else int(context_size)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape):
        input_size = int(input_shape[-1])
        self.input_size = input_size
        self.mask = autoregressive_mask(input_size, self.units)
        self.kernel = self.add_weight(shape=(input_size, self.units), initializer=initializer(self.kernel_initializer),
                                      name="kernel")
        self.context_kernel = None
        if self.context_size is not None:
            self.context_kernel = self.add_weight(shape=(self.context_size, self.units),
                                                  initializer=initializer(self.kernel_initializer),
                                                  name="context_kernel")
        self.bias = None
        if self.use_bias:
            bias_init = "paper" if self.kernel_initializer == "paper" else "zeros"
            self.bias = self.add_weight(shape=(self.units,), initializer=initializer(bias_init), name="bias")
        self.built = True

    def masked_kernel(self):
        """W * M [input_size, units]: row i holds the weights from input i, nonzero only in columns j > i."""
        return self.kernel * tf.constant(self.mask)

    def context_term(self, context=None):
        """c V + b [..., units] (the part of y that does not depend on x); zeros-shaped bias when both are absent."""
        if self.context_kernel is not None:
            if context is None:
                raise ValueError(f"{self.name}: expected a conditioning input of width {self.context_size}; got None")
            term = tf.matmul(context, self.context_kernel) if context.shape.rank == 2 else tf.tensordot(
                context, self.context_kernel, axes=1)
            return term + self.bias if self.bias is not None else term
        if context is not None:
            raise ValueError(f"{self.name}: built without context_size, so it takes no conditioning input")
        return self.bias if self.bias is not None else tf.zeros([self.units])

    def call(self, inputs, context=None):
        inputs = tf.convert_to_tensor(inputs)
        if inputs.shape[-1] is not None and inputs.shape[-1] != self.input_size:
            raise ValueError(f"{self.name}: expected inputs of width {self.input_size}; got shape {inputs.shape}")
        masked = tf.tensordot(inputs, self.masked_kernel(), axes=1) if inputs.shape.rank != 2 else tf.matmul(
            inputs, self.masked_kernel())
        return masked + self.context_term(context)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "context_size": self.context_size,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
        }
