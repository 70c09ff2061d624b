import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The zoo cards and weights of this checkout, here and in the CLI processes the tests start: with tfrecog installed
# from another checkout, `tfrecog._zoo` (what `zoo_dir` prefers otherwise) would be that checkout's zoo/.
if (REPO / "zoo").is_dir() and any((REPO / "zoo").glob("*.json")):
    os.environ["TFRECOG_ZOO_DIR"] = str(REPO / "zoo")


def real_data_dir():
    """$TFRECOG_DATA_DIR, or the shared data folder beside the repository; None when neither exists."""
    env = os.environ.get("TFRECOG_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    for candidate in (REPO.parent / "shared" / "data",):
        if candidate.is_dir():
            return candidate
    return None


def in_ci() -> bool:
    """True under CI (`CI` set to true, 1 or yes; `.ci/run` sets it), where the real datasets must be present."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def data_unavailable(reason: str):
    """Skips a test that needs real data, with the reason in the summary (`-rs`, on by default in pyproject.toml);
    under CI, which has ../shared/data, fails it instead, so that no real-data test passes by skipping there."""
    if in_ci():
        pytest.fail(f"{reason}; CI=true requires the real datasets (../shared/data or TFRECOG_DATA_DIR)",
                    pytrace=False)
    pytest.skip(f"needs real data: {reason}")


@pytest.fixture
def data_dir():
    d = real_data_dir()
    if d is None:
        data_unavailable("real datasets not available (set TFRECOG_DATA_DIR or add ../shared/data)")
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
