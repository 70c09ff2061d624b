"""JAX references for the benchmark suite, written the way JAX users write them: parameters as pytrees, pure loss
functions, optax Adam, and one `jax.jit`-compiled epoch that permutes the data on the device and `lax.scan`s the
updates over its minibatches (tfrecog likewise runs many updates inside one XLA call).

Same models and estimators as `ref_torch` (see its docstring); the IS evaluator scans over chunks of the K samples
inside one jitted function per batch of test points and takes a logsumexp of the per-chunk logsumexps.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .common import (
    BATCH_SIZE,
    EVENT_SIZE,
    LEARNING_RATE,
    NVIL_DECAY,
    ROWS_PER_CHUNK,
    SBN_BASELINE_HIDDEN,
    SBN_LAYERS,
    VAE_HIDDEN,
    VAE_LATENT,
    Candidate,
)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def dense_init(key, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, as Keras
    return {"w": jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -limit, limit),
            "b": jnp.zeros(fan_out, jnp.float32)}


def dense(p, x):
    return x @ p["w"] + p["b"]


def bernoulli_log_prob(logits, value):
    """sum_d log Bernoulli(value_d; sigmoid(logits_d)) = sum_d value_d a_d - softplus(a_d)."""
    return jnp.sum(value * logits - jax.nn.softplus(logits), axis=-1)


# ----------------------------------------------------------------------------------------------------------------
# VAE


def vae_init(key):
    k = jax.random.split(key, 4)
    return {"enc1": dense_init(k[0], EVENT_SIZE, VAE_HIDDEN), "enc2": dense_init(k[1], VAE_HIDDEN, 2 * VAE_LATENT),
            "dec1": dense_init(k[2], VAE_LATENT, VAE_HIDDEN), "dec2": dense_init(k[3], VAE_HIDDEN, EVENT_SIZE)}


def vae_encode(params, x):
    out = dense(params["enc2"], jnp.tanh(dense(params["enc1"], x)))
    return out[..., :VAE_LATENT], out[..., VAE_LATENT:]


def vae_decode(params, z):
    return dense(params["dec2"], jnp.tanh(dense(params["dec1"], z)))


def vae_loss(params, x, key):
    """-ELBO averaged over the batch, estimator B (analytic KL), one reparameterised sample."""
    mean, log_scale = vae_encode(params, x)
    z = mean + jnp.exp(log_scale) * jax.random.normal(key, mean.shape)
    reconstruction = bernoulli_log_prob(vae_decode(params, z), x)
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(2 * log_scale) - 1 - 2 * log_scale, axis=-1)
    return jnp.mean(kl - reconstruction)


def vae_log_weights(params, x, key, samples):
    mean, log_scale = vae_encode(params, x)
    eps = jax.random.normal(key, (samples, *mean.shape))
    z = mean + jnp.exp(log_scale) * eps
    log_q = jnp.sum(-0.5 * eps**2 - log_scale - HALF_LOG_2PI, axis=-1)
    log_prior = jnp.sum(-0.5 * z**2 - HALF_LOG_2PI, axis=-1)
    return bernoulli_log_prob(vae_decode(params, z), x) + log_prior - log_q


# ----------------------------------------------------------------------------------------------------------------
# SBN with NVIL


def sbn_init(key, sizes=SBN_LAYERS):
    k = jax.random.split(key, 2 * len(sizes) + 2)
    contexts = (EVENT_SIZE, *sizes[:-1])
    return {
        "recognition": [dense_init(k[i], c, s) for i, (c, s) in enumerate(zip(contexts, sizes))],
        "top_logits": jnp.zeros(sizes[-1], jnp.float32),
        "generative": [dense_init(k[len(sizes) + i], sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)],
        "observation": dense_init(k[-2], sizes[0], EVENT_SIZE),
        "baseline": [dense_init(k[-1], EVENT_SIZE, SBN_BASELINE_HIDDEN),
                     dense_init(jax.random.fold_in(k[-1], 1), SBN_BASELINE_HIDDEN, len(sizes))],
    }


def sbn_sample_posterior(params, x, key, samples=None):
    context = x if samples is None else jnp.broadcast_to(x, (samples, *x.shape))
    h, log_q = [], []
    for layer, k in zip(params["recognition"], jax.random.split(key, len(params["recognition"]))):
        logits = dense(layer, context)
        sample = jax.lax.stop_gradient(
            (jax.random.uniform(k, logits.shape) < jax.nn.sigmoid(logits)).astype(jnp.float32))
        h.append(sample)
        log_q.append(bernoulli_log_prob(logits, sample))
        context = sample
    return h, log_q


def sbn_log_joint_terms(params, x, h):
    terms = [bernoulli_log_prob(dense(params["observation"], h[0]), x)]
    for i, layer in enumerate(params["generative"]):
        terms.append(bernoulli_log_prob(dense(layer, h[i + 1]), h[i]))
    terms.append(bernoulli_log_prob(jnp.broadcast_to(params["top_logits"], h[-1].shape), h[-1]))
    return terms


def sbn_loss(params, stats, x, key):
    """NVIL surrogate loss (model + recognition + baseline) and the updated running statistics (c, v)."""
    h, log_q = sbn_sample_posterior(params, x, key)
    log_p = jnp.stack(sbn_log_joint_terms(params, x, h))  # [L + 1, B]
    log_q = jnp.stack(log_q)  # [L, B]
    num_layers = log_q.shape[0]
    signals = jax.lax.stop_gradient(
        jnp.cumsum(log_p[::-1], axis=0)[::-1][:num_layers] - jnp.cumsum(log_q[::-1], axis=0)[::-1])
    b1, b2 = params["baseline"]
    baseline = dense(b2, jnp.tanh(dense(b1, x))).T  # [L, B]
    mean, variance = stats
    residual = signals - jax.lax.stop_gradient(baseline)
    advantage = jax.lax.stop_gradient((residual - mean[:, None]) / jnp.maximum(1.0, jnp.sqrt(variance))[:, None])
    loss = (-jnp.mean(jnp.sum(log_p, 0)) - jnp.mean(jnp.sum(advantage * log_q, 0))
            + jnp.mean(jnp.sum((signals - mean[:, None] - baseline) ** 2, 0)))
    new_stats = (NVIL_DECAY * mean + (1 - NVIL_DECAY) * jnp.mean(residual, 1),
                 NVIL_DECAY * variance + (1 - NVIL_DECAY) * jnp.var(residual, 1))
    return loss, new_stats


def sbn_log_weights(params, x, key, samples):
    h, log_q = sbn_sample_posterior(params, x, key, samples)
    return sum(sbn_log_joint_terms(params, x, h)) - sum(log_q)


# ----------------------------------------------------------------------------------------------------------------
# Training: one jitted epoch, lax.scan over minibatches


def make_epoch(model_name: str, num_examples: int, optimizer):
    steps = num_examples // BATCH_SIZE

    def update(carry, inputs):
        params, opt_state, stats = carry
        batch, key = inputs
        if model_name == "vae":
            loss, grads = jax.value_and_grad(vae_loss)(params, batch, key)
        else:
            (loss, stats), grads = jax.value_and_grad(sbn_loss, has_aux=True)(params, stats, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, stats), loss

    @partial(jax.jit, donate_argnums=(0, 1, 2))
    def epoch(params, opt_state, stats, x, key):
        order_key, step_key = jax.random.split(key)
        batches = x[jax.random.permutation(order_key, num_examples)[: steps * BATCH_SIZE]]
        batches = batches.reshape(steps, BATCH_SIZE, EVENT_SIZE)
        (params, opt_state, stats), losses = jax.lax.scan(
            update, (params, opt_state, stats), (batches, jax.random.split(step_key, steps)))
        return params, opt_state, stats, jnp.mean(losses)

    return epoch


def training_candidate(name: str, model_name: str, x_numpy):
    """A unit is one epoch over x: one call of the jitted epoch function."""
    params = (vae_init if model_name == "vae" else sbn_init)(jax.random.PRNGKey(0))
    optimizer = optax.adam(LEARNING_RATE)  # one Adam over the pytree (= separate model and baseline Adams)
    num_layers = len(SBN_LAYERS)
    state = {"params": params, "opt": optimizer.init(params),
             "stats": (jnp.zeros(num_layers), jnp.zeros(num_layers)), "key": jax.random.PRNGKey(1)}
    x = jnp.asarray(x_numpy)
    epoch = make_epoch(model_name, len(x_numpy), optimizer)

    def run(epochs):
        for _ in range(int(epochs)):
            state["key"], key = jax.random.split(state["key"])
            state["params"], state["opt"], state["stats"], loss = epoch(
                state["params"], state["opt"], state["stats"], x, key)
        loss.block_until_ready()

    steps = len(x_numpy) // BATCH_SIZE
    return Candidate(name, run, steps * BATCH_SIZE, "jax.jit(epoch) with lax.scan over minibatches, optax.adam")


# ----------------------------------------------------------------------------------------------------------------
# Importance-sampled log-likelihood


def make_estimator(log_weights, samples: int, batch_size: int = BATCH_SIZE, rows_per_chunk: int = ROWS_PER_CHUNK):
    chunk = max(1, min(samples, rows_per_chunk // batch_size))
    num_chunks = math.ceil(samples / chunk)
    last = samples - (num_chunks - 1) * chunk

    @jax.jit
    def estimate(params, batch, key):
        def body(_, key_and_index):
            key, index = key_and_index
            log_w = log_weights(params, batch, key, chunk)  # [chunk, B]
            # the last chunk may hold fewer real samples; mask the rest out
            valid = jnp.arange(chunk) < jnp.where(index == num_chunks - 1, last, chunk)
            return None, jax.nn.logsumexp(jnp.where(valid[:, None], log_w, -jnp.inf), axis=0)

        keys = jax.random.split(key, num_chunks)
        _, partial_lse = jax.lax.scan(body, None, (keys, jnp.arange(num_chunks)))
        return jax.nn.logsumexp(partial_lse, axis=0) - math.log(samples)

    return estimate


def log_likelihood(estimate, params, x, seed: int = 0, batch_size: int = BATCH_SIZE):
    key = jax.random.PRNGKey(seed)
    results = []
    for start in range(0, len(x), batch_size):
        results.append(estimate(params, x[start : start + batch_size], jax.random.fold_in(key, start)))
    return np.concatenate([np.asarray(r) for r in results])


def _model(model_name):
    if model_name == "vae":
        return vae_init(jax.random.PRNGKey(0)), vae_log_weights
    return sbn_init(jax.random.PRNGKey(0)), sbn_log_weights


def evaluation_candidate(name: str, model_name: str, x_numpy, samples: int, batch_size: int | None = None,
                         rows_per_chunk: int = ROWS_PER_CHUNK):
    """A unit is the IS estimate over the test points x (batches of `batch_size`, default all of x)."""
    batch_size = batch_size or len(x_numpy)
    params, log_weights = _model(model_name)
    estimate = make_estimator(log_weights, samples, batch_size, rows_per_chunk)
    x = jnp.asarray(x_numpy)
    counter = [0]

    def run(units):
        for _ in range(int(units)):
            counter[0] += 1
            log_likelihood(estimate, params, x, counter[0], batch_size)

    return Candidate(name, run, len(x_numpy), "jax.jit per batch, lax.scan over chunks of K")


def memory_work(model_name: str, samples: int, x_numpy):
    params, log_weights = _model(model_name)
    estimate = make_estimator(log_weights, samples)
    return lambda: log_likelihood(estimate, params, jnp.asarray(x_numpy))


def encoder_function(keras_vae):
    """The tfrecog VAE's encoder weights in a jitted JAX encoder (numpy in/out)."""
    (w1, b1), (w2, b2) = ((jnp.asarray(d.kernel.numpy()), jnp.asarray(d.bias.numpy()))
                          for d in keras_vae.encoder.dense_layers)

    @jax.jit
    def forward(x):
        return jnp.tanh(x @ w1 + b1) @ w2 + b2

    def encode(x):
        out = np.asarray(forward(x))
        return {"mean": out[:, :VAE_LATENT], "log_scale": out[:, VAE_LATENT:]}

    return encode
