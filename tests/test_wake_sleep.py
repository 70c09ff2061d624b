"""Wake-sleep (tfrecog.estimators.wake_sleep): which weights each phase moves, and each phase's gradient against its
exact expectation.

  wake:  E_{q(h | x)}[grad_theta log p(x, h)]       (generative weights theta only)
  sleep: E_{p(x, h)}[grad_phi log q(h | x)]          (recognition weights phi only)

Exact references: a tiny SBN whose every (x, h) is enumerated (16 x 16 configurations), and the linear-Gaussian
model of `linear_gaussian` where both expectations are closed forms. The Monte-Carlo mean of the estimator's
gradient over 20 independent calls (2,000 rows each) must lie within 4 standard errors of the reference in every
coordinate (the standard error from the spread of the 20 call means).
"""

import itertools

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog import SBN, estimators
from tfrecog._tf import tf

CALLS, ROWS = 20, 2000


def tiny_sbn(**kwargs):
    model = SBN(event_size=4, latent_sizes=(2, 2), estimator="wake_sleep", seed=2, **kwargs)
    model.build((None, 4))
    rng = np.random.default_rng(7)
    for v in model.trainable_variables:  # weights of order 1, so that every conditional is far from 1/2
        v.assign(rng.normal(0.0, 1.0, v.shape).astype(np.float32))
    return model


def binary_configurations(size):
    return np.array(list(itertools.product([0.0, 1.0], repeat=size)), np.float32)


def sbn_latents(model):
    """Every joint configuration of the latent layers: a list of [2^n, 1, size_l] arrays (n = sum of sizes)."""
    codes = binary_configurations(sum(model.latent_sizes))
    cuts = np.cumsum(model.latent_sizes)[:-1]
    return [tf.constant(part[:, None, :]) for part in np.split(codes, cuts, axis=1)]


def phase_gradients(model, x, seed):
    """(d wake / d theta, d wake / d phi, d sleep / d theta, d sleep / d phi) of the estimator's two terms."""
    theta, phi = model.generative_variables, model.recognition_variables
    with tf.GradientTape(persistent=True) as tape:
        loss, diagnostics = estimators.wake_sleep(model, x, seed)
    parts = [[np.zeros(v.shape) if g is None else g.numpy() for g, v in zip(tape.gradient(diagnostics[term], vs), vs)]
             for term in ("wake", "sleep") for vs in (theta, phi)]
    total = tape.gradient(loss, theta + phi)
    return parts, total


def flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


def monte_carlo(model, x):
    """Mean and standard error over CALLS independent calls of (wake gradient on theta, sleep gradient on phi)."""
    batch = tf.constant(np.tile(x, (ROWS // len(x), 1)))
    theta, phi = model.generative_variables, model.recognition_variables

    @tf.function
    def one(seed):
        with tf.GradientTape(persistent=True) as tape:
            _, diagnostics = estimators.wake_sleep(model, batch, seed)
        return tape.gradient(diagnostics["wake"], theta), tape.gradient(diagnostics["sleep"], phi)

    draws = [one(tf.constant([11, c])) for c in range(CALLS)]
    wake = np.stack([flat(w) for w, _ in draws])
    sleep = np.stack([flat(s) for _, s in draws])
    stats = lambda d: (d.mean(0), d.std(0, ddof=1) / np.sqrt(len(d)))  # noqa: E731
    return stats(wake), stats(sleep)


def assert_within(estimate, exact, what):
    mean, se = estimate
    # 4 standard errors, plus 1e-6 for coordinates the estimator gets exactly (zero spread).
    bad = np.abs(mean - exact) > 4 * se + 1e-6
    assert not bad.any(), f"{what}: {np.flatnonzero(bad)}: mean {mean[bad]}, exact {exact[bad]}, se {se[bad]}"


@pytest.mark.parametrize("family", ["sbn", "linear_gaussian"])
def test_wake_moves_only_generative_and_sleep_only_recognition_weights(family):
    model = tiny_sbn() if family == "sbn" else lg.model("wake_sleep")
    x = tf.constant(binary_configurations(4)[[1, 6, 11]] if family == "sbn" else lg.data(3))
    (wake_theta, wake_phi, sleep_theta, sleep_phi), total = phase_gradients(model, x, tf.constant([1, 2]))
    assert np.abs(flat(wake_theta)).max() > 1e-3 and np.abs(flat(sleep_phi)).max() > 1e-3
    assert np.abs(flat(wake_phi)).max() == 0.0, "the wake phase reaches the recognition weights"
    assert np.abs(flat(sleep_theta)).max() == 0.0, "the sleep phase reaches the generative weights"
    # The training loss is -(wake + sleep): its gradient is the wake gradient on theta and the sleep one on phi.
    np.testing.assert_allclose(flat(total), -np.concatenate([flat(wake_theta), flat(sleep_phi)]), rtol=1e-6)


def test_each_phase_is_unbiased_on_an_enumerable_sbn():
    model = tiny_sbn()
    theta, phi = model.generative_variables, model.recognition_variables
    x = binary_configurations(4)[[1, 6, 11, 14]]
    h = sbn_latents(model)
    with tf.GradientTape(persistent=True) as tape:
        # wake: mean_x sum_h q(h | x) log p(x, h) with q held fixed; sleep: sum_{x, h} p(x, h) log q(h | x), p fixed.
        log_q = model.recognition_log_prob(x, h)  # [16 h, 4 x]
        wake = tf.reduce_mean(tf.reduce_sum(tf.stop_gradient(tf.exp(log_q)) * model.log_joint(x, h), axis=0))
        every_x = binary_configurations(4)
        log_p = model.log_joint(every_x, h)  # [16 h, 16 x]
        np.testing.assert_allclose(float(tf.reduce_sum(tf.exp(log_p))), 1.0, rtol=1e-5)  # p(x, h) sums to one
        sleep = tf.reduce_sum(tf.stop_gradient(tf.exp(log_p)) * model.recognition_log_prob(every_x, h))
    exact_wake, exact_sleep = flat(tape.gradient(wake, theta)), flat(tape.gradient(sleep, phi))
    wake_mc, sleep_mc = monte_carlo(model, x)
    assert_within(wake_mc, exact_wake, "wake")
    assert_within(sleep_mc, exact_sleep, "sleep")


def test_each_phase_is_unbiased_on_the_linear_gaussian_model():
    model = lg.model("wake_sleep")
    lg.set_exact_posterior(model, mean_shift=0.4, log_scale_shift=0.2, slope=0.1)
    theta, phi = model.generative_variables, model.recognition_variables
    x = lg.data(4)
    with tf.GradientTape(persistent=True) as tape:
        wake = tf.reduce_mean(lg.expected_log_joint(model, x))
        sleep = lg.expected_log_recognition(model)
    exact_wake, exact_sleep = flat(tape.gradient(wake, theta)), flat(tape.gradient(sleep, phi))
    wake_mc, sleep_mc = monte_carlo(model, x)
    assert_within(wake_mc, exact_wake, "wake")
    assert_within(sleep_mc, exact_sleep, "sleep")
