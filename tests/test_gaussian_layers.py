"""Tests of tfrecog.layers.gaussian: the O(K) rank-one precision Gaussian against dense matrices, and the head."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from tfrecog._tf import keras, tf, tfd
from tfrecog.layers.gaussian import (
    GaussianHead,
    LinearOperatorRankOnePrecisionSqrt,
    MultivariateNormalRankOnePrecision,
    rank_one_sqrt_gamma,
)


def random_parameters(batch=3, k=5, seed=0):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(batch, k))
    log_scale = 0.4 * rng.normal(size=(batch, k))
    rank_one = rng.normal(size=(batch, k))
    return loc, log_scale, rank_one


def dense_covariance(log_scale, rank_one):
    """C = (D + u u^T)^-1 with D = diag(exp(-2 log_scale)), by dense inversion in float64."""
    precision = np.vectorize(np.diag, signature="(k)->(k,k)")(np.exp(-2.0 * log_scale))
    precision = precision + rank_one[..., :, None] * rank_one[..., None, :]
    return np.linalg.inv(precision)


def test_square_root_formula_matches_dense_cholesky():
    _, log_scale, rank_one = random_parameters(batch=4, k=6)
    for ls, u in zip(log_scale, rank_one, strict=True):
        covariance = dense_covariance(ls, u)
        cholesky = np.linalg.cholesky(covariance)
        s = np.exp(ls)
        v = s * u
        n = v @ v
        gamma = (1.0 - 1.0 / np.sqrt(1.0 + n)) / n  # the textbook form
        np.testing.assert_allclose(gamma, rank_one_sqrt_gamma(tf.constant(n, tf.float64)).numpy(), rtol=1e-12)
        inverse_sqrt = np.eye(6) - gamma * np.outer(v, v)
        # (I - gamma v v^T)^2 = (I + v v^T)^-1
        np.testing.assert_allclose(inverse_sqrt @ inverse_sqrt @ (np.eye(6) + np.outer(v, v)), np.eye(6), atol=1e-12)
        sqrt = np.diag(s) @ inverse_sqrt
        # S and the Cholesky factor L are different square roots of the same C: S S^T = L L^T, |det S| = det L.
        np.testing.assert_allclose(sqrt @ sqrt.T, cholesky @ cholesky.T, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.linalg.slogdet(sqrt)[1], np.log(np.diag(cholesky)).sum(), rtol=1e-10)


def test_gamma_is_stable_near_zero():
    gamma = rank_one_sqrt_gamma(tf.constant([0.0, 1e-12, 1e-3], tf.float32)).numpy()
    assert np.all(np.isfinite(gamma))
    np.testing.assert_allclose(gamma[:2], 0.5, rtol=1e-6)


def test_operator_matches_its_dense_form():
    _, log_scale, rank_one = random_parameters()
    operator = LinearOperatorRankOnePrecisionSqrt(tf.constant(log_scale), tf.constant(rank_one))
    dense = operator.to_dense().numpy()
    assert operator.shape == (3, 5, 5)
    np.testing.assert_allclose(dense @ np.swapaxes(dense, -1, -2), dense_covariance(log_scale, rank_one), rtol=1e-10)
    rhs = np.random.default_rng(1).normal(size=(3, 5, 2))
    np.testing.assert_allclose(operator.matmul(rhs).numpy(), dense @ rhs, rtol=1e-10)
    np.testing.assert_allclose(operator.matmul(rhs, adjoint=True).numpy(), np.swapaxes(dense, -1, -2) @ rhs, rtol=1e-10)
    np.testing.assert_allclose(operator.solve(rhs).numpy(), np.linalg.solve(dense, rhs), rtol=1e-8)
    np.testing.assert_allclose(
        operator.solve(rhs, adjoint=True).numpy(), np.linalg.solve(np.swapaxes(dense, -1, -2), rhs), rtol=1e-8
    )
    np.testing.assert_allclose(operator.log_abs_determinant().numpy(), np.linalg.slogdet(dense)[1], rtol=1e-10)
    np.testing.assert_allclose(operator.diag_part().numpy(), np.diagonal(dense, axis1=-2, axis2=-1), rtol=1e-10)
    # Vectors with extra leading (sample) dimensions broadcast against the operator's batch.
    vectors = np.random.default_rng(2).normal(size=(4, 3, 5))
    np.testing.assert_allclose(operator.matvec(vectors).numpy(), np.einsum("bij,sbj->sbi", dense, vectors), rtol=1e-10)


def test_log_prob_matches_dense_multivariate_normal():
    loc, log_scale, rank_one = random_parameters()
    q = MultivariateNormalRankOnePrecision(loc, log_scale, rank_one)  # float64
    covariance = dense_covariance(log_scale, rank_one)
    points = np.random.default_rng(3).normal(size=(7, 3, 5))
    expected = np.stack([multivariate_normal(loc[b], covariance[b]).logpdf(points[:, b]) for b in range(3)], axis=1)
    np.testing.assert_allclose(q.log_prob(points).numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(q.covariance().numpy(), covariance, rtol=1e-10)
    np.testing.assert_allclose(q.variance().numpy(), np.diagonal(covariance, axis1=-2, axis2=-1), rtol=1e-10)
    np.testing.assert_allclose(q.stddev().numpy(), np.sqrt(np.diagonal(covariance, axis1=-2, axis2=-1)), rtol=1e-10)
    np.testing.assert_allclose(
        q.entropy().numpy(), [multivariate_normal(loc[b], covariance[b]).entropy() for b in range(3)], rtol=1e-10
    )


def test_float32_log_prob_matches_dense_tfp():
    loc, log_scale, rank_one = (tf.constant(a, tf.float32) for a in random_parameters())
    q = MultivariateNormalRankOnePrecision(loc, log_scale, rank_one)
    dense = tfd.MultivariateNormalTriL(
        loc,
        tf.linalg.cholesky(
            tf.constant(
                dense_covariance(log_scale.numpy().astype(np.float64), rank_one.numpy().astype(np.float64)), tf.float32
            )
        ),
    )
    x = dense.sample(6, seed=[4, 5])
    np.testing.assert_allclose(q.log_prob(x).numpy(), dense.log_prob(x).numpy(), rtol=1e-5, atol=1e-5)


def test_sample_moments_match_dense_covariance():
    loc, log_scale, rank_one = random_parameters(batch=1, k=4, seed=6)
    q = MultivariateNormalRankOnePrecision(loc[0], log_scale[0], rank_one[0])
    n = 100_000
    samples = q.sample(n, seed=[7, 8]).numpy()
    covariance = dense_covariance(log_scale[0], rank_one[0])
    # Monte-Carlo standard errors: var(mean_i) = C_ii / n; var(x_i x_j) = C_ii C_jj + C_ij^2 for a centred Gaussian,
    # so the sample covariance entry has s.e. sqrt((C_ii C_jj + C_ij^2) / n). 5 s.e. makes a false alarm negligible.
    variance = np.diag(covariance)
    assert np.all(np.abs(samples.mean(0) - loc[0]) < 5 * np.sqrt(variance / n))
    centred = samples - loc[0]
    sample_covariance = centred.T @ centred / n
    stderr = np.sqrt((np.outer(variance, variance) + covariance**2) / n)
    assert np.all(np.abs(sample_covariance - covariance) < 5 * stderr)


def test_kl_to_diagonal_gaussian_matches_dense():
    loc, log_scale, rank_one = random_parameters()
    q = MultivariateNormalRankOnePrecision(loc, log_scale, rank_one)
    rng = np.random.default_rng(9)
    p = tfd.MultivariateNormalDiag(rng.normal(size=5), np.exp(0.3 * rng.normal(size=5)))
    dense = tfd.MultivariateNormalTriL(loc, np.linalg.cholesky(dense_covariance(log_scale, rank_one)))
    # TFP's generic (dense) rule for MultivariateNormalLinearOperator pairs is the reference.
    np.testing.assert_allclose(tfd.kl_divergence(q, p).numpy(), tfd.kl_divergence(dense, p).numpy(), rtol=1e-10)
    standard = tfd.MultivariateNormalDiag(np.zeros(5), np.ones(5))
    np.testing.assert_allclose(
        tfd.kl_divergence(q, standard).numpy(), tfd.kl_divergence(dense, standard).numpy(), rtol=1e-10
    )


def test_zero_rank_one_is_the_diagonal_gaussian():
    loc, log_scale, _ = random_parameters()
    q = MultivariateNormalRankOnePrecision(loc, log_scale, np.zeros_like(loc))
    diagonal = tfd.MultivariateNormalDiag(loc, np.exp(log_scale))
    x = diagonal.sample(4, seed=[1, 1])
    np.testing.assert_allclose(q.log_prob(x).numpy(), diagonal.log_prob(x).numpy(), rtol=1e-12)
    np.testing.assert_allclose(q.sample(4, seed=[2, 2]).numpy(), diagonal.sample(4, seed=[2, 2]).numpy(), rtol=1e-12)


def test_compiles_with_xla_and_is_reparameterised():
    parameters = [tf.constant(a, tf.float32) for a in random_parameters()]
    points = tf.constant(np.random.default_rng(10).normal(size=(2, 3, 5)), tf.float32)
    prior = tfd.MultivariateNormalDiag(tf.zeros(5), tf.ones(5))

    def density_terms(loc, log_scale, rank_one):
        q = MultivariateNormalRankOnePrecision(loc, log_scale, rank_one)
        return q.log_prob(points), tfd.kl_divergence(q, prior)

    def sample_gradient(loc, log_scale, rank_one):
        with tf.GradientTape() as tape:
            tape.watch([loc, log_scale, rank_one])
            x = MultivariateNormalRankOnePrecision(loc, log_scale, rank_one).sample(3, seed=[1, 2])
            value = tf.reduce_sum(tf.square(x))
        return [*tape.gradient(value, [loc, log_scale, rank_one]), x]

    xla_terms = tf.function(density_terms, jit_compile=True)(*parameters)
    for eager, xla in zip(density_terms(*parameters), xla_terms, strict=True):
        np.testing.assert_allclose(xla.numpy(), eager.numpy(), rtol=1e-5, atol=1e-5)
    # XLA and eager stateless samplers draw different noise, so each is checked against its own draws: x = loc +
    # S(log_scale, u) eps is reparameterised, so d/d loc sum_s |x_s|^2 = 2 sum_s x_s exactly, and the scale and
    # rank-one factors get a gradient through the sample too.
    for *grads, x in (sample_gradient(*parameters), tf.function(sample_gradient, jit_compile=True)(*parameters)):
        np.testing.assert_allclose(grads[0].numpy(), 2 * x.numpy().sum(axis=0), rtol=1e-5, atol=1e-5)
        assert np.abs(grads[1].numpy()).min() > 0 and np.abs(grads[2].numpy()).sum() > 0


@pytest.mark.parametrize("covariance", ["diagonal", "rank_one"])
def test_head_shapes_distribution_and_config(covariance):
    head = GaussianHead(4, covariance, name="head")
    features = tf.random.stateless_normal([2, 3, 6], seed=[0, 1])
    parameters = head(features)
    assert len(parameters) == (3 if covariance == "rank_one" else 2)
    assert all(p.shape == (2, 3, 4) for p in parameters)
    q = head.distribution(features)
    expected = MultivariateNormalRankOnePrecision if covariance == "rank_one" else tfd.MultivariateNormalDiag
    assert isinstance(q, expected)
    assert q.batch_shape == (2, 3) and q.event_shape == (4,)
    config = head.get_config()
    assert GaussianHead.from_config(config).get_config() == config
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(head))
    assert isinstance(clone, GaussianHead) and clone.get_config() == config


def test_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="covariance must be one of"):
        GaussianHead(3, "full")
    with pytest.raises(ValueError, match="latent_size must be a positive integer"):
        GaussianHead(0)
