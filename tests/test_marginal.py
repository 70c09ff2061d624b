"""The appendix-D marginal-likelihood estimator (tfrecog.marginal) against the closed-form log p(x) of factor analysis.

On the linear-Gaussian model of `linear_gaussian`, log p(x) = log N(x; b, A A^T + diag(psi)) exactly. The
estimator is run with 10 independent seeds; for each example the mean of the 10 estimates must lie within 4 of
their standard errors (std over seeds / sqrt(10)) of the exact value, plus 0.01 nats for the estimator's own bias
(the log of an unbiased estimate of 1/p(x) is biased by about half its relative variance, < 0.01 here).

The estimate is exact in expectation for any normalised q whose tails are lighter than the posterior's, not only
for q = the posterior: with the fitted covariance halved (`covariance_scale=0.5`) it must still match, where the
mean of log q(z) - log p(x, z) (a plausible slip) would be off by KL(posterior || q) ~= 0.31 nats.
The HMC takes 10 leapfrog steps, the library's default, where a trajectory at a period of this Gaussian
posterior would hardly move without the step-size jitter.
"""

import linear_gaussian as lg
import numpy as np
import pytest

from tfrecog.estimates import LogLikelihood
from tfrecog.estimators import MCEMSettings
from tfrecog.marginal import hmc_marginal_log_likelihood

SETTINGS = MCEMSettings(num_leapfrog_steps=10, num_burnin_steps=100, step_size=0.3)
SEEDS = 10


def run_seeds(covariance_scale):
    m = lg.model()
    x = lg.data(8, seed=2)
    results = [hmc_marginal_log_likelihood(m, x, num_samples=200, settings=SETTINGS, batch_size=8, seed=seed,
                                           covariance_scale=covariance_scale) for seed in range(SEEDS)]
    return m, x, results


@pytest.fixture(scope="module")
def runs():
    return run_seeds(1.0)


@pytest.mark.parametrize("covariance_scale", [1.0, 0.5])
def test_matches_the_closed_form_log_marginal(runs, covariance_scale):
    m, x, results = runs if covariance_scale == 1.0 else run_seeds(covariance_scale)
    exact = lg.exact_log_marginal(m, x)
    estimates = np.stack([r.per_example for r in results])  # [seeds, examples]
    error = estimates.mean(0) - exact
    se = estimates.std(0, ddof=1) / np.sqrt(SEEDS)
    assert np.all(np.abs(error) < 4 * se + 0.01), (error, se)
    # Power: the estimator is tight, and a 0.5-nat error (e.g. a missing prior term) would be far outside.
    assert se.max() < 0.05


def test_returns_the_evaluators_result_type_with_a_lower_bound_beside_it(runs):
    m, x, results = runs
    result = results[0]
    assert isinstance(result, LogLikelihood) and result.samples == 200 and result.num_examples == len(x)
    np.testing.assert_allclose(result.log_likelihood, result.per_example.mean())
    np.testing.assert_allclose(result.stderr, result.per_example.std(ddof=1) / np.sqrt(len(x)))
    # The ELBO of the fitted Gaussian is a lower bound in expectation: below the exact value on average over seeds
    # (each per-example ELBO is a 200-sample mean; 4 standard errors of slack), and close to it, since the posterior
    # is Gaussian and q fitted to it: the gap KL(q || posterior) of a 2-D Gaussian fitted to 200 draws is ~0.01.
    exact = lg.exact_log_marginal(m, x)
    elbos = np.stack([r.per_example_elbo for r in results])
    se = elbos.std(0, ddof=1) / np.sqrt(SEEDS)
    assert np.all(elbos.mean(0) < exact + 4 * se + 1e-3)
    assert np.all(elbos.mean(0) > exact - 0.1), elbos.mean(0) - exact
    # The same seed gives the same estimate.
    again = hmc_marginal_log_likelihood(m, x, num_samples=200, settings=SETTINGS, batch_size=8, seed=0)
    np.testing.assert_array_equal(again.per_example, result.per_example)


@pytest.mark.parametrize("kwargs, message", [({"num_samples": 1}, "num_samples"), ({"batch_size": 0}, "batch_size"),
                                             ({"covariance_scale": -1.0}, "covariance_scale")])
def test_bad_arguments_are_one_line_errors(kwargs, message):
    m = lg.model()
    with pytest.raises(ValueError, match=message) as error:
        hmc_marginal_log_likelihood(m, lg.data(2), **kwargs)
    assert "\n" not in str(error.value)


def test_wrong_data_shape_is_refused():
    m = lg.model()
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        hmc_marginal_log_likelihood(m, np.zeros((3, 5), np.float32))
