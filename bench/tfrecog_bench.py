"""tfrecog's side of the benchmark suite: the models as a user builds them, trained by `fit` on arrays (the fused XLA
loop of `compile()`'s defaults) and evaluated by `tfrecog.evaluate.log_likelihood`.
"""

from __future__ import annotations

import contextlib
import sys

from common import (
    BATCH_SIZE,
    EVENT_SIZE,
    LEARNING_RATE,
    REPO,
    ROWS_PER_CHUNK,
    Candidate,
    build_tfrecog_model,
)

# Measure the checkout these scripts belong to, not whatever tfrecog is installed (running `python bench/run.py` puts
# bench/, not the repository, on sys.path, so an installed copy would otherwise be timed instead of the source tree).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def vae():
    """VAE 784-500-20 (tanh), Bernoulli decoder, SGVB estimator B (analytic KL), one sample."""
    return build_tfrecog_model("vae")


def sbn():
    """SBN 200-200-200 with affine conditionals, NVIL with every variance-reduction technique (the defaults)."""
    return build_tfrecog_model("sbn")


def dlgm():
    """DLGM with one layer of 50 latents, rank-one recognition covariance, 200 tanh hidden units both ways."""
    return build_tfrecog_model("dlgm")


MODELS = {"vae": vae, "sbn": sbn, "dlgm": dlgm}


def compiled(model, steps_per_execution: int = 50, jit_compile: bool = True):
    from tfrecog._tf import keras

    kwargs = {"jit_compile": jit_compile, "steps_per_execution": steps_per_execution}
    if hasattr(model, "baseline_optimizer"):
        kwargs["baseline_optimizer"] = keras.optimizers.Adam(LEARNING_RATE)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), **kwargs)
    return model


def training_candidate(name: str, model_name: str, x, steps_per_execution: int = 50, jit_compile: bool = True,
                       model=None, note: str = ""):
    """A unit is one epoch over x (shuffled, minibatches of 100); `run(n)` is `model.fit(x, epochs=n)`."""
    model = compiled(model if model is not None else MODELS[model_name](), steps_per_execution, jit_compile)

    def run(epochs):
        model.fit(x, batch_size=BATCH_SIZE, epochs=int(epochs), verbose=0, shuffle=True)

    return Candidate(name, run, len(x), note or f"model.fit (jit_compile={jit_compile}, "
                     f"steps_per_execution={steps_per_execution})")


@contextlib.contextmanager
def cached_estimator():
    """Prototype of a proposed change to `tfrecog.evaluate`: keep the compiled per-batch estimator between calls.

    `log_likelihood` builds a new `tf.function` (and so a new XLA compilation) on every call; caching it per
    (model, batch_size, K, chunk, jit_compile) makes repeated evaluations (validation every epoch, benchmarks)
    pay the compilation once.
    """
    from tfrecog import evaluate

    original = evaluate._batch_estimator

    def cached(model, batch_size, samples, chunk, jit_compile):
        key = (batch_size, samples, chunk, jit_compile)
        store = _ESTIMATORS.setdefault(id(model), {})
        if key not in store:
            store[key] = original(model, batch_size, samples, chunk, jit_compile)
        return store[key]

    evaluate._batch_estimator = cached
    try:
        yield
    finally:
        evaluate._batch_estimator = original


_ESTIMATORS: dict = {}


def evaluation_candidate(name: str, model_name: str, x, samples: int, rows_per_chunk: int = ROWS_PER_CHUNK,
                         batch_size: int = BATCH_SIZE, model=None, cache: bool = False, note: str = ""):
    """A unit is `log_likelihood(model, x, samples=K)` over the test points x (with `cache`, the proposed
    compiled-estimator cache is switched on during the call)."""
    from tfrecog.evaluate import log_likelihood

    model = model if model is not None else MODELS[model_name]()
    model.build((None, EVENT_SIZE))
    counter = [0]

    def run(units):
        with cached_estimator() if cache else contextlib.nullcontext():
            for _ in range(int(units)):
                counter[0] += 1
                log_likelihood(model, x, samples=samples, batch_size=batch_size, rows_per_chunk=rows_per_chunk,
                               seed=counter[0])

    note = note or ("log_likelihood, compiled estimator cached between calls (proposed)" if cache
                    else "log_likelihood as shipped (caches its compiled estimator per model since commit 73f78d2)")
    return Candidate(name, run, len(x), note)


def memory_work(model_name: str, samples: int, x):
    """For the memory probe: the IS evaluation of a fresh model, compilation included."""
    from tfrecog.evaluate import log_likelihood

    model = MODELS[model_name]()
    model.build((None, EVENT_SIZE))
    return lambda: log_likelihood(model, x, samples=samples, batch_size=BATCH_SIZE, rows_per_chunk=ROWS_PER_CHUNK)
