"""NVIL: learning signals by hand, the running statistics, unbiasedness against the exact ELBO gradient of tiny
SBNs (every variance-reduction technique on and off), and the variance reduction of the baselines.
"""

import numpy as np
import pytest

from tfrecog._tf import keras, tf
from tfrecog.estimators import NVILState, nvil
from tfrecog.estimators.nvil import learning_signals
from tfrecog.models import SBN
from tfrecog.models.sbn import exact_elbo

TINY = {
    "sbn1": dict(event_size=6, latent_sizes=[4]),
    "sbn2": dict(event_size=5, latent_sizes=[3, 2], recognition_hidden_size=4),
    "fdarn": dict(event_size=6, latent_sizes=[4], autoregressive_prior=True, autoregressive_visible=True,
                  autoregressive_posterior=True),
}
FLAGS = ("centering", "input_dependent_baseline", "variance_normalization", "local_signals")


def tiny_model(name):
    model = SBN(**TINY[name], seed=1)
    rng = np.random.default_rng(7)
    for v in model.trainable_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype("float32"))
    return model


def test_learning_signals_by_hand():
    a = [tf.constant([[1.0, 2.0]]), tf.constant([[3.0, 5.0]]), tf.constant([[7.0, 11.0]])]  # log p terms
    b = [tf.constant([[0.5, 0.25]]), tf.constant([[2.0, 4.0]])]  # log q terms
    total = np.array([[11.0 - 2.5, 18.0 - 4.25]])
    np.testing.assert_allclose(learning_signals(a, b, local=False).numpy(), [total, total])
    local = learning_signals(a, b, local=True).numpy()
    np.testing.assert_allclose(local[0], total)  # l_1 = log p(x, h_1, h_2) - log q(h_1, h_2 | x)
    np.testing.assert_allclose(local[1], [[3 + 7 - 2.0, 5 + 11 - 4.0]])  # l_2 = log p(h_1, h_2) - log q(h_2 | h_1)


def test_running_statistics_update():
    model = tiny_model("sbn2")
    x = tf.constant(np.random.default_rng(0).random((8, 5)) < 0.5, tf.float32)
    state = NVILState(tf.constant([1.0, -2.0]), tf.constant([3.0, 0.5]))
    seed = tf.constant([4, 2])
    _, _, new_state = nvil(model, x, seed, state, baseline=model.baseline_network, num_samples=3, decay=0.8)
    h, q_terms = model.sample_posterior_terms(x, 3, seed)
    residual = learning_signals(model.log_joint_terms(x, h), q_terms).numpy()
    residual -= np.transpose(model.baseline_network(x).numpy())[:, None, :]
    batch_mean = residual.mean(axis=(1, 2))
    batch_var = residual.var(axis=(1, 2))
    np.testing.assert_allclose(new_state.mean.numpy(), 0.8 * np.array([1.0, -2.0]) + 0.2 * batch_mean, rtol=1e-4)
    np.testing.assert_allclose(new_state.variance.numpy(), 0.8 * np.array([3.0, 0.5]) + 0.2 * batch_var, rtol=1e-3)


def exact_gradient(model, x):
    """grad of mean_b ELBO(x_b) by enumeration over all latent configurations (generative + recognition)."""
    with tf.GradientTape() as tape:
        objective = tf.reduce_mean(exact_elbo(model, x))
    return np.concatenate([g.numpy().ravel() for g in tape.gradient(objective, model.model_variables)])


def nvil_gradient_estimates(model, x, state, flags, repeats, num_samples):
    """`repeats` independent NVIL estimates of grad ELBO (each averaging num_samples samples per example)."""
    variables = model.model_variables

    @tf.function
    def estimate(seed):
        with tf.GradientTape() as tape:
            losses, _, _ = nvil(model, x, seed, state, baseline=model.baseline_network, num_samples=num_samples,
                                **flags)
            loss = losses["model"] + losses["recognition"]
        return tf.concat([tf.reshape(-g, [-1]) for g in tape.gradient(loss, variables)], axis=0)

    return np.stack([estimate(tf.constant([i, 17])).numpy() for i in range(repeats)])


SETTINGS = [dict.fromkeys(FLAGS, False), dict.fromkeys(FLAGS, True)] + [
    {flag: flag == on for flag in FLAGS} for on in FLAGS
]


@pytest.mark.parametrize(
    "name, flags",
    [("sbn2", flags) for flags in SETTINGS] + [(name, flags) for name in ("sbn1", "fdarn") for flags in SETTINGS[:2]],
    ids=lambda v: v if isinstance(v, str) else "+".join(k[:6] for k, on in v.items() if on) or "plain",
)
def test_expected_nvil_gradient_is_the_exact_elbo_gradient(name, flags):
    """E[NVIL estimate] = grad ELBO for the generative parameters and grad ELBO / max(1, sqrt(v)) for the
    recognition parameters (v = 4 here, so a factor 1/2 with variance normalisation): c and C(x) do not depend
    on h and local signals drop only terms independent of h_i given h_{i-1}.

    Tolerance: the mean of R independent estimates has standard error sd / sqrt(R) per component (sd estimated
    from the R estimates); every component must lie within 5 standard errors, plus 1e-4 for float32 round-off
    (eps 6e-8 times terms of size ~10 summed over thousands of samples; it matters only for saturated units).
    """
    model = tiny_model(name)
    x = tf.constant([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0], [1, 1, 1, 0, 0, 1]][:3], tf.float32)[:, : model.event_size]
    num_layers = len(model.latent_sizes)
    state = NVILState(tf.constant([1.3, -0.7][:num_layers]), tf.constant([4.0] * num_layers))
    exact = exact_gradient(model, x)
    num_generative = sum(int(np.prod(v.shape)) for v in model.generative_variables)
    expected = exact.copy()
    if flags["variance_normalization"]:
        expected[num_generative:] /= 2.0
    repeats = 40
    estimates = nvil_gradient_estimates(model, x, state, flags, repeats, num_samples=2000)
    mean = estimates.mean(axis=0)
    stderr = estimates.std(axis=0, ddof=1) / np.sqrt(repeats)
    bad = np.abs(mean - expected) > 5 * stderr + 1e-4
    assert not bad.any(), (np.flatnonzero(bad), mean[bad], expected[bad], stderr[bad])
    # The check has power: the Monte-Carlo error is small next to the gradient itself.
    assert np.linalg.norm(stderr[num_generative:]) < 0.15 * np.linalg.norm(expected[num_generative:])


def trace_variance(estimates):
    return float(np.sum(np.var(estimates, axis=0, ddof=1)))


def test_baselines_reduce_the_variance_of_the_recognition_gradient():
    """After a short fit of C(x) and c (model frozen), the trace of the covariance of the single-sample
    recognition gradient on one batch is far smaller with centring + input-dependent baseline than plain REINFORCE
    (l * grad log q), and smaller still with variance normalisation (which rescales by 1 / max(1, sqrt(v)))."""
    teacher = SBN(event_size=20, latent_sizes=[8], seed=3)
    rng = np.random.default_rng(3)
    for v in teacher.generative_variables:
        v.assign(rng.normal(scale=2.0, size=v.shape).astype("float32"))
    data, _ = teacher.sample_joint(512, tf.constant([3, 3]))
    model = SBN(event_size=20, latent_sizes=[8, 4], seed=0)
    optimizer = keras.optimizers.Adam(1e-2)
    baseline_variables = model.baseline_variables
    all_on = dict.fromkeys(FLAGS, True)

    @tf.function
    def fit_baseline(x, seed):
        with tf.GradientTape() as tape:
            losses, _, new_state = nvil(model, x, seed, model.nvil_state(), baseline=model.baseline_network,
                                        **all_on)
        optimizer.apply(tape.gradient(losses["baseline"], baseline_variables), baseline_variables)
        model.signal_mean.assign(new_state.mean)
        model.signal_variance.assign(new_state.variance)
        return losses["baseline"]

    for step in range(300):
        start = (step * 64) % 512
        fit_baseline(data[start : start + 64], tf.constant([step, 1]))

    x = data[:32]
    state = model.nvil_state()
    recognition = model.recognition_variables
    num_generative = sum(int(np.prod(v.shape)) for v in model.generative_variables)

    def variance(flags):
        estimates = nvil_gradient_estimates(model, x, state, flags, repeats=200, num_samples=1)
        assert estimates.shape[1] - num_generative == sum(int(np.prod(v.shape)) for v in recognition)
        return trace_variance(estimates[:, num_generative:])

    plain = variance(dict.fromkeys(FLAGS, False))
    baselines = variance(dict(centering=True, input_dependent_baseline=True, variance_normalization=False,
                              local_signals=True))
    normalized = variance(all_on)
    # With 200 estimates the relative error of a variance is about sqrt(2 / 199) ~ 10%; the ratios are far below 1.
    assert baselines / plain < 0.25, (plain, baselines)
    # The same seeds give the same draws under every setting, so normalisation divides layer i's recognition
    # gradient by max(1, sqrt(v_i)) exactly and its variance by max(1, v_i): a normalisation that does nothing fails.
    factors = np.maximum(1.0, state.variance.numpy())
    # (Layers whose running variance is below 1 are left as they are, so the total lies between these bounds.)
    assert factors.max() > 1.5, factors  # the running variance is large enough for normalisation to act
    assert baselines / factors.max() * 0.999 <= normalized <= baselines / factors.min() * 1.001, (
        baselines, normalized, factors)
    assert normalized < baselines * 0.99, (baselines, normalized, factors)  # it acted on at least one layer
    print(f"recognition-gradient variance: plain {plain:.4g}, baselines {baselines:.4g} "
          f"(ratio {baselines / plain:.4f}), + normalisation {normalized:.4g} (ratio {normalized / plain:.4f})")
