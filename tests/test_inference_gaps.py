"""The per-example variational family of `tfrecog.annealing.optimised_elbo` for a DLGM with top-down recognition,
against an exact answer.

A two-layer linear Gaussian DLGM with one latent per layer (xi_2 -> h_2 -> h_1 -> x, all linear) has a Gaussian
posterior over (xi_1, xi_2). Its top-down recognition family q(xi_2 | x) q(xi_1 | x, h_2), each a 1-d Gaussian whose
parameters are affine in [x, h_2] (no hidden layer), contains that posterior once the head's weight on h_2 is the
posterior's slope: q(xi_2 | x) can be the posterior's marginal and q(xi_1 | x, h_2) its conditional, a 1-d Gaussian
with mean affine in xi_2 (slope Cov(xi_1, xi_2) / Var(xi_2), the same for every x in a linear Gaussian model) and
constant variance. The network's weights on h_2 are shared by all examples (the per-example parameters are offsets
of the heads' outputs), so the fixture sets them (the slope on the mean, zero on the log-scale); then the best
per-example member's ELBO equals log p(x), computed here by quadrature of p(x, xi) on a 2-d grid, and its posterior
moments likewise.
"""

import numpy as np
import pytest

from tfrecog import annealing
from tfrecog._tf import keras, tf
from tfrecog.models import DLGM

EXAMPLES = 6


@pytest.fixture(scope="module")
def linear_top_down():
    keras.utils.set_random_seed(5)
    model = DLGM(event_size=4, latent_sizes=(1, 1), hidden_sizes=(), linear=True, likelihood="gaussian",
                 recognition_hidden_sizes=(), recognition_structure="top_down", covariance="diagonal", seed=2)
    model.build((None, 4))
    x = model.sample_joint(EXAMPLES, tf.constant([4, 1]))[0].numpy()
    _, (a, b), weights = _quadrature(model, x)
    mean_a, mean_b = (weights * a).sum(0), (weights * b).sum(0)
    slope = (weights * (a - mean_a) * (b - mean_b)).sum(0) / (weights * (b - mean_b) ** 2).sum(0)  # d xi_1 / d xi_2
    np.testing.assert_allclose(slope, slope[0], rtol=1e-3)  # one slope for every x: the posterior is Gaussian
    h_per_xi = float(tf.squeeze(model._state(1, None, tf.ones([1, 1])) - model._state(1, None, tf.zeros([1, 1]))))
    kernel = model.heads[0].dense.kernel  # rows [f (4), h_2 (1)], columns [loc, log_scale] of q(xi_1 | x, h_2)
    # The slope on the mean; no dependence of the log-scale on h_2 (the conditional variance is constant).
    kernel.assign(tf.tensor_scatter_nd_update(kernel, [[4, 0], [4, 1]], [slope[0] / h_per_xi, 0.0]))
    return model, x


def _quadrature(model, x):
    """(log p(x) [B], grid points (xi_1, xi_2) [G, 1], posterior weights [G, B]) on a 601 x 601 grid over [-7, 7]^2:
    log p(x) = log sum_grid p(x, xi) * cell area (the integrand is a Gaussian in xi whose mass lies well inside the
    box; the midpoint rule on it is exact to ~1e-6 nats here)."""
    grid = np.linspace(-7.0, 7.0, 601)
    a, b = (v.reshape(-1, 1) for v in np.meshgrid(grid, grid, indexing="ij"))
    xi = [tf.broadcast_to(tf.constant(v[:, :, None], tf.float32), [len(v), len(x), 1]) for v in (a, b)]
    log_joint = model.log_joint(tf.constant(x), xi).numpy().astype(np.float64)  # [G, B]
    m = log_joint.max(0)
    weights = np.exp(log_joint - m)
    total = weights.sum(0)
    return m + np.log(total * (grid[1] - grid[0]) ** 2), (a, b), weights / total


def _log_marginal_by_quadrature(model, x):
    return _quadrature(model, x)[0]


def test_zero_offsets_are_the_recognition_model(linear_top_down):
    """At d = 0 the per-example family is the amortised q: the same density at the same draws."""
    model, x = linear_top_down
    offsets, make_q, binary = annealing._variational_family(model, tf.constant(x))
    assert not binary and all(float(tf.reduce_max(tf.abs(d))) == 0.0 for d in offsets)
    q = make_q(offsets)
    xi = q.sample(5, seed=tf.constant([1, 2]))
    assert [tuple(v.shape) for v in xi] == [(5, EXAMPLES, 1), (5, EXAMPLES, 1)]
    np.testing.assert_allclose(q.log_prob(xi).numpy(), model.recognition_log_prob(tf.constant(x), xi).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_optimised_top_down_elbo_reaches_log_p_x(linear_top_down):
    """The family contains the posterior, so the optimised per-example ELBO reaches log p(x); with the "sticking
    the landing" gradient the noise vanishes at the optimum, and the re-estimate (1,000 draws) of a nearly
    constant log-ratio has negligible noise. Tolerances as the factor-analysis test of test_ais.py: 0.02 nats on the
    mean, 0.2 on each example (the stopping rule bounds the mean over examples); never above log p(x). The untrained
    encoder's ELBO is far below, so the check has power (a family that ignored the offsets would stay there)."""
    model, x = linear_top_down
    exact = _log_marginal_by_quadrature(model, x)
    elbo, iterations, converged = annealing.optimised_elbo(model, x, max_iterations=10000, seed=0)
    assert converged, iterations
    gap = exact - elbo
    assert abs(gap.mean()) < 0.02 and np.abs(gap).max() < 0.2, gap
    assert (elbo < exact + 5e-3).all()  # an ELBO never exceeds log p(x); 5e-3: the re-estimate's noise near the optimum
    offsets, make_q, _ = annealing._variational_family(model, tf.constant(x))
    q = make_q(offsets)
    xi = q.sample(1000, seed=tf.constant([3, 3]))
    amortised = tf.reduce_mean(model.log_joint(tf.constant(x), xi) - q.log_prob(xi), 0).numpy()
    assert (exact - amortised).mean() > 0.5, exact - amortised
