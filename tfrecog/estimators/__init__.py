"""Objectives as functions of (model, batch, settings): each returns `(loss, diagnostics)`.

Networks know nothing of estimators; a model's training step picks one by name from `ESTIMATORS`.
"""

from tfrecog.estimators.iwae import iwae
from tfrecog.estimators.nvil import NVILState, nvil
from tfrecog.estimators.sgvb import sgvb
from tfrecog.estimators.wake_sleep import wake_sleep

ESTIMATORS = {
    "sgvb_a": lambda model, x, seed, num_samples=1, kl_weight=1.0: sgvb(
        model, x, seed, num_samples, analytic_kl=False, kl_weight=kl_weight
    ),
    "sgvb_b": lambda model, x, seed, num_samples=1, kl_weight=1.0: sgvb(
        model, x, seed, num_samples, analytic_kl=True, kl_weight=kl_weight
    ),
    "iwae": iwae,
    "wake_sleep": lambda model, x, seed, num_samples=1: wake_sleep(model, x, seed),
}


def get(name: str):
    """The estimator function registered under `name`; a clear error lists the known names."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}: expected one of {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name]


# NVIL carries running statistics and a baseline network, so the SBN's own training step calls `nvil` directly.
__all__ = ["ESTIMATORS", "NVILState", "get", "iwae", "nvil", "sgvb", "wake_sleep"]
