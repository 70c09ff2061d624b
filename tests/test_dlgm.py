"""Tests of tfrecog.models.dlgm: the distribution API, training, saving, export, tf.distribute and factor analysis."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfrecog import data, evaluate
from tfrecog._tf import keras, tf, tfd
from tfrecog.layers.gaussian import MultivariateNormalRankOnePrecision
from tfrecog.models import DLGM

ROOT = Path(__file__).resolve().parents[1]


def binary_data(n=200, d=12, seed=0):
    """Two prototypes with flipped pixels: structure a small model learns within a few epochs."""
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((2, d)) < 0.5).astype(np.float32)
    x = prototypes[rng.integers(0, 2, n)]
    flips = rng.random((n, d)) < 0.1
    return np.where(flips, 1.0 - x, x).astype(np.float32)


def small_model(**kwargs):
    settings = dict(event_size=12, latent_sizes=(4, 3), hidden_sizes=(8,), recognition_hidden_sizes=(8,))
    settings.update(kwargs)
    return DLGM(**settings)


CONFIGS = [
    dict(),
    dict(covariance="diagonal", noise_matrix="full"),
    dict(latent_sizes=(3,), linear=True, likelihood="gaussian", recognition_hidden_sizes=()),
    dict(
        likelihood="gaussian",
        mean_activation="sigmoid",
        weight_prior_scale=1.0,
        kernel_initializer="paper",
        estimator="iwae",
        num_samples=3,
    ),
    dict(recognition_structure="top_down", kl_warmup_steps=100),
    dict(likelihood="gaussian", mean_activation="sigmoid", observation_scale="predicted"),
]


@pytest.mark.parametrize("settings", CONFIGS)
def test_config_round_trip(settings):
    model = small_model(**settings)
    config = model.get_config()
    assert DLGM.from_config(config).get_config() == config
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(clone, DLGM) and clone.get_config() == config


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(latent_sizes=()), "latent_sizes must be a non-empty"),
        (dict(latent_sizes=(3, 0)), "latent_sizes must be positive"),
        (dict(noise_matrix="lower"), "noise_matrix must be one of"),
        (dict(covariance="full"), "covariance must be one of"),
        (dict(likelihood="categorical"), "DLGM likelihood must be"),
        (dict(mean_activation="relu"), "mean_activation must be"),
        (dict(observation_scale="fixed"), "observation_scale must be one of"),
        (dict(estimator="nvil"), "dlgm models support the estimators sgvb_a"),
    ],
)
def test_bad_arguments_have_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        small_model(**settings)


@pytest.mark.parametrize("settings", CONFIGS[:2])
def test_distribution_api_shapes_and_consistency(settings):
    model = small_model(**settings)
    x = binary_data(5)
    q = model.encode(x)
    assert isinstance(q, tfd.JointDistributionSequential)
    expected = MultivariateNormalRankOnePrecision if model.covariance == "rank_one" else tfd.MultivariateNormalDiag
    assert all(isinstance(component, expected) for component in q.model)
    xi, log_q = model.sample_posterior(x, 3, tf.constant([1, 2]))
    assert [t.shape for t in xi] == [(3, 5, 4), (3, 5, 3)]
    assert log_q.shape == (3, 5)
    np.testing.assert_allclose(model.recognition_log_prob(x, xi).numpy(), log_q.numpy(), rtol=1e-5, atol=1e-5)
    # log p(x, xi) = sum_l log N(xi_l; 0, I) + log p(x | h_1(xi))
    prior = sum(
        tfd.MultivariateNormalDiag(tf.zeros(k), tf.ones(k)).log_prob(t) for k, t in zip((4, 3), xi, strict=True)
    )
    np.testing.assert_allclose(
        model.log_joint(x, xi).numpy(), (prior + model.decode(xi).log_prob(x)).numpy(), rtol=1e-5, atol=1e-5
    )
    # the estimators' cheaper scoring (bernoulli_log_prob for Bernoulli pixels) is the same density
    np.testing.assert_allclose(model.observation_log_prob(x, xi).numpy(), model.decode(xi).log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-4)
    states = model.generative_states(xi)
    assert [h.shape for h in states] == [(3, 5, 4), (3, 5, 3)]
    g_top = model.noise_matrices[1].numpy()
    top = xi[1].numpy() * g_top if model.noise_matrix == "diagonal" else xi[1].numpy() @ g_top.T
    np.testing.assert_allclose(states[1].numpy(), top, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        states[0].numpy(),
        (model.transitions[0](states[1]) + model._apply_noise_matrix(0, xi[0])).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    x_sample, xi_sample = model.sample_joint(6, tf.constant([3, 4]))
    assert x_sample.shape == (6, 12) and [t.shape for t in xi_sample] == [(6, 4), (6, 3)]
    assert model.sample(4, seed=1).shape == (4, 12)
    assert model.reconstruct(x, seed=1).shape == (5, 12)
    assert model(x).shape == (5, 7)
    assert model.elbo(x, num_samples=2, seed=0).shape == (5,)
    with pytest.raises(ValueError, match="latents must be a list of 2 tensors"):
        model.decode(xi[0])


def test_free_energy_kl_is_the_sum_of_analytic_layer_kls():
    model = small_model()
    x = binary_data(4)
    loss, diagnostics = model.objective(tf.constant(x), tf.constant([0, 1]))
    q = model.encode(x)
    kl = sum(
        tfd.kl_divergence(component, tfd.MultivariateNormalDiag(tf.zeros(k), tf.ones(k)))
        for component, k in zip(q.model, (4, 3), strict=True)
    )
    np.testing.assert_allclose(diagnostics["kl"].numpy(), tf.reduce_mean(kl).numpy(), rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), -diagnostics["elbo"].numpy(), rtol=1e-6)


def test_generative_variables_and_weight_prior():
    model = small_model(likelihood="gaussian", weight_prior_scale=2.0)
    model.build((None, 12))
    generative = {id(v) for v in model.generative_variables}
    recognition = {id(v) for v in model.recognition_variables}
    assert not generative & recognition
    assert generative | recognition == {id(v) for v in model.trainable_variables}
    expected = [
        *model.transitions[0].trainable_variables,
        *model.noise_matrices,
        *model.observation.trainable_variables,
        model.observation_log_scale,
    ]
    assert {id(v) for v in expected} == generative
    assert not {id(v) for v in model.recognition.trainable_variables} & generative
    model.set_num_train_examples(50)
    squares = sum(float(np.sum(np.square(v.numpy()))) for v in expected)
    np.testing.assert_allclose(model.weight_penalty().numpy(), squares / (2 * 4.0 * 50), rtol=1e-5)


def test_fit_decreases_loss_and_saved_model_gives_identical_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    x = binary_data(400)
    model = small_model(weight_prior_scale=1.0, noise_matrix="full")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), steps_per_execution=10)
    history = model.fit(x, batch_size=20, epochs=6, verbose=0)
    losses = history.history["loss"]
    # Epoch means over 20 minibatches each; the drop is many times their minibatch noise (about 0.1 nats).
    assert losses[-1] < losses[0] - 1.0, losses
    path = tmp_path / "dlgm.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    outputs, loaded_outputs = model.export_outputs(x[:5]), loaded.export_outputs(x[:5])
    assert set(outputs) == {f"{p}_{layer}" for p in ("mean", "log_scale", "rank_one") for layer in (1, 2)}
    for name in outputs:
        np.testing.assert_array_equal(outputs[name].numpy(), loaded_outputs[name].numpy())
    xi, _ = model.sample_posterior(x[:5], 2, tf.constant([5, 6]))
    np.testing.assert_array_equal(model.log_joint(x[:5], xi).numpy(), loaded.log_joint(x[:5], xi).numpy())
    np.testing.assert_array_equal(model.elbo(x[:5], seed=3).numpy(), loaded.elbo(x[:5], seed=3).numpy())


def test_export_sample_has_the_exported_covariance():
    """Samples from given noise have mean mu_l and covariance (diag(exp(-2 log_scale_l)) + u_l u_l^T)^-1."""
    model = small_model()
    x = np.repeat(binary_data(1), 20000, axis=0)
    assert model.export_noise_spec() == {"noise_1": 4, "noise_2": 3}
    outputs = {k: v.numpy()[0] for k, v in model.export_outputs(x[:1]).items()}
    rng = np.random.default_rng(0)
    noise = {name: rng.normal(size=(len(x), k)).astype(np.float32) for name, k in model.export_noise_spec().items()}
    samples = {k: v.numpy() for k, v in model.export_sample(x, noise).items()}
    zero = model.export_sample(
        x[:1], {name: np.zeros((1, k), np.float32) for name, k in model.export_noise_spec().items()}
    )
    for layer in (1, 2):
        np.testing.assert_allclose(zero[f"sample_{layer}"].numpy()[0], outputs[f"mean_{layer}"], rtol=1e-6, atol=1e-6)
        u = outputs[f"rank_one_{layer}"].astype(np.float64)
        covariance = np.linalg.inv(
            np.diag(np.exp(-2.0 * outputs[f"log_scale_{layer}"].astype(np.float64))) + np.outer(u, u)
        )
        centred = samples[f"sample_{layer}"] - outputs[f"mean_{layer}"]
        n = len(x)
        # Sample covariance entries have Monte-Carlo s.e. sqrt((C_ii C_jj + C_ij^2) / n); allow 5 s.e.
        stderr = np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / n)
        assert np.all(np.abs(centred.T @ centred / n - covariance) < 5 * stderr)
    decoder = model.export_decoder_outputs([tf.zeros([2, 4]), tf.zeros([2, 3])])
    assert set(decoder) == {"logits"} and decoder["logits"].shape == (2, 12)
    gaussian = small_model(likelihood="gaussian")
    decoder = gaussian.export_decoder_outputs([tf.zeros([2, 4]), tf.zeros([2, 3])])
    assert set(decoder) == {"mean", "log_scale"} and decoder["log_scale"].shape == (2, 12)
    assert model.latent_sizes == [4, 3]


def test_other_estimators_give_finite_losses():
    x = tf.constant(binary_data(6))
    for estimator in ("sgvb_a", "iwae", "wake_sleep"):
        model = small_model(estimator=estimator, num_samples=2)
        loss, diagnostics = model.objective(x, tf.constant([0, 1]))
        assert np.isfinite(loss.numpy()) and np.isfinite(diagnostics["elbo"].numpy())


def test_log_likelihood_and_elbo_estimates_match_closed_forms():
    """On the linear-Gaussian DLGM (`linear_gaussian`) with q broader than the exact posterior (bounded weights),
    the evaluator's per-example log p(x) and ELBO agree with the exact marginal and the closed-form ELBO: the mean
    difference over 200 examples within 4 standard errors (of the per-example differences), plus, for log p(x),
    0.01 nats for the bias of log-mean-exp (<= var(w / p) / (2K), about 0.002 here)."""
    import linear_gaussian as lg

    model = lg.model()
    lg.set_exact_posterior(model, mean_shift=0.3, log_scale_shift=0.3)
    x = lg.data(200, seed=5)
    result = evaluate.log_likelihood(model, x, samples=50, batch_size=100, jit_compile=False)
    for estimate, exact, allowance in ((result.per_example, lg.exact_log_marginal(model, x), 0.01),
                                       (result.per_example_elbo, lg.exact_elbo(model, x).numpy(), 0.0)):
        difference = estimate - exact
        se = difference.std(ddof=1) / np.sqrt(len(difference))
        assert abs(difference.mean()) < 4 * se + allowance, (difference.mean(), se)
    assert result.log_likelihood - result.elbo > 0.05  # q is off the posterior: the two differ


def test_marginal_only_for_factor_analysis():
    with pytest.raises(ValueError, match="one-layer linear DLGM with a Gaussian likelihood"):
        small_model().marginal()
    predicted = small_model(latent_sizes=(3,), linear=True, likelihood="gaussian", observation_scale="predicted")
    with pytest.raises(ValueError, match="observation_scale='shared'"):
        predicted.marginal()


def test_predicted_observation_scale_density_by_hand():
    """observation_scale='predicted': p(x | h_1) = prod_d N(x_d; sigmoid(a_d), (min_scale + exp(s_d))^2) with
    [a, s] = T_0(h_1) split in halves; the scale differs between examples and no shared scale variable exists."""
    model = small_model(likelihood="gaussian", mean_activation="sigmoid", observation_scale="predicted")
    rng = np.random.default_rng(1)
    xi = [tf.constant(rng.normal(size=(5, 4)), tf.float32), tf.constant(rng.normal(size=(5, 3)), tf.float32)]
    x = rng.random((5, 12)).astype(np.float32)
    out = model.observation(model.generative_states(xi)[0]).numpy().astype(np.float64)
    assert out.shape == (5, 24)
    mean, scale = 1.0 / (1.0 + np.exp(-out[:, :12])), model.min_scale + np.exp(out[:, 12:])
    expected = np.sum(-0.5 * ((x - mean) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(model.observation_log_prob(x, xi).numpy(), expected, rtol=1e-5)
    decoder = model.export_decoder_outputs(xi)
    np.testing.assert_allclose(decoder["log_scale"].numpy(), np.log(scale), rtol=1e-5, atol=1e-6)
    assert np.ptp(decoder["log_scale"].numpy(), axis=0).max() > 1e-4  # per example, not shared
    assert not hasattr(model, "observation_log_scale")
    expected_variables = [
        *model.transitions[0].trainable_variables,
        *model.noise_matrices,
        *model.observation.trainable_variables,
    ]
    assert {id(v) for v in model.generative_variables} == {id(v) for v in expected_variables}
    loss, _ = model.objective(tf.constant(x), tf.constant([0, 1]))
    assert np.isfinite(loss.numpy())


@pytest.mark.slow  # trains to a target (80 epochs to scikit-learn's fit); the closed forms are checked fast elsewhere
def test_one_layer_linear_gaussian_dlgm_is_factor_analysis():
    """Trained on factor-analysis data, the DLGM matches scikit-learn's FactorAnalysis on held-out data, and the
    importance-sampled log p(x) matches the exact Gaussian marginal N(b, W G G^T W^T + diag(psi)) of its own
    parameters."""
    from sklearn.decomposition import FactorAnalysis

    keras.utils.set_random_seed(1)
    x, _ = data.factor_analysis(3000, observed=8, latent=2, seed=0)
    train, test = x[:2000], x[2000:]
    model = DLGM(
        event_size=8,
        latent_sizes=(2,),
        linear=True,
        likelihood="gaussian",
        recognition_hidden_sizes=(),
        covariance="rank_one",
        seed=1,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=20)
    model.fit(train, batch_size=100, epochs=80, verbose=0)
    exact = model.marginal().log_prob(test).numpy().astype(np.float64)
    reference = FactorAnalysis(n_components=2).fit(train).score(test)
    # Both are maximum-likelihood fits of the same model to the same 2,000 points, so they differ only by the
    # optimiser's error; 0.05 nats per example (of ~9.9) is a few times what 80 epochs of Adam leave.
    assert abs(exact.mean() - reference) < 0.05, (exact.mean(), reference)
    estimate = evaluate.log_likelihood(model, test, samples=500, batch_size=500)
    difference = estimate.per_example - exact
    # With a rank-one q that can represent the exact Gaussian posterior, the importance weights are nearly
    # constant: the estimate must agree with the exact marginal to within its Monte-Carlo error (4 s.e. of the
    # mean difference) plus a small allowance for the remaining bias of log-mean-exp (<= var(w) / (2 K)).
    stderr = difference.std(ddof=1) / np.sqrt(len(difference))
    assert abs(difference.mean()) < 4 * stderr + 0.01, (difference.mean(), stderr)


def test_mirrored_strategy_fit_on_two_logical_cpus():
    script = textwrap.dedent(
        """
        import json, os
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        import tensorflow as tf
        # Must run before TensorFlow initialises its devices.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np
        from tfrecog.models import DLGM

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x = (np.random.default_rng(0).random((200, 12)) < 0.3).astype(np.float32)
        with strategy.scope():
            model = DLGM(event_size=12, latent_sizes=(4, 3), hidden_sizes=(8,), recognition_hidden_sizes=(8,),
                         weight_prior_scale=1.0)
            # XLA cannot compile a step that spans two logical CPU devices, hence jit_compile=False here.
            model.compile(steps_per_execution=2, jit_compile=False)
        history = model.fit(x, batch_size=20, epochs=2, verbose=0)
        variable = model.recognition.trainable_variables[0]
        replicas = [v.numpy() for v in variable.value.values]  # the MirroredVariable inside
        print(json.dumps({
            "replicas": strategy.num_replicas_in_sync,
            "loss": history.history["loss"],
            "synchronised": bool(np.array_equal(replicas[0], replicas[1])),
            "updates": int(model.optimizer.iterations.numpy()),
        }))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["synchronised"]
    assert report["updates"] == 20  # 2 epochs x 10 minibatches of 20
    assert all(np.isfinite(report["loss"]))


# -- top-down recognition and KL warm-up -----------------------------------------------------------------------


def _dense(layer, inputs):
    return inputs @ layer.kernel.numpy() + layer.bias.numpy()


@pytest.mark.parametrize("covariance", ["diagonal", "rank_one"])
def test_top_down_posterior_density_by_hand(covariance):
    """log q(xi | x) = log q(xi_2 | x) + log q(xi_1 | x, h_2), h_2 = G_2 xi_2, recomputed from the layers' weights."""
    model = small_model(recognition_structure="top_down", covariance=covariance)
    x = binary_data(5)
    xi, log_q = model.sample_posterior(x, 3, tf.constant([1, 2]))
    assert [t.shape for t in xi] == [(3, 5, 4), (3, 5, 3)] and log_q.shape == (3, 5)
    features = model.recognition(x).numpy()
    h2 = xi[1].numpy() * model.noise_matrices[1].numpy()
    top = _dense(model.heads[1].dense, features)  # [5, P * 3]
    bottom = _dense(model.heads[0].dense, np.concatenate([np.broadcast_to(features, (3, 5, 8)), h2], -1))

    def density(out, k, value):
        loc, log_scale = out[..., :k], out[..., k : 2 * k]
        if covariance == "diagonal":
            return tfd.MultivariateNormalDiag(loc, np.exp(log_scale)).log_prob(value).numpy()
        precision = np.vectorize(np.diag, signature="(k)->(k,k)")(np.exp(-2 * log_scale))
        u = out[..., 2 * k :]
        precision = precision + u[..., :, None] * u[..., None, :]
        covariance_matrix = np.linalg.inv(precision)
        return tfd.MultivariateNormalFullCovariance(loc, covariance_matrix).log_prob(value).numpy()

    expected = density(top, 3, xi[1].numpy()) + density(bottom, 4, xi[0].numpy())
    np.testing.assert_allclose(log_q.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.recognition_log_prob(x, xi).numpy(), expected, rtol=1e-4, atol=1e-4)
    # encode(x) is the same density as a TFP joint distribution over the bottom-first list
    q = model.encode(x)
    np.testing.assert_allclose(q.log_prob(xi).numpy(), expected, rtol=1e-4, atol=1e-4)
    draws = q.sample(2, seed=[3, 4])
    assert [t.shape for t in draws] == [(2, 5, 4), (2, 5, 3)]
    # the importance weights and the ELBO go through the same density
    np.testing.assert_allclose(
        model.log_importance_weights(x, 3, tf.constant([1, 2])).numpy(),
        (model.log_joint(x, xi) - expected).numpy(), rtol=1e-4, atol=1e-3,
    )


def test_top_down_kl_is_analytic_per_layer_given_the_layers_above():
    model = small_model(recognition_structure="top_down")
    x = binary_data(4)
    seed = tf.constant([5, 6])
    xi, kl = model.sample_posterior_and_kl(x, 2, seed)
    xi_again, log_q = model.sample_posterior(x, 2, seed)  # the same draws
    np.testing.assert_allclose(xi[0].numpy(), xi_again[0].numpy())
    _, distributions, _ = model._posterior_pass(x, lambda layer, q: xi[layer])
    standard = [tfd.MultivariateNormalDiag(tf.zeros(k), tf.ones(k)) for k in (4, 3)]
    expected = tfd.kl_divergence(distributions[1], standard[1]) + tf.reduce_mean(
        tfd.kl_divergence(distributions[0], standard[0]), axis=0
    )
    np.testing.assert_allclose(kl.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    # Monte-Carlo form: mean of log q - log p over the same samples
    _, kl_mc = model.sample_posterior_and_kl(x, 2, seed, analytic_kl=False)
    np.testing.assert_allclose(
        kl_mc.numpy(), tf.reduce_mean(log_q - model.prior().log_prob(xi), axis=0).numpy(), rtol=1e-5, atol=1e-5
    )
    # The two have the same expectation: per sample s, d_s = log q(xi_s) - log p(xi_s) - [KL(q_2 || p_2) +
    # KL(q_1(. | h_2,s) || p_1)] has mean 0 under q. Its Monte-Carlo mean over S = 4000 samples lies within 4
    # standard errors (std(d) / sqrt(S), per example) of 0; the terms are heavy-tailed, so a fixed window would be
    # either loose or flaky.
    many = 4000
    xi_many, log_q_many = model.sample_posterior(x, many, seed)
    _, dists_many, _ = model._posterior_pass(x, lambda layer, q: xi_many[layer])
    analytic = tfd.kl_divergence(dists_many[1], standard[1]) + tfd.kl_divergence(dists_many[0], standard[0])
    d = (log_q_many - model.prior().log_prob(xi_many) - analytic).numpy()  # [S, B]
    se = d.std(axis=0, ddof=1) / np.sqrt(many)
    assert np.all(np.abs(d.mean(axis=0)) < 4 * se), (d.mean(axis=0), se)
    _, kl_exact_many = model.sample_posterior_and_kl(x, many, seed)
    np.testing.assert_allclose(kl_exact_many.numpy(), analytic.numpy().mean(axis=0), rtol=1e-4, atol=1e-4)


def test_top_down_mean_path_embedding_and_export_sample():
    model = small_model(recognition_structure="top_down", covariance="diagonal")
    x = binary_data(5)
    embedding = model(x).numpy()  # builds the layers
    features = model.recognition(x).numpy()
    top = _dense(model.heads[1].dense, features)[:, :3]
    h2 = top * model.noise_matrices[1].numpy()
    bottom = _dense(model.heads[0].dense, np.concatenate([features, h2], -1))[:, :4]
    np.testing.assert_allclose(embedding, np.concatenate([bottom, top], -1), rtol=1e-5, atol=1e-5)
    zero = model.export_sample(x, {"noise_1": tf.zeros([5, 4]), "noise_2": tf.zeros([5, 3])})
    np.testing.assert_allclose(zero["sample_1"].numpy(), bottom, rtol=1e-5, atol=1e-5)
    outputs = model.export_outputs(x)
    np.testing.assert_allclose(outputs["mean_1"].numpy(), bottom, rtol=1e-5, atol=1e-5)


def test_top_down_fit_and_saved_model_round_trip(tmp_path):
    model = small_model(recognition_structure="top_down", kl_warmup_steps=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = binary_data(200)
    history = model.fit(x, batch_size=20, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(x[:5]).numpy(), model(x[:5]).numpy(), rtol=1e-6)


def test_kl_warmup_weights_the_kl_of_training_updates_only():
    model = small_model(kl_warmup_steps=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build((None, 12))
    x = tf.constant(binary_data(6))
    seed = tf.constant([0, 1])
    model.optimizer.iterations.assign(3)  # update t = 4: beta = 0.4
    loss, diagnostics = model.objective(x, seed, training=True)
    expected = -(diagnostics["reconstruction"] - 0.4 * diagnostics["kl"])
    np.testing.assert_allclose(loss.numpy(), expected.numpy(), rtol=1e-5)
    free_energy, same = model.objective(x, seed)  # evaluation: beta = 1
    np.testing.assert_allclose(free_energy.numpy(), -same["elbo"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(same["elbo"].numpy(), diagnostics["elbo"].numpy(), rtol=1e-6)
    model.optimizer.iterations.assign(50)  # past the warm-up: the free energy
    loss, diagnostics = model.objective(x, seed, training=True)
    np.testing.assert_allclose(loss.numpy(), -diagnostics["elbo"].numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(recognition_structure="ladder"), "recognition_structure must be one of"),
        (dict(kl_warmup_steps=5, estimator="iwae"), "kl_warmup_steps needs an SGVB estimator"),
        (dict(kl_warmup_steps=-1), "kl_warmup_steps must be >= 0"),
    ],
)
def test_top_down_and_warmup_arguments_have_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        small_model(**settings)
