import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def real_data_dir():
    """$TFRECOG_DATA_DIR, or the shared data folder beside the repository; None when neither exists."""
    env = os.environ.get("TFRECOG_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    for candidate in (REPO.parent / "shared" / "data",):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def data_dir():
    d = real_data_dir()
    if d is None:
        pytest.skip("real datasets not available (set TFRECOG_DATA_DIR)")
    return d


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.1, 0.9, size=12)
    return (rng.random((300, 12)) < probs).astype(np.float32)


def assert_blocked_weights_match(model, x, num_samples: int, seed, generic):
    """`model.log_importance_weights` (a family's blocked scoring, for speed) equals `generic`, the values of
    log p(x, h) - log q(h | x) [K, B] with h from `sample_posterior`, eagerly; and, under XLA (as tfrecog.evaluate
    runs it, where the random stream differs from TensorFlow's kernels), the base class's generic formulation
    compiled the same way. Float32 round-off only: rtol 1e-5, atol 1e-4."""
    from tfrecog._tf import tf
    from tfrecog.models.base import LatentVariableModel

    blocked = model.log_importance_weights(x, num_samples, seed)
    assert blocked.shape == (num_samples, x.shape[0])
    np.testing.assert_allclose(blocked, generic, rtol=1e-5, atol=1e-4)
    compiled_generic = tf.function(lambda x, seed: LatentVariableModel.log_importance_weights(
        model, x, num_samples, seed), jit_compile=True, autograph=False)
    compiled_blocked = tf.function(model.log_importance_weights, jit_compile=True, autograph=False)
    np.testing.assert_allclose(compiled_blocked(x, num_samples, seed), compiled_generic(x, seed), rtol=1e-5, atol=1e-4)
