"""The importance-weighted bound (Burda et al. 2016), a tighter reparameterised objective."""

import math

from tfrecog._tf import tf


def iwae(model, x, seed, num_samples: int = 5):
    """L_K(x) = log (1/K) sum_k w_k,  w_k = p(x, h_k) / q(h_k | x),  h_k ~ q(h | x) reparameterised.

    L_1 is the ELBO and L_K increases to log p(x) as K grows.

    Args:
      model: exposes `log_importance_weights(x, num_samples, seed) -> [K, B]`.
      x: float32 [B, D]; seed: int32 [2]; num_samples: K.

    Returns:
      `(loss, diagnostics)`: loss = -mean_b L_K(x_b); diagnostics has `iwae_bound` and `elbo` (mean log w).
    """
    log_weights = model.log_importance_weights(x, num_samples, seed)
    bound = tf.reduce_logsumexp(log_weights, axis=0) - math.log(num_samples)
    diagnostics = {"elbo": tf.reduce_mean(log_weights), "iwae_bound": tf.reduce_mean(bound)}
    return -diagnostics["iwae_bound"], diagnostics
