"""MaskedDense: the autoregressive property (Jacobian), the context path, shapes, errors and serialization."""

import numpy as np
import pytest

from tfrecog._tf import keras, tf
from tfrecog.layers import MaskedDense
from tfrecog.layers.masked import autoregressive_mask


def test_mask_is_strictly_triangular():
    mask = autoregressive_mask(4, 4)
    np.testing.assert_array_equal(mask, np.triu(np.ones((4, 4)), k=1))
    assert autoregressive_mask(3, 5).shape == (3, 5)


@pytest.mark.parametrize("context_size", [None, 3])
def test_output_j_depends_only_on_inputs_before_j(context_size):
    layer = MaskedDense(6, context_size=context_size)
    x = tf.random.stateless_normal([2, 6], [0, 1])
    context = tf.random.stateless_normal([2, 3], [0, 2]) if context_size else None
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        if context is not None:
            tape.watch(context)
        y = layer(x, context=context)
    jacobian = tape.batch_jacobian(y, x).numpy()  # [B, out j, in i]
    # dy_j / dx_i is exactly 0 for i >= j and (generically) non-zero for i < j.
    upper = np.triu(np.ones((6, 6)), k=0).astype(bool)  # i >= j
    assert np.all(jacobian[:, upper] == 0.0)
    assert np.all(np.abs(jacobian[:, ~upper]) > 0)
    if context is not None:
        context_jacobian = tape.batch_jacobian(y, context).numpy()
        assert np.all(np.abs(context_jacobian) > 0)  # the context reaches every output, including the first


def test_perturbing_later_inputs_leaves_earlier_outputs_unchanged():
    layer = MaskedDense(5, context_size=2)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    c = np.ones((4, 2), "float32")
    base = layer(x, context=c).numpy()
    for i in range(5):
        moved = x.copy()
        moved[:, i] += 10.0
        out = layer(moved, context=c).numpy()
        np.testing.assert_array_equal(out[:, : i + 1], base[:, : i + 1])
        if i < 4:
            assert np.all(out[:, i + 1 :] != base[:, i + 1 :])


def test_sample_axis_broadcasts_against_shared_context():
    layer = MaskedDense(4, context_size=3)
    x = tf.random.stateless_uniform([5, 2, 4], [1, 1])
    context = tf.random.stateless_uniform([2, 3], [1, 2])
    y = layer(x, context=context)
    assert y.shape == (5, 2, 4)
    np.testing.assert_allclose(y[3].numpy(), layer(x[3], context=context).numpy(), rtol=1e-6)


def test_clear_errors():
    with pytest.raises(ValueError, match="units"):
        MaskedDense(0)
    layer = MaskedDense(3, context_size=2)
    with pytest.raises(ValueError, match="conditioning input of width 2"):
        layer(tf.ones([1, 3]))
    plain = MaskedDense(3)
    with pytest.raises(ValueError, match="no conditioning input|takes no conditioning"):
        plain(tf.ones([1, 3]), context=tf.ones([1, 2]))


def test_serialization_round_trip():
    layer = MaskedDense(4, context_size=2, use_bias=False, kernel_initializer="paper", name="m")
    config = layer.get_config()
    assert MaskedDense.from_config(config).get_config() == config
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(restored, MaskedDense) and restored.get_config() == config
