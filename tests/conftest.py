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
