"""Training throughput of the paper VAE (784-500-20, tanh, SGVB-B, batch 100) under each execution mode of `fit`.

Usage: python -m bench.vae_modes [--epochs 5] [--out bench/results/vae_modes.json]
Modes: eager; tf.function (graph); XLA, one update per call; tf.function with 50 updates per call (fused loop);
XLA with 50 updates per call (tfrecog's default). Data: the 4,000 statically binarized digits of the embedded
MNIST subset, repeated to 20,000 rows so an epoch is long enough to time. Reports examples/s per epoch:
median and range over the timed epochs (the first epoch, with tracing and compilation, is not timed).
"""

import argparse
import time

import numpy as np

import tfrecog
from tfrecog._tf import keras, tf

MODES = {
    "eager": dict(run_eagerly=True, jit_compile=False, steps_per_execution=1),
    "tf.function": dict(jit_compile=False, steps_per_execution=1),
    "XLA, 1 update per call": dict(jit_compile=True, steps_per_execution=1),
    "tf.function, 50 updates per call": dict(jit_compile=False, steps_per_execution=50),
    "XLA, 50 updates per call (default)": dict(jit_compile=True, steps_per_execution=50),
}


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

    def on_train_begin(self, logs=None):
        self.times = []


def measure(x, mode, epochs):
    keras.utils.set_random_seed(0)
    model = tfrecog.VAE(event_size=784, latent_size=20, hidden_sizes=(500,))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), **MODES[mode])
    timer = EpochTimer()
    model.fit(x, batch_size=100, epochs=epochs + 1, verbose=0, callbacks=[timer])
    rates = len(x) / np.asarray(timer.times[1:])
    return {"median": float(np.median(rates)), "min": float(rates.min()), "max": float(rates.max()),
            "epochs_timed": epochs}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eager-rows", type=int, default=2000, help="rows per epoch for the (slow) eager mode")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    x = np.tile(tfrecog.data.load("mnist5k", "train").x, (5, 1))
    results = {}
    for mode in MODES:
        rows = x[: args.eager_rows] if mode == "eager" else x
        results[mode] = measure(rows, mode, args.epochs)
        r = results[mode]
        print(f"{mode:38s} {r['median']:9.0f} examples/s  (range {r['min']:.0f}-{r['max']:.0f})", flush=True)
    cpu = tfrecog.io.cpu_model()
    report = {"machine": f"{cpu}, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} intra-op "
                         f"threads, {__import__('os').cpu_count()} cores",
              "tensorflow": tf.__version__, "keras": keras.__version__, "results": results,
              "command": "python -m bench.vae_modes " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                 vars(args).items() if v is not None)}
    if args.out:
        tfrecog.io.write_json(args.out, report)


if __name__ == "__main__":
    main()
