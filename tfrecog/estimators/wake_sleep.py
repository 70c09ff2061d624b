"""Wake-sleep (Hinton et al. 1995), the baseline of both AEVB and NVIL, as one surrogate loss."""

from tfrecog._tf import tf, tfp


def wake_sleep(model, x, seed):
    """Wake phase for the generative model, sleep phase for the recognition model, in one loss.

      wake:  h ~ q(h | x) (no gradient through h);      minimise -log p(x, h)   over generative parameters
      sleep: (x', h') ~ p(x, h) (no gradient);          minimise -log q(h' | x') over recognition parameters

    The two terms share no parameters, so the gradient of their sum is the wake gradient for the generative model
    and the sleep gradient for the recognition model. Neither term is a bound on log p(x); the reported `elbo` is
    the single-sample estimate log p(x, h) - log q(h | x).

    Args:
      model: exposes `sample_posterior(x, n, seed) -> (h, log_q)`, `log_joint(x, h)`, `sample_joint(n, seed)` and
        `recognition_log_prob(x, h)`.
      x: float32 [B, D]; seed: int32 [2].

    Returns:
      `(loss, diagnostics)` with `elbo`, `wake` (mean log p(x, h)) and `sleep` (mean log q(h' | x')).
    """
    wake_seed, sleep_seed = tfp.random.split_seed(seed, 2)
    h, log_q = model.sample_posterior(x, 1, wake_seed)
    h = tf.nest.map_structure(tf.stop_gradient, h)
    log_joint = model.log_joint(x, h)  # [1, B]
    dream_x, dream_h = model.sample_joint(tf.shape(x)[0], sleep_seed)
    dream_x, dream_h = tf.nest.map_structure(tf.stop_gradient, (dream_x, dream_h))
    sleep_log_q = model.recognition_log_prob(dream_x, dream_h)
    wake = tf.reduce_mean(log_joint)
    sleep = tf.reduce_mean(sleep_log_q)
    diagnostics = {"elbo": tf.reduce_mean(log_joint - tf.stop_gradient(log_q)), "wake": wake, "sleep": sleep}
    return -(wake + sleep), diagnostics
