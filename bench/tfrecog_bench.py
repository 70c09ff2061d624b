"""tfrecog's side of the benchmark suite: the models as a user builds them, trained by `fit` on arrays (the fused XLA
loop of `compile()`'s defaults) and evaluated by `tfrecog.evaluate.log_likelihood`.
"""

from __future__ import annotations

from .common import (
    BATCH_SIZE,
    EVENT_SIZE,
    LEARNING_RATE,
    ROWS_PER_CHUNK,
    Candidate,
    build_tfrecog_model,
)


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


def compiled_train_step(model_name: str, x, steps_per_execution: int = 50, shuffle_seed: int | None = None):
    """A bench model's training step alone, as `fit` runs it: (model, `tf.function(train_step, jit_compile=True)`,
    int32 row indices [M, S] of one call's S minibatches of M = 100 rows).

    The model is compiled with S = `steps_per_execution`, fitted one epoch on x (which builds it and sets fit's fused
    mode), and holds x resident as `fit` does; the indices are the first M S rows, in order, or of a permutation seeded
    by `shuffle_seed`.
    """
    import numpy as np

    from tfrecog._tf import tf

    steps = steps_per_execution
    model = compiled(MODELS[model_name](), steps_per_execution=steps)
    model.fit(x, batch_size=BATCH_SIZE, epochs=1, verbose=0)
    model._resident_data.hold(x)
    order = np.arange(len(x)) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(len(x))
    rows = order[: BATCH_SIZE * steps].astype(np.int32)
    indices = tf.constant(rows.reshape(steps, BATCH_SIZE).T.copy())
    return model, tf.function(model.train_step, jit_compile=True), indices


def evaluation_candidate(name: str, model_name: str, x, samples: int, rows_per_chunk: int = ROWS_PER_CHUNK,
                         batch_size: int = BATCH_SIZE, model=None, note: str = ""):
    """A unit is `log_likelihood(model, x, samples=K)` over the test points x (its compiled estimator is cached per
    model by `tfrecog.evaluate`, so the warm-up pays the compilation)."""
    from tfrecog.evaluate import log_likelihood

    model = model if model is not None else MODELS[model_name]()
    model.build((None, EVENT_SIZE))
    counter = [0]

    def run(units):
        for _ in range(int(units)):
            counter[0] += 1
            log_likelihood(model, x, samples=samples, batch_size=batch_size, rows_per_chunk=rows_per_chunk,
                           seed=counter[0])

    note = note or "log_likelihood (its compiled estimator is cached per model)"
    return Candidate(name, run, len(x), note)


def memory_work(model_name: str, samples: int, x):
    """For the memory probe: the IS evaluation of a fresh model, compilation included."""
    from tfrecog.evaluate import log_likelihood

    model = MODELS[model_name]()
    model.build((None, EVENT_SIZE))
    return lambda: log_likelihood(model, x, samples=samples, batch_size=BATCH_SIZE, rows_per_chunk=ROWS_PER_CHUNK)
