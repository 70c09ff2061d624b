"""Two- and three-layer SBN and fDARN log-densities against a direct numpy computation from the weights.

  log p(x, h) = log p(x | h_1) + sum_{l<L} log p(h_l | h_{l+1}) + log p(h_L)
  log q(h | x) = log q(h_1 | x) + sum_{l>1} log q(h_l | h_{l-1})
  each conditional prod_j Bernoulli(h_j; sigmoid(a_j)), a_j = [W f(c) + b]_j (+ sum_{i<j} U_ij h_i for fDARN),
  f(c) = c or tanh(V c + d); the categorical observation sum_w x_w log softmax(W h_1 + b)_w.

The reference loops over the units of an autoregressive layer one at a time (no mask), in float64, with every
weight (including the masked-out entries of U) drawn at random, so a wrong mask, a missing layer, a swapped context
or a wrong sign shows up. Agreement to 1e-5 relative (float32 arithmetic on sums of ~20 terms of order 1-10).
"""

import numpy as np
import pytest

from tfrecog import SBN


def log_sigmoid(a):
    return -np.logaddexp(0.0, -a)


def layer_logits(layer, h, context):
    """a [..., units] of a `BernoulliLayer` at h given the context, computed directly from its weights."""
    w = lambda v: v.numpy().astype(np.float64)  # noqa: E731
    features = context
    if layer.hidden is not None:
        features = np.tanh(features @ w(layer.hidden.kernel) + w(layer.hidden.bias))
    if not layer.autoregressive:
        if layer.output_layer is None:
            return np.broadcast_to(w(layer.logits_bias), h.shape)
        return features @ w(layer.output_layer.kernel) + w(layer.output_layer.bias)
    dense = layer.output_layer
    u = w(dense.kernel)  # u[i, j]: the weight of unit i in the logit of unit j; only i < j may count
    logits = np.zeros(h.shape) + w(dense.bias)
    if features is not None:
        logits = logits + features @ w(dense.context_kernel)
    for j in range(h.shape[-1]):
        for i in range(j):
            logits[..., j] += u[i, j] * h[..., i]
    return logits


def bernoulli(layer, h, context):
    a = layer_logits(layer, h, context)
    return np.sum(h * log_sigmoid(a) + (1 - h) * log_sigmoid(-a), axis=-1)


def reference(model, x, h):
    """(log p(x, h), log q(h | x)) in float64 from the model's weights."""
    x = np.broadcast_to(x, h[0].shape[:-1] + x.shape[-1:]).astype(np.float64)
    if model.likelihood == "categorical":
        dense = model.observation_layer
        logits = h[0] @ dense.kernel.numpy().astype(np.float64) + dense.bias.numpy().astype(np.float64)
        logits = logits - logits.max(-1, keepdims=True)
        log_joint = np.sum(x * (logits - np.log(np.exp(logits).sum(-1, keepdims=True))), axis=-1)
    else:
        log_joint = bernoulli(model.observation_layer, x, h[0])
    for level, layer in enumerate(model.generative_layers):  # p(h_l | h_{l+1})
        log_joint = log_joint + bernoulli(layer, h[level], h[level + 1])
    log_joint = log_joint + bernoulli(model.prior_layer, h[-1], None)
    log_q = 0.0
    context = x
    for layer, h_l in zip(model.inference_layers, h):
        log_q = log_q + bernoulli(layer, h_l, context)
        context = h_l
    return log_joint, log_q


CASES = {
    "sbn-2": dict(latent_sizes=(4, 3)),
    "sbn-3": dict(latent_sizes=(4, 3, 2)),
    "sbn-3-hidden": dict(latent_sizes=(4, 3, 2), recognition_hidden_size=5),
    "fdarn-2": dict(latent_sizes=(4, 3), autoregressive_prior=True, autoregressive_visible=True),
    "fdarn-3": dict(latent_sizes=(4, 3, 3), autoregressive_prior=True, autoregressive_visible=True,
                    autoregressive_posterior=True),
    "fdarn-2-words": dict(latent_sizes=(4, 3), likelihood="categorical", autoregressive_prior=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_log_joint_and_recognition_log_prob_by_hand(case):
    settings = CASES[case]
    model = SBN(event_size=6, **settings)
    rng = np.random.default_rng(sorted(CASES).index(case))
    for v in model.trainable_variables:
        v.assign(rng.normal(0.0, 1.5, v.shape).astype(np.float32))
    batch, samples = 5, 3
    if model.likelihood == "categorical":
        x = rng.integers(0, 4, (batch, 6)).astype(np.float32)
    else:
        x = (rng.random((batch, 6)) < 0.5).astype(np.float32)
    h = [(rng.random((samples, batch, size)) < 0.5).astype(np.float32) for size in model.latent_sizes]
    expected_joint, expected_q = reference(model, x, [t.astype(np.float64) for t in h])
    np.testing.assert_allclose(model.log_joint(x, h).numpy(), expected_joint, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.recognition_log_prob(x, h).numpy(), expected_q, rtol=1e-5, atol=1e-5)
    # sample_posterior scores its own draws with the same density.
    draws, log_q = model.sample_posterior(x, 2, seed=np.array([1, 2], np.int32))
    _, expected = reference(model, x, [t.numpy().astype(np.float64) for t in draws])
    np.testing.assert_allclose(log_q.numpy(), expected, rtol=1e-5, atol=1e-5)
