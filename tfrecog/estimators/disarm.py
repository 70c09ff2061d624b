"""DisARM (Dong, Mnih & Tucker 2020): antithetic, unbiased gradients of the ELBO for binary latents, applied layer by
layer in a sigmoid belief net.
"""

from __future__ import annotations

from tfrecog._tf import tf, tfp
from tfrecog.layers import random

__all__ = ["disarm"]


def disarm(model, x, seed, num_samples: int = 1):
    """The DisARM surrogate loss: its gradient is an unbiased estimate of grad ELBO(x) for theta and phi.

    One layer of factorial binary units, logits a = a(phi), f(h) = log p(x, h) - log q(h | x): with u ~ U[0, 1)^n,
    the antithetic pair b = 1[u < sigmoid(a)], b' = 1[1 - u < sigmoid(a)] (both distributed as q) gives, per unit j,

      g_j = 1/2 (f(b) - f(b')) (-1)^{b'_j} 1[b_j != b'_j] sigmoid(|a_j|),    E[g_j] = d/da_j E_q[f(h)]    (DisARM)

    Layered SBN h_1..h_L, q(h_l | h_{l-1}) with logits a_l: for each layer l a pair of paths shares the uniforms of
    every layer but l: the base path draws every layer from u_1..u_L, path l from u_1..u_{l-1}, 1 - u_l,
    u_{l+1}..u_L. The two paths share h_{<l} (held) and so a_l; they differ in h_l and, through it, in the layers
    above, which are driven by the same uniforms (common random numbers). f(base path) and f(path l) are then
    unbiased one-sample estimates of F_l(h_{<=l}) = E_q[f | h_{<=l}] at b_l and b'_l, and g_l is linear in them, so
    E[g_l] = E_{h_{<l}}[d/da_l E_{h_l}[F_l]]: the layer-l part of grad_phi E_q[f]. What is estimated is exactly the
    ELBO gradient, with no Rao-Blackwellisation of the upper layers. The term E_q[grad_phi f] = -E_q[grad_phi
    log q] = 0 is left out (zero mean). The generative gradient is the mean of grad_theta log p(x, h) over the
    L + 1 paths, each distributed as q. As a surrogate loss:

      loss = -mean_{k,b} [ mean_paths log p(x, h) + sum_l sum_j stop_gradient(g_l,j) a_l,j ]   (value shifted to -ELBO)

    Args:
      model: an SBN/fDARN with factorial recognition layers: `inference_layers` (each `sample(u, context) ->
        (h, logits)` and `autoregressive`), `log_joint(x, h)` and `recognition_log_prob(x, h)`.
      x: float32 [B, D]; seed: int32 [2]; num_samples: K independent antithetic pairs per example, averaged.

    Returns:
      `(loss, diagnostics)`: `elbo` (mean f over the samples of all paths) and `pair_disagreement` (the fraction of
      units of layer 1 where b != b', the only units that carry gradient).
    """
    layers = list(model.inference_layers)
    if any(layer.autoregressive for layer in layers):
        raise ValueError("disarm needs factorial recognition layers; got autoregressive_posterior=True")
    x = tf.convert_to_tensor(x, tf.float32)
    batch = tf.shape(x)[0]
    seeds = tfp.random.split_seed(seed, len(layers))
    noise = [random.uniform(tf.stack([num_samples, batch, layer.units]), seeds[k]) for k, layer in enumerate(layers)]

    def path(flipped):
        """(samples, logits) of every layer drawn from the uniforms, with 1 - u at layer `flipped` (None: none)."""
        context, samples, logits = x, [], []
        for k, (layer, u) in enumerate(zip(layers, noise, strict=True)):
            h, a = layer.sample(1.0 - u if k == flipped else u, context)
            h = tf.stop_gradient(h)
            samples.append(h)
            logits.append(a)
            context = h
        return samples, logits

    base, base_logits = path(None)
    paths = [base] + [path(k)[0] for k in range(len(layers))]
    log_joints = [model.log_joint(x, h) for h in paths]  # each [K, B]
    signals = [tf.stop_gradient(lp - model.recognition_log_prob(x, h)) for lp, h in zip(log_joints, paths, strict=True)]
    score = 0.0
    for k, logits in enumerate(base_logits):
        b, b_flip = base[k], paths[k + 1][k]
        pair = 0.5 * (signals[0] - signals[k + 1])[..., None] * (1.0 - 2.0 * b_flip)
        gradient = tf.stop_gradient(pair * tf.cast(tf.not_equal(b, b_flip), tf.float32) * tf.sigmoid(tf.abs(logits)))
        score = score + tf.reduce_sum(gradient * logits, axis=-1)
    surrogate = tf.reduce_mean(tf.add_n(log_joints) / len(paths) + score)
    elbo = tf.reduce_mean(tf.stack(signals))
    diagnostics = {
        "elbo": elbo,
        "pair_disagreement": tf.reduce_mean(tf.cast(tf.not_equal(base[0], paths[1][0]), tf.float32)),
    }
    return tf.stop_gradient(surrogate - elbo) - surrogate, diagnostics
