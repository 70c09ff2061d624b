"""SGVB estimators A (Monte-Carlo KL) and B (analytic KL) against the exact ELBO gradient of a linear-Gaussian model.

Both are unbiased for grad ELBO(x) = grad { E_q[log p(x | z)] - KL(q(z | x) || p(z)) }, whose closed form is
`linear_gaussian.exact_elbo` (differentiated by autodiff in float64). B replaces the Monte-Carlo KL by its closed
form, so its gradient has lower variance.
"""

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog import estimators
from tfrecog._tf import tf

CALLS = 400


def flat(grads):
    return np.concatenate([np.ravel(g) for g in grads])


def gradient_draws(model, x, analytic_kl):
    """[CALLS, P]: the estimator's gradient (a mean over the batch, one sample per example) from independent seeds."""
    variables = model.trainable_variables

    @tf.function
    def one(seed):
        with tf.GradientTape() as tape:
            loss, _ = estimators.sgvb(model, x, seed, 1, analytic_kl=analytic_kl)
        return tape.gradient(loss, variables)

    return np.stack([flat(one(tf.constant([5, c]))) for c in range(CALLS)])


@pytest.fixture(scope="module")
def draws():
    model = lg.model()
    lg.set_exact_posterior(model, mean_shift=0.5, log_scale_shift=0.3, slope=0.1)
    x = tf.constant(lg.data(8, seed=2))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(lg.exact_elbo(model, x))
    exact = flat([g.numpy() for g in tape.gradient(loss, model.trainable_variables)])
    generative = flat([np.full(v.shape, any(v is g for g in model.generative_variables))
                       for v in model.trainable_variables]).astype(bool)
    return exact, gradient_draws(model, x, False), gradient_draws(model, x, True), generative


@pytest.mark.parametrize("which", ["A", "B"])
def test_unbiased_for_the_exact_elbo_gradient(draws, which):
    exact, a, b, _ = draws
    sample = a if which == "A" else b
    mean, se = sample.mean(0), sample.std(0, ddof=1) / np.sqrt(len(sample))
    # Every coordinate within 4 standard errors of the mean of 400 independent gradients (1e-6 for coordinates
    # with no spread).
    bad = np.abs(mean - exact) > 4 * se + 1e-6
    assert not bad.any(), (which, np.flatnonzero(bad), mean[bad], exact[bad], se[bad])
    assert np.abs(exact).max() > 0.1  # the gradient is not trivially zero


def test_b_has_lower_variance_than_a(draws):
    """Measured by this test (`python -m pytest tests/test_sgvb.py`; 400 gradients, 8 examples x 1 sample each):
    total variance over the recognition weights' coordinates A 33.35, B 23.98, ratio B/A 0.719 with a bootstrap
    standard error of 0.003. Over the generative weights the same draws give identical gradients (the KL term does
    not depend on them). Asserted: the ratio plus 4 bootstrap standard errors is below 1."""
    _, a, b, generative = draws
    np.testing.assert_allclose(a[:, generative], b[:, generative], rtol=1e-5, atol=1e-6)
    var_a, var_b = a[:, ~generative].var(0).sum(), b[:, ~generative].var(0).sum()
    # Standard error of the ratio by a paired bootstrap over the 400 draws (200 resamples).
    rng = np.random.default_rng(0)
    ratios = []
    for _ in range(200):
        i = rng.integers(0, len(a), len(a))
        ratios.append(b[i][:, ~generative].var(0).sum() / a[i][:, ~generative].var(0).sum())
    assert var_b / var_a + 4 * np.std(ratios) < 1.0, (var_a, var_b, np.std(ratios))
