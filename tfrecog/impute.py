"""Missing-data imputation with a trained recognition model (Rezende et al. 2014, section 6.3 and Figure 5).

A Markov chain alternates h ~ q(h | completion) and missing values ~ p(x | h); observed values never change.
"""

from __future__ import annotations

import math
import os
import weakref

import numpy as np

from tfrecog import checks, io
from tfrecog._tf import tf

__all__ = ["impute", "imputation_error", "missing_at_random", "missing_square", "plot_imputation"]


def _as_mask(mask, shape) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.float32)
    if mask.shape != shape:
        try:
            mask = np.broadcast_to(mask, shape)
        except ValueError:
            raise ValueError(
                f"mask must have the shape of x {list(shape)} (or broadcast to it); got {list(mask.shape)}"
            ) from None
    if not np.isin(mask, (0.0, 1.0)).all():
        raise ValueError("mask must hold 1 where a value is observed and 0 where it is missing; got other values")
    return np.ascontiguousarray(mask)


def impute(
    model,
    x,
    mask,
    steps: int = 100,
    seed: int = 0,
    use_mean: bool = False,
    init="noise",
    return_chain: bool = True,
    bounds="auto",
) -> np.ndarray:
    """Imputes missing values with the Markov chain of Rezende et al. (2014), for any `LatentVariableModel`.

      x_0 = mask * x + (1 - mask) * init
      for t = 1..T:   h_t ~ q(h | x_{t-1});   y_t ~ p(x | h_t)  (y_t = E[x | h_t] with `use_mean`)
                      x_t = mask * x + (1 - mask) * clip(y_t, low, high)

    The clip keeps the completions in the data's domain (`bounds`): a Gaussian p(x | h) puts mass outside [0, 1]
    for pixel data, and a model that predicts its noise scale per example predicts a wide one for an
    out-of-domain completion, so without the clip a chain can feed its own excursions back and diverge.

    When q(h | x) is the exact posterior, the chain's stationary distribution of the missing values is
    p(x_missing | x_observed); with an approximate q it is an approximation. Only the base API is used
    (`sample_posterior`, `decode`, `observation_mean`), so VAE, DLGM and SBN all work.

    Args:
      model: a trained `LatentVariableModel` with a recognition model.
      x: [N, D] data; entries where mask == 0 are ignored (they may be NaN).
      mask: [N, D] (or broadcastable, e.g. [D]): 1 where observed, 0 where missing.
      steps: T, the number of chain iterations (0 returns the initial completion).
      seed: makes the chain reproducible.
      use_mean: resample missing values by E[x | h] instead of a draw from p(x | h).
      init: starting values of the missing entries: 'noise' (coin flips for a Bernoulli model, U(0, 1) otherwise),
        'observed_mean' (per-column mean of the observed entries, 0.5 where a column has none) or a number.
      return_chain: return every completion x_0..x_T, [T + 1, N, D]; otherwise only x_T, [N, D].
      bounds: (low, high) for the resampled entries; None for no clip; 'auto' (the default): the model's
        `data_range`, (0, 1) for pixels (a no-op for Bernoulli draws), None for factor analysis and word counts.

    Returns:
      float32 numpy array [T + 1, N, D] or [N, D]. Observed entries equal x exactly.

    Example:
      >>> mask = missing_square((28, 28), 12, num_examples=10)
      >>> chain = impute(model, x_test[:10], mask, steps=50)          # doctest: +SKIP
      >>> plot_imputation(x_test[:10], mask, chain, (28, 28), "imputation.png")   # doctest: +SKIP
    """
    event_size = model.event_size
    raw = np.asarray(x)
    if raw.dtype.kind not in "biuf" or raw.ndim != 2 or raw.shape[1] != event_size:
        model.check_input(raw)  # raises its one-line error naming the dtype or shape expected
    x = raw.astype(np.float32)
    mask = _as_mask(mask, x.shape)
    observed = mask.astype(bool)
    if not np.isfinite(x[observed]).all():
        raise ValueError("x contains NaN or inf at observed entries (mask == 1); expected finite values there")
    model.check_input(np.where(observed, x, 0.0), domain="range")  # the observed entries lie in the data's domain
    steps = checks.integer(steps, "steps", 0, checks.LIMITS["steps"])
    rng = np.random.default_rng(seed)
    bernoulli = getattr(model, "likelihood", None) == "bernoulli"
    if isinstance(init, str) and init == "noise":
        fill = (rng.random(x.shape) < 0.5).astype(np.float32) if bernoulli else rng.random(x.shape, np.float32)
    elif isinstance(init, str) and init == "observed_mean":
        counts = observed.sum(axis=0)
        sums = np.where(observed, x, 0.0).sum(axis=0)
        fill = np.broadcast_to(np.where(counts > 0, sums / np.maximum(counts, 1), 0.5), x.shape).astype(np.float32)
    elif isinstance(init, (int, float)) and not isinstance(init, bool) and math.isfinite(init):
        fill = np.full(x.shape, init, np.float32)
    else:
        raise ValueError(f"init must be 'noise', 'observed_mean' or a finite number; got {init!r}")
    completion = np.where(observed, x, fill).astype(np.float32)
    if not model.built:
        model.build((None, event_size))

    step = _chain_step(model, bool(use_mean), _bounds(model, bounds))
    observed_t = tf.constant(observed)
    x_t = tf.constant(np.where(observed, x, 0.0).astype(np.float32))

    chain = [completion] if return_chain else None
    current = tf.constant(completion)
    for t in range(steps):
        current = step(current, x_t, observed_t, tf.constant([int(seed) % (2**31 - 1), t], tf.int32))
        if return_chain:
            chain.append(current.numpy())
    if return_chain:
        return np.stack(chain)
    return current.numpy()


def _bounds(model, bounds):
    """The (low, high) clip of `impute`'s proposals, or None."""
    if isinstance(bounds, str) and bounds == "auto":
        return model.data_range
    if bounds is None:
        return None
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        low = high = math.nan
    if not low < high:  # also false for NaN
        raise ValueError(f"bounds must be 'auto', None or (low, high) with low < high; got {bounds!r}")
    return low, high


# One compiled chain step per (model, use_mean, bounds), reused across calls so that repeated imputations do not
# retrace.
_STEPS = weakref.WeakKeyDictionary()


def _chain_step(model, use_mean: bool, bounds):
    cache = _STEPS.setdefault(model, {})
    key = (use_mean, bounds)
    if key not in cache:
        # The step holds the model weakly: a strong reference from the cache's value would keep its key alive.
        model_ref = weakref.ref(model)

        @tf.function(reduce_retracing=True)
        def step(current, x, observed, step_seed):
            """One transition: h ~ q(h | current), y ~ p(x | h) (or E[x | h]); observed entries kept."""
            model = model_ref()
            latent_seed, data_seed = tf.unstack(tf.random.experimental.stateless_split(step_seed, 2))
            h, _ = model.sample_posterior(current, 1, latent_seed)
            h = tf.nest.map_structure(lambda t: t[0], h)
            if use_mean:
                proposal = model.observation_mean(h)
            else:
                proposal = model.decode(h).sample(seed=data_seed)
            proposal = tf.cast(proposal, tf.float32)
            if bounds is not None:
                proposal = tf.clip_by_value(proposal, *bounds)
            return tf.where(observed, x, proposal)

        cache[key] = step
    return cache[key]


def missing_at_random(shape, fraction: float, seed: int = 0) -> np.ndarray:
    """A mask (1 observed, 0 missing) with round(fraction * D) entries missing in every row, chosen uniformly.

    Args:
      shape: [N, D] (or [D] for one row).
      fraction: the fraction of each row that is missing, in [0, 1].

    Returns:
      float32 mask of `shape`.
    """
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(f"shape must be [N, D] or [D] with positive sizes; got {list(shape)}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1]; got {fraction!r}")
    rows, cols = (1, shape[0]) if len(shape) == 1 else shape
    missing = int(round(float(fraction) * cols))
    rng = np.random.default_rng(seed)
    ranks = np.argsort(rng.random((rows, cols)), axis=1)
    mask = (ranks >= missing).astype(np.float32)
    return mask.reshape(shape)


def missing_square(image_shape, size: int, num_examples: int = 1, position="center", seed: int = 0) -> np.ndarray:
    """A mask (1 observed, 0 missing) hiding a size x size square of each flattened image (not missing at random).

    Args:
      image_shape: (height, width).
      size: side of the square, 1 <= size <= min(height, width).
      num_examples: N, rows of the mask.
      position: 'center', 'random' (top-left corner drawn uniformly per row so the square fits) or a
        (row, column) top-left corner.

    Returns:
      float32 mask [N, height * width].
    """
    if len(image_shape) != 2:
        raise ValueError(f"image_shape must be (height, width); got {image_shape!r}")
    height, width = (int(s) for s in image_shape)
    size = int(size)
    if not 1 <= size <= min(height, width):
        raise ValueError(f"size must be between 1 and {min(height, width)} for images of {height}x{width}; got {size}")
    if int(num_examples) < 1:
        raise ValueError(f"num_examples must be >= 1; got {num_examples!r}")
    n = int(num_examples)
    if isinstance(position, str) and position == "center":
        corners = np.tile([(height - size) // 2, (width - size) // 2], (n, 1))
    elif isinstance(position, str) and position == "random":
        rng = np.random.default_rng(seed)
        corners = np.stack([rng.integers(0, height - size + 1, n), rng.integers(0, width - size + 1, n)], axis=1)
    else:
        try:
            top, left = (int(p) for p in position)
        except (TypeError, ValueError):
            raise ValueError(f"position must be 'center', 'random' or (row, column); got {position!r}") from None
        if not (0 <= top <= height - size and 0 <= left <= width - size):
            raise ValueError(f"a {size}x{size} square at {(top, left)} does not fit in a {height}x{width} image")
        corners = np.tile([top, left], (n, 1))
    mask = np.ones((n, height, width), np.float32)
    for i, (top, left) in enumerate(corners):
        mask[i, top : top + size, left : left + size] = 0.0
    return mask.reshape(n, height * width)


def imputation_error(chain, x_true, mask) -> np.ndarray:
    """Mean squared error over the missing entries (mask == 0), per iteration.

      e_t = sum_{n,d} (1 - m_nd) (x_t,nd - x_nd)^2 / sum_{n,d} (1 - m_nd)     (0 when nothing is missing)

    Args:
      chain: [T + 1, N, D] from `impute` (or one completion [N, D]).
      x_true: [N, D] complete data.
      mask: [N, D] (or broadcastable): 1 observed, 0 missing.

    Returns:
      float64 array [T + 1] (a 0-d array for one completion).
    """
    chain = np.asarray(chain, np.float64)
    x_true = np.asarray(x_true, np.float64)
    if chain.shape[-2:] != x_true.shape or chain.ndim not in (2, 3):
        raise ValueError(
            f"chain must be [T + 1, N, D] or [N, D] with [N, D] = {list(x_true.shape)}; got {list(chain.shape)}"
        )
    missing = 1.0 - _as_mask(mask, x_true.shape).astype(np.float64)
    count = missing.sum()
    if count == 0:
        return np.zeros(chain.shape[:-2])
    return (np.square(chain - x_true) * missing).sum(axis=(-2, -1)) / count


def _default_iterations(steps: int, columns: int = 5) -> list[int]:
    if steps == 0:
        return [0]
    spaced = np.unique(np.round(np.geomspace(1, steps, num=min(columns, steps))).astype(int))
    return [int(t) for t in spaced]


def plot_imputation(
    x_true, mask, chain, image_shape, path, iterations=None, max_examples: int = 10, dpi: int = 100
) -> str:
    """Writes the layout of Rezende et al.'s Figure 5: one row per example; columns: the true data, the masked input
    (missing pixels in red), then the imputation at each chosen iteration.

    Args:
      x_true: [N, D] complete data; mask: [N, D] (1 observed, 0 missing); chain: [T + 1, N, D] from `impute`.
      image_shape: (height, width) with height * width = D.
      path: output file; the format follows the extension (png, pdf, svg, ...). Written atomically (a temporary file
        in the same folder, then `os.replace`), so a reader never sees half a figure.
      iterations: chain indices to show (default: up to five, spaced geometrically from 1 to T).
      max_examples: rows shown (the first examples).

    Returns:
      `path` as a string.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chain = np.asarray(chain, np.float32)
    x_true = np.asarray(x_true, np.float32)
    if chain.ndim != 3 or chain.shape[1:] != x_true.shape:
        raise ValueError(f"chain must be [T + 1, N, D] with [N, D] = {list(x_true.shape)}; got {list(chain.shape)}")
    height, width = (int(s) for s in image_shape)
    if height * width != x_true.shape[1]:
        raise ValueError(f"image_shape {height}x{width} does not match D = {x_true.shape[1]}")
    mask = _as_mask(mask, x_true.shape)
    steps = chain.shape[0] - 1
    iterations = _default_iterations(steps) if iterations is None else [int(t) for t in iterations]
    bad = [t for t in iterations if not 0 <= t <= steps]
    if bad:
        raise ValueError(f"iterations must lie in [0, {steps}] (the chain has {steps} steps); got {bad}")
    rows = min(int(max_examples), x_true.shape[0])
    columns = 2 + len(iterations)
    figure = Figure(figsize=(1.1 * columns * width / max(height, width) + 0.2, 1.1 * rows + 0.4), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    titles = ["true", "observed"] + [f"t = {t}" for t in iterations]
    for r in range(rows):
        grey = np.clip(x_true[r].reshape(height, width), 0.0, 1.0)
        masked = np.repeat(grey[..., None], 3, axis=-1)
        masked[mask[r].reshape(height, width) == 0] = (1.0, 0.0, 0.0)
        images = [grey, masked] + [chain[t, r].reshape(height, width) for t in iterations]
        for c, image in enumerate(images):
            ax = axes[r, c]
            if image.ndim == 3:
                ax.imshow(image, interpolation="nearest")
            else:
                ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    figure.tight_layout(pad=0.3)
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with io.atomic_path(path) as temporary:
        figure.savefig(temporary, format=extension)
    return path
