import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The zoo cards and weights of this checkout: with tfrecog installed in editable mode from another checkout,
# `tfrecog._zoo` (what `zoo.zoo_dir` prefers) would be that checkout's zoo/, not this one's.
if (REPO / "zoo").is_dir() and any((REPO / "zoo").glob("*.json")):
    from tfrecog import zoo as _zoo  # noqa: E402

    _zoo.zoo_dir = lambda: REPO / "zoo"


def import_runtime():
    """`tfrecog_runtime` when installed; from the source tree's export/ folder otherwise."""
    try:
        import tfrecog_runtime
    except ImportError:
        import importlib.util
        import sys

        spec = importlib.util.spec_from_file_location(
            "tfrecog_runtime", REPO / "export" / "__init__.py", submodule_search_locations=[str(REPO / "export")]
        )
        tfrecog_runtime = importlib.util.module_from_spec(spec)
        sys.modules["tfrecog_runtime"] = tfrecog_runtime
        spec.loader.exec_module(tfrecog_runtime)
    return tfrecog_runtime


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
