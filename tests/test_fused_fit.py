"""The fast path of `fit` on arrays: row indices into a device-resident copy of the data, S updates per call, metrics
accumulated in loop variables and written to the trackers once per call."""

import numpy as np
import pytest

from tfrecog._tf import keras, tf
from tfrecog.models import SBN, VAE
from tfrecog.models.trainer import _with_static_shape


def small_vae():
    return VAE(event_size=12, latent_size=3, hidden_sizes=(16,), seed=1)


def fitted(make, data, steps, epochs=2, **compile_kwargs):
    keras.utils.set_random_seed(0)
    model = make()
    model.compile(steps_per_execution=steps, **compile_kwargs)
    history = model.fit(data, batch_size=50, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history


@pytest.mark.parametrize("jit", [True, False])
def test_fused_metrics_equal_per_update_metrics(binary_data, jit):
    """Per-call means with weight S give the same epoch averages as updating the trackers after every update
    (S = 6 fused vs S = 1; the same updates, data order and seeds, so only float rounding differs)."""
    runs = [fitted(small_vae, binary_data, steps, jit_compile=jit,
                   optimizer=keras.optimizers.Adam(1e-2)) for steps in (6, 1)]
    (fused, fused_history), (single, single_history) = runs
    assert set(fused_history) == set(single_history) >= {"loss", "elbo", "kl", "reconstruction"}
    for name in single_history:
        np.testing.assert_allclose(fused_history[name], single_history[name], rtol=1e-5, atol=1e-5)
    for a, b in zip(fused.get_weights(), single.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_fused_nvil_matches_one_update_per_call():
    """SBN/NVIL: both optimizers, the running statistics and the NVIL logs agree between S = 5 and S = 1."""
    rng = np.random.default_rng(0)
    data = (rng.random((200, 12)) < 0.3).astype(np.float32)
    make = lambda: SBN(event_size=12, latent_sizes=[4, 3], seed=0)  # noqa: E731
    (fused, fused_history), (single, single_history) = [
        fitted(make, data, steps, jit_compile=False, optimizer=keras.optimizers.Adam(1e-2),
               baseline_optimizer=keras.optimizers.Adam(1e-2)) for steps in (4, 1)]
    for name in ("loss", "elbo", "baseline_loss", "signal_variance", "normalized_signal_variance"):
        np.testing.assert_allclose(fused_history[name], single_history[name], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.signal_mean.numpy(), single.signal_mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fused.signal_variance.numpy(), single.signal_variance.numpy(), rtol=1e-4)
    assert fused.baseline_optimizer.iterations.numpy() == single.baseline_optimizer.iterations.numpy() == 8


def test_index_stream_is_the_shuffled_row_stream(binary_data):
    """The index blocks select the rows, in the order, that shuffling the rows themselves with the seed gives."""
    model = small_vae()
    model.compile(steps_per_execution=3)
    dataset, steps = model.fused_dataset(binary_data, batch_size=50, shuffle=True)
    assert steps == 2 and dataset.options().autotune.enabled is False
    blocks = [b.numpy() for b in dataset.take(2)]  # one pass: 300 rows = 2 blocks of [50, 3]
    assert blocks[0].shape == (50, 3) and blocks[0].dtype == np.int32
    order = np.concatenate([b.T.reshape(-1) for b in blocks])  # minibatch s of a block is column s
    assert sorted(order) == list(range(300))
    rows = tf.data.Dataset.from_tensor_slices(binary_data).shuffle(300, seed=model.seed)
    np.testing.assert_array_equal(binary_data[order], np.stack([r.numpy() for r in rows]))


def test_resident_copy_is_not_model_state(tmp_path, binary_data):
    """The device-resident data is neither a weight nor saved, and fit frees it when it returns."""
    model = small_vae()
    model.compile(steps_per_execution=4)
    model.build((None, 12))
    names = [v.path for v in model.weights]
    model.fit(binary_data, batch_size=50, epochs=1, verbose=0)
    assert [v.path for v in model.weights] == names
    assert int(tf.shape(model._resident_data.rows)[0]) == 0
    model.save_weights(str(tmp_path / "vae.weights.h5"))
    reloaded = small_vae()
    reloaded.build((None, 12))
    reloaded.load_weights(str(tmp_path / "vae.weights.h5"))
    # A second fit on other data of the same width reuses the traced function (no retracing).
    function = model.train_function
    model.fit(binary_data[:200], batch_size=50, epochs=1, verbose=0)
    assert model.train_function is function


def test_fused_step_has_static_shapes_under_xla(binary_data):
    """The compiled fused step restates no shape at run time: `tf.ensure_shape` lowers to XLA's set-dimension-size,
    which made XLA inline the sampler's random-number generator into every consumer (25% slower SBN steps)."""
    model = SBN(event_size=12, latent_sizes=[4, 3], seed=0)
    model.compile(steps_per_execution=3)
    model.fit(binary_data, batch_size=50, epochs=1, verbose=0)
    model._resident_data.hold(binary_data)
    indices = tf.reshape(tf.range(150), [50, 3])
    hlo = tf.function(model.train_step, jit_compile=True).experimental_get_compiler_ir(indices)(stage="hlo")
    assert "rng-bit-generator" in hlo and "set-dimension-size" not in hlo


def test_with_static_shape_checks_and_restates_shapes():
    known = tf.zeros([4, 3])
    assert _with_static_shape(known, [None, 3]) is known
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        _with_static_shape(known, [None, 5])

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def restated(x):
        y = _with_static_shape(x, [None, 3])
        assert y.shape.as_list() == [None, 3]
        return y

    assert restated(known).shape == (4, 3)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        restated(tf.zeros([4, 5]))


def test_later_fit_reuses_the_index_stream_and_trains_on_its_own_array(binary_data):
    """A second fit of the same shape reuses the cached index stream (whose seeded shuffles go on where the first fit
    left them) and gathers from the new array: the resident rows during that fit are the new array, the result is
    reproducible, and it differs from training on the first array again."""
    other = 1.0 - binary_data  # same shape, different values

    class SeenRows(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.rows = self.model._resident_data.rows.numpy()

    def two_fits(second):
        keras.utils.set_random_seed(0)
        model = small_vae()
        model.compile(steps_per_execution=3, optimizer=keras.optimizers.Adam(1e-2))
        model.fit(binary_data, batch_size=50, epochs=1, verbose=0)
        first_stream, seen = model._resident_data.stream, SeenRows()
        model.fit(second, batch_size=50, epochs=2, verbose=0, callbacks=[seen])
        assert model._resident_data.stream is first_stream
        np.testing.assert_array_equal(seen.rows, second)
        return model.get_weights()

    runs = [two_fits(other), two_fits(other), two_fits(binary_data)]
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - b).max() for a, b in zip(runs[0], runs[2])) > 1e-3


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or inf"), (np.inf, "NaN or inf"), (0.5, "binary"),
                                          (-0.0, None), (1.0, None)])
def test_bernoulli_input_check_finds_one_bad_value_in_any_block(bad, message):
    """The 0/1 check runs in row blocks: one bad entry in the last row of a later block is still found, with the
    message that names its kind; -0.0 and 1.0 are valid."""
    from tfrecog.models.base import InputError

    model = VAE(event_size=7, latent_size=2, hidden_sizes=(4,))
    x = np.zeros((1000, 7), np.float32)
    x[777, 6] = bad
    if message is None:
        np.testing.assert_array_equal(model.check_input(x), x)
    else:
        with pytest.raises(InputError, match=message):
            model.check_input(x)
