"""Stateless random draws whose generator suits where they are traced.

`tf.random.stateless_uniform` with TensorFlow's default generator (Philox) compiles under XLA:CPU into code that
draws [20000, 200] uniforms in 50-65 ms; the ThreeFry generator, which only XLA implements, draws them in 7 ms on the
same machine (bench/SPEED_NOTES.md, round 3). TensorFlow's own (non-XLA) kernels reject ThreeFry. So the library's
compiled paths (the fused training step under `jit_compile=True`, `tfrecog.evaluate`'s estimator) trace their
sampling inside `xla_random(True)`, and `uniform` picks ThreeFry there and Philox everywhere else. A seed gives
reproducible draws for each of the two generators, not the same draws under both (XLA's Philox already differed
from the kernels' before this).
"""

from __future__ import annotations

import contextlib
import contextvars

from tfrecog._tf import tf

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
