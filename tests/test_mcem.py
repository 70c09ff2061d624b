"""Monte Carlo EM with HMC (tfrecog.estimators.mcem) against the closed forms of a linear-Gaussian model.

The model of `linear_gaussian` (factor analysis, a one-layer linear DLGM) has the exact posterior
p(z | x) = N(gain (x - b), Sigma) and the exact marginal p(x) = N(b, A A^T + diag(psi)), so:

  E-step:  HMC draws (independent chains, one kept state each) have the posterior's mean and variance;
  M-step:  by Fisher's identity E_{p(z | x)}[grad_theta log p(x, z)] = grad_theta log p(x), so the gradient of
           the Monte-Carlo complete-data loss averages to -grad_theta log p(x), computed by autodiff of
           `DLGM.marginal()`; and MCEM moves the offset b towards its maximum-likelihood value, the data mean.

Tolerances: 4 Monte-Carlo standard errors (from the spread of independent chains or of independent calls).
"""

import re

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog import estimators
from tfrecog._tf import keras, tf
from tfrecog.estimators import MCEMChains, MCEMSettings, mcem

CHAINS = 1000  # independent chains per example
SETTINGS = MCEMSettings(num_leapfrog_steps=3, num_burnin_steps=100, num_results=1, step_size=0.3)


def exact_posterior(m, x):
    w_m, b_m, log_sd = lg.exact_posterior_weights(m)
    return np.asarray(x, np.float64) @ w_m + b_m, np.exp(log_sd)


_COMPILED = {}


def e_step(m, x, seed):
    """One kept HMC state for each of CHAINS independent chains per example: [CHAINS, B, K] (compiled once per
    model)."""
    batch = tf.constant(np.tile(x, (CHAINS, 1)))
    if id(m) not in _COMPILED:
        @tf.function(jit_compile=False)  # XLA would take longer to compile than this graph takes to run
        def run(batch, seed):
            init_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            initial = mcem.latent_parts(m, m.prior().sample(tf.shape(batch)[0], seed=init_seed))
            return mcem.hmc_posterior(m, batch, chain_seed, initial, SETTINGS.step_size, SETTINGS)

        _COMPILED[id(m)] = (m, run)
    draws = _COMPILED[id(m)][1](batch, tf.constant(seed, tf.int32))
    return draws, draws.samples[0].numpy()[-1].reshape(CHAINS, len(x), lg.LATENT)


def assert_moments(z, mean, sd):
    """Sample mean and variance over independent draws z [n, B, K] against the exact ones, each within 4 standard
    errors: sd / sqrt(n) for the mean and var * sqrt(2 / (n - 1)) for the variance (Gaussian draws)."""
    n = len(z)
    mean_error, mean_tolerance = np.abs(z.mean(0) - mean), 4 * sd / np.sqrt(n)
    assert np.all(mean_error < mean_tolerance), (mean_error, mean_tolerance)
    var = sd**2
    var_error, var_tolerance = np.abs(z.var(0, ddof=1) - var), 4 * var * np.sqrt(2 / (n - 1))
    assert np.all(var_error < var_tolerance), (var_error, var_tolerance)


def test_e_step_draws_the_exact_posterior():
    m = lg.model()
    x = lg.data(3, seed=1)
    draws, z = e_step(m, x, [1, 2])
    mean, sd = exact_posterior(m, x)
    assert_moments(z, mean, sd)
    # The step size was adapted towards the 0.9 target from 0.3 (too small: almost every proposal accepted).
    assert 0.6 < float(tf.reduce_mean(draws.acceptance)) < 1.0 and float(tf.reduce_mean(draws.step_size[0])) > 0.35


def test_m_step_gradient_is_the_log_marginal_gradient():
    """Fisher's identity: the mean over 10 independent E-steps of grad_theta complete_data_loss equals
    -grad_theta mean_b log p(x_b) (autodiff of the exact marginal) within 4 standard errors of the 10 calls."""
    m = lg.model()
    x = lg.data(3, seed=4)
    variables = m.generative_variables
    with tf.GradientTape() as tape:
        exact = -tf.reduce_mean(m.marginal().log_prob(x))
    exact = np.concatenate([np.ravel(g) for g in tape.gradient(exact, variables)])
    batch = tf.constant(np.tile(x, (CHAINS, 1)))
    grads = []
    for call in range(10):
        draws, _ = e_step(m, x, [5, call])
        with tf.GradientTape() as tape:
            loss = mcem.complete_data_loss(m, batch, draws.samples)
        grads.append(np.concatenate([np.ravel(g) for g in tape.gradient(loss, variables)]))
    grads = np.stack(grads)
    se = grads.std(0, ddof=1) / np.sqrt(len(grads))
    np.testing.assert_array_less(np.abs(grads.mean(0) - exact), 4 * se + 1e-5)
    assert np.abs(exact).max() > 20 * se.max()  # the check has power: the gradient is far from zero


def test_registry_mcem_moves_the_offset_to_its_mle_and_leaves_recognition_alone():
    """`fit` with estimator='mcem' (re-initialised chains, the registry's update) from an offset b moved by 1:
    b approaches the data mean (the MLE of b for any A and psi), the exact log-likelihood rises, and the
    recognition weights are not touched."""
    m = lg.model(estimator="mcem", estimator_options=dict(num_leapfrog_steps=3, num_burnin_steps=20, num_results=2,
                                                          step_size=0.3))
    assert mcem.mcem_settings(m) == MCEMSettings(num_leapfrog_steps=3, num_burnin_steps=20, num_results=2,
                                                 step_size=0.3)
    dense = m.observation.dense_layers[0]
    dense.bias.assign(dense.bias + 1.0)
    x = lg.data(500, seed=6)
    recognition = [v.numpy().copy() for v in m.recognition_variables]
    before_b = np.abs(dense.bias.numpy() - x.mean(0)).max()
    before_ll = float(tf.reduce_mean(m.marginal().log_prob(x)))
    m.compile(keras.optimizers.SGD(0.3), steps_per_execution=10, jit_compile=False)  # XLA compiles for longer
    history = m.fit(x, batch_size=100, epochs=6, verbose=0)
    assert set(history.history) == {"loss", "elbo", "complete_data", "acceptance", "step_size"}
    after_b = np.abs(dense.bias.numpy() - x.mean(0)).max()
    assert before_b > 0.9 and after_b < 0.2, (before_b, after_b)
    assert float(tf.reduce_mean(m.marginal().log_prob(x))) > before_ll + 0.5
    for before, v in zip(recognition, m.recognition_variables):
        np.testing.assert_array_equal(before, v.numpy())


def test_persistent_chains_resume_where_they_stopped():
    """`MCEMChains` with a zero learning rate (the model fixed): one transition of 3 leapfrog steps per visit, 60
    visits per example; the stored states are then draws from the exact posterior of each example. (Chains that
    did not resume would hold a prior draw moved by a single transition.)"""
    m = lg.model()
    x = lg.data(4, seed=8)
    n = 2000
    data = np.tile(x, (n // len(x), 1))
    m.compile(keras.optimizers.SGD(0.0))
    m.build_for_training()
    chains = MCEMChains(m, n, MCEMSettings(num_leapfrog_steps=3, num_burnin_steps=0, step_size=0.3, m_steps=1),
                        seed=3)
    rng = np.random.default_rng(0)
    for visit in range(60):
        for part, idx in enumerate(np.split(rng.permutation(n), 4)):
            chains.update(data[idx], idx, visit * 4 + part)
    z = chains.state[0].numpy().reshape(n // len(x), len(x), lg.LATENT)
    mean, sd = exact_posterior(m, x)
    assert_moments(z, mean, sd)


def test_mcem_is_registered_for_continuous_latents_only():
    assert estimators.get("mcem").families == ("vae", "dlgm")
    with pytest.raises(ValueError, match="sbn models support the estimators"):
        estimators.get("mcem", "sbn")


@pytest.mark.parametrize("field, value", [("num_leapfrog_steps", 0), ("num_results", 0), ("m_steps", 0),
                                          ("num_burnin_steps", -1), ("step_size", 0.0), ("target_accept_prob", 1.0),
                                          ("step_size_jitter", 1.0)])
def test_bad_settings_are_one_line_errors(field, value):
    with pytest.raises(ValueError, match="MCEMSettings") as error:
        MCEMSettings(**{field: value})
    assert "\n" not in str(error.value)


def test_a_vae_trains_its_decoder_by_mcem_and_leaves_its_encoder_alone():
    """The registry's 'mcem' on the VAE (the figures' family): `fit` moves the decoder, not the encoder, and the
    estimator survives a config round trip."""
    from tfrecog import VAE

    options = dict(num_leapfrog_steps=2, num_burnin_steps=4, step_size=0.2)
    model = VAE(event_size=6, latent_size=2, hidden_sizes=(8,), estimator="mcem", seed=1, estimator_options=options)
    model.build((None, 6))
    x = (np.random.default_rng(0).uniform(size=(40, 6)) < 0.3).astype(np.float32)
    encoder = [v.numpy().copy() for v in model.encoder.trainable_variables]
    decoder = [v.numpy().copy() for v in model.decoder.trainable_variables]
    model.compile(keras.optimizers.Adagrad(0.1), steps_per_execution=2, jit_compile=False)
    history = model.fit(x, batch_size=20, epochs=2, verbose=0)
    assert np.isfinite(history.history["complete_data"]).all()
    for before, v in zip(encoder, model.encoder.trainable_variables):
        np.testing.assert_array_equal(before, v.numpy())
    assert any(not np.array_equal(before, v.numpy()) for before, v in zip(decoder, model.decoder.trainable_variables))
    assert VAE.from_config(model.get_config()).get_config() == model.get_config()
    assert model.get_config()["estimator_options"] == options  # the settings travel with the model
    assert mcem.mcem_settings(VAE.from_config(model.get_config())) == MCEMSettings(**options)


@pytest.mark.parametrize("estimator, options, message", [
    ("mcem", {"leapfrog": 3}, "unknown estimator_options 'leapfrog' for estimator 'mcem': expected some of"),
    ("mcem", {"num_leapfrog_steps": 0}, "num_leapfrog_steps must be an integer >= 1"),
    ("mcem", [("step_size", 0.1)], "estimator_options must be a dict"),
    ("sgvb_b", {"step_size": 0.1}, "estimator 'sgvb_b' takes no estimator_options (those of 'mcem' do)"),
])
def test_estimator_options_are_checked_when_the_model_is_built(estimator, options, message):
    from tfrecog import VAE

    with pytest.raises(ValueError, match=re.escape(message)):
        VAE(event_size=6, latent_size=2, hidden_sizes=(8,), estimator=estimator, estimator_options=options)
    assert "estimator_options" not in VAE(event_size=6, latent_size=2, estimator=estimator).get_config()
