"""A multilayer perceptron layer that accepts any number of leading (sample, batch) dimensions."""

from tfrecog._tf import keras


def initializer(name: str):
    """'paper' is N(0, 0.01^2) (Kingma & Welling's initialisation); anything else is a Keras initializer name."""
    if name == "paper":
        return keras.initializers.RandomNormal(stddev=0.01)
    return keras.initializers.get(name)


@keras.saving.register_keras_serializable(package="tfrecog")
class MLP(keras.layers.Layer):
    """y = W_out act(... act(W_1 x + b_1) ...) + b_out, applied to the last axis of x [..., D].

    With `activation="gated"` every hidden layer is a gated linear unit (Dauphin et al. 2017, the "gated dense"
    layers of Tomczak & Welling's VampPrior models): h = (W x + b) * sigmoid(V x + c), W and V held as one Dense
    layer of twice the width.

    Args:
      hidden_sizes: widths of the hidden layers (may be empty: then the layer is affine).
      activation: hidden nonlinearity, a Keras activation name or 'gated'.
      output_size: width of the linear output layer, or None for no output layer.
      kernel_initializer: Keras initializer name or 'paper' (N(0, 0.01^2) weights and biases).
      output_activation: activation of the output layer (default linear).
    """

    def __init__(self, hidden_sizes=(), activation="tanh", output_size=None, kernel_initializer="glorot_uniform",
                 output_activation=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.output_size = None if output_size is None else int(output_size)
        self.kernel_initializer = kernel_initializer
        self.output_activation = output_activation
        bias = "paper" if kernel_initializer == "paper" else "zeros"
        # Output width of each Dense layer after its nonlinearity (a gated layer's Dense is twice as wide).
        self._widths = list(self.hidden_sizes) + ([self.output_size] if self.output_size is not None else [])
        self.gated = activation == "gated"
        hidden = len(self.hidden_sizes)
        self.dense_layers = [
            keras.layers.Dense(
                2 * size if self.gated and i < hidden else size,
                activation=(None if self.gated else activation) if i < hidden else output_activation,
                kernel_initializer=initializer(kernel_initializer),
                bias_initializer=initializer(bias),
                name=f"dense_{i}",
            )
            for i, size in enumerate(self._widths)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer, width in zip(self.dense_layers, self._widths):
            layer.build(shape)
            shape = shape[:-1] + (width,)
        self.built = True

    def call(self, x):
        hidden = len(self.hidden_sizes)
        for i, layer in enumerate(self.dense_layers):
            x = layer(x)
            if self.gated and i < hidden:
                linear, gate = keras.ops.split(x, 2, axis=-1)
                x = linear * keras.ops.sigmoid(gate)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self._widths[-1] if self._widths else input_shape[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "output_size": self.output_size,
            "kernel_initializer": self.kernel_initializer,
            "output_activation": self.output_activation,
        }
