"""Milliseconds per call of the pieces of the SBN's importance-sampled evaluation under XLA:CPU, one chunk of
20,000 rows (1,000 samples x 20 test points): the matmuls, the Bernoulli log-densities and the random draws by
each stateless generator (the seed is an argument of the compiled function, as in the library's steps, where it is
computed from the update counter). This is the measurement behind `tfrecog.layers.random` (bench/results/SPEED_NOTES.md,
round 3).

  python -m bench.xla_ops [--rows 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np

    from tfrecog._tf import tf

    rows, rng = args.rows, np.random.default_rng(0)
    h = tf.constant((rng.random((rows, 200)) < 0.5).astype(np.float32))
    x = tf.constant((rng.random((rows, 784)) < 0.13).astype(np.float32))
    w_out = tf.constant(rng.normal(scale=0.1, size=(200, 784)).astype(np.float32))
    w_mid = tf.constant(rng.normal(scale=0.1, size=(200, 200)).astype(np.float32))
    u = tf.constant(rng.random((rows, 200)).astype(np.float32))
    shape = [rows, 200]

    def bernoulli_log_prob(logits, values):
        return -tf.nn.sigmoid_cross_entropy_with_logits(labels=values, logits=logits)

    ops = {
        "matmul [rows,200]x[200,784]": lambda s: tf.reduce_sum(h @ w_out),
        "matmul [rows,200]x[200,200]": lambda s: tf.reduce_sum(h @ w_mid),
        "decoder log p(x|h), 784 pixels (incl. matmul)": lambda s: tf.reduce_sum(bernoulli_log_prob(h @ w_out, x)),
        "latent layer: sample + log q, 200 units (incl. matmul)": lambda s: tf.reduce_sum(bernoulli_log_prob(
            h @ w_mid, tf.cast(u < tf.sigmoid(h @ w_mid), tf.float32))),
        "uniform [rows,200], default generator": lambda s: tf.reduce_sum(tf.random.stateless_uniform(shape, s)),
        "uniform [rows,200], alg='philox'": lambda s: tf.reduce_sum(
            tf.random.stateless_uniform(shape, s, alg="philox")),
        "uniform [rows,200], alg='threefry'": lambda s: tf.reduce_sum(
            tf.random.stateless_uniform(shape, s, alg="threefry")),
        "normal [rows,200], default generator": lambda s: tf.reduce_sum(tf.random.stateless_normal(shape, s)),
        "normal [rows,200], alg='threefry'": lambda s: tf.reduce_sum(
            tf.random.stateless_normal(shape, s, alg="threefry")),
    }
    print(f"XLA:CPU, {rows} rows; best of {args.repeats} x 10 calls")
    for name, fn in ops.items():
        compiled = tf.function(fn, jit_compile=True)
        seed = tf.constant([1, 2])
        compiled(seed).numpy()  # compile
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            for _ in range(10):
                result = compiled(seed)
            result.numpy()
            best = min(best, (time.perf_counter() - started) / 10)
        print(f"{name:55s} {best * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
