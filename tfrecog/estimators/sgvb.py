"""The SGVB estimators of Kingma & Welling (2014): reparameterised Monte-Carlo lower bounds on log p(x)."""

from tfrecog._tf import tf


def sgvb(model, x, seed, num_samples: int = 1, analytic_kl: bool = True, kl_weight=1.0):
    """SGVB estimator A (Monte-Carlo KL) or B (analytic KL) of the evidence lower bound.

    With z_l = g(eps_l, x), eps_l ~ p(eps), l = 1..L (reparameterised samples of q(z | x)):

      A:  L(x) ~= 1/L sum_l [ log p(x | z_l) + log p(z_l) - log q(z_l | x) ]
      B:  L(x) ~= -KL(q(z | x) || p(z)) + 1/L sum_l log p(x | z_l)

    The loss is -mean_b [ 1/L sum_l log p(x_b | z_l) - kl_weight * KL_b ]: the negative ELBO at kl_weight = 1
    (the default); a smaller weight is the KL warm-up of `LatentVariableModel(kl_warmup_steps=...)`.

    Args:
      model: exposes `sample_posterior_and_kl(x, L, seed, analytic_kl) -> (z, KL)` (`LatentVariableModel`'s
        default samples `encode(x)` and takes KL against `prior()`) and `observation_log_prob(x, z)`, the
        density of `decode(z)` at x (families override it with a cheaper form of the same density).
      x: float32 [B, D] batch.
      seed: stateless seed, int32 [2].
      num_samples: L.
      analytic_kl: B when True (closed-form KL), A otherwise.
      kl_weight: the weight of the KL term in the loss (a float or scalar tensor); diagnostics are unweighted.

    Returns:
      `(loss, diagnostics)`: diagnostics has `elbo`, `kl` and `reconstruction` (batch means).
    """
    z, kl = model.sample_posterior_and_kl(x, num_samples, seed, analytic_kl)  # z [L, B, ...], kl [B]
    reconstruction = tf.reduce_mean(model.observation_log_prob(x, z), axis=0)  # [B], log p(x | z) = decode(z) at x
    elbo = reconstruction - kl
    diagnostics = {
        "elbo": tf.reduce_mean(elbo),
        "kl": tf.reduce_mean(kl),
        "reconstruction": tf.reduce_mean(reconstruction),
    }
    if isinstance(kl_weight, (int, float)) and kl_weight == 1.0:
        return -diagnostics["elbo"], diagnostics
    return -(diagnostics["reconstruction"] - kl_weight * diagnostics["kl"]), diagnostics
