"""The importance-weighted bound (tfrecog.estimators.iwae) against closed forms on a linear-Gaussian model.

L_K(x) = log (1/K) sum_k p(x, z_k) / q(z_k | x): L_1 is the ELBO, E[L_K] rises with K and tends to log p(x), and its
gradient is the pathwise derivative of that Monte-Carlo value. References: `linear_gaussian` (closed-form ELBO and
log p(x) from the weights, float64).
"""

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog import estimators
from tfrecog._tf import tf


def tiled(x, rows):
    return np.tile(x, (rows // len(x), 1))


def bound_means(model, x, num_samples, calls=10, rows=2000, seed=0):
    """The IWAE bound (a batch mean over `rows` copies of x) from `calls` independent seeds: [calls]."""
    batch = tf.constant(tiled(x, rows))
    bound = tf.function(lambda s: estimators.iwae(model, batch, s, num_samples)[1]["iwae_bound"])
    return np.array([float(bound(tf.constant([seed, c]))) for c in range(calls)])


def mismatched_model(estimator="iwae", num_samples=1):
    """q(z | x) off the exact posterior in its mean, scale and how the scale varies with x."""
    model = lg.model(estimator, num_samples)
    lg.set_exact_posterior(model, mean_shift=0.6, log_scale_shift=0.3, slope=0.1)
    return model


def test_exact_posterior_makes_every_bound_equal_log_px():
    """With q(z | x) = p(z | x) every weight p(x, z) / q(z | x) equals p(x): L_K = log p(x) for every K and draw."""
    model = lg.model()
    x = lg.data(6)
    exact = lg.exact_log_marginal(model, x).mean()
    for k in (1, 5, 50):
        _, diagnostics = estimators.iwae(model, tf.constant(x), tf.constant([0, k]), k)
        np.testing.assert_allclose(float(diagnostics["iwae_bound"]), exact, rtol=1e-5)
        np.testing.assert_allclose(float(diagnostics["elbo"]), exact, rtol=1e-5)


def test_l1_is_the_elbo_and_its_expectation_the_closed_form():
    model = mismatched_model()
    x = lg.data(4)
    # K = 1: the bound is the single-sample ELBO, log w, draw for draw.
    _, diagnostics = estimators.iwae(model, tf.constant(x), tf.constant([1, 2]), 1)
    assert float(diagnostics["iwae_bound"]) == pytest.approx(float(diagnostics["elbo"]), abs=1e-6)
    # Its expectation is the closed-form ELBO: within 4 standard errors of the mean of 10 independent estimates.
    values = bound_means(model, x, 1)
    exact = float(tf.reduce_mean(lg.exact_elbo(model, x)))
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - exact) < 4 * se, (values.mean(), exact, se)


def test_expected_bound_rises_with_k_towards_log_px():
    """E[L_K] is non-decreasing in K, never above log p(x), and its gap to log p(x) shrinks like var(w/p) / (2K)."""
    model = mismatched_model()
    x = lg.data(4)
    log_px = lg.exact_log_marginal(model, x).mean()
    elbo = float(tf.reduce_mean(lg.exact_elbo(model, x)))
    ks = (1, 2, 4, 16, 64, 256)
    # rows x K <= 40,000 per call; 10 independent calls per K give the mean and its standard error.
    stats = {}
    for k in ks:
        values = bound_means(model, x, k, rows=max(4, 40_000 // k // 4 * 4))
        stats[k] = (values.mean(), values.std(ddof=1) / np.sqrt(len(values)))
    for k in ks:
        mean, se = stats[k]
        assert mean < log_px + 4 * se, (k, mean, log_px, se)  # a lower bound in expectation
    for small, large in zip(ks, ks[1:]):
        (m1, s1), (m2, s2) = stats[small], stats[large]
        assert m2 > m1 - 4 * np.hypot(s1, s2), (small, large, stats)
    gap = log_px - elbo
    assert gap > 0.3  # the test is about something: q is far enough from the posterior
    mean, se = stats[256]
    # Relative variance of the weights, from 200,000 draws of log w at the exact log p(x): bias of L_K ~ var / 2K.
    log_w = model.log_importance_weights(tf.constant(tiled(x, 2000)), 100, tf.constant([9, 9])).numpy()
    relative_variance = np.var(np.exp(log_w - lg.exact_log_marginal(model, tiled(x, 2000))[None, :]))
    assert log_px - mean < 3 * relative_variance / (2 * 256) + 4 * se, (log_px - mean, relative_variance, se)
    assert log_px - mean < gap / 10


def numpy_bound(params, x, eps):
    """L_K(x) per example, float64, from the weights and the standard-normal draws eps [K, B, K_latent]."""
    head_kernel, head_bias, kernel, bias, g, log_scale = params
    k = lg.LATENT
    out = x @ head_kernel + head_bias
    mean, log_sd = out[:, :k], out[:, k:]
    z = mean + np.exp(log_sd) * eps  # [K, B, latent]
    a = (kernel * g[:, None]).T
    sd = 1e-3 + np.exp(log_scale)
    log_normal = lambda v, m, s: np.sum(-0.5 * ((v - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi), -1)  # noqa
    log_w = log_normal(z, 0.0, 1.0) + log_normal(x, z @ a.T + bias, sd) - log_normal(z, mean, np.exp(log_sd))
    top = log_w.max(0)
    return top + np.log(np.mean(np.exp(log_w - top), axis=0))


def test_gradient_is_the_derivative_of_the_sampled_bound():
    """For fixed noise the estimate is a smooth function of every weight; its autodiff gradient (what training
    follows) must equal central finite differences of the same bound recomputed in numpy float64 (step 1e-5,
    truncation error ~1e-10), to float32 accuracy."""
    model = mismatched_model(num_samples=5)
    x = lg.data(3, seed=1)
    seed = tf.constant([4, 5])
    variables = [model.heads[0].dense.kernel, model.heads[0].dense.bias, model.observation.dense_layers[0].kernel,
                 model.observation.dense_layers[0].bias, model.noise_matrices[0], model.observation_log_scale]
    with tf.GradientTape() as tape:
        loss, diagnostics = estimators.iwae(model, tf.constant(x), seed, 5)
    grads = [g.numpy().astype(np.float64) for g in tape.gradient(loss, variables)]
    # The draws: z = mu + sigma * eps, recovered from the same seed.
    z, _ = model.sample_posterior(tf.constant(x), 5, seed)
    params = [v.numpy().astype(np.float64) for v in variables]
    out = x @ params[0] + params[1]
    eps = (z[0].numpy() - out[:, : lg.LATENT]) / np.exp(out[:, lg.LATENT:])
    value = lambda p: -numpy_bound(p, x.astype(np.float64), eps).mean()  # noqa: E731
    assert value(params) == pytest.approx(float(loss), abs=1e-4)  # the same draws
    for i, grad in enumerate(grads):
        numeric = np.zeros_like(grad)
        for index in np.ndindex(grad.shape):
            up = [p.copy() for p in params]
            down = [p.copy() for p in params]
            up[i][index] += 1e-5
            down[i][index] -= 1e-5
            numeric[index] = (value(up) - value(down)) / 2e-5
        np.testing.assert_allclose(grad, numeric, rtol=2e-3, atol=2e-4, err_msg=variables[i].path)
