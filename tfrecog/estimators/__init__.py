"""Estimators: objectives as functions of a model's densities, and the one registry every model selects from.

An estimator is a function `objective(model, x, seed, num_samples=1, **settings) -> (loss, diagnostics)` of a
minibatch x [B, D] and a stateless seed int32 [2]: `loss` is the scalar to minimise (without the weight prior),
`diagnostics` a dict of scalars that includes `elbo`. Networks know nothing of estimators: a model names one
(`LatentVariableModel(estimator=...)`), its `objective` calls `get(name).objective`, and its training step
(`tfrecog.models.trainer.FusedTrainer.train_update`) takes the gradient of that loss, or hands the update to the
estimator's own `train_update` where it has one. This registry is the only place an estimator is chosen.

Adding an estimator (e.g. VIMCO, RWS or DisARM for SBNs):
  1. write its function in a module of this package, using only the model's documented densities
     (`sample_posterior`, `log_joint`, `log_importance_weights`, `recognition_log_prob`, `sample_joint`, and for
     layered models `sample_posterior_terms` / `log_joint_terms`), with the equation in its docstring;
  2. register it in `ESTIMATORS` below as an `Estimator`, which declares
     - `families`: the model families that support it, by `LatentVariableModel.family` ('vae', 'dlgm', 'sbn';
       an fDARN is an 'sbn'). Building a model with an estimator its family does not support is a one-line error
       that lists the ones it does (`get(name, family)`).
     - `train_update`: None (the default) when the update is one optimizer minimising `loss + weight penalty` over
       all trainable variables: reparameterised bounds, wake-sleep, and any single surrogate loss whose gradient
       is the estimator (VIMCO, RWS's wake losses, DisARM). A function `(model, x, seed) -> logs` when the
       estimator needs several optimizers or running state (NVIL: a baseline network with its own optimizer and
       running moments of the learning signal); it applies the update itself and returns the metrics to track
       ('loss' and the diagnostics, the same names the objective returns).
     - `gradients`: with a `train_update`, optionally its part within one replica, `(model, x, seed) -> (grads,
       logs, replica_stats)` with no all-reduce and no assignment, which `train_update(model, x, seed,
       gradients=...)` accepts compiled: under a strategy the trainer compiles it with XLA (a cross-replica merge
       cannot sit inside an XLA computation). NVIL: `nvil_gradients`, the moments of its learning signal as stats.
     - `kl_weight`: whether the objective takes `kl_weight` (the KL warm-up of `kl_warmup_steps`);
     - `settings`: None, or the frozen dataclass of its tunable settings (MCEM: `MCEMSettings`), which a model
       takes as `estimator_options` (a dict, saved in its config) and `settings(model)` rebuilds;
  3. add a test against exact answers (tests/test_<name>.py; `tfrecog.models.sbn.exact_elbo` and friends
     enumerate small SBNs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from tfrecog.estimators.disarm import disarm
from tfrecog.estimators.iwae import iwae
from tfrecog.estimators.mcem import MCEMChains, MCEMSettings, mcem_objective, mcem_train_update
from tfrecog.estimators.nvil import NVILState, nvil, nvil_gradients, nvil_objective, nvil_train_update
from tfrecog.estimators.rws import rws
from tfrecog.estimators.sgvb import sgvb
from tfrecog.estimators.vimco import vimco
from tfrecog.estimators.wake_sleep import wake_sleep

REPARAMETERISED = ("vae", "dlgm")  # families with continuous, reparameterised latents


@dataclasses.dataclass(frozen=True)
class Estimator:
    """A registered estimator: its objective, the families that support it, and its own update if it has one."""

    name: str
    objective: Callable
    families: tuple[str, ...]
    train_update: Callable | None = None
    gradients: Callable | None = None  # the part of train_update within one replica, compilable (below)
    kl_weight: bool = False
    min_samples: int = 1  # the fewest samples per example it is defined for (leave-one-out, normalised weights)
    settings: type | None = None  # the dataclass of `estimator_options` (None: the estimator takes no options)


def _sgvb_a(model, x, seed, num_samples: int = 1, kl_weight=1.0):
    """SGVB estimator A: Monte-Carlo KL (`sgvb`)."""
    return sgvb(model, x, seed, num_samples, analytic_kl=False, kl_weight=kl_weight)


def _sgvb_b(model, x, seed, num_samples: int = 1, kl_weight=1.0):
    """SGVB estimator B: analytic KL (`sgvb`)."""
    return sgvb(model, x, seed, num_samples, analytic_kl=True, kl_weight=kl_weight)


def _wake_sleep(model, x, seed, num_samples: int = 1):
    """Wake-sleep (`wake_sleep`); one wake sample per example whatever `num_samples`."""
    return wake_sleep(model, x, seed)


def _rws_sleep(model, x, seed, num_samples: int = 5):
    """Reweighted wake-sleep with the sleep-phase q update (`rws`)."""
    return rws(model, x, seed, num_samples, q_update="sleep")


def _rws_wake_sleep(model, x, seed, num_samples: int = 5):
    """Reweighted wake-sleep with both q updates, wake and sleep (`rws`)."""
    return rws(model, x, seed, num_samples, q_update="wake+sleep")


ESTIMATORS = {estimator.name: estimator for estimator in (
    Estimator("sgvb_a", _sgvb_a, REPARAMETERISED, kl_weight=True),
    Estimator("sgvb_b", _sgvb_b, REPARAMETERISED, kl_weight=True),
    Estimator("iwae", iwae, REPARAMETERISED),
    Estimator("wake_sleep", _wake_sleep, (*REPARAMETERISED, "sbn")),
    Estimator("nvil", nvil_objective, ("sbn",), train_update=nvil_train_update, gradients=nvil_gradients),
    # Score-function and antithetic estimators for binary latents: their samples carry no gradient.
    Estimator("vimco", vimco, ("sbn",), min_samples=2),
    Estimator("rws", rws, ("sbn",), min_samples=2),
    Estimator("rws_sleep", _rws_sleep, ("sbn",), min_samples=2),
    Estimator("rws_wake_sleep", _rws_wake_sleep, ("sbn",), min_samples=2),
    Estimator("disarm", disarm, ("sbn",)),
    # Monte Carlo EM: HMC chains on p(z | x) (re-initialised at the prior each update; `MCEMChains` keeps
    # persistent ones) and a gradient step on the complete-data log-likelihood; the recognition model is untouched.
    Estimator("mcem", mcem_objective, REPARAMETERISED, train_update=mcem_train_update, settings=MCEMSettings),
)}


def get(name: str, family: str | None = None) -> Estimator:
    """The estimator registered under `name`, checked against the model `family` when given; a clear error lists
    the known (or the family's) estimators."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}: expected one of {', '.join(ESTIMATORS)}")
    estimator = ESTIMATORS[name]
    if family is not None and family not in estimator.families:
        supported = [n for n, e in ESTIMATORS.items() if family in e.families]
        raise ValueError(f"{family} models support the estimators {', '.join(supported)}; got estimator {name!r}")
    return estimator


def check_options(name: str, options) -> dict:
    """A model's `estimator_options` for estimator `name`, checked: {} for None or an empty dict; otherwise a dict
    of the fields of the estimator's `settings` dataclass (e.g. `MCEMSettings` for 'mcem'), each validated by
    building the dataclass. One-line errors name the estimator and the options it accepts."""
    if options is None or (isinstance(options, dict) and not options):
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"estimator_options must be a dict of settings; got {type(options).__name__}")
    estimator = get(name)
    if estimator.settings is None:
        takes = ", ".join(repr(n) for n, e in ESTIMATORS.items() if e.settings is not None)
        raise ValueError(f"estimator {name!r} takes no estimator_options (those of {takes} do); got {sorted(options)}")
    fields = [f.name for f in dataclasses.fields(estimator.settings)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"unknown estimator_options {', '.join(map(repr, unknown))} for estimator {name!r}: "
                         f"expected some of {', '.join(fields)}")
    try:
        estimator.settings(**options)
    except TypeError as error:
        raise ValueError(f"estimator_options for {name!r}: {error}") from None
    return dict(options)


def check(name: str, family: str, num_samples: int) -> Estimator:
    """`get(name, family)`, and K = `num_samples` at least the estimator's `min_samples`: the construction-time check
    of a model's estimator, as one-line errors."""
    estimator = get(name, family)
    if int(num_samples) < estimator.min_samples:
        raise ValueError(f"estimator {name!r} needs num_samples >= {estimator.min_samples}; got {num_samples}")
    return estimator


__all__ = ["ESTIMATORS", "Estimator", "MCEMChains", "MCEMSettings", "NVILState", "check", "check_options", "disarm",
           "get", "iwae", "mcem_objective", "mcem_train_update", "nvil", "nvil_gradients", "nvil_objective",
           "nvil_train_update", "rws", "sgvb", "vimco", "wake_sleep"]
