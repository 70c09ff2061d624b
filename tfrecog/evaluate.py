"""Importance-sampled estimates of log p(x) for every model family, with memory bounded independently of K.

Works with any `LatentVariableModel` through its `log_importance_weights`.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from tfrecog import checks
from tfrecog._tf import tf
from tfrecog.annealing import (  # AIS, BDMC and the inference gaps live there (it does not import this module)
    BDMC,
    AISLogLikelihood,
    InferenceGaps,
    ais_log_likelihood,
    bdmc,
    inference_gaps,
)
from tfrecog.estimates import LogLikelihood  # noqa: F401  (the result type, re-exported)
from tfrecog.layers import random

__all__ = ["LogLikelihood", "log_likelihood", "paired_difference", "perplexity", "DEFAULT_ROWS_PER_CHUNK",
           "AISLogLikelihood", "BDMC", "InferenceGaps", "ais_log_likelihood", "bdmc", "inference_gaps"]

# Rows (samples x examples) pushed through the networks at once; bounds memory for any K.
DEFAULT_ROWS_PER_CHUNK = 20000


# Compiled estimators per model and settings: XLA compiles once per model, not once per call.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _batch_estimator(model, batch_size: int, samples: int, chunk: int, jit_compile: bool):
    key = (batch_size, samples, chunk, jit_compile)
    per_model = _COMPILED.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _make_batch_estimator(model, samples, chunk, jit_compile)
    return per_model[key]


def _make_batch_estimator(model, samples: int, chunk: int, jit_compile: bool):
    model_ref = weakref.ref(model)  # the cache must not keep the model alive
    del model
    num_chunks = math.ceil(samples / chunk)
    last = samples - (num_chunks - 1) * chunk

    def estimate(x, seed):
        """Running logsumexp over chunks: log (1/K) sum_k w_k and the mean of log w_k, both [B]."""
        with random.xla_random(jit_compile):  # XLA's fast generator where compiled (tfrecog.layers.random)
            return _estimate(x, seed)

    def _estimate(x, seed):
        seeds = tf.random.experimental.stateless_split(seed, num_chunks + 1)

        def body(i, running_max, running_sum, log_w_sum):
            log_w = model_ref().log_importance_weights(x, chunk, seeds[i])  # [chunk, B]
            # The last chunk may hold fewer real samples; the rest are masked out.
            valid = tf.range(chunk) < tf.where(i == num_chunks - 1, last, chunk)
            log_w = tf.where(valid[:, None], log_w, -np.inf)
            new_max = tf.maximum(running_max, tf.reduce_max(log_w, axis=0))
            running_sum = running_sum * tf.exp(running_max - new_max) + tf.reduce_sum(
                tf.exp(log_w - new_max), axis=0
            )
            log_w_sum += tf.reduce_sum(tf.where(valid[:, None], log_w, 0.0), axis=0)
            return i + 1, new_max, running_sum, log_w_sum

        b = tf.shape(x)[0]
        init = (tf.constant(0), tf.fill([b], -np.inf), tf.zeros([b]), tf.zeros([b]))
        _, running_max, running_sum, log_w_sum = tf.while_loop(
            lambda i, *_: i < num_chunks, body, init, maximum_iterations=num_chunks
        )
        return running_max + tf.math.log(running_sum) - math.log(samples), log_w_sum / samples

    return tf.function(estimate, jit_compile=jit_compile, reduce_retracing=True)


def log_likelihood(
    model,
    data,
    samples: int = 5000,
    batch_size: int = 100,
    rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
    seed: int = 0,
    jit_compile: bool = True,
    progress: bool = False,
    strategy=None,
) -> LogLikelihood:
    """Importance-sampled log-likelihood with the recognition model as proposal.

      log p(x) ~= log (1/K) sum_{k=1..K} p(x, h_k) / q(h_k | x),   h_k ~ q(h | x)

    a stochastic lower bound in expectation (Jensen) that tightens as K grows; the mean of log w_k is the ELBO.
    Computed as a running logsumexp over chunks of samples, so memory is bounded by `rows_per_chunk` rows through
    the networks, whatever K is. Every batch is padded to `batch_size` so the compiled function is traced once.

    Args:
      model: any `LatentVariableModel`.
      data: float32 array [N, D], a `tfrecog.data.Split`, or a `tf.data.Dataset` of [B, D] batches.
      samples: K, the number of importance samples per example.
      batch_size: examples per compiled call.
      rows_per_chunk: samples x examples evaluated at once (memory bound).
      seed: makes the estimate reproducible.
      strategy: a `tf.distribute.Strategy` whose R replicas (over all its workers) share the batches: batch b (of
        `batch_size` examples, noise seeded by (seed, b) as on one device) goes to replica b mod R, so the
        per-example values equal the one-device values up to float32 summation order. Default: the strategy in
        scope, else the model's own (one device unless it was built under a strategy).

    Returns:
      `LogLikelihood` with the mean over examples of log p(x) and of the ELBO, their standard errors
      (std / sqrt(N)) and the per-example values.
    """
    samples = checks.integer(samples, "samples", 1, checks.LIMITS["samples"])
    batch_size = checks.integer(batch_size, "batch_size", 1, checks.LIMITS["batch_size"])
    rows_per_chunk = checks.integer(rows_per_chunk, "rows_per_chunk", 1)
    seed = checks.integer(seed, "seed", 0, checks.LIMITS["seed"])
    chunk = max(1, min(samples, int(rows_per_chunk) // batch_size))
    if hasattr(data, "x") and hasattr(data, "split"):
        data = data.x
    if isinstance(data, tf.data.Dataset):
        batches = (np.asarray(b[0] if isinstance(b, tuple) else b) for b in data.as_numpy_iterator())
    else:
        data = model.check_input(data)
        batches = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    if not model.built:
        model.build((None, model.event_size))
    estimate = _batch_estimator(model, batch_size, samples, chunk, jit_compile)
    values, elbos = [], []
    iterator = batches
    if progress:
        from tqdm.auto import tqdm

        total = math.ceil(len(data) / batch_size) if isinstance(data, np.ndarray) else None
        iterator = tqdm(batches, total=total, desc=f"log p(x), K={samples}", unit="batch")
    if strategy is None:
        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else model.distribute_strategy
    sharded = tf.distribute.has_strategy() or strategy is not tf.distribute.get_strategy()
    try:
        if sharded:
            _sharded(estimate, iterator, batch_size, seed, strategy, values, elbos)
        else:
            for index, batch in enumerate(iterator):
                n = len(batch)
                ll, elbo = estimate(tf.constant(_padded(batch, batch_size), tf.float32),
                                    tf.constant([seed, index], tf.int32))
                values.append(ll.numpy()[:n])
                elbos.append(elbo.numpy()[:n])
    finally:
        if progress:
            iterator.close()  # Ctrl-C leaves a finished bar line, not a half-drawn one
    if not values:
        raise ValueError("log_likelihood needs at least one example; got none")
    return LogLikelihood.from_examples(np.concatenate(values), np.concatenate(elbos), samples)


def _padded(batch, batch_size):
    """The batch filled up to `batch_size` rows with copies of its last row (one compiled shape for every batch)."""
    n = len(batch)
    return batch if n == batch_size else np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])


def _sharded(estimate, batches, batch_size, seed, strategy, values, elbos):
    """`log_likelihood`'s batches over the R replicas of `strategy`, R at a time: in round r, replica i estimates
    batch b = R r + i with the seed (seed, b), exactly the one-device computation of that batch; the results of all
    replicas (of every worker) are gathered in replica order, so every worker returns all values. A last round with
    fewer than R batches gives the idle replicas a copy of its last batch, whose results are dropped."""
    replicas = strategy.num_replicas_in_sync

    @tf.function
    def round_of(x, seeds):
        per_replica = strategy.run(estimate, args=(x, seeds))
        return [strategy.gather(value, axis=0) for value in per_replica]

    def distributed(stack):
        return strategy.experimental_distribute_values_from_function(
            lambda context: stack[context.replica_id_in_sync_group])

    index = 0
    pending = []
    for batch in list(batches) + [None]:
        if batch is not None:
            pending.append(batch)
        if pending and (len(pending) == replicas or batch is None):
            lengths = [len(b) for b in pending]
            filled = pending + [pending[-1]] * (replicas - len(pending))
            x = tf.constant(np.stack([_padded(b, batch_size) for b in filled]), tf.float32)
            seeds = tf.constant([[seed, index + min(i, len(pending) - 1)] for i in range(replicas)], tf.int32)
            ll, elbo = round_of(distributed(x), distributed(seeds))
            ll = ll.numpy().reshape(replicas, batch_size)
            elbo = elbo.numpy().reshape(replicas, batch_size)
            for i, n in enumerate(lengths):
                values.append(ll[i, :n])
                elbos.append(elbo[i, :n])
            index += len(pending)
            pending = []


def paired_difference(a: LogLikelihood, b: LogLikelihood) -> tuple[float, float]:
    """Mean and standard error of log p_A(x_n) - log p_B(x_n) over the same N examples:

      d = (1/N) sum_n (a_n - b_n),   se(d) = std(a - b) / sqrt(N)   (ddof = 1)

    Both models must have been scored on the same examples in the same order (e.g. `log_likelihood` on one array);
    the paired standard error leaves out the spread between examples, which dominates each model's own.
    """
    if a.per_example.shape != b.per_example.shape:
        raise ValueError(
            f"paired_difference needs both models scored on the same examples; got {a.num_examples} and "
            f"{b.num_examples} per-example values"
        )
    d = np.asarray(a.per_example, np.float64) - np.asarray(b.per_example, np.float64)
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def perplexity(log_probs, word_counts) -> dict:
    """Document perplexity as in Mnih & Gregor (2014) and NVDM:

      perplexity = exp( -(1/D) sum_d log p(x_d) / N_d ),   N_d = number of words in document d,

    the per-word log-probability averaged over documents (not over words). Documents with no words carry no
    information about the model (log p = 0 / 0) and are left out; how many is reported.

    Args:
      log_probs: [D] estimates of log p(x_d) in nats (e.g. `LogLikelihood.per_example`).
      word_counts: [D, V] bag-of-words counts, or [D] document lengths N_d.

    Returns:
      dict with 'perplexity', a normal-approximation interval from the standard error of the per-document mean
      ('perplexity_low', 'perplexity_high'), 'documents' used and 'empty_documents' left out.
    """
    log_probs = np.asarray(log_probs, np.float64)
    counts = np.asarray(word_counts, np.float64)
    lengths = counts.sum(axis=-1) if counts.ndim == 2 else counts
    if lengths.shape != log_probs.shape:
        raise ValueError(f"expected one word count per document: log_probs {log_probs.shape}, counts {lengths.shape}")
    keep = lengths > 0
    if not keep.any():
        raise ValueError("perplexity needs at least one document with words; every document is empty")
    per_word = log_probs[keep] / lengths[keep]
    mean = per_word.mean()
    se = per_word.std(ddof=1) / math.sqrt(len(per_word)) if len(per_word) > 1 else float("nan")
    return {
        "perplexity": float(np.exp(-mean)),
        "perplexity_low": float(np.exp(-(mean + se))),
        "perplexity_high": float(np.exp(-(mean - se))),
        "documents": int(keep.sum()),
        "empty_documents": int((~keep).sum()),
    }
