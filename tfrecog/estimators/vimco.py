"""VIMCO (Mnih & Rezende 2016): score-function gradients of the K-sample importance-weighted bound for discrete
latents, with a leave-one-out baseline per sample built from the geometric mean of the other samples' weights.
"""

from __future__ import annotations

import math

from tfrecog._tf import tf

__all__ = ["leave_one_out_bounds", "vimco"]


def leave_one_out_bounds(log_weights):
    """L_{-k} [K, B]: the K-sample bound with sample k's weight replaced by the geometric mean of the others'.

      log w_hat_{-k} = (1 / (K - 1)) sum_{j != k} log w_j
      L_{-k}         = log (1/K) (sum_{j != k} w_j + w_hat_{-k})

    L_{-k} depends on h_{-k} only. It is computed from a [K, K, B] table (row k: log w_j for j != k and
    log w_hat_{-k} on the diagonal) by one logsumexp per row, which stays exact when one weight dominates (the
    difference log(sum_j w_j - w_k) would cancel catastrophically there).

    Args:
      log_weights: float32 [K, B], K >= 2.
    """
    num_samples = log_weights.shape[0]
    total = tf.reduce_sum(log_weights, axis=0, keepdims=True)  # [1, B]
    geometric = (total - log_weights) / (num_samples - 1.0)  # [K, B]: log w_hat_{-k}
    diagonal = tf.eye(num_samples, dtype=log_weights.dtype)[:, :, None]  # [K, K, 1]
    table = diagonal * geometric[:, None, :] + (1.0 - diagonal) * log_weights[None, :, :]  # [k, j, B]
    return tf.reduce_logsumexp(table, axis=1) - math.log(num_samples)


def vimco(model, x, seed, num_samples: int = 5):
    """The VIMCO surrogate loss: its gradient is an unbiased estimate of grad E[L_K(x)].

    With h_1..h_K ~ q(h | x) independently, w_k = p(x, h_k) / q(h_k | x), w~_k = w_k / sum_j w_j:

      L_K(x)       = log (1/K) sum_k w_k                                        (the K-sample bound)
      grad E[L_K]  = E[ sum_k (L_K - L_{-k}) grad log q(h_k | x)  +  sum_k w~_k grad log w_k ]

    L_{-k} (`leave_one_out_bounds`) is a function of the other samples only, so E[L_{-k} grad log q(h_k | x)] = 0
    and the leave-one-out baseline leaves the expectation unchanged. The surrogate differentiated by the training
    step is

      loss = -mean_b [ L_K + sum_k stop_gradient(L_K - L_{-k}) log q(h_k | x) - stop_gradient(same sum) ]

    (the last term makes the loss's value -L_K while leaving its gradient). The samples are not differentiated
    (they are binary); log w_k carries the gradient of the generative model (theta) and of -log q (phi); the
    score term the rest of phi's. For a layered SBN, log q(h_k | x) = sum_l log q(h_l | h_{l-1}).

    Args:
      model: exposes `sample_posterior(x, K, seed) -> (h, log q(h | x) [K, B])` with samples that carry no
        gradient, and `log_joint(x, h) -> [K, B]` (an SBN or fDARN).
      x: float32 [B, D]; seed: int32 [2]; num_samples: K >= 2.

    Returns:
      `(loss, diagnostics)`: diagnostics `iwae_bound` (mean L_K), `elbo` (mean log w_k), `signal_variance` (the
      variance of the learning signals L_K - L_{-k} over samples and examples).

    Example:
      >>> model = SBN(event_size=6, latent_sizes=[3], estimator="vimco", num_samples=5)   # doctest: +SKIP
      >>> loss, logs = vimco(model, x, tf.constant([0, 1]), num_samples=5)                # doctest: +SKIP
    """
    if num_samples < 2:
        raise ValueError(f"vimco needs num_samples >= 2 (leave-one-out baselines); got {num_samples}")
    h, log_q = model.sample_posterior(x, num_samples, seed)
    h = tf.nest.map_structure(tf.stop_gradient, h)
    log_weights = model.log_joint(x, h) - log_q  # [K, B]
    bound = tf.reduce_logsumexp(log_weights, axis=0) - math.log(num_samples)  # [B]
    signals = tf.stop_gradient(bound[None, :] - leave_one_out_bounds(log_weights))  # [K, B]
    score = tf.reduce_sum(signals * log_q, axis=0)
    surrogate = bound + score - tf.stop_gradient(score)
    _, signal_variance = tf.nn.moments(signals, axes=[0, 1])
    diagnostics = {
        "elbo": tf.reduce_mean(log_weights),
        "iwae_bound": tf.reduce_mean(bound),
        "signal_variance": signal_variance,
    }
    return -tf.reduce_mean(surrogate), diagnostics
