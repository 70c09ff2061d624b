"""Stateless random draws whose generator suits where they are traced.

Under XLA:CPU, with a seed computed at run time (as in a training step), `tf.random.stateless_uniform` drew
[20000, 200] uniforms in about 1.4 s with TensorFlow's default generator, 15 ms with `alg="philox"` and 8 ms with
`alg="threefry"` (`python bench/xla_ops.py`; bench/SPEED_NOTES.md, round 3). TensorFlow's own (non-XLA) kernels
reject ThreeFry. So the library's compiled paths (the fused training step under `jit_compile=True`,
`tfrecog.evaluate`'s estimator) trace their sampling inside `xla_random(True)`, and `uniform`, `normal` and `sample`
pick ThreeFry there and Philox everywhere else. A seed gives reproducible draws for each of the two generators, not
the same draws under both.
"""

from __future__ import annotations

import contextlib
import contextvars

from tfrecog._tf import tf, tfd

_COMPILED = contextvars.ContextVar("tfrecog_xla_random", default=False)


@contextlib.contextmanager
def xla_random(enabled: bool = True):
    """While tracing inside this context, `uniform` uses XLA's ThreeFry generator (only valid under XLA)."""
    token = _COMPILED.set(bool(enabled))
    try:
        yield
    finally:
        _COMPILED.reset(token)


def algorithm() -> str:
    """The generator `uniform` uses at this point of tracing: 'threefry' inside `xla_random(True)`, else 'philox'."""
    return "threefry" if _COMPILED.get() else "philox"


def uniform(shape, seed):
    """U[0, 1) draws of `shape` from the stateless seed (int32 [2]), by the generator of `algorithm()`."""
    return tf.random.stateless_uniform(shape, seed, alg=algorithm())


def normal(shape, seed):
    """N(0, 1) draws of `shape` from the stateless seed (int32 [2]), by the generator of `algorithm()`."""
    return tf.random.stateless_normal(shape, seed, alg=algorithm())


def sample(distribution, num_samples: int | None, seed):
    """`distribution.sample(num_samples, seed=seed)` for the library's Gaussians, with the generator of `algorithm()`.

    A `tfd.MultivariateNormalLinearOperator` (diagonal, rank-one precision, ...) is sampled through its own affine
    map, x = loc + scale.matvec(eps) with eps ~ N(0, I) drawn by `normal` (reparameterised, as TFP's `sample`); a
    `tfd.JointDistributionSequential` of such independent components samples each with its own part of the seed.
    Any other distribution falls back to its own `sample` (TFP's generator). Returns [num_samples, *batch, *event]
    (a list of those for a joint distribution); `num_samples=None` draws one sample without the leading dimension
    ([*batch, *event], sample shape ()).
    """
    if isinstance(distribution, tfd.JointDistributionSequential) and not any(
        callable(part) and not isinstance(part, tfd.Distribution) for part in distribution.model
    ):
        seeds = tf.random.experimental.stateless_split(seed, len(distribution.model))
        return [sample(part, num_samples, seeds[i]) for i, part in enumerate(distribution.model)]
    if isinstance(distribution, tfd.MultivariateNormalLinearOperator):
        leading = [] if num_samples is None else [num_samples]
        shape = tf.concat(
            [tf.constant(leading, tf.int32), distribution.batch_shape_tensor(), distribution.event_shape_tensor()], 0
        )
        eps = normal(shape, seed)
        draws = distribution.scale.matvec(eps)
        return draws if distribution.loc is None else distribution.loc + draws
    return distribution.sample(() if num_samples is None else num_samples, seed=seed)
