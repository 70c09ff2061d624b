"""Figures: sample and reconstruction grids, 2-D embeddings of posterior means coloured by label, learning
curves.

Everything renders with matplotlib's Agg backend and is written atomically.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from tfrecog import data, io


def image_shape_for(dataset, event_size):
    """(height, width) to draw an example of `dataset` (its registry entry), else a square of `event_size`
    pixels where there is one, else a single row."""
    spec = data.DATASETS.get(dataset)
    if spec is not None and spec.image_shape is not None:
        return spec.image_shape
    side = int(round(math.sqrt(event_size)))
    return (side, side) if side * side == event_size else (1, event_size)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _plt()
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def tile(images, image_shape, columns=None):
    """Arranges rows of `images` [N, prod(image_shape)] into one mosaic with 1-pixel white borders: [rows*(H+1)+1,
    columns*(W+1)+1] for image_shape (H, W), with a trailing channel axis for (H, W, C) (colour images)."""
    image_shape = tuple(int(d) for d in image_shape)
    images = np.asarray(images).reshape(-1, *image_shape)
    n = len(images)
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    h, w = image_shape[:2]
    canvas = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, *image_shape[2:]), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = image
    return canvas


def interleave(x, x_reconstructed):
    """Rows x_0, x'_0, x_1, x'_1, ...: each input followed by its reconstruction (for a grid of even width)."""
    x = np.asarray(x)
    return np.stack([x, np.asarray(x_reconstructed)], axis=1).reshape(-1, x.shape[1])


def image_grid(images, image_shape, path, title=None, columns=None):
    """Writes a grid of images (rows of [N, H*W] in [0, 1]) to `path`."""
    plt = _plt()
    canvas = tile(images, image_shape, columns)
    fig, ax = plt.subplots(figsize=(6, 6 * canvas.shape[0] / canvas.shape[1]))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def reconstructions(x, x_reconstructed, image_shape, path, title="data (odd columns) and reconstructions (even)"):
    """Pairs each input with its reconstruction, side by side."""
    return image_grid(interleave(x, x_reconstructed), image_shape, path, title=title, columns=10)


def embedding(points, labels, path, title="posterior means", axis_labels=("z1", "z2")):
    """Scatter of 2-D points coloured by integer label (e.g. digit class)."""
    plt = _plt()
    points = np.asarray(points)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=4, alpha=0.8, vmin=-0.5, vmax=9.5)
        fig.colorbar(sc, ax=ax, ticks=range(10), label="digit")
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    return _save(fig, path)


def embed_2d(means):
    """The first two coordinates when the latent space is 2-D, else the top two principal components."""
    means = np.asarray(means, np.float64)
    if means.shape[1] <= 2:
        return means, ("z1", "z2")
    centred = means - means.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, ("PC 1 of E[z|x]", "PC 2 of E[z|x]")


def posterior_means(model, x, batch_size: int = 1000) -> np.ndarray:
    """E_q[h | x] of every example, [N, sum of latent sizes] (float64): the model's call, which returns the mean of
    q(h_1 | x), or for a layered DLGM the layers' means [mu_1, ..., mu_L] concatenated."""
    x = model.check_input(x)
    parts = []
    for start in range(0, len(x), batch_size):
        means = model(x[start : start + batch_size])
        if isinstance(means, (list, tuple)):
            means = np.concatenate([np.asarray(m) for m in means], axis=-1)
        parts.append(np.asarray(means, np.float64))
    return np.concatenate(parts)


def latent_embedding(model, x, labels, path, title: str = "posterior means E[z|x]") -> np.ndarray:
    """Plots the posterior means of x in two dimensions, coloured by `labels` (or one colour for None), and
    returns the [N, 2] points drawn.

    The points are the means m_n = E_q[h | x_n] themselves when the latent space has two dimensions, otherwise
    their projection on the top two principal components, (m_n - mean_n m_n) V_2, with V_2 the two leading right
    singular vectors of the centred means (`embed_2d`); Rezende et al. (2014), Figure 3b.
    """
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"labels must have one entry per example ({len(x)}); got {len(labels)}")
    points, axis_labels = embed_2d(posterior_means(model, x))
    embedding(points, labels, path, title=title, axis_labels=axis_labels)
    return points


def read_history(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        for key, value in row.items():
            try:
                out.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                out.setdefault(key, []).append(float("nan"))
    return out


def learning_curves(history_csv, path, keys=("elbo", "val_elbo")):
    """Plots per-epoch training and validation ELBO from a run's history.csv."""
    plt = _plt()
    history = read_history(history_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.asarray(history.get("epoch", [])) + 1
    for key in keys:
        values = np.asarray(history.get(key, []))
        if len(values) and np.isfinite(values).any():
            ax.plot(epochs, values, label=key.replace("val_", "validation ").replace("elbo", "ELBO"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per example (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
