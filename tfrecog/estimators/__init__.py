"""Objectives as functions of (model, batch, settings): each returns `(loss, diagnostics)`.

Networks know nothing of estimators; a model's training step picks one by name from `ESTIMATORS`.
"""

from tfrecog.estimators.disarm import disarm
from tfrecog.estimators.iwae import iwae
from tfrecog.estimators.nvil import NVILState, nvil
from tfrecog.estimators.rws import rws
from tfrecog.estimators.sgvb import sgvb
from tfrecog.estimators.vimco import vimco
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
    "vimco": vimco,
    "rws": rws,
    "rws_sleep": lambda model, x, seed, num_samples=5: rws(model, x, seed, num_samples, q_update="sleep"),
    "rws_wake_sleep": lambda model, x, seed, num_samples=5: rws(model, x, seed, num_samples, q_update="wake+sleep"),
    "disarm": disarm,
}
# Score-function and antithetic estimators for binary latents (SBN, fDARN): their samples carry no gradient.
DISCRETE_ONLY = ("vimco", "rws", "rws_sleep", "rws_wake_sleep", "disarm")
# The fewest samples per example a multi-sample estimator is defined for (leave-one-out, normalised weights).
MIN_SAMPLES = {"vimco": 2, "rws": 2, "rws_sleep": 2, "rws_wake_sleep": 2}


def check(name: str, num_samples: int, discrete_latents: bool) -> None:
    """Construction-time checks of an estimator choice against a model family and K; one-line errors."""
    if name in DISCRETE_ONLY and not discrete_latents:
        expected = ", ".join(sorted(set(ESTIMATORS) - set(DISCRETE_ONLY)))
        raise ValueError(f"estimator {name!r} is for binary latents (SBN, fDARN); for continuous latents "
                         f"expected one of {expected}")
    if int(num_samples) < MIN_SAMPLES.get(name, 1):
        raise ValueError(f"estimator {name!r} needs num_samples >= {MIN_SAMPLES[name]}; got {num_samples}")


def get(name: str):
    """The estimator function registered under `name`; a clear error lists the known names."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}: expected one of {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name]


# NVIL carries running statistics and a baseline network, so the SBN's own training step calls `nvil` directly.
__all__ = ["DISCRETE_ONLY", "ESTIMATORS", "MIN_SAMPLES", "NVILState", "check", "disarm", "get", "iwae", "nvil", "rws",
           "sgvb", "vimco", "wake_sleep"]
