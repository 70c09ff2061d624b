"""The marginal-likelihood estimator of Kingma & Welling (2014), appendix D, for models with few latent dimensions:
HMC samples from the posterior, a Gaussian fitted to them, and the harmonic-mean-style estimator it makes exact.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from tfrecog import checks
from tfrecog._tf import tf, tfd
from tfrecog.estimates import LogLikelihood
from tfrecog.estimators.mcem import MCEMSettings, hmc_posterior, latent_parts, pack_latents

__all__ = ["hmc_marginal_log_likelihood"]


# Compiled estimators per model and settings: XLA compiles once per model, not once per call.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _estimator(model, settings: MCEMSettings, num_samples: int, covariance_scale: float):
    """A compiled function (x [B, D], seed) -> (log p(x) estimate [B], ELBO of the fitted q [B])."""
    per_model = _COMPILED.setdefault(model, {})
    key = (settings, num_samples, covariance_scale)
    if key not in per_model:
        per_model[key] = _make_estimator(weakref.ref(model), settings, num_samples, covariance_scale)
    return per_model[key]


def _make_estimator(model_ref, settings: MCEMSettings, num_samples: int, covariance_scale: float):

    def estimate(x, seed):
        model = model_ref()
        init_seed, fit_seed, eval_seed, q_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        batch = tf.shape(x)[0]
        initial = latent_parts(model, model.prior().sample(batch, seed=init_seed))
        # 1. L posterior samples after the burn-in (step size adapted during its first half).
        fit_settings = MCEMSettings(**{**settings.__dict__, "num_results": num_samples})
        fitted = hmc_posterior(model, x, fit_seed, initial, settings.step_size, fit_settings)
        # 2. q(z) = N(mean, covariance_scale * covariance) of those samples, per example (all latents joined).
        z = tf.concat(fitted.samples, axis=-1)  # [L, B, K]
        mean = tf.reduce_mean(z, axis=0)
        centred = z - mean
        covariance = tf.einsum("lbi,lbj->bij", centred, centred) / float(num_samples - 1)
        size = z.shape[-1]
        jitter = 1e-6 * tf.eye(size, batch_shape=[batch])
        q = tfd.MultivariateNormalTriL(mean, tf.linalg.cholesky(covariance_scale * covariance + jitter))
        # 3. L new posterior samples, continuing the chains with the adapted step sizes and no further burn-in or
        # adaptation; 1 / p(x) ~= 1/L sum_l q(z_l) / p(x, z_l).
        eval_settings = MCEMSettings(**{**fit_settings.__dict__, "num_adaptation_steps": 0})
        fresh = hmc_posterior(model, x, eval_seed, fitted.final_state, fitted.step_size, eval_settings,
                              num_burnin_steps=0)
        z = tf.concat(fresh.samples, axis=-1)
        log_ratio = q.log_prob(z) - _log_joint(model, x, fresh.samples)  # [L, B]
        log_px = math.log(num_samples) - tf.reduce_logsumexp(log_ratio, axis=0)
        # The ELBO of the fitted q, E_q[log p(x, z) - log q(z)] by L draws of q: a lower bound on log p(x) in
        # expectation, beside it.
        z_q = q.sample(num_samples, seed=q_seed)
        parts = tf.split(z_q, [s.shape[-1] for s in fitted.samples], axis=-1)
        elbo = tf.reduce_mean(_log_joint(model, x, parts) - q.log_prob(z_q), axis=0)
        return log_px, elbo

    return tf.function(estimate, jit_compile=True, reduce_retracing=True)


def _log_joint(model, x, parts):
    return model.log_joint(x, pack_latents(model, list(parts) if isinstance(parts, (list, tuple)) else [parts]))


def hmc_marginal_log_likelihood(
    model,
    data,
    num_samples: int = 100,
    settings: MCEMSettings | None = None,
    batch_size: int = 100,
    covariance_scale: float = 1.0,
    seed: int = 0,
) -> LogLikelihood:
    """log p(x) by Kingma & Welling's appendix D estimator, for each example of `data`.

      1. z_1..z_L ~ p(z | x) by HMC (`tfrecog.estimators.mcem.hmc_posterior`: chains started at a prior draw,
         `settings.num_burnin_steps` discarded transitions with the step size adapted in the first half);
      2. q(z) = N(mean, covariance_scale * cov) of those L samples (a full-covariance Gaussian per example);
      3. z'_1..z'_L ~ p(z | x), L further transitions of the same chains (fixed step size), and

           1 / p(x) = E_{p(z | x)}[ q(z) / p(x, z) ]   (q normalised)   ~=   1/L sum_l q(z'_l) / p(x, z'_l)
           log p(x) ~= log L - logsumexp_l [ log q(z'_l) - log p(x, z'_l) ]

    The estimate of 1/p(x) is unbiased (q is fitted on samples independent of the z'_l only as far as the chain
    has mixed between steps 2 and 3); its log is biased up by about half its relative variance (Jensen), small
    when q is close to the posterior. Its variance is finite when q's tails are lighter than the posterior's
    (`covariance_scale` < 1 makes sure of that for a Gaussian posterior). Meant for few latent dimensions: the
    paper used it with 3 and found it unreliable for more.

    Args:
      model: any model with `log_joint(x, z)` and `prior()` (a VAE, or a DLGM's list of layers).
      data: float32 [N, D], or a `tfrecog.data.Split`.
      num_samples: L, posterior samples for the fit and again for the estimate.
      settings: the HMC (`MCEMSettings`: leapfrog steps, burn-in, initial step size, target acceptance);
        default 10 leapfrog steps, 200 burn-in transitions, target acceptance 0.9.
      batch_size: examples per compiled call (the last batch is padded).
      covariance_scale: the factor on the fitted covariance.
      seed: makes the estimate reproducible.

    Returns:
      `tfrecog.estimates.LogLikelihood` (the type `tfrecog.evaluate.log_likelihood` returns): the mean over
      examples of the estimate and its standard error, and as `elbo` the mean of E_q[log p(x, z) - log q(z)]
      for the fitted q (L draws of q), a lower bound in expectation; `samples` is L.

    Example:
      >>> result = hmc_marginal_log_likelihood(model, test.x[:100], num_samples=100)   # doctest: +SKIP
      >>> print(result)                                                              # doctest: +SKIP
    """
    num_samples = checks.integer(num_samples, "num_samples", 2, checks.LIMITS["samples"])
    batch_size = checks.integer(batch_size, "batch_size", 1, checks.LIMITS["batch_size"])
    seed = checks.integer(seed, "seed", 0, checks.LIMITS["seed"])
    covariance_scale = checks.number(covariance_scale, "covariance_scale", 0.0)
    settings = settings or MCEMSettings(num_leapfrog_steps=10, num_burnin_steps=200, step_size=0.1)
    if hasattr(data, "x") and hasattr(data, "split"):
        data = data.x
    data = model.check_input(data)
    if not len(data):
        raise ValueError("hmc_marginal_log_likelihood needs at least one example; got none")
    if not model.built:
        model.build((None, model.event_size))
    estimate = _estimator(model, settings, num_samples, float(covariance_scale))
    values, elbos = [], []
    for index, start in enumerate(range(0, len(data), batch_size)):
        batch = data[start:start + batch_size]
        n = len(batch)
        if n < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
        log_px, elbo = estimate(tf.constant(batch), tf.constant([seed, index], tf.int32))
        values.append(log_px.numpy()[:n])
        elbos.append(elbo.numpy()[:n])
    return LogLikelihood.from_examples(np.concatenate(values), np.concatenate(elbos), num_samples,
                                       "the HMC marginal-likelihood estimate")
