"""The importance-sampled evaluator against exact answers on a linear-Gaussian (factor analysis) model."""

import numpy as np
import pytest

from tfrecog import data
from tfrecog._tf import tf, tfd
from tfrecog.evaluate import LogLikelihood, log_likelihood, paired_difference
from tfrecog.models.base import LatentVariableModel


class LinearGaussian(LatentVariableModel):
    """x = W z + mu + e, z ~ N(0, I), e ~ N(0, diag(psi)), with q(z | x) = N(A x + a, diag(s^2)).

    With A, a, s set to the exact posterior, every importance weight equals p(x), so the estimator has no variance.
    """

    def __init__(self, loading, mean, noise_variance, posterior_shift=0.0, posterior_scale=1.0):
        super().__init__(event_size=loading.shape[0], likelihood="gaussian")
        self.w = tf.constant(loading, tf.float32)
        self.mu = tf.constant(mean, tf.float32)
        self.psi = tf.constant(noise_variance, tf.float32)
        k = loading.shape[1]
        # Exact posterior: Sigma = (I + W^T Psi^-1 W)^-1, m(x) = Sigma W^T Psi^-1 (x - mu).
        precision = np.eye(k) + loading.T @ np.diag(1 / noise_variance) @ loading
        sigma = np.linalg.inv(precision)
        self.gain = tf.constant(sigma @ loading.T @ np.diag(1 / noise_variance), tf.float32)
        self.q_cov = tf.constant(sigma * posterior_scale**2, tf.float32)
        self.shift = posterior_shift

    def build(self, input_shape=None):
        self.built = True

    def encode(self, x):
        loc = tf.linalg.matvec(self.gain, x - self.mu) + self.shift
        return tfd.MultivariateNormalTriL(loc, tf.linalg.cholesky(self.q_cov))

    def decode(self, z):
        return tfd.MultivariateNormalDiag(tf.linalg.matvec(self.w, z) + self.mu, tf.sqrt(self.psi))

    def sample_posterior(self, x, num_samples, seed):
        q = self.encode(x)
        z = q.sample(num_samples, seed=seed)
        return z, q.log_prob(z)

    def log_joint(self, x, z):
        prior = tfd.MultivariateNormalDiag(tf.zeros(self.w.shape[1]), tf.ones(self.w.shape[1]))
        return prior.log_prob(z) + self.decode(z).log_prob(x)

    @property
    def generative_variables(self):
        return []


@pytest.fixture(scope="module")
def factor_model():
    x, params = data.factor_analysis(200, observed=6, latent=2, seed=3)
    exact = data.gaussian_log_likelihood(x, params["mean"], params["covariance"])
    return x, params, exact


def test_exact_posterior_gives_exact_log_likelihood_and_elbo(factor_model):
    x, params, exact = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"])
    result = log_likelihood(model, x, samples=7, batch_size=64)
    # Every weight is p(x): both estimates are exact up to float32 rounding.
    np.testing.assert_allclose(result.per_example, exact, atol=2e-3)
    np.testing.assert_allclose(result.per_example_elbo, exact, atol=2e-3)
    assert result.num_examples == 200 and result.samples == 7


def test_imperfect_posterior_converges_and_elbo_stays_below(factor_model):
    x, params, exact = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"], posterior_shift=0.3,
                           posterior_scale=1.4)
    few = log_likelihood(model, x, samples=2, batch_size=50, seed=1)
    many = log_likelihood(model, x, samples=3000, batch_size=50, rows_per_chunk=5000, seed=1)
    gap_few = exact - few.per_example
    gap_many = exact - many.per_example
    # The ELBO never exceeds log p(x) (Jensen, exact here: it is the mean of log w with the analytic expectation
    # approximated by 3000 samples whose MC error is far below the gap ~ KL(q || p(z|x)) > 0.1 nats).
    assert (many.per_example_elbo < exact).all()
    assert np.mean(gap_few) > np.mean(gap_many) > -0.01
    # Here chi^2(p(z|x) || q) ~ 5 (a 1.4x wider q shifted by ~1.5 posterior sds), so one example's estimate has
    # sd ~ sqrt(5 / K) = 0.04 nats at K = 3000 and bias -5 / (2K) ~ -0.001: per example within 5 sd (0.2), and the
    # mean over 200 examples (sd 0.003) within 0.015.
    np.testing.assert_allclose(many.per_example, exact, atol=0.2)
    assert abs(many.log_likelihood - exact.mean()) < 0.015


def test_chunking_does_not_change_the_estimate(factor_model):
    x, params, _ = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"], posterior_shift=0.1,
                           posterior_scale=1.2)
    # The same seed split over chunks of different sizes draws different numbers, so compare statistically: the
    # per-example differences are independent across examples, so their mean is within 4 of its standard errors.
    a = log_likelihood(model, x, samples=500, batch_size=100, rows_per_chunk=100 * 500, seed=0)
    b = log_likelihood(model, x, samples=500, batch_size=100, rows_per_chunk=100 * 37, seed=0)
    diff = a.per_example - b.per_example
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(len(diff)) + 1e-4
    # And a K that is not a multiple of the chunk masks the padding samples correctly: K=1 gives the ELBO sample.
    c = log_likelihood(model, x, samples=1, batch_size=100, seed=2)
    np.testing.assert_allclose(c.per_example, c.per_example_elbo, atol=1e-5)


def test_memory_is_bounded_by_rows_per_chunk(factor_model):
    x, params, _ = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"])
    calls = []
    original = model.log_importance_weights

    def spy(x, num_samples, seed):
        calls.append(num_samples)
        return original(x, num_samples, seed)

    model.log_importance_weights = spy
    log_likelihood(model, x[:20], samples=5000, batch_size=20, rows_per_chunk=2000, jit_compile=False)
    assert max(calls) == 100  # 2000 rows / 20 examples: never more than 100 samples at once


def test_dataset_and_split_inputs(factor_model):
    x, params, exact = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"])
    ds = tf.data.Dataset.from_tensor_slices(x).batch(64)
    result = log_likelihood(model, ds, samples=3)
    np.testing.assert_allclose(result.per_example, exact, atol=2e-3)
    assert "log p(x)" in str(result) and set(result.as_dict()) >= {"log_likelihood", "log_likelihood_stderr"}


def test_bad_arguments(factor_model):
    x, params, _ = factor_model
    model = LinearGaussian(params["loading"], params["mean"], params["noise_variance"])
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        log_likelihood(model, x, samples=0)
    with pytest.raises(ValueError, match=r"shape \[N, 6\]"):
        log_likelihood(model, x[:, :3], samples=2)


def test_vae_blocked_decoder_gives_the_previous_estimate(monkeypatch):
    # VAE.log_importance_weights evaluates the decoder in blocks of rows (speed); log_likelihood must return what
    # the generic formulation (log_joint - log q, one pass per chunk) returns for the same weights and seed.
    from tfrecog.models import VAE
    from tfrecog.models import vae as vae_module

    monkeypatch.setattr(vae_module, "DECODER_BLOCK_ROWS", 64)  # 8 samples of 8 examples per block
    x = (np.random.default_rng(0).random((20, 12)) < 0.3).astype(np.float32)
    blocked_model, generic_model = (VAE(event_size=12, latent_size=3, hidden_sizes=(16,), seed=1) for _ in "ab")
    for model in (blocked_model, generic_model):
        model.build((None, 12))
    generic_model.set_weights(blocked_model.get_weights())
    monkeypatch.setattr(generic_model, "log_importance_weights",
                        lambda *args: LatentVariableModel.log_importance_weights(generic_model, *args))
    blocked = log_likelihood(blocked_model, x, samples=300, batch_size=8, rows_per_chunk=8 * 100, seed=3)
    generic = log_likelihood(generic_model, x, samples=300, batch_size=8, rows_per_chunk=8 * 100, seed=3)
    np.testing.assert_allclose(blocked.per_example, generic.per_example, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(blocked.per_example_elbo, generic.per_example_elbo, rtol=1e-5, atol=1e-4)


def _result(per_example):
    values = np.asarray(per_example, np.float64)
    return LogLikelihood(values.mean(), 0.0, values.mean(), 0.0, 1, len(values), values, values)


def test_paired_difference_exact():
    """d_n = a_n - b_n = (1, 3, 5, 7): mean 4, sample std sqrt(20/3), se sqrt(20/3)/2; a shared per-example
    offset (here 100 n) cancels."""
    offset = 100.0 * np.arange(4)
    mean, stderr = paired_difference(_result(offset + [1.0, 3.0, 5.0, 7.0]), _result(offset))
    assert mean == pytest.approx(4.0)
    assert stderr == pytest.approx(np.sqrt(20.0 / 3.0) / 2.0)
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(_result([1.0, 2.0]), _result([1.0, 2.0, 3.0]))
