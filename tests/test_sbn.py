"""SBN / fDARN: exact answers by enumerating every latent configuration of tiny models, samplers against exact
probabilities, the categorical observation by hand, the export protocol, training, saving and tf.distribute.
"""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_blocked_weights_match

from tfrecog._tf import keras, tf, tfd
from tfrecog.evaluate import log_likelihood
from tfrecog.models import SBN, BernoulliLayer
from tfrecog.models.sbn import (
    _autoregressive_sample,
    bernoulli_log_prob,
    exact_elbo,
    exact_log_joint_table,
    exact_log_likelihood,
    latent_configurations,
)

TINY = {
    "sbn1": dict(event_size=6, latent_sizes=[4]),
    "sbn2": dict(event_size=5, latent_sizes=[3, 2], recognition_hidden_size=4),
    "fdarn": dict(event_size=6, latent_sizes=[4], autoregressive_prior=True, autoregressive_visible=True,
                  autoregressive_posterior=True),
    "fdarn2": dict(event_size=5, latent_sizes=[3, 2], autoregressive_prior=True, autoregressive_visible=True,
                   autoregressive_posterior=True),
}


def tiny_model(name, **extra):
    model = SBN(**TINY[name], **extra, seed=1)
    # Larger weights than the default initialisation, so that posteriors are far from uniform.
    rng = np.random.default_rng(7)
    for v in model.trainable_variables:
        v.assign(rng.normal(scale=1.5, size=v.shape).astype("float32"))
    return model


def fit_recognition_to_posterior(model, x, steps=150):
    """Maximises the exact ELBO over the recognition parameters, so q is a good importance proposal."""
    optimizer = keras.optimizers.Adam(0.1)
    variables = model.recognition_variables

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(exact_elbo(model, x))
        optimizer.apply(tape.gradient(loss, variables), variables)

    for _ in range(steps):
        step()


def all_binary(n):
    return latent_configurations([n], max_bits=n)[0].numpy()


@pytest.mark.parametrize("name", sorted(TINY))
def test_exact_distributions_normalise(name):
    """sum_x p(x) = 1 and sum_h q(h | x) = 1: checks every conditional, the masks and the top prior at once."""
    model = tiny_model(name)
    xs = all_binary(model.event_size)
    log_px = exact_log_likelihood(model, xs).numpy()
    np.testing.assert_allclose(np.exp(log_px).sum(), 1.0, rtol=1e-5)
    _, log_q = exact_log_joint_table(model, xs)
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_q), axis=0).numpy(), np.ones(len(xs)), rtol=1e-5)


def test_log_joint_by_hand():
    """log p(x, h) of a one-layer SBN against a direct numpy computation of the Bernoulli terms."""
    model = tiny_model("sbn1")
    x = all_binary(6)[[5, 40]]
    h = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], "float32")
    sigmoid = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    bern = lambda v, a: np.sum(v * np.log(sigmoid(a)) + (1 - v) * np.log(1 - sigmoid(a)), -1)  # noqa: E731
    prior = model.prior_layer.logits_bias.numpy()
    dense = model.observation_layer.output_layer
    expected = bern(h, prior) + bern(x, h @ dense.kernel.numpy() + dense.bias.numpy())
    np.testing.assert_allclose(model.log_joint(x, [h[None]]).numpy()[0], expected, rtol=1e-5)
    q = model.inference_layers[0].output_layer
    expected_q = bern(h, x @ q.kernel.numpy() + q.bias.numpy())
    np.testing.assert_allclose(model.recognition_log_prob(x, [h]).numpy(), expected_q, rtol=1e-5)


@pytest.mark.parametrize("name", ["sbn1", "sbn2", "fdarn"])
def test_importance_sampled_log_likelihood_converges_to_exact(name):
    """log (1/K) sum_k w_k -> log p(x). By the delta method its standard error is sd(w) / (sqrt(K) p(x)) and its
    bias about -Var(w) / (2 K p(x)^2), with Var_q(w) = sum_h p(x, h)^2 / q(h | x) - p(x)^2 computed exactly."""
    model = tiny_model(name)
    x = all_binary(model.event_size)[[3, 17, 30]]
    fit_recognition_to_posterior(model, x)
    log_joint, log_q = (t.numpy().astype(np.float64) for t in exact_log_joint_table(model, x))
    log_px = np.logaddexp.reduce(log_joint, axis=0)
    relative_variance = np.exp(np.logaddexp.reduce(2 * log_joint - log_q, axis=0) - 2 * log_px) - 1.0
    samples = 4000
    stderr = np.sqrt(relative_variance / samples)
    assert np.all(stderr < 0.1)  # the delta method (a first-order expansion of log) is accurate here
    result = log_likelihood(model, x, samples=samples, batch_size=3, seed=3)
    assert np.all(np.abs(result.per_example - (log_px - relative_variance / (2 * samples))) < 5 * stderr + 1e-4)
    # The ELBO part is the exact ELBO up to Monte-Carlo error (sd of log w over sqrt(K)).
    elbo = exact_elbo(model, x).numpy()
    q = np.exp(log_q)
    sd_log_w = np.sqrt(np.sum(q * (log_joint - log_q - elbo) ** 2, axis=0))
    assert np.all(np.abs(result.per_example_elbo - elbo) < 5 * sd_log_w / math.sqrt(samples))


def _frequencies(samples, size):
    codes = (samples @ (2 ** np.arange(size))).astype(int)
    return np.bincount(codes, minlength=2**size) / len(samples)


def test_autoregressive_samplers_draw_from_their_distributions():
    """Empirical frequencies of all 2^4 configurations within 5 binomial standard errors of the exact ones."""
    model = tiny_model("fdarn")
    n = 20000
    configs = latent_configurations([4])[0][:, None, :]
    x_top, h = model.sample_joint(n, tf.constant([0, 5]))
    exact_prior = np.exp(model.prior_layer.log_prob(configs[:, 0]).numpy())
    freq = _frequencies(h[0].numpy(), 4)
    assert np.all(np.abs(freq - exact_prior) < 5 * np.sqrt(exact_prior * (1 - exact_prior) / n) + 1e-4)
    x = all_binary(6)[[9]]
    samples, log_q = model.sample_posterior(x, n, tf.constant([0, 6]))
    exact_q = np.exp(model.recognition_log_prob(x, [configs]).numpy()[:, 0])
    freq = _frequencies(samples[0].numpy()[:, 0], 4)
    assert np.all(np.abs(freq - exact_q) < 5 * np.sqrt(exact_q * (1 - exact_q) / n) + 1e-4)
    np.testing.assert_allclose(log_q.numpy(), model.recognition_log_prob(x, samples).numpy(), rtol=1e-5)
    # The visible layer's sampler: x given a fixed h_1.
    x_freq = _frequencies(model.observation_layer.sample(
        tf.random.stateless_uniform([n, 6], [1, 9]), tf.ones([n, 4]))[0].numpy(), 6)
    exact_x = np.exp(model.observation_layer.log_prob(all_binary(6), tf.ones([1, 4])).numpy())
    assert np.all(np.abs(x_freq - exact_x) < 5 * np.sqrt(exact_x * (1 - exact_x) / n) + 1e-4)


@pytest.mark.parametrize("units, block, jit", [(40, 16, False), (70, 16, False), (70, 16, True), (300, 64, True)])
def test_blocked_autoregressive_sampler_is_the_unit_by_unit_recursion(units, block, jit):
    """h_j = 1[u_j < sigmoid(a_j)], a_j = start_j + sum_{i<j} K_ij h_i, by the plain recursion in float64: the blocked
    sampler (one block for U <= 4 B; else padded blocks of B) gives the same h for every unit whose noise is not within
    1e-5 of its probability (float32 summation order); batch dimensions [2, 3] kept."""
    rng = np.random.default_rng(units)
    kernel = np.triu(rng.normal(0, 0.5, (units, units)), 1)
    start = rng.normal(0, 1, (2, 3, units))
    noise = rng.uniform(size=(2, 3, units))
    sample = tf.function(lambda u, a, k: _autoregressive_sample(u, a, k, block=block), jit_compile=True) if jit else \
        (lambda u, a, k: _autoregressive_sample(u, a, k, block=block))
    h = sample(tf.constant(noise, tf.float32), tf.constant(start, tf.float32), tf.constant(kernel, tf.float32)).numpy()
    assert h.shape == (2, 3, units)
    expected, probability = np.zeros_like(noise), np.zeros_like(noise)
    for j in range(units):
        probability[..., j] = 1 / (1 + np.exp(-(start[..., j] + expected @ kernel[:, j])))
        expected[..., j] = noise[..., j] < probability[..., j]
    differ = h != expected
    assert np.all(np.abs(noise - probability)[differ] < 1e-5), np.argwhere(differ)[:5]
    assert differ.sum() <= 1


@pytest.mark.parametrize("logits_shape", [(3, 5, 7), (5, 7), (7,)])
def test_bernoulli_log_prob_is_the_tfp_density(logits_shape):
    """The layers' fast log-density equals TFP's Independent(Bernoulli) log_prob, and so does its gradient, with the
    logits broadcast against [K, B, U] values as in posterior sampling (shared context) and the top prior."""
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(0.0, 3.0, logits_shape), tf.float32)
    value = tf.constant(rng.random((3, 5, 7)) < 0.4, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        fast = bernoulli_log_prob(logits, value)
        reference = tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), 1).log_prob(value)
    assert fast.shape == reference.shape == (3, 5)
    np.testing.assert_allclose(fast.numpy(), reference.numpy(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(fast, logits).numpy(), tape.gradient(reference, logits).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_encode_and_prior_are_tfp_distributions():
    model = tiny_model("fdarn")
    x = all_binary(6)[[1, 2]]
    q = model.encode(x)
    assert isinstance(q, tfd.Autoregressive)
    h = tf.constant([[1.0, 0, 1, 0], [0, 1, 1, 1]])
    np.testing.assert_allclose(q.log_prob(h).numpy(), model.recognition_log_prob(x, [h]).numpy(), rtol=1e-5)
    factorial = tiny_model("sbn1").encode(x)
    assert isinstance(factorial, tfd.Independent) and factorial.event_shape == [4]
    assert model.prior().log_prob(h).shape == [2]


def test_categorical_observation_by_hand():
    """log p(x | h) = sum_w x_w log softmax(W h + b)_w, and = Multinomial log_prob - log(N! / prod x_w!)."""
    model = SBN(event_size=5, latent_sizes=[3], likelihood="categorical", seed=0)
    x = np.array([[2, 0, 1, 0, 3], [0, 0, 0, 4, 1]], "float32")
    h = np.array([[1, 0, 1], [0, 1, 1]], "float32")
    kernel, bias = (v.numpy() for v in model.observation_layer.weights)
    logits = h @ kernel + bias
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = (x * log_softmax).sum(-1)
    np.testing.assert_allclose(model.observation_log_prob(x, h).numpy(), expected, rtol=1e-5)
    n = x.sum(-1)
    coefficient = np.array([math.lgamma(v + 1) for v in n]) - np.vectorize(math.lgamma)(x + 1).sum(-1)
    multinomial = tfd.Multinomial(total_count=n, logits=logits).log_prob(x).numpy()
    np.testing.assert_allclose(multinomial - coefficient, expected, rtol=1e-5)
    assert isinstance(model.decode([h]), tfd.Multinomial)
    np.testing.assert_allclose(model.decode([h], total_count=n).mean().numpy(),
                               n[:, None] * np.exp(log_softmax), rtol=1e-5)
    dream_x, _ = model.sample_joint(4, tf.constant([0, 1]))
    np.testing.assert_allclose(dream_x.numpy().sum(-1), 100.0)


def test_export_protocol_is_deterministic_given_noise():
    for name in ["sbn2", "fdarn2"]:
        model = tiny_model(name)
        x = all_binary(5)[[1, 7, 12]]
        spec = model.export_noise_spec()
        assert spec == {"noise_1": 3, "noise_2": 2}
        noise = {k: tf.random.stateless_uniform([3, s], [2, i]) for i, (k, s) in enumerate(spec.items())}
        out = model.export_sample(x, noise)
        again = model.export_sample(x, noise)
        for key in out:
            np.testing.assert_array_equal(out[key].numpy(), again[key].numpy())
        for layer in (1, 2):
            expected = (noise[f"noise_{layer}"].numpy() < tf.sigmoid(out[f"logits_{layer}"]).numpy())
            np.testing.assert_array_equal(out[f"sample_{layer}"].numpy(), expected.astype("float32"))
        # logits_l of export_sample are those of q(h_l | h_{l-1}) at the sample.
        q_terms = model.recognition_log_prob_terms(x, [out["sample_1"], out["sample_2"]])
        bern = tfd.Independent(tfd.Bernoulli(logits=out["logits_2"], dtype=tf.float32), 1)
        np.testing.assert_allclose(q_terms[1].numpy(), bern.log_prob(out["sample_2"]).numpy(), rtol=1e-5)
        assert model.export_outputs(x)["logits_1"].shape == (3, 3)
        assert model.export_decoder_outputs(out["sample_1"])["logits"].shape == (3, 5)
    factorial = tiny_model("sbn1")
    x = all_binary(6)[[4, 9]]
    logits = factorial.export_outputs(x)["logits_1"]
    np.testing.assert_allclose(tf.sigmoid(logits).numpy(), factorial.encode(x).mean().numpy(), rtol=1e-6)
    assert factorial.latent_sizes == [4]


def test_config_round_trip_and_errors():
    for kwargs in [*TINY.values(), dict(event_size=9, latent_sizes=[200, 200, 500], estimator="wake_sleep",
                                        likelihood="categorical", centering=False, baseline_hidden_size=None,
                                        signal_decay=0.5, document_length=7, weight_prior_scale=1.0)]:
        model = SBN(**kwargs)
        config = model.get_config()
        assert SBN.from_config(config).get_config() == config
    layer = BernoulliLayer(3, context_size=4, hidden_size=5, autoregressive=True, name="b")
    assert BernoulliLayer.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="1 to 3"):
        SBN(event_size=4, latent_sizes=[2, 2, 2, 2])
    with pytest.raises(ValueError, match="estimator"):
        SBN(event_size=4, estimator="sgvb_b")
    with pytest.raises(ValueError, match="autoregressive_visible"):
        SBN(event_size=4, likelihood="categorical", autoregressive_visible=True)
    with pytest.raises(ValueError, match="expected 2 latent layers"):
        SBN(event_size=4, latent_sizes=[2, 2]).log_joint(tf.zeros([1, 4]), [tf.zeros([1, 2])])
    with pytest.raises(ValueError, match="binary"):
        model = SBN(event_size=4, latent_sizes=[2])
        model.compile()
        model.fit(np.full((4, 4), 0.5, "float32"))
    with pytest.raises(RuntimeError, match="compile"):
        SBN(event_size=4, latent_sizes=[2]).fit(np.ones((4, 4), "float32"))


def synthetic_binary(n=400, d=12, seed=0):
    """Two noisy prototypes: structure a one-layer SBN can learn quickly."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((2, d)) < 0.5
    x = prototypes[rng.integers(0, 2, n)] ^ (rng.random((n, d)) < 0.05)
    return x.astype("float32")


@pytest.mark.parametrize("extra, jit", [
    (dict(latent_sizes=[4, 3]), True),
    (dict(latent_sizes=[4], autoregressive_visible=True, autoregressive_posterior=True), False),
    (dict(latent_sizes=[4], estimator="wake_sleep"), False),
])
@pytest.mark.slow  # trains to a target (the bound must rise by a nat)
def test_fit_improves_the_bound(extra, jit):
    x = synthetic_binary()
    model = SBN(event_size=12, **extra, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-2), baseline_optimizer=keras.optimizers.Adam(3e-2),
                  steps_per_execution=20, jit_compile=jit)
    before = float(tf.reduce_mean(model.elbo(x, num_samples=20, seed=0)))
    history = model.fit(x, batch_size=40, epochs=12, validation_data=x[:80] if jit else None, verbose=0)
    after = float(tf.reduce_mean(model.elbo(x, num_samples=20, seed=0)))
    # 12 epochs x 10 updates: the 20-sample bound (sd well under 0.1 nats here) must rise by over 1 nat.
    assert after > before + 1.0, (before, after)
    assert np.all(np.isfinite(history.history["loss"]))
    assert ("val_loss" in history.history) == jit
    if model.estimator == "nvil":
        assert model.optimizer.iterations.numpy() == model.baseline_optimizer.iterations.numpy() == 120
        assert np.all(model.signal_variance.numpy() > 0)


def test_fit_on_a_dataset_and_callbacks():
    x = synthetic_binary(n=80)
    model = SBN(event_size=12, latent_sizes=[3])
    model.compile(jit_compile=False)
    seen = []
    callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs["elbo"]))
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(20), epochs=2, callbacks=[callback], verbose=0)
    assert len(seen) == 2 and model.optimizer.iterations.numpy() == 8
    assert "elbo" in model.evaluate(x, return_dict=True, verbose=0)


@pytest.mark.parametrize("name", ["sbn2", "fdarn2"])
def test_save_and_load_keras_gives_identical_outputs(tmp_path, name):
    x = all_binary(5)
    model = SBN(**TINY[name], seed=2)
    model.compile(steps_per_execution=5, jit_compile=False,
                  baseline_optimizer=keras.optimizers.SGD(0.01))
    model.fit(x, batch_size=8, epochs=2, verbose=0)
    path = str(tmp_path / "sbn.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SBN) and loaded.get_config() == model.get_config()
    # Both optimizers come back compiled; the model optimizer's state is restored.
    assert isinstance(loaded.baseline_optimizer, keras.optimizers.SGD) and loaded._fused_steps == 5
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations.numpy()
    spec = model.export_noise_spec()
    noise = {k: tf.random.stateless_uniform([32, s], [4, i]) for i, (k, s) in enumerate(spec.items())}
    for before, after in [(model, loaded)]:
        np.testing.assert_array_equal(before(x).numpy(), after(x).numpy())
        out_before, out_after = before.export_sample(x, noise), after.export_sample(x, noise)
        for key in out_before:
            np.testing.assert_array_equal(out_before[key].numpy(), out_after[key].numpy())
        h = [out_before["sample_1"], out_before["sample_2"]]
        np.testing.assert_array_equal(before.log_joint(x, h).numpy(), after.log_joint(x, h).numpy())
        np.testing.assert_array_equal(before.elbo(x, 3, seed=1).numpy(), after.elbo(x, 3, seed=1).numpy())
        np.testing.assert_array_equal(before.signal_mean.numpy(), after.signal_mean.numpy())
        np.testing.assert_array_equal(before.signal_variance.numpy(), after.signal_variance.numpy())
    assert float(model.signal_variance.numpy()[0]) > 0


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfrecog._tf import keras
    from tfrecog.models import SBN
    rng = np.random.default_rng(0)
    x = (rng.random((160, 8)) < 0.3).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = SBN(event_size=8, latent_sizes=[4, 3], autoregressive_prior=True, seed=0)
        model.compile(steps_per_execution=4, jit_compile=JIT)
    history = model.fit(x, batch_size=20, epochs=2, validation_data=x[:40], verbose=0)
    loss = history.history["loss"]
    assert np.all(np.isfinite(loss)), loss
    assert strategy.num_replicas_in_sync == 2
    values = [v.numpy() for v in model.signal_mean.value.values]
    assert len(values) == 2 and np.array_equal(values[0], values[1]) and np.any(values[0] != 0), values
    assert model.optimizer.iterations.numpy() == model.baseline_optimizer.iterations.numpy() == 16
    assert "val_loss" in history.history
    print("OK", loss)
    """
)


def test_mirrored_strategy_on_two_logical_cpus():
    """Two logical CPU devices must be configured before TensorFlow initialises, hence a fresh interpreter.

    jit_compile=True is asked for; on CPU devices the base class compiles without XLA under a multi-replica
    strategy (XLA cannot place variables mirrored on other devices).
    """
    jit = True
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT.replace("JIT", str(jit))], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


@pytest.mark.parametrize("name", ["sbn2", "fdarn2", "categorical"])
@pytest.mark.parametrize("num_samples", [3, 40, 41])
def test_blocked_importance_weights_equal_the_generic_formulation(name, num_samples, monkeypatch):
    """SBN.log_importance_weights samples and scores blocks of SCORING_BLOCK_ROWS rows (speed); for a fixed seed it
    gives log p(x, h) - log q(h | x) with h from sample_posterior, the draws included (K = 3: one block, 40: even
    blocks, 41: a padded block), eagerly and under XLA."""
    from tfrecog.models import sbn as sbn_module

    monkeypatch.setattr(sbn_module, "SCORING_BLOCK_ROWS", 25)  # 5 samples of the 5 examples per block
    rng = np.random.default_rng(1)
    if name == "categorical":
        model = SBN(event_size=7, latent_sizes=[3, 2], likelihood="categorical", seed=1)
        x = tf.constant(rng.integers(0, 3, size=(5, 7)).astype(np.float32))
    else:
        model = tiny_model(name)
        x = tf.constant((rng.random((5, 5)) < 0.3).astype(np.float32))
    seed = tf.constant([4, 2])
    samples, log_q = model.sample_posterior(x, num_samples, seed)
    assert_blocked_weights_match(model, x, num_samples, seed, generic=model.log_joint(x, samples) - log_q)
