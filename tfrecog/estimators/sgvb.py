"""The SGVB estimators of Kingma & Welling (2014): reparameterised Monte-Carlo lower bounds on log p(x)."""

from tfrecog._tf import tf, tfd
from tfrecog.layers import random


def sgvb(model, x, seed, num_samples: int = 1, analytic_kl: bool = True):
    """SGVB estimator A (Monte-Carlo KL) or B (analytic KL) of the evidence lower bound.

    With z_l = g(eps_l, x), eps_l ~ p(eps), l = 1..L (reparameterised samples of q(z | x)):

      A:  L(x) ~= 1/L sum_l [ log p(x | z_l) + log p(z_l) - log q(z_l | x) ]
      B:  L(x) ~= -KL(q(z | x) || p(z)) + 1/L sum_l log p(x | z_l)

    Args:
      model: exposes `encode(x) -> q(z | x)`, `decode(z) -> p(x | z)` and `prior() -> p(z)` as TFP distributions
        (q reparameterised), and `observation_log_prob(x, z)`, the density of `decode(z)` at x
        (`LatentVariableModel`'s default is `decode(z).log_prob(x)`; families override it with a cheaper form).
      x: float32 [B, D] batch.
      seed: stateless seed, int32 [2].
      num_samples: L.
      analytic_kl: B when True (needs a registered `tfd.kl_divergence`), A otherwise.

    Returns:
      `(loss, diagnostics)`: loss = -mean_b L(x_b); diagnostics has `elbo`, `kl` and `reconstruction` (batch means).
    """
    posterior = model.encode(x)
    prior = model.prior()
    z = random.sample(posterior, num_samples, seed)  # [L, B, d]: posterior.sample, XLA's fast generator if compiled
    reconstruction = tf.reduce_mean(model.observation_log_prob(x, z), axis=0)  # [B], log p(x | z) = decode(z) at x
    if analytic_kl:
        kl = tfd.kl_divergence(posterior, prior)
    else:
        kl = tf.reduce_mean(posterior.log_prob(z) - prior.log_prob(z), axis=0)
    elbo = reconstruction - kl
    diagnostics = {
        "elbo": tf.reduce_mean(elbo),
        "kl": tf.reduce_mean(kl),
        "reconstruction": tf.reduce_mean(reconstruction),
    }
    return -diagnostics["elbo"], diagnostics
