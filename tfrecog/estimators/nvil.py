"""Neural variational inference and learning (NVIL, Mnih & Gregor 2014): score-function gradients for discrete
latent variables, with centring, an input-dependent baseline, variance normalisation and local learning signals.
"""

from __future__ import annotations

from typing import NamedTuple

from tfrecog._tf import tf

__all__ = ["NVILState", "initial_state", "learning_signals", "nvil", "nvil_gradients", "nvil_objective",
           "nvil_train_update", "updated_state"]


class NVILState(NamedTuple):
    """Running statistics of the learning signal after the input-dependent baseline, one entry per latent layer.

    mean: c [L], the running mean of l_i(x, h) - C_i(x);  variance: v [L], its running variance.
    """

    mean: tf.Tensor
    variance: tf.Tensor


def initial_state(num_layers: int) -> NVILState:
    """c = 0, v = 0 (variance normalisation divides by max(1, sqrt(v)) = 1 until v has grown)."""
    return NVILState(tf.zeros([num_layers]), tf.zeros([num_layers]))


def learning_signals(log_joint_terms, recognition_terms, local: bool = True):
    """Learning signals [L, K, B], one per latent layer (bottom first).

    With h_0 = x and layers h_1..h_L sampled in order from q, the terms are
      log_joint_terms   = [log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)]      (L + 1 terms)
      recognition_terms = [log q(h_1 | x), log q(h_2 | h_1), ..., log q(h_L | h_{L-1})]   (L terms)

      global:  l(x, h) = sum_j log p-terms - sum_j log q-terms          (the same for every layer)
      local:   l_i(x, h) = log p(h_{i-1}, h_i, ..., h_L) - log q(h_i, ..., h_L | h_{i-1})
                         = sum_{j >= i-1} log p(h_j | h_{j+1}) - sum_{j >= i} log q(h_j | h_{j-1})

    The local signal drops the terms that depend only on layers sampled before h_i; they are independent of h_i
    given h_{i-1}, so E_q[term * grad log q(h_i | h_{i-1})] = 0 and the expected gradient is unchanged.
    A model with a single term on each side (any non-layered model) gets the global signal.
    """
    total = log_joint_terms[0]
    for term in [*log_joint_terms[1:], *recognition_terms]:
        total = total + term
    shape = tf.shape(total)  # [K, B]: terms may broadcast (a top prior's term need not carry the batch axis)
    p = tf.stack([tf.broadcast_to(t, shape) for t in log_joint_terms])
    q = tf.stack([tf.broadcast_to(t, shape) for t in recognition_terms])
    num_layers = len(recognition_terms)
    if not local or len(log_joint_terms) != num_layers + 1:
        signal = tf.reduce_sum(p, axis=0) - tf.reduce_sum(q, axis=0)
        return tf.stack([signal] * num_layers)
    # Reverse cumulative sums: row j holds the sum of terms j..end.
    p_from = tf.cumsum(p, axis=0, reverse=True)[:num_layers]
    q_from = tf.cumsum(q, axis=0, reverse=True)
    return p_from - q_from


def _replica_mean(values):
    """Averages a tensor over the replicas of a distribution strategy (identity outside one)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, values)


def _layered_terms(model, x, num_samples, seed):
    if hasattr(model, "sample_posterior_terms") and hasattr(model, "log_joint_terms"):
        h, recognition_terms = model.sample_posterior_terms(x, num_samples, seed)
        return h, list(model.log_joint_terms(x, h)), list(recognition_terms)
    h, log_q = model.sample_posterior(x, num_samples, seed)
    return h, [model.log_joint(x, h)], [log_q]


def nvil(
    model,
    x,
    seed,
    state: NVILState,
    baseline=None,
    num_samples: int = 1,
    centering: bool = True,
    input_dependent_baseline: bool = True,
    variance_normalization: bool = True,
    local_signals: bool = True,
    decay: float = 0.8,
):
    """One NVIL step on a minibatch: surrogate losses whose gradients are the NVIL gradient estimates.

    With h ~ q(h | x) (K samples per example) and l_i the learning signal of layer i (`learning_signals`):

      A_i(x, h)  = (l_i(x, h) - C_i(x) - c_i) / max(1, sqrt(v_i))          (each part switchable)
      model:       L_theta = -mean log p(x, h)                               -> grad_theta = E[grad log p(x, h)]
      recognition: L_phi   = -mean sum_i stop_gradient(A_i) log q(h_i | h_{i-1})
                                                        -> grad_phi  = E[sum_i A_i grad log q(h_i | h_{i-1})]
      baseline:    L_psi   = mean sum_i (stop_gradient(l_i - c_i) - C_i(x))^2

    C(x) and c do not depend on h, so they leave the expected gradient equal to the ELBO gradient
    grad_phi E_q[log p(x, h) - log q(h | x)] (the score has mean zero); variance normalisation rescales it by the
    positive constant 1 / max(1, sqrt(v_i)). The running statistics use the values from before this minibatch (so
    they are independent of its samples) and are then updated with exponential decay alpha:

      c_i <- alpha c_i + (1 - alpha) mean(l_i - C_i(x)),   v_i <- alpha v_i + (1 - alpha) var(l_i - C_i(x))

    (minibatch mean and variance over samples and examples, averaged over replicas under `tf.distribute`).

    Args:
      model: exposes `sample_posterior(x, K, seed)` and `log_joint(x, h)`; a layered model (SBN) also exposes
        `sample_posterior_terms(x, K, seed) -> (h, [log q(h_i | h_{i-1})])` and `log_joint_terms(x, h)` (see
        `learning_signals`) for local signals.
      x: float32 [B, D]; seed: int32 [2].
      state: `NVILState` with c and v of shape [L].
      baseline: callable x [B, D] -> C(x) [B, L] (or [B, 1]), or None.
      num_samples: K samples of h per example.
      centering, input_dependent_baseline, variance_normalization, local_signals: switch each technique.
      decay: alpha of the running averages (0.8 in the paper).

    Returns:
      `(losses, diagnostics, new_state)`: losses {'model', 'recognition', 'baseline'} (scalars, to minimise);
      diagnostics {'elbo', 'baseline_loss', 'signal_variance', 'normalized_signal_variance'} (scalars: the
      single-sample ELBO, the baseline's squared error and the variance of the layer-1 signal before and after
      centring and normalisation); new_state the updated `NVILState`.
    """
    losses, diagnostics, moments = _nvil_terms(model, x, seed, state, baseline, num_samples, centering,
                                               input_dependent_baseline, variance_normalization, local_signals)
    return losses, diagnostics, updated_state(state, moments, decay)


def _nvil_terms(model, x, seed, state: NVILState, baseline=None, num_samples: int = 1, centering: bool = True,
                input_dependent_baseline: bool = True, variance_normalization: bool = True,
                local_signals: bool = True):
    """`nvil` without the update of the running statistics: `(losses, diagnostics, moments)` with `moments` [2, L]
    this replica's mean and mean square of l_i - C_i(x). Nothing here crosses replicas or assigns a variable, so
    under a strategy it compiles with XLA (`nvil_gradients`)."""
    _, joint_terms, recognition_terms = _layered_terms(model, x, num_samples, seed)
    signals = tf.stop_gradient(learning_signals(joint_terms, recognition_terms, local_signals))  # [L, K, B]
    num_layers = len(recognition_terms)
    mean = tf.reshape(tf.convert_to_tensor(state.mean, tf.float32), [num_layers, 1, 1])
    variance = tf.reshape(tf.convert_to_tensor(state.variance, tf.float32), [num_layers, 1, 1])

    if input_dependent_baseline and baseline is not None:
        baseline_values = baseline(x)  # [B, L]
        baseline_values = tf.broadcast_to(tf.transpose(baseline_values)[:, None, :], tf.shape(signals))
    else:
        baseline_values = tf.zeros_like(signals)
    residual = signals - tf.stop_gradient(baseline_values)  # l_i - C_i(x)
    centered = residual - mean if centering else residual
    normalizer = tf.maximum(1.0, tf.sqrt(variance)) if variance_normalization else tf.ones_like(variance)
    advantage = tf.stop_gradient(centered / normalizer)

    log_joint = tf.reduce_sum(tf.stack([tf.broadcast_to(t, tf.shape(signals)[1:]) for t in joint_terms]), 0)
    model_loss = -tf.reduce_mean(log_joint)
    recognition_loss = -tf.reduce_mean(tf.reduce_sum(advantage * tf.stack(recognition_terms), axis=0))
    target = signals - mean if centering else signals
    baseline_loss = tf.reduce_mean(tf.reduce_sum(tf.square(target - baseline_values), axis=0))

    # This replica's moments of l_i - C_i(x) over samples and examples, [2, L]: the running statistics' input.
    moments = tf.stack([tf.reduce_mean(residual, axis=[1, 2]), tf.reduce_mean(tf.square(residual), axis=[1, 2])])
    global_signal = log_joint - tf.reduce_sum(
        tf.stack([tf.broadcast_to(t, tf.shape(signals)[1:]) for t in recognition_terms]), 0)
    _, signal_variance = tf.nn.moments(signals[0], axes=[0, 1])
    _, advantage_variance = tf.nn.moments(advantage[0], axes=[0, 1])
    losses = {"model": model_loss, "recognition": recognition_loss, "baseline": baseline_loss}
    diagnostics = {
        "elbo": tf.reduce_mean(global_signal),
        "baseline_loss": baseline_loss,
        "signal_variance": signal_variance,
        "normalized_signal_variance": advantage_variance,
    }
    return losses, diagnostics, moments


def updated_state(state: NVILState, moments, decay: float = 0.8) -> NVILState:
    """The running statistics after a minibatch whose moments of l_i - C_i(x) are `moments` [2, L] (mean, mean
    square), averaged over the replicas under `tf.distribute` (equal shares, so the average of the replicas' means
    and mean squares is the global minibatch's):

      c_i <- alpha c_i + (1 - alpha) m_i,   v_i <- alpha v_i + (1 - alpha) max(s_i - m_i^2, 0)
    """
    batch_mean, batch_square = tf.unstack(_replica_mean(tf.convert_to_tensor(moments, tf.float32)))
    batch_variance = tf.maximum(batch_square - tf.square(batch_mean), 0.0)
    return NVILState(
        decay * tf.reshape(tf.convert_to_tensor(state.mean, tf.float32), [-1]) + (1.0 - decay) * batch_mean,
        decay * tf.reshape(tf.convert_to_tensor(state.variance, tf.float32), [-1]) + (1.0 - decay) * batch_variance,
    )


# ----------------------------------------------------------------------------------------------------------------
# NVIL on a model that carries its parts: the registry's entry (`tfrecog.estimators.ESTIMATORS['nvil']`)
#
# The model exposes `nvil_state()` (the running `NVILState`), `assign_nvil_state(state)`, `nvil_settings()` (the
# keyword arguments of `nvil`: baseline network, number of samples and the switches), the variable groups
# `model_variables` (theta and phi) and `baseline_variables` (psi), `optimizer`, `baseline_optimizer` and
# `weight_penalty()`. `tfrecog.models.SBN` does.


def nvil_objective(model, x, seed, num_samples: int = 1):
    """`(-ELBO, diagnostics)` of `nvil` on one minibatch: the single-sample ELBO, what NVIL climbs, as the value
    that validation and `evaluate` report (the update itself is `nvil_train_update`)."""
    settings = {**model.nvil_settings(), "num_samples": num_samples}
    _, diagnostics, _ = nvil(model, x, seed, model.nvil_state(), **settings)
    return -diagnostics["elbo"], diagnostics


def nvil_gradients(model, x, seed):
    """The part of one NVIL update that stays inside one replica: `(grads, logs, moments)`, the gradients of the
    model and recognition surrogates plus the weight penalty (for `model_variables`) and of the baseline loss (for
    `baseline_variables`), each divided by the number of replicas; the metrics; this replica's moments of the
    learning signal [2, L]. No all-reduce and no assignment, so a trainer may compile it with XLA under a strategy
    (`tf.function(jit_compile=True)`) and hand it to `nvil_train_update`."""
    settings = {k: v for k, v in model.nvil_settings().items() if k != "decay"}
    variables = model.model_variables + model.baseline_variables
    with tf.GradientTape() as tape:
        losses, diagnostics, moments = _nvil_terms(model, x, seed, model.nvil_state(), **settings)
        penalty = model.weight_penalty()
        total = losses["model"] + losses["recognition"] + penalty + losses["baseline"]
        scaled = total / tf.distribute.get_strategy().num_replicas_in_sync
    grads = tape.gradient(scaled, variables)
    return grads, {"loss": penalty - diagnostics["elbo"], **diagnostics}, moments


def nvil_train_update(model, x, seed, gradients=nvil_gradients):
    """One NVIL update: the model optimizer steps theta and phi along the gradients of the model and recognition
    surrogates (plus the weight penalty), the baseline optimizer steps psi along the baseline loss's, and the running
    statistics c, v take their new values (`updated_state`, the moments averaged over the replicas). Returns the
    metrics: `loss` = penalty - ELBO and `nvil`'s diagnostics. `gradients`: `nvil_gradients` or a compiled copy of it.
    """
    model_variables = model.model_variables
    baseline_variables = model.baseline_variables
    grads, logs, moments = gradients(model, x, seed)
    model.optimizer.apply(grads[: len(model_variables)], model_variables)
    if baseline_variables:
        if model.baseline_optimizer is None:
            raise RuntimeError("compile the model first: the baseline network needs baseline_optimizer")
        model.baseline_optimizer.apply(grads[len(model_variables):], baseline_variables)
    model.assign_nvil_state(updated_state(model.nvil_state(), moments, model.nvil_settings().get("decay", 0.8)))
    return logs
