"""`tfrecog quickstart`: the main job, end to end on the embedded MNIST subset, in a few minutes on 2 cores.

Train a VAE with a 2-D latent space, evaluate it, draw its figures, export its encoder to ONNX and check it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from tfrecog import data as data_lib
from tfrecog import plots, training
from tfrecog._tf import keras


class _TimeBar(keras.callbacks.Callback):
    """A tqdm bar over the training budget in seconds, showing epoch and ELBO."""

    def __init__(self, seconds):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=int(seconds), unit="s", desc="training",
                        bar_format="{l_bar}{bar}| {n}/{total} s {postfix}")
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.n = min(self.bar.total, int(time.time() - self.start))
        self.bar.set_postfix(epoch=epoch + 1, elbo=f"{logs.get('elbo', float('nan')):.2f}")

    def on_train_end(self, logs=None):
        self.bar.close()


def run(out_dir="quickstart_out", seconds: float = 120.0, samples: int = 1000, latent_size: int = 2,
        started: float | None = None):
    """Runs the quick start; returns a dict of the measured numbers. `started` is the process's start time."""
    t0 = started or time.time()
    out = Path(out_dir)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = data_lib.load("mnist5k", "train")
    test = data_lib.load("mnist5k", "test")
    print(f"data: {len(train)} train / {len(test)} test digits from {train.source} (statically binarized), "
          f"{train.event_size} pixels")

    config = training.default_config(
        "vae", "mnist5k", model={"latent_size": latent_size, "hidden_sizes": [500]}, epochs=100000,
        optimizer={"class_name": "Adam", "config": {"learning_rate": 1e-3}}, checkpoint_every_seconds=30,
    )
    print(f"model: VAE 784-500-{latent_size}-500-784 (tanh), SGVB estimator B, Adam 1e-3, batch 100, "
          f"XLA with 50 updates per call; training for {seconds:.0f} s")
    bar = _TimeBar(seconds)
    model, state = training.train(config, run_dir, verbose=0, max_seconds=seconds, callbacks=[bar])
    print(f"trained {state['epoch']} epochs ({state['updates']} updates) in {state['wall_seconds']:.1f} s")

    metrics = model.evaluate(test.x, verbose=0, return_dict=True)
    from tfrecog.evaluate import log_likelihood

    ll = log_likelihood(model, test.x, samples=samples, batch_size=100)
    print(f"test ELBO (1 sample): {metrics['elbo']:.2f} nats")
    print(f"test log-likelihood (importance sampling, K={samples}): {ll.log_likelihood:.2f} +- {ll.stderr:.2f} nats")

    shape = test.image_shape
    plots.image_grid(model.sample(100, seed=0).numpy(), shape, out / "samples.png", title="samples (Bernoulli means)")
    plots.reconstructions(test.x[:50], model.reconstruct(test.x[:50], seed=0).numpy(), shape,
                          out / "reconstructions.png")
    means = model.encode(test.x).mean().numpy()
    points, axis_labels = plots.embed_2d(means)
    plots.embedding(points, test.y, out / "embedding.png", title="test digits: posterior means E[z|x]",
                    axis_labels=axis_labels)
    plots.learning_curves(run_dir / "history.csv", out / "curves.png", keys=("elbo",))

    from tfrecog import export

    onnx_path = export.encoder(model, out / "encoder.onnx", format="onnx", metadata={"model_name": "quickstart-vae"})
    import tfrecog_runtime

    encoder = tfrecog_runtime.load(onnx_path)
    got = encoder(test.x)
    want = {k: v.numpy() for k, v in model.export_outputs(test.x).items()}
    worst = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    status = "OK" if worst < 1e-4 else "MISMATCH"
    print(f"ONNX encoder {onnx_path}: max |ONNX Runtime - Keras| over {len(test)} test digits = {worst:.2e} [{status}]")
    figures = ["samples.png", "reconstructions.png", "embedding.png", "curves.png"]
    print(f"wrote {', '.join(str(out / f) for f in figures)}")
    total = time.time() - t0
    print(f"quickstart total time: {total:.1f} s")
    if status != "OK":
        raise RuntimeError(f"exported encoder disagrees with Keras by {worst:.2e}")
    return {"elbo": metrics["elbo"], "log_likelihood": ll.log_likelihood, "onnx_max_abs_diff": worst,
            "seconds": total}
