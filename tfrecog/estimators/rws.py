"""Reweighted wake-sleep (Bornschein & Bengio 2015): the model climbs the K-sample importance-weighted gradient of
log p(x); the recognition model follows the wake-phase update (normalised weights) and/or the sleep-phase update.
"""

from __future__ import annotations

import math

from tfrecog._tf import tf, tfp

__all__ = ["Q_UPDATES", "rws"]

Q_UPDATES = ("wake", "sleep", "wake+sleep")


def rws(model, x, seed, num_samples: int = 5, q_update: str = "wake"):
    """The reweighted wake-sleep surrogate loss.

    With h_1..h_K ~ q(h | x) (no gradient through the samples), w_k = p(x, h_k) / q(h_k | x) and the normalised
    weights w~_k = w_k / sum_j w_j:

      model (theta):        grad_theta ~ sum_k w~_k grad_theta log p(x, h_k)   (the gradient of the K-sample bound
                                                                                L_K w.r.t. theta; -> grad log p(x))
      q, wake phase (phi):  grad_phi   ~ sum_k w~_k grad_phi log q(h_k | x)    (-> grad_phi -KL(p(h|x) || q(h|x)))
      q, sleep phase (phi): grad_phi   ~ grad_phi log q(h' | x'),  (x', h') ~ p(x, h)   (-> -KL(p(x,h) || q(h|x)p(x)))

    as one surrogate loss whose terms share no parameters (p's terms hold only theta, q's only phi):

      loss = -mean_b sum_k stop_gradient(w~_k) [log p(x, h_k) + log q(h_k | x)]     ('wake', the default)
             -mean_n log q(h'_n | x'_n)                                             ('sleep' replaces the wake q
                                                                                     term; 'wake+sleep' adds it)
    with B dreamt pairs (x', h') for the sleep term. The value of the loss is then shifted by a zero-gradient
    term so that it reads -L_K. The wake-phase q update is the default: Bornschein & Bengio found it better than
    the sleep phase alone, and 'wake+sleep' was their best on some data sets.

    Args:
      model: exposes `sample_posterior`, `log_joint`, and for the sleep phase `sample_joint(n, seed)` and
        `recognition_log_prob(x, h)` (an SBN or fDARN).
      x: float32 [B, D]; seed: int32 [2]; num_samples: K >= 2.
      q_update: 'wake' (default), 'sleep' or 'wake+sleep'.

    Returns:
      `(loss, diagnostics)`: `iwae_bound` (mean L_K), `elbo` (mean log w_k), `effective_sample_size`
      (mean over examples of 1 / sum_k w~_k^2), and `sleep` (mean log q(h' | x')) when the sleep phase is on.
    """
    if num_samples < 2:
        raise ValueError(f"rws needs num_samples >= 2 (normalised importance weights); got {num_samples}")
    if q_update not in Q_UPDATES:
        raise ValueError(f"rws q_update must be one of {', '.join(Q_UPDATES)}; got {q_update!r}")
    wake_seed, sleep_seed = tfp.random.split_seed(seed, 2)
    h, log_q = model.sample_posterior(x, num_samples, wake_seed)
    h = tf.nest.map_structure(tf.stop_gradient, h)
    log_joint = model.log_joint(x, h)
    log_weights = log_joint - log_q  # [K, B]
    normalized = tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))
    bound = tf.reduce_logsumexp(log_weights, axis=0) - math.log(num_samples)
    surrogate = tf.reduce_sum(normalized * log_joint, axis=0)
    if q_update != "sleep":
        surrogate = surrogate + tf.reduce_sum(normalized * log_q, axis=0)
    surrogate = tf.reduce_mean(surrogate)
    diagnostics = {
        "elbo": tf.reduce_mean(log_weights),
        "iwae_bound": tf.reduce_mean(bound),
        "effective_sample_size": tf.reduce_mean(1.0 / tf.reduce_sum(tf.square(normalized), axis=0)),
    }
    if q_update != "wake":
        dream_x, dream_h = model.sample_joint(tf.shape(x)[0], sleep_seed)
        dream_x, dream_h = tf.nest.map_structure(tf.stop_gradient, (dream_x, dream_h))
        sleep = tf.reduce_mean(model.recognition_log_prob(dream_x, dream_h))
        surrogate = surrogate + sleep
        diagnostics["sleep"] = sleep
    loss = tf.stop_gradient(surrogate - diagnostics["iwae_bound"]) - surrogate
    return loss, diagnostics
