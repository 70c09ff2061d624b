import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_blocked_weights_match

import tfrecog
from tfrecog._tf import keras, tf, tfd
from tfrecog.models import VAE, InputError


def small_vae(**kwargs):
    settings = dict(event_size=12, latent_size=3, hidden_sizes=(16,), seed=1)
    settings.update(kwargs)
    return VAE(**settings)


def test_config_roundtrip_covers_every_argument():
    model = small_vae(activation="relu", estimator="iwae", num_samples=4, weight_prior_scale=2.0,
                      kernel_initializer="paper", min_scale=0.05, likelihood="gaussian")
    config = model.get_config()
    assert VAE.from_config(config).get_config() == config
    for key in ("activation", "estimator", "num_samples", "weight_prior_scale", "kernel_initializer", "min_scale",
                "likelihood", "latent_size", "hidden_sizes", "event_size", "seed"):
        assert key in config


def test_distributions_have_the_right_shapes_and_types():
    model = small_vae()
    x = np.zeros((5, 12), np.float32)
    q = model.encode(x)
    assert isinstance(q, tfd.MultivariateNormalDiag)
    assert q.batch_shape == [5] and q.event_shape == [3]
    p = model.decode(q.sample(seed=(1, 2)))
    assert p.batch_shape == [5] and p.event_shape == [12]
    assert model.sample(4, seed=0).shape == (4, 12)
    assert model.reconstruct(x, seed=0).shape == (5, 12)
    assert model.elbo(x, num_samples=3, seed=0).shape == (5,)


def test_paper_initialisation_is_small():
    model = small_vae(kernel_initializer="paper")
    model.build((None, 12))
    for v in model.trainable_variables:
        assert np.std(v.numpy()) < 0.02


def test_fit_decreases_loss_and_evaluate_runs(binary_data):
    model = small_vae()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(binary_data, batch_size=50, epochs=8, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.5
    result = model.evaluate(binary_data, verbose=0, return_dict=True)
    assert set(result) >= {"loss", "elbo", "kl", "reconstruction"}


def test_fused_loop_equals_one_update_per_call(binary_data):
    """S updates inside one XLA call give the same weights as S separate calls (same data order and seeds)."""
    weights = []
    for steps in (6, 1):
        keras.utils.set_random_seed(0)
        model = small_vae()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=steps)
        model.fit(binary_data, batch_size=50, epochs=2, shuffle=False, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 12
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_eager_graph_and_xla_training_agree(binary_data):
    """The three execution modes train equally well. XLA draws its stateless random numbers with another
    algorithm than TF's CPU kernels, so weights are not bitwise equal; deterministic maps are."""
    elbos = []
    for mode in ("eager", "graph", "xla"):
        keras.utils.set_random_seed(0)
        model = small_vae()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=mode == "xla", run_eagerly=mode == "eager",
                      steps_per_execution=3)
        model.fit(binary_data, batch_size=50, epochs=6, shuffle=False, verbose=0)
        elbos.append(float(np.mean(model.elbo(binary_data, num_samples=20, seed=0))))
        encode = tf.function(lambda x, m=model: m.encode(x).mean(), jit_compile=True)
        np.testing.assert_allclose(encode(binary_data), model.encode(binary_data).mean(), atol=1e-5)
    # Different noise, same expected progress: final ELBOs (about -7 nats here) within 0.5 nats of each other.
    assert max(elbos) - min(elbos) < 0.5, elbos


def test_dataset_input_and_validation(binary_data):
    model = small_vae()
    model.compile()
    ds = tf.data.Dataset.from_tensor_slices(binary_data).batch(50)
    history = model.fit(ds, epochs=1, validation_data=binary_data[:100], verbose=0)
    assert "val_elbo" in history.history
    history = model.fit(binary_data, validation_split=0.2, epochs=1, verbose=0)
    assert "val_elbo" in history.history


def test_keras_save_and_load_gives_identical_outputs(tmp_path, binary_data):
    model = small_vae(likelihood="bernoulli")
    model.compile()
    model.fit(binary_data, epochs=1, verbose=0)
    path = tmp_path / "vae.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, VAE) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.encode(binary_data).mean(), model.encode(binary_data).mean())
    np.testing.assert_array_equal(loaded.elbo(binary_data, seed=3), model.elbo(binary_data, seed=3))
    # Training continues from the loaded optimizer state.
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
    loaded.fit(binary_data, epochs=1, verbose=0)


def test_gaussian_likelihood():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, size=(200, 12)).astype(np.float32)
    model = small_vae(likelihood="gaussian")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(x, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    mean = model.decode(np.zeros((1, 3), np.float32)).mean().numpy()
    assert ((0 < mean) & (mean < 1)).all()


def test_weight_penalty_is_the_scaled_gaussian_prior(binary_data):
    model = small_vae(weight_prior_scale=2.0)
    model.build((None, 12))
    model.set_num_train_examples(300)
    squared = sum(float(np.sum(v.numpy() ** 2)) for v in model.decoder.trainable_variables)
    np.testing.assert_allclose(float(model.weight_penalty()), squared / (2 * 4.0 * 300), rtol=1e-5)
    assert float(small_vae().weight_penalty()) == 0.0


@pytest.mark.slow  # trains to a target; each estimator's value and gradient are checked exactly in the fast set
@pytest.mark.parametrize("estimator", ["sgvb_a", "sgvb_b", "iwae", "wake_sleep"])
def test_every_estimator_trains(estimator, binary_data):
    model = small_vae(estimator=estimator, num_samples=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(np.mean(model.elbo(binary_data, num_samples=10, seed=0)))
    model.fit(binary_data, batch_size=50, epochs=10, verbose=0)
    after = float(np.mean(model.elbo(binary_data, num_samples=10, seed=0)))
    assert after > before + 0.5


def test_bad_input_is_refused_with_a_clear_message(binary_data):
    model = small_vae()
    model.compile()
    with pytest.raises(InputError, match=r"shape \[N, 12\]"):
        model.fit(np.zeros((10, 13), np.float32), verbose=0)
    nan = binary_data.copy()
    nan[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or inf"):
        model.fit(nan, verbose=0)
    with pytest.raises(InputError, match="binary"):
        model.fit(binary_data * 0.5, verbose=0)
    with pytest.raises(InputError, match="no targets"):
        model.fit(binary_data, binary_data, verbose=0)
    with pytest.raises(InputError, match=r"shape \[N, 12\].*got shape \[3, 5\]"):
        model.elbo(np.zeros((3, 5), np.float32))
    # encode checks its input as every entry point does (tests/test_user_path.py has the rest)
    with pytest.raises(InputError, match=r"shape \[N, 12\] \(flattened\); got shape \[3, 5\]"):
        model.encode(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="likelihood"):
        VAE(event_size=12, likelihood="poisson")


def test_mirrored_strategy_on_two_logical_cpus():
    script = textwrap.dedent(
        """
        import os
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np, tfrecog
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x = (np.random.default_rng(0).random((400, 12)) < 0.3).astype("float32")
        with strategy.scope():
            model = tfrecog.VAE(event_size=12, latent_size=2, hidden_sizes=(8,))
            model.compile(optimizer="adam", steps_per_execution=4)
        history = model.fit(x, batch_size=50, epochs=3, verbose=0)
        loss = history.history["loss"]
        assert strategy.num_replicas_in_sync == 2
        assert np.isfinite(loss).all() and loss[-1] < loss[0], loss
        print("ok", model.optimizer.iterations.numpy())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok 24" in out.stdout


def test_public_api():
    assert tfrecog.VAE is VAE and callable(tfrecog.log_likelihood)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_observation_log_prob_is_the_density_of_decode(likelihood):
    # The Bernoulli decoder is scored by bernoulli_log_prob (one exp and one log1p per pixel) instead of TFP's form;
    # it must be the same density as decode(z).log_prob, for samples with a leading K axis too.
    model = small_vae(likelihood=likelihood)
    x = (np.random.default_rng(0).random((5, 12)) < 0.3).astype(np.float32)
    z = tf.random.stateless_normal([3, 5, model.latent_size], [1, 2])
    np.testing.assert_allclose(model.observation_log_prob(x, z), model.decode(z).log_prob(x), rtol=1e-5, atol=1e-4)
    assert isinstance(model.decode(z).distribution, tfd.Bernoulli if likelihood == "bernoulli" else tfd.Normal)


@pytest.mark.parametrize("num_samples", [3, 40, 41])
def test_blocked_importance_weights_equal_the_generic_formulation(num_samples, monkeypatch):
    # VAE.log_importance_weights scores the decoder in blocks of DECODER_BLOCK_ROWS rows (a speed measure); for a
    # fixed seed it must give the values of log p(x, z) - log q(z | x) with z from sample_posterior, the draws
    # included: K = 3 is one block, 40 splits evenly, 41 needs a padded block.
    from tfrecog.models import vae as vae_module
    from tfrecog.models.base import LatentVariableModel

    monkeypatch.setattr(vae_module, "DECODER_BLOCK_ROWS", 25)  # 5 samples of the 5 examples per block
    model = small_vae()
    x = tf.constant((np.random.default_rng(1).random((5, 12)) < 0.3).astype(np.float32))
    seed = tf.constant([4, 2])
    generic = LatentVariableModel.log_importance_weights(model, x, num_samples, seed)
    z, log_q = model.sample_posterior(x, num_samples, seed)
    np.testing.assert_allclose(generic, model.prior().log_prob(z) + model.decode(z).log_prob(x) - log_q,
                               rtol=1e-5, atol=1e-4)
    assert_blocked_weights_match(model, x, num_samples, seed, generic)
