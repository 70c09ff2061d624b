"""The log-density of independent Bernoulli units given their logits, shared by every family with binary variables.

One fused form (`-sigmoid_cross_entropy_with_logits`) instead of TFP's, because it is evaluated on every pixel of
every sample in training steps and in importance-sampled evaluation.
"""

from __future__ import annotations

from tfrecog._tf import tf

__all__ = ["bernoulli_log_prob"]


def bernoulli_log_prob(logits, value):
    """log p(value) = sum_j log Bernoulli(value_j; sigmoid(a_j)) = sum_j [value_j a_j - softplus(a_j)], over the last
    axis; logits a and value broadcast against each other. Returns [...].

    The density of `tfd.Independent(tfd.Bernoulli(logits=a), 1).log_prob(value)` (finite logits), written as
    `-tf.nn.sigmoid_cross_entropy_with_logits` = -(max(a, 0) - a value + log1p(exp(-|a|))): one exp and one log1p
    per unit where TFP's form takes two softplus (each an exp, a log1p and two range selects) and two
    `multiply_no_nan` selects, in the forward and the backward pass. Every SBN training step scores every layer
    (and all D pixels) this way, and importance-sampled evaluation scores all D pixels of K samples per example; the
    cheaper form made the fused XLA SBN step 12% faster (bench/SPEED_NOTES.md).

    Example:
      >>> bernoulli_log_prob(tf.zeros([2, 3]), tf.ones([3])).numpy()   # 3 log(1/2) per row
      array([-2.0794415, -2.0794415], dtype=float32)
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    value = tf.convert_to_tensor(value, tf.float32)
    shape = tf.broadcast_dynamic_shape(tf.shape(logits), tf.shape(value))  # the loss op needs equal shapes
    logits, value = tf.broadcast_to(logits, shape), tf.broadcast_to(value, shape)
    return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=value, logits=logits), axis=-1)
