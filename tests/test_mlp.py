import numpy as np
import pytest

from tfrecog._tf import keras
from tfrecog.layers import MLP


def _numpy_mlp(layer, x):
    h = x
    hidden = len(layer.hidden_sizes)
    for i, dense in enumerate(layer.dense_layers):
        z = h @ dense.kernel.numpy() + dense.bias.numpy()
        if i < hidden and layer.gated:
            linear, gate = np.split(z, 2, axis=-1)
            h = linear / (1.0 + np.exp(-gate))
        elif i < hidden:
            h = np.tanh(z)
        else:
            h = z
    return h


@pytest.mark.parametrize("activation", ["tanh", "gated"])
@pytest.mark.parametrize("output_size", [3, None])
def test_mlp_computes_its_equation_over_leading_dimensions(activation, output_size):
    layer = MLP([5, 4], activation, output_size)
    x = np.random.default_rng(0).normal(size=(2, 7, 6)).astype("float32")
    y = layer(x).numpy()
    assert y.shape == (2, 7, output_size or 4) == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, _numpy_mlp(layer, x), rtol=1e-5, atol=1e-6)


def test_gated_units_hold_two_maps_in_one_kernel():
    layer = MLP([5], "gated", 3)
    layer.build((None, 6))
    assert [tuple(d.kernel.shape) for d in layer.dense_layers] == [(6, 10), (5, 3)]


def test_gated_mlp_round_trips_through_its_config():
    layer = MLP([5], "gated", 3, name="m")
    x = np.ones((2, 6), "float32")
    y = layer(x).numpy()
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    clone.set_weights(layer.get_weights())
    assert clone.gated
    np.testing.assert_allclose(clone(x).numpy(), y, rtol=1e-6)
