"""tfrecog.layers.random: XLA's ThreeFry generator inside the library's compiled paths, Philox everywhere else."""

import numpy as np
import pytest

from tfrecog._tf import keras, tf
from tfrecog.evaluate import log_likelihood
from tfrecog.layers import random
from tfrecog.models import SBN


def test_algorithm_follows_the_context_and_restores_it():
    assert random.algorithm() == "philox"
    with random.xla_random(True):
        assert random.algorithm() == "threefry"
        with random.xla_random(False):
            assert random.algorithm() == "philox"
        assert random.algorithm() == "threefry"
    assert random.algorithm() == "philox"


def test_threefry_draws_under_xla_are_reproducible_uniforms():
    """Inside xla_random under XLA: the same seed gives the same draws, another seed others, and 200,000 draws have
    the mean (1/2) and variance (1/12) of U[0, 1) within 5 standard errors."""

    @tf.function(jit_compile=True)
    def draw(seed):
        with random.xla_random(True):
            return random.uniform([200000], seed)

    a, b, c = draw(tf.constant([1, 2])).numpy(), draw(tf.constant([1, 2])).numpy(), draw(tf.constant([1, 3])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0
    n = a.size
    assert abs(a.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(a.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)  # var of (u - 1/2)^2 is 1/180
    # the generator really differs from Philox (the context is what selects it)
    philox = tf.function(lambda s: random.uniform([200000], s), jit_compile=True)(tf.constant([1, 2])).numpy()
    assert not np.array_equal(a, philox)


@pytest.mark.parametrize("jit", [True, False])
def test_sbn_fits_and_evaluates_with_and_without_xla(jit):
    """Philox outside XLA (TensorFlow's kernels reject ThreeFry), ThreeFry inside: both paths run, including a
    train_step called eagerly on a model compiled for XLA."""
    rng = np.random.default_rng(0)
    x = (rng.random((200, 12)) < 0.3).astype(np.float32)
    model = SBN(event_size=12, latent_sizes=[4, 3], seed=0)
    model.compile(jit_compile=jit, steps_per_execution=2)
    history = model.fit(x, batch_size=50, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    block = x[:100].reshape(2, 50, 12).transpose(1, 0, 2)  # [M, S, D]: the fused step's float input
    logs = model.train_step(tf.constant(block))  # eager call: Philox whatever compile() said
    assert np.isfinite(float(logs["loss"]))
    estimate = log_likelihood(model, x[:20], samples=50, batch_size=20, jit_compile=jit)
    assert np.isfinite(estimate.log_likelihood)


def test_xla_and_kernel_generators_give_the_same_estimate_statistically():
    """The importance-sampled log-likelihood of a tiny SBN with and without XLA (different generators) agree within
    their Monte-Carlo error, and the exact log-likelihood lies within both."""
    from tfrecog.models.sbn import exact_log_likelihood

    keras.utils.set_random_seed(0)
    model = SBN(event_size=6, latent_sizes=[3], seed=3)
    model.build((None, 6))
    x = (np.random.default_rng(1).random((4, 6)) < 0.4).astype(np.float32)
    exact = exact_log_likelihood(model, x).numpy()
    for jit in (True, False):
        est = log_likelihood(model, x, samples=20000, batch_size=4, jit_compile=jit, seed=5).per_example
        np.testing.assert_allclose(est, exact, atol=0.02)


def _rank_one():
    from tfrecog.layers import MultivariateNormalRankOnePrecision

    return MultivariateNormalRankOnePrecision(
        loc=tf.constant([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]),
        log_scale=tf.constant([[0.1, -0.2, 0.3], [0.0, 0.2, -0.1]]),
        rank_one=tf.constant([[0.5, 1.0, -0.7], [0.3, -0.2, 0.9]]))


def test_sample_is_the_distributions_affine_map_of_normal_draws():
    """Outside XLA: loc + scale.matvec(eps) with eps = stateless_normal(seed) (Philox), for the diagonal and the
    rank-one Gaussian; a joint distribution samples each component with its part of the split seed; other
    distributions fall back to their own sample."""
    from tfrecog._tf import tfd

    seed = tf.constant([3, 4])
    diag = tfd.MultivariateNormalDiag(loc=[[0.5, -1.0]], scale_diag=[[2.0, 0.1]])
    for q in (diag, _rank_one()):
        eps = tf.random.stateless_normal([5, *q.batch_shape, *q.event_shape], seed, alg="philox")
        np.testing.assert_allclose(random.sample(q, 5, seed), q.loc + q.scale.matvec(eps), rtol=1e-6, atol=1e-6)
    joint = tfd.JointDistributionSequential([diag, _rank_one()])
    parts = random.sample(joint, 4, seed)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    np.testing.assert_array_equal(parts[0], random.sample(diag, 4, seeds[0]))
    assert [p.shape for p in parts] == [(4, 1, 2), (4, 2, 3)]
    bern = tfd.Bernoulli(probs=[0.2, 0.7])
    np.testing.assert_array_equal(random.sample(bern, 3, seed), bern.sample(3, seed=seed))


def test_threefry_gaussian_draws_have_the_distributions_moments():
    """Under XLA with ThreeFry, 100,000 draws of the rank-one Gaussian have its mean and dense covariance
    (C = (D + u u^T)^-1) within Monte-Carlo error."""
    q = _rank_one()

    @tf.function(jit_compile=True)
    def draw(seed):
        with random.xla_random(True):
            return random.sample(q, 100000, seed)

    draws = draw(tf.constant([5, 6])).numpy()
    covariance = q.covariance().numpy()
    for b in range(2):
        np.testing.assert_allclose(draws[:, b].mean(0), q.loc.numpy()[b], atol=5 * np.sqrt(covariance[b].max() / 1e5))
        np.testing.assert_allclose(np.cov(draws[:, b].T), covariance[b], atol=0.03)
