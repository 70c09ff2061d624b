"""Diagnostics of trained models: how noisy the gradient estimators of their recognition networks are.

`gradient_variance` draws R independent single-sample estimates of the gradient of the ELBO with respect to the
recognition parameters phi on one fixed minibatch x, with the model, its baseline network and its running statistics
as trained (nothing is updated), and reports for each estimator the trace of their covariance,

    V = sum_j Var_r[g_rj]   (ddof = 1 over r = 1..R),

with its ratio to the first estimator of the list. The default list is the NVIL ablation of Mnih & Gregor (2014),
settings that add its variance-reduction techniques one at a time:

    g_r = (1/B) sum_b sum_i A_i(x_b, h_rb) grad_phi log q(h_rb,i | h_rb,i-1),   h_rb ~ q(h | x_b)

    reinforce                  A_i = l(x, h) = log p(x, h) - log q(h | x)       (the whole model's signal)
    reinforce+local            A_i = l_i(x, h)             (only the terms layer i's samples affect)
    reinforce+local+baselines  A_i = l_i(x, h) - C_i(x) - c_i   (input-dependent baseline, running mean)
    nvil                       A_i = (l_i(x, h) - C_i(x) - c_i) / max(1, sqrt(v_i))   (variance normalisation)

Variance normalisation divides by a constant, so the last row is a change of scale (an adaptive step size) as much
as a reduction of noise; the rows above it are on one scale. Estimators are looked up by name in `ESTIMATORS`
(name -> `GradientEstimator`); add an entry to compare another one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from tfrecog._tf import tf
from tfrecog.estimators import nvil

__all__ = ["ESTIMATORS", "NVIL_ABLATION", "GradientEstimator", "check_model", "format_report", "gradient_variance",
           "nvil_variance_report"]


@dataclasses.dataclass(frozen=True)
class GradientEstimator:
    """A named single-sample estimator of the recognition gradient.

    `surrogate(model, x, seed)` returns a scalar whose gradient with respect to `model.recognition_variables` is
    minus the estimate (a loss to minimise), as the estimators in `tfrecog.estimators` do.
    """

    label: str
    surrogate: Callable
    settings: dict = dataclasses.field(default_factory=dict)


def _nvil_estimator(label: str, **flags) -> GradientEstimator:
    def surrogate(model, x, seed):
        losses, _, _ = nvil(model, x, seed, model.nvil_state(), baseline=model.baseline_network, num_samples=1,
                            decay=model.signal_decay, **flags)
        return losses["recognition"]

    return GradientEstimator(label, surrogate, dict(flags))


_OFF = dict(centering=False, input_dependent_baseline=False, variance_normalization=False)
ESTIMATORS: dict[str, GradientEstimator] = {
    "reinforce": _nvil_estimator("plain REINFORCE (signal l(x, h) of the whole model)", **_OFF, local_signals=False),
    "reinforce+local": _nvil_estimator("+ local learning signals", **_OFF, local_signals=True),
    "reinforce+local+baselines": _nvil_estimator(
        "+ centring: running mean c and input-dependent baseline C(x)", centering=True,
        input_dependent_baseline=True, variance_normalization=False, local_signals=True),
    "nvil": _nvil_estimator("+ variance normalisation (all of NVIL)", centering=True, input_dependent_baseline=True,
                            variance_normalization=True, local_signals=True),
}
NVIL_ABLATION = ("reinforce", "reinforce+local", "reinforce+local+baselines", "nvil")


def check_model(model):
    """Raises ValueError unless `model` carries what the NVIL estimators use (an SBN or fDARN)."""
    missing = [name for name in ("nvil_state", "baseline_network", "recognition_variables", "signal_decay")
               if not hasattr(model, name)]
    if missing:
        raise ValueError(f"the NVIL estimators need an SBN or fDARN (a model with {', '.join(missing)}); got "
                         f"{type(model).__name__}")


def gradient_variance(model, x, estimator: str, repeats: int = 200, seed: int = 29,
                      jit_compile: bool = True) -> np.ndarray:
    """R independent single-sample estimates g_r of grad_phi ELBO on the minibatch x, as rows of [R, P] (float64).

    Estimate r uses the seed (r, `seed`), so two estimators see the same stream of seeds. Args: `model`, an SBN or
    fDARN as trained; `x` [B, D]; `estimator`, a name in `ESTIMATORS`; `repeats`, R >= 2; `jit_compile`, compile
    the estimate with XLA (its random draws then come from XLA's generator, `tfrecog.layers.random`).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    if int(repeats) < 2:
        raise ValueError(f"repeats must be >= 2 to estimate a variance; got {repeats!r}")
    check_model(model)
    x = tf.constant(model.check_input(x), tf.float32)
    variables = model.recognition_variables
    surrogate = ESTIMATORS[estimator].surrogate

    @tf.function(jit_compile=jit_compile)
    def estimate(seed_pair):
        with tf.GradientTape() as tape:
            loss = surrogate(model, x, seed_pair)
        return tf.concat([tf.reshape(-g, [-1]) for g in tape.gradient(loss, variables)], 0)

    return np.stack([estimate(tf.constant([r, seed])).numpy() for r in range(int(repeats))]).astype(np.float64)


def nvil_variance_report(model, x, estimators: Sequence[str] | None = None, repeats: int = 200,
                         seed: int = 29, jit_compile: bool = True) -> dict:
    """Trace of the covariance of each estimator's recognition gradient on x, and its ratio to the first:

      V_e = sum_j Var_r[g^e_rj],   ratio_e = V_e / V_{estimators[0]}

    Args:
      model: an NVIL-trained SBN or fDARN (its baseline network and running statistics are used as trained).
      x: the minibatch [B, D].
      estimators: names in `ESTIMATORS`; default `NVIL_ABLATION` (plain REINFORCE, then NVIL's techniques added
        one at a time).
      repeats: R, independent estimates per estimator.
      seed: estimate r of every estimator uses the seed (r, seed).
      jit_compile: compile each estimator with XLA (the default; False traces faster for tiny models).

    Returns:
      {'batch', 'repeats', 'seed', 'results': [{'estimator', 'setting', 'flags', 'trace_variance', 'trace_ratio'}]}.
    """
    names = list(NVIL_ABLATION if estimators is None else estimators)
    if not names:
        raise ValueError("estimators must name at least one estimator, e.g. ['reinforce', 'nvil']")
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {', '.join(unknown)}: expected names from {', '.join(ESTIMATORS)}")
    results = []
    for name in names:
        estimates = gradient_variance(model, x, name, repeats=repeats, seed=seed, jit_compile=jit_compile)
        trace = float(estimates.var(axis=0, ddof=1).sum())
        results.append({"estimator": name, "setting": ESTIMATORS[name].label, "flags": ESTIMATORS[name].settings,
                        "trace_variance": trace})
    for row in results:
        row["trace_ratio"] = row["trace_variance"] / results[0]["trace_variance"]
    return {"batch": int(len(x)), "repeats": int(repeats), "seed": int(seed), "results": results}


def format_report(report: dict) -> str:
    """The report of `nvil_variance_report` as a Markdown table (trace variance and ratio to the first row)."""
    first = report["results"][0]["estimator"]
    lines = ["| estimator | setting | trace variance | / " + first + " |", "| --- | --- | --- | --- |"]
    for row in report["results"]:
        lines.append(f"| {row['estimator']} | {row['setting']} | {row['trace_variance']:.4g} | "
                     f"{row['trace_ratio']:.2e} |")
    return "\n".join(lines)
