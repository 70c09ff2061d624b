"""VIMCO, reweighted wake-sleep and DisARM: the Monte-Carlo mean of each gradient estimate against the exact gradient
of its objective on tiny SBNs (every latent state, and every K-tuple of states, summed exactly), plus bad input.
"""

import itertools
import math

import numpy as np
import pytest

from tfrecog._tf import keras, tf
from tfrecog.estimators import disarm, rws, vimco
from tfrecog.estimators.vimco import leave_one_out_bounds
from tfrecog.models import SBN, VAE
from tfrecog.models.sbn import exact_elbo, exact_log_joint_table, latent_configurations

TINY = {
    "sbn1": dict(event_size=6, latent_sizes=[3]),
    "sbn2": dict(event_size=5, latent_sizes=[2, 2], recognition_hidden_size=3),
    "fdarn": dict(event_size=6, latent_sizes=[3], autoregressive_prior=True, autoregressive_visible=True),
}
X = [[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 1, 0, 0, 1]]


def tiny_model(name, **kwargs):
    model = SBN(**TINY[name], seed=1, **kwargs)
    rng = np.random.default_rng(7)
    for v in model.model_variables:
        v.assign(rng.normal(scale=1.0, size=v.shape).astype("float32"))
    return model, tf.constant(X, tf.float32)[:, : model.event_size]


def flat(gradients):
    return np.concatenate([g.numpy().ravel() for g in gradients])


def num_generative(model):
    return sum(int(np.prod(v.shape)) for v in model.generative_variables)


def tuples(model, x, num_samples):
    """Over all K-tuples of latent states (T = (2^n)^K): log w [T, K, B], log p [T, K, B], log prod_k q [T, B]."""
    log_joint, log_q = exact_log_joint_table(model, x)  # [2^n, B]
    index = np.array(list(itertools.product(range(log_joint.shape[0]), repeat=num_samples)))  # [T, K]
    log_p, log_qk = tf.gather(log_joint, index), tf.gather(log_q, index)
    return log_p - log_qk, log_p, log_qk, tf.reduce_sum(log_qk, axis=1)


def exact_bound_gradient(model, x, num_samples):
    """grad of mean_b E[L_K(x_b)], E[L_K] = sum over K-tuples of prod_k q(h_k | x) log (1/K) sum_k w_k."""
    with tf.GradientTape() as tape:
        log_w, _, _, log_q_tuple = tuples(model, x, num_samples)
        bound = tf.reduce_logsumexp(log_w, axis=1) - math.log(num_samples)
        objective = tf.reduce_mean(tf.reduce_sum(tf.exp(log_q_tuple) * bound, axis=0))
    return flat(tape.gradient(objective, model.model_variables))


def exact_rws_wake_gradient(model, x, num_samples):
    """E[sum_k w~_k grad (log p(x, h_k) + log q(h_k | x))] exactly: the K-tuple sum with the weights held fixed."""
    with tf.GradientTape() as tape:
        log_w, log_p, log_q, log_q_tuple = tuples(model, x, num_samples)
        coefficient = tf.stop_gradient(tf.exp(log_q_tuple)[:, None, :] * tf.nn.softmax(log_w, axis=1))
        objective = tf.reduce_mean(tf.reduce_sum(coefficient * (log_p + log_q), axis=[0, 1]))
    return flat(tape.gradient(objective, model.model_variables))


def exact_sleep_gradient(model):
    """E_{p(x', h')}[grad log q(h' | x')] by enumerating every (x', h')."""
    pixels = latent_configurations([model.event_size])[0]  # [2^D, D]
    states = [t[:, None, :] for t in latent_configurations(model.latent_sizes)]  # [2^n, 1, size_l]
    with tf.GradientTape() as tape:
        weight = tf.stop_gradient(tf.exp(model.log_joint(pixels, states)))  # [2^n, 2^D]
        objective = tf.reduce_sum(weight * model.recognition_log_prob(pixels, states))
    gradients = tape.gradient(objective, model.model_variables)  # None for theta (Keras variables refuse 'zero')
    return flat([tf.zeros(v.shape) if g is None else g for v, g in zip(model.model_variables, gradients)])


def exact_elbo_gradient(model, x):
    with tf.GradientTape() as tape:
        objective = tf.reduce_mean(exact_elbo(model, x))
    return flat(tape.gradient(objective, model.model_variables))


def estimates(estimator, model, x, repeats, copies, **kwargs):
    """`repeats` independent estimates of the ascent direction (-grad loss), each the mean over `copies` independent
    replicas of the minibatch (x tiled: the loss averages over examples, so over the replicas)."""
    variables = model.model_variables
    tiled = tf.tile(x, [copies, 1])

    @tf.function
    def estimate(seed):
        with tf.GradientTape() as tape:
            loss, _ = estimator(model, tiled, seed, **kwargs)
        return tf.concat([tf.reshape(-g, [-1]) for g in tape.gradient(loss, variables)], axis=0)

    return np.stack([estimate(tf.constant([i, 29])).numpy() for i in range(repeats)])


def assert_unbiased(samples, expected, power=0.2):
    """Every component of the mean of R estimates lies within 5 standard errors of `expected`.

    Tolerance: the mean of R independent estimates has standard error s / sqrt(R) per component (s the sample
    standard deviation of the R estimates); |mean - expected| / stderr is then Student-t with R - 1 degrees of
    freedom, for which P(|t| > 5) is about 1e-5 at R = 40, so below 1e-3 over the < 100 components. Plus 1e-4 for
    float32 round-off. The check has power: the standard errors are small next to the gradient (`power`).
    """
    repeats = len(samples)
    mean = samples.mean(axis=0)
    stderr = samples.std(axis=0, ddof=1) / np.sqrt(repeats)
    bad = np.abs(mean - expected) > 5 * stderr + 1e-4
    assert not bad.any(), (np.flatnonzero(bad), mean[bad], expected[bad], stderr[bad])
    assert np.linalg.norm(stderr) < power * np.linalg.norm(expected), (np.linalg.norm(stderr), np.linalg.norm(expected))


def test_leave_one_out_bounds_by_hand():
    log_w = np.array([[0.3, -2.0], [1.7, -1.0], [-0.4, 5.0], [0.0, -30.0]], np.float32)
    K = len(log_w)
    expected = np.empty_like(log_w)
    for k in range(K):
        others = np.delete(log_w, k, axis=0)
        geometric = others.mean(axis=0)
        expected[k] = np.log((np.exp(others).sum(axis=0) + np.exp(geometric)) / K)
    np.testing.assert_allclose(leave_one_out_bounds(tf.constant(log_w)).numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sbn1", "sbn2", "fdarn"])
def test_vimco_is_unbiased_for_the_expected_k_sample_bound(name):
    model, x = tiny_model(name)
    expected = exact_bound_gradient(model, x, num_samples=3)
    samples = estimates(vimco, model, x, repeats=40, copies=1000, num_samples=3)
    assert_unbiased(samples, expected)


@pytest.mark.parametrize("name", ["sbn1", "sbn2", "fdarn"])
def test_rws_wake_gradient_matches_its_exact_expectation(name):
    """theta: E[sum_k w~_k grad log p(x, h_k)] = grad E[L_K]; phi: the exact wake-phase expectation."""
    model, x = tiny_model(name)
    expected = exact_rws_wake_gradient(model, x, num_samples=3)
    theta = num_generative(model)
    np.testing.assert_allclose(expected[:theta], exact_bound_gradient(model, x, 3)[:theta], rtol=1e-4, atol=1e-5)
    samples = estimates(rws, model, x, repeats=40, copies=1000, num_samples=3)
    assert_unbiased(samples, expected)


def test_rws_sleep_gradient_matches_its_exact_expectation():
    model, x = tiny_model("sbn2")
    theta = num_generative(model)
    expected = exact_sleep_gradient(model)[theta:]
    samples = estimates(rws, model, x, repeats=40, copies=1000, num_samples=3, q_update="sleep")[:, theta:]
    assert_unbiased(samples, expected)


@pytest.mark.parametrize("name", ["sbn1", "sbn2", "fdarn"])
def test_disarm_is_unbiased_for_the_elbo(name):
    model, x = tiny_model(name)
    expected = exact_elbo_gradient(model, x)
    samples = estimates(disarm, model, x, repeats=40, copies=1000, num_samples=1)
    assert_unbiased(samples, expected)


def test_vimco_leave_one_out_reduces_the_variance():
    """The leave-one-out baselines against the plain score-function gradient of the same K-sample bound (learning
    signal L_K for every sample): the trace of the recognition gradient's covariance falls several-fold (with 200
    estimates each trace has a relative error of about sqrt(2 / 199) ~ 10%)."""
    model, x = tiny_model("sbn2")

    def plain(model, x, seed, num_samples):
        h, log_q = model.sample_posterior(x, num_samples, seed)
        log_w = model.log_joint(x, h) - log_q
        bound = tf.reduce_logsumexp(log_w, axis=0) - math.log(num_samples)
        return -tf.reduce_mean(bound + tf.reduce_sum(tf.stop_gradient(bound) * log_q, axis=0)), {}

    theta = num_generative(model)
    traces = [np.var(estimates(e, model, x, repeats=200, copies=1, num_samples=5)[:, theta:], axis=0, ddof=1).sum()
              for e in (vimco, plain)]
    print(f"VIMCO recognition-gradient variance (trace), K=5: leave-one-out {traces[0]:.4g}, plain {traces[1]:.4g}")
    assert traces[0] < 0.5 * traces[1], traces


@pytest.mark.parametrize(
    "estimator, k",
    [("vimco", 4)] + [pytest.param(e, k, marks=pytest.mark.slow) for e, k in [("rws", 3), ("rws_wake_sleep", 2),
                                                                               ("disarm", 2)]],
)
def test_selectable_by_name_in_the_fused_fit_and_saved(estimator, k):
    """The estimator trains in the fused XLA loop (compile + fit) and its name and K survive a config round trip.
    (One XLA compilation each, about 25 s on a loaded 2-core machine: all but VIMCO are marked slow.)"""
    rng = np.random.default_rng(0)
    data = (rng.random((200, 12)) < 0.3).astype("float32")
    model = SBN(12, [4, 3], estimator=estimator, num_samples=k, seed=2)
    model.compile(keras.optimizers.Adam(1e-2), steps_per_execution=5)
    history = model.fit(data, batch_size=20, epochs=2, verbose=0)
    assert np.isfinite(history.history["elbo"]).all()
    assert history.history["elbo"][-1] > history.history["elbo"][0]
    config = model.get_config()
    assert (config["estimator"], config["num_samples"]) == (estimator, k)
    assert SBN.from_config(config).get_config() == config


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SBN(6, [3], estimator="vimco", num_samples=1), "needs num_samples >= 2"),
        (lambda: SBN(6, [3], estimator="rws"), "needs num_samples >= 2"),
        (lambda: SBN(6, [3], estimator="sgvb_b"), "sbn models support the estimators"),
        (lambda: VAE(6, 2, hidden_sizes=[4], estimator="vimco", num_samples=5), "vae models support the estimators"),
        (lambda: SBN(6, [3], estimator="disarm", autoregressive_posterior=True), "factorial recognition layers"),
        (lambda: SBN(784, [200, 200, 200], estimator="vimco", num_samples=5000), "MiB of activations per example"),
    ],
)
def test_bad_input_is_a_one_line_error_at_construction(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "\n" not in str(error.value)
