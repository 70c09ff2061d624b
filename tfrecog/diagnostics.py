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
as a reduction of noise; the rows above it are on one scale. The estimators after NVIL are in the list too, each
with K samples (`samples`) where it takes several, on the same minibatch and weights:

    vimco    the recognition gradient of the K-sample bound with leave-one-out baselines (`estimators.vimco`)
    rws      reweighted wake-sleep's wake-phase q update, sum_k w~_k grad log q(h_k | x) (`estimators.rws`)
    disarm   DisARM's antithetic pair per layer, an unbiased ELBO gradient (`estimators.disarm`)

They estimate the gradients of different objectives (the ELBO, the K-sample bound, -KL(p(h|x) || q)), so the
variances compare noise, not which direction is better. Per layer l of q the report gives the trace of the
covariance of that layer's gradient and its signal-to-noise ratio ||mean_r g_r|| / sqrt(trace covariance) (the
length of the mean estimate against the spread of one estimate around it; with the mean taken over R draws, an
estimator whose expectation is 0 still shows about 1/sqrt(R)), and for each estimator the time of one estimate.
(The per-parameter average of |mean| / sd is not used: parameters whose gradient is zero up to rounding make it
arbitrary.) Estimators are looked up by name in `ESTIMATORS` (name -> `GradientEstimator`); add an entry
to compare another one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from tfrecog._tf import tf
from tfrecog.estimators import disarm, nvil, rws, vimco

__all__ = ["ESTIMATORS", "NVIL_ABLATION", "GradientEstimator", "check_model", "format_report", "gradient_variance",
           "layer_statistics", "nvil_variance_report", "plot_report"]


@dataclasses.dataclass(frozen=True)
class GradientEstimator:
    """A named single-sample estimator of the recognition gradient.

    `surrogate(model, x, seed, num_samples)` returns a scalar whose gradient with respect to
    `model.recognition_variables` is minus the estimate (a loss to minimise), as the estimators in
    `tfrecog.estimators` do; `multi_sample` estimators use `num_samples` = K, the others ignore it.
    """

    label: str
    surrogate: Callable
    settings: dict = dataclasses.field(default_factory=dict)
    multi_sample: bool = False


def _nvil_estimator(label: str, **flags) -> GradientEstimator:
    def surrogate(model, x, seed, num_samples=1):
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
    "vimco": GradientEstimator("VIMCO: K samples, leave-one-out baselines (K-sample bound)",
                               lambda model, x, seed, k: vimco(model, x, seed, num_samples=k)[0], multi_sample=True),
    "rws": GradientEstimator("reweighted wake-sleep, wake-phase q update (K samples)",
                             lambda model, x, seed, k: rws(model, x, seed, num_samples=k, q_update="wake")[0],
                             multi_sample=True),
    "disarm": GradientEstimator("DisARM: one antithetic pair per layer (ELBO)",
                                lambda model, x, seed, k: disarm(model, x, seed, num_samples=1)[0]),
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
                      jit_compile: bool = True, samples: int = 5, timing: dict | None = None) -> np.ndarray:
    """R independent estimates g_r of the recognition gradient on the minibatch x, as rows of [R, P] (float64),
    the parameters in the order of `model.recognition_variables`.

    Estimate r uses the seed (r, `seed`), so two estimators see the same stream of seeds. Args: `model`, an SBN or
    fDARN as trained; `x` [B, D]; `estimator`, a name in `ESTIMATORS`; `repeats`, R >= 2; `jit_compile`, compile
    the estimate with XLA (its random draws then come from XLA's generator, `tfrecog.layers.random`); `samples`, K
    for the multi-sample estimators (>= 2); `timing`, a dict that receives `seconds_per_estimate` (the median time
    of one estimate after the first, compiled, call).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: expected one of {', '.join(ESTIMATORS)}")
    if int(repeats) < 2:
        raise ValueError(f"repeats must be >= 2 to estimate a variance; got {repeats!r}")
    if ESTIMATORS[estimator].multi_sample and int(samples) < 2:
        raise ValueError(f"{estimator} takes K >= 2 samples; got samples={samples!r}")
    check_model(model)
    x = tf.constant(model.check_input(x), tf.float32)
    variables = model.recognition_variables
    surrogate = ESTIMATORS[estimator].surrogate
    k = int(samples)

    @tf.function(jit_compile=jit_compile)
    def estimate(seed_pair):
        with tf.GradientTape() as tape:
            loss = surrogate(model, x, seed_pair, k)
        return tf.concat([tf.reshape(-g, [-1]) for g in tape.gradient(loss, variables)], 0)

    rows, seconds = [], []
    for r in range(int(repeats)):
        started = time.perf_counter()
        rows.append(estimate(tf.constant([r, seed])).numpy())
        seconds.append(time.perf_counter() - started)
    if timing is not None:
        timing["seconds_per_estimate"] = float(np.median(seconds[1:]))
    return np.stack(rows).astype(np.float64)


def layer_statistics(model, estimates: np.ndarray) -> list[dict]:
    """Per layer of q (the variables under `q_l/`): the trace of the covariance of its part of the estimates and
    its signal-to-noise ratio ||mean_r g_r|| / sqrt(sum_j Var_r g_rj)."""
    layers, offset = {}, 0
    for variable in model.recognition_variables:
        size = int(np.prod(variable.shape))
        layers.setdefault(variable.path.split("/")[0], []).append(slice(offset, offset + size))
        offset += size
    rows = []
    for name, parts in layers.items():
        block = np.concatenate([estimates[:, part] for part in parts], axis=1)
        trace = float(block.var(axis=0, ddof=1).sum())
        rows.append({"layer": name, "trace_variance": trace,
                     "snr": float(np.linalg.norm(block.mean(axis=0)) / np.sqrt(trace)) if trace > 0 else None})
    return rows


def nvil_variance_report(model, x, estimators: Sequence[str] | None = None, repeats: int = 200,
                         seed: int = 29, jit_compile: bool = True, samples: int = 5) -> dict:
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
      samples: K of the multi-sample estimators (vimco, rws).

    Returns:
      {'batch', 'repeats', 'seed', 'samples', 'results': [{'estimator', 'setting', 'flags', 'trace_variance',
      'trace_ratio', 'samples', 'layers': [{'layer', 'trace_variance', 'snr'}], 'seconds_per_estimate'}]}.
    """
    names = list(NVIL_ABLATION if estimators is None else estimators)
    if not names:
        raise ValueError("estimators must name at least one estimator, e.g. ['reinforce', 'nvil']")
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator(s) {', '.join(unknown)}: expected names from {', '.join(ESTIMATORS)}")
    results = []
    for name in names:
        timing = {}
        estimates = gradient_variance(model, x, name, repeats=repeats, seed=seed, jit_compile=jit_compile,
                                      samples=samples, timing=timing)
        trace = float(estimates.var(axis=0, ddof=1).sum())
        results.append({"estimator": name, "setting": ESTIMATORS[name].label, "flags": ESTIMATORS[name].settings,
                        "samples": int(samples) if ESTIMATORS[name].multi_sample else 1,
                        "trace_variance": trace, "layers": layer_statistics(model, estimates), **timing})
    for row in results:
        row["trace_ratio"] = row["trace_variance"] / results[0]["trace_variance"]
    return {"batch": int(len(x)), "repeats": int(repeats), "seed": int(seed), "samples": int(samples),
            "results": results}


def format_report(report: dict) -> str:
    """The report of `nvil_variance_report` as a Markdown table: trace variance and its ratio to the first row, the
    signal-to-noise ratio of each layer of q, and the time of one estimate."""
    first = report["results"][0]["estimator"]
    layers = [row["layer"] for row in report["results"][0].get("layers", [])]
    lines = ["| estimator | setting | K | trace variance | / " + first + " |"
             + "".join(f" SNR {layer} |" for layer in layers) + " ms per estimate |",
             "| --- | --- | --- | --- | --- |" + " --- |" * len(layers) + " --- |"]
    for row in report["results"]:
        snr = {entry["layer"]: entry["snr"] for entry in row.get("layers", [])}
        seconds = row.get("seconds_per_estimate")
        lines.append(f"| {row['estimator']} | {row['setting']} | {row.get('samples', 1)} | "
                     f"{row['trace_variance']:.4g} | {row['trace_ratio']:.2e} |"
                     + "".join(f" {snr[layer]:.3g} |" if snr.get(layer) is not None else " - |" for layer in layers)
                     + (f" {seconds * 1e3:.2f} |" if seconds is not None else " - |"))
    return "\n".join(lines)


def plot_report(report: dict, path) -> None:
    """Two panels: the trace variance of each estimator's recognition gradient (log scale) and the signal-to-noise
    ratio of each layer of q, one group of bars per estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfrecog import io

    rows = report["results"]
    names = [f"{row['estimator']}" + (f" K={row['samples']}" if row.get("samples", 1) > 1 else "") for row in rows]
    layers = [entry["layer"] for entry in rows[0].get("layers", [])]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.barh(names, [row["trace_variance"] for row in rows], color="0.4")
    left.set_xscale("log")
    left.invert_yaxis()
    left.set_xlabel("trace of the covariance of the q-gradient")
    width = 0.8 / max(len(layers), 1)
    for i, layer in enumerate(layers):
        values = [next((e["snr"] for e in row["layers"] if e["layer"] == layer), None) or 0.0 for row in rows]
        right.barh([j + i * width for j in range(len(rows))], values, height=width, label=layer)
    right.axvline(1 / np.sqrt(report["repeats"]), color="0.5", linestyle="--", linewidth=1, label="1/sqrt(R)")
    right.set_yticks([j + width * (len(layers) - 1) / 2 for j in range(len(rows))], names)
    right.invert_yaxis()
    right.set_xlabel("signal-to-noise ratio ||mean g|| / sqrt(trace Cov g), per layer of q")
    right.legend(loc="lower right", fontsize="small")
    fig.suptitle(f"recognition-gradient estimators, {report['batch']} examples, R={report['repeats']}")
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
