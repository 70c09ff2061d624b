"""Annealed importance sampling (Neal 2001), bidirectional Monte Carlo (Grosse et al. 2015) and the inference gaps
of Cremer et al. (2018) for every family, through the models' distribution API and `tfp.mcmc` transitions.

Re-exported by `tfrecog.evaluate`; this module imports nothing from it (no import cycle).
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from typing import NamedTuple

import numpy as np

from tfrecog._tf import keras, tf, tfd, tfp
from tfrecog.estimates import LogLikelihood
from tfrecog.models.sbn import SBN

__all__ = [
    "AISLogLikelihood",
    "BDMC",
    "GibbsSweep",
    "GibbsSweepResults",
    "InferenceGaps",
    "TRANSITIONS",
    "ais_batches",
    "ais_log_likelihood",
    "bdmc",
    "inference_gaps",
    "optimised_elbo",
    "sigmoid_schedule",
]

# Chains x examples annealed at once: the state, the networks' activations and their gradients for this many rows
# are all that is held, whatever the number of chains (more chains run as further chunks).
DEFAULT_ROWS_PER_CHUNK = 8192
TARGET_ACCEPT = 0.65  # HMC's acceptance target (Neal 2011; Wu et al. 2017 use the same for decoder-based models)
# Transitions for binary latents (SBN, fDARN); Gaussian latents always use HMC. The default was chosen by
# measurement on sbn-bmnist-200-200 and sbn-bmnist-200-200-200 (bench/ais_transitions.py, bench/AIS_SPEED.md).
TRANSITIONS = ("gibbs", "metropolis")
DEFAULT_BINARY_TRANSITION = "gibbs"


# ----------------------------------------------------------------------------------------------------------------
# Results


def _stderr(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


@dataclasses.dataclass
class AISLogLikelihood(LogLikelihood):
    """Result of `ais_log_likelihood`: the fields of `tfrecog.evaluate.LogLikelihood`, read for AIS.

    `per_example` is log (1/C) sum_c w_c over the C chains (`samples` = C); `per_example_elbo` is (1/C) sum_c log
    w_c, the AIS counterpart of the ELBO (a lower bound in expectation that the log-mean-exp tightens);
    `log_weight_std` is the spread of log w_c over the chains per example (small: the estimate has converged);
    `acceptance` is the mean acceptance rate of the transitions.
    """

    steps: int = 0
    log_weight_std: np.ndarray | None = None
    acceptance: float = float("nan")
    method: str = "ais"

    @property
    def chains(self) -> int:
        return self.samples

    def as_dict(self):
        return {
            **super().as_dict(),
            "method": self.method,
            "steps": self.steps,
            "chains": self.samples,
            "mean_log_weight_std": float(np.mean(self.log_weight_std)) if self.log_weight_std is not None else None,
            "acceptance": self.acceptance,
        }

    def __str__(self):
        return (
            f"AIS log p(x) ~= {self.log_likelihood:.3f} +- {self.stderr:.3f} (steps={self.steps}, "
            f"chains={self.samples}, n={self.num_examples}); mean log w {self.elbo:.3f}; "
            f"acceptance {self.acceptance:.2f}"
        )


@dataclasses.dataclass
class BDMC:
    """Result of `bdmc`: on data simulated from the model, forward AIS (stochastic lower bound of log p(x)) and
    reverse AIS from the exact latent (stochastic upper bound); `gap` = upper - lower, per example and on average.
    A small gap certifies that AIS with these settings is accurate on data like the model's own samples."""

    lower: float
    lower_stderr: float
    upper: float
    upper_stderr: float
    gap: float
    gap_stderr: float
    steps: int
    chains: int
    num_examples: int
    per_example_lower: np.ndarray
    per_example_upper: np.ndarray
    data: np.ndarray

    def as_dict(self):
        return {
            "lower": self.lower,
            "lower_stderr": self.lower_stderr,
            "upper": self.upper,
            "upper_stderr": self.upper_stderr,
            "gap": self.gap,
            "gap_stderr": self.gap_stderr,
            "steps": self.steps,
            "chains": self.chains,
            "num_examples": self.num_examples,
        }

    def __str__(self):
        return (
            f"BDMC: {self.lower:.3f} <= log p(x) <= {self.upper:.3f} (gap {self.gap:.3f} +- {self.gap_stderr:.3f}; "
            f"steps={self.steps}, chains={self.chains}, n={self.num_examples} simulated examples)"
        )


@dataclasses.dataclass
class InferenceGaps:
    """Result of `inference_gaps` (Cremer et al. 2018), per example and averaged (standard errors over examples):

      log p(x) - ELBO_amortised = [log p(x) - ELBO_opt] + [ELBO_opt - ELBO_amortised]
                                 = approximation gap    + amortisation gap

    log p(x) from AIS; ELBO_opt of the best per-example q in the recognition family; ELBO_amortised of the
    recognition network's q(h | x)."""

    log_likelihood: np.ndarray
    optimised_elbo: np.ndarray
    amortised_elbo: np.ndarray
    iterations: int
    converged: bool
    ais: AISLogLikelihood

    @property
    def approximation_gap(self) -> np.ndarray:
        return self.log_likelihood - self.optimised_elbo

    @property
    def amortisation_gap(self) -> np.ndarray:
        return self.optimised_elbo - self.amortised_elbo

    def as_dict(self):
        out = {}
        for name, values in [
            ("log_likelihood", self.log_likelihood),
            ("optimised_elbo", self.optimised_elbo),
            ("amortised_elbo", self.amortised_elbo),
            ("approximation_gap", self.approximation_gap),
            ("amortisation_gap", self.amortisation_gap),
        ]:
            out[name] = float(np.mean(values))
            out[f"{name}_stderr"] = _stderr(np.asarray(values))
        out.update(num_examples=len(self.log_likelihood), iterations=self.iterations, converged=self.converged,
                   ais_steps=self.ais.steps, ais_chains=self.ais.samples)
        return out

    def __str__(self):
        d = self.as_dict()
        return (
            f"log p(x) {d['log_likelihood']:.3f}; ELBO optimised {d['optimised_elbo']:.3f}, amortised "
            f"{d['amortised_elbo']:.3f}; approximation gap {d['approximation_gap']:.3f} +- "
            f"{d['approximation_gap_stderr']:.3f}, amortisation gap {d['amortisation_gap']:.3f} +- "
            f"{d['amortisation_gap_stderr']:.3f} (n={d['num_examples']})"
        )


# ----------------------------------------------------------------------------------------------------------------
# The annealing path


def sigmoid_schedule(steps: int, delta: float = 4.0) -> np.ndarray:
    """Inverse temperatures 0 = beta_0 < beta_1 < ... < beta_T = 1, T = steps, on the sigmoid schedule of Grosse
    et al. (2015):  beta_t = (s(t) - s(0)) / (s(T) - s(0)),  s(t) = sigmoid(delta (2 t / T - 1)),
    which spends more temperatures near both ends of the path, where the intermediate densities change fastest."""
    s = 1.0 / (1.0 + np.exp(-delta * (2.0 * np.arange(steps + 1) / steps - 1.0)))
    return (s - s[0]) / (s[-1] - s[0])


def _check_model(model):
    prior = getattr(model, "prior", None)
    if not callable(prior):
        raise ValueError(
            f"AIS anneals from the prior p(h): expected a model with a prior() method; got {type(model).__name__}"
        )
    try:
        prior()
    except NotImplementedError as err:
        name = type(model).__name__
        raise ValueError(f"AIS needs the prior p(h) of the model; {name}.prior() is not defined") from err
    if not model.built:
        model.build((None, model.event_size))


def _check_counts(**counts):
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")


def _split_densities(model, x, h):
    """(log p(h), log p(x | h)), each [C, B]: the two ends of the path p(h) p(x | h)^beta.

    SBNs hand over the per-layer terms of log p(x, h) (`log_joint_terms`: the observation first), since their
    `prior()` is the top layer's alone; the Gaussian families' `prior()` is the density of every latent."""
    if isinstance(model, SBN):
        terms = model.log_joint_terms(x, h)
        return tf.add_n(terms[1:]), terms[0]
    return model.prior().log_prob(h), model.observation_log_prob(x, h)


def _target_fn(model, x, beta, structured: bool):
    """log f_beta(h) = log p(h) + beta log p(x | h), unnormalised; as `tfp.mcmc` calls it, with the state parts."""

    def target(*parts):
        log_prior, log_lik = _split_densities(model, x, list(parts) if structured else parts[0])
        return log_prior + beta * log_lik

    return target


def _flip_proposal(flips: int):
    """A symmetric Metropolis proposal on binary states: flip `flips` units (uniform over all the latent units of
    all layers, drawn with replacement; a unit drawn twice flips back). The flipped set does not depend on the
    state and flipping is its own inverse, so q(h' | h) = q(h | h') and Metropolis' acceptance min(1, f(h')/f(h))
    leaves f invariant."""

    def new_state(parts, seed):
        sizes = [int(p.shape[-1]) for p in parts]
        batch_shape = tf.shape(parts[0])[:-1]
        index = tf.random.stateless_uniform(
            tf.concat([[flips], batch_shape], 0), seed, minval=0, maxval=sum(sizes), dtype=tf.int32
        )
        mask = tf.math.floormod(tf.reduce_sum(tf.one_hot(index, sum(sizes), dtype=parts[0].dtype), 0), 2.0)
        return [p + m - 2.0 * p * m for p, m in zip(parts, tf.split(mask, sizes, axis=-1), strict=True)]

    return new_state


# ----------------------------------------------------------------------------------------------------------------
# Gibbs sweeps for binary latents


def _context_kernel(layer, name: str):
    """W [context_size, units] of an affine sigmoid layer: row i is what context unit i adds to the logits."""
    if isinstance(layer, keras.layers.Dense):  # the categorical observation layer: softmax(W h_1 + b)
        return tf.convert_to_tensor(layer.kernel)
    if layer.hidden is not None:
        raise ValueError(f"transition='gibbs' needs affine generative layers; {name} ({layer.name}) has a tanh "
                         "hidden layer: use transition='metropolis'")
    output = layer.output_layer
    return tf.convert_to_tensor(output.context_kernel if layer.autoregressive else output.kernel)


class GibbsSweepResults(NamedTuple):
    """`GibbsSweep`'s kernel results: log f_beta at the current state [C, B], and the fraction of the latent units
    that changed in the last sweep [C, B] (0 after `bootstrap_results`)."""

    target_log_prob: tf.Tensor
    changed: tf.Tensor


class GibbsSweep(tfp.mcmc.TransitionKernel):
    """Systematic-scan single-site Gibbs (heat-bath) sweep over the binary latents of an SBN / fDARN, leaving

      f_beta(h) = p(h) p(x | h)^beta,   p(h) = p(h_L) prod_{l<L} p(h_l | h_{l+1}),

    invariant. Layers bottom (h_1) to top, units in order; unit i of layer l is redrawn from its exact conditional

      h_li ~ Bernoulli(sigmoid(d_li)),   d_li = log f_beta(h_li = 1, rest) - log f_beta(h_li = 0, rest)
      d_li = a_li                                                            its own logit in p(h_l | h_{l+1})
           + sum_{j>i} [log Ber(h_lj; a0_lj + U_ji) - log Ber(h_lj; a0_lj)]   fDARN: the later units of its layer
           + s_l sum_d [log Ber(c_d; b0_d + W_id) - log Ber(c_d; b0_d)]         its child layer c (h_{l-1}, or x)

    with a0 and b0 the logits of the layer and of its child at h_li = 0, U the layer's masked (strictly
    triangular) kernel, W the child's context kernel (row i: what h_li adds to the child's logits), and s_l = beta
    for the bottom layer (whose child is x, the term p(x | h_1)^beta) and 1 above. For word counts the child term
    is sum_w x_w W_iw - N (logsumexp(b0 + W_i) - logsumexp(b0)), N = sum_w x_w. The logits of every layer and
    of x are computed once per sweep and kept exact by adding +-U_i (own layer) and +-W_i (child) when h_li
    toggles, so a sweep costs about one forward pass of arithmetic (in sum_l K_l sequential steps; see
    `one_step`). `GibbsSweepResults.changed`, the fraction of the units that changed, is what AIS reports as
    the acceptance of this transition.

    Each single-site update leaves f_beta invariant, so the sweep does (it is calibrated; not reversible, which
    AIS does not need). Layers with a tanh hidden layer have no such incremental form: a one-line error.

    Args:
      model: an `SBN` (any number of layers, factorial or autoregressive within layers, Bernoulli or categorical
        observation).
      x: the data [B, D]; states are lists of [..., B, K_l] tensors (bottom first), e.g. [C, B, K_l] chains.
      beta: the inverse temperature.
    """

    def __init__(self, model, x, beta, name: str | None = None):
        if not isinstance(model, SBN):
            raise ValueError(f"GibbsSweep needs binary latents (an SBN or fDARN); got {type(model).__name__}")
        self._parameters = dict(model=model, x=x, beta=beta, name=name)
        self._model = model
        self._x = tf.convert_to_tensor(x, tf.float32)
        self._beta = tf.convert_to_tensor(beta, tf.float32)
        layers = [*model.generative_layers, model.prior_layer]  # the layer that scores h_l, bottom first
        self._own = layers
        self._child_kernels = [_context_kernel(model.observation_layer, "the observation layer"),
                               *[_context_kernel(layer, f"latent layer {k + 1}")
                                 for k, layer in enumerate(model.generative_layers)]]
        for k, layer in enumerate(layers):
            if layer.hidden is not None:
                _context_kernel(layer, f"latent layer {k + 1}")

    @property
    def parameters(self):
        return self._parameters

    @property
    def is_calibrated(self) -> bool:
        return True

    def _target(self, parts):
        log_prior, log_lik = _split_densities(self._model, self._x, parts)
        return log_prior + self._beta * log_lik

    def bootstrap_results(self, init_state):
        target = self._target(init_state)
        return GibbsSweepResults(target, tf.zeros_like(target))

    def _logits(self, h):
        """[a_1, ..., a_L] (each [..., B, K_l]: the logits of p(h_l | h_{l+1}) at h) and the logits of x [..., B, D]."""
        model, num = self._model, len(h)
        own = []
        for k, layer in enumerate(self._own):
            context = h[k + 1] if k + 1 < num else None
            a = layer.logits(h[k] if layer.autoregressive else None, context)
            own.append(tf.broadcast_to(a, tf.shape(h[k])))
        if model.likelihood == "categorical":
            obs = model.observation_layer(h[0])
        else:
            obs = model.observation_layer.logits(self._x, h[0])
        return own, obs

    def one_step(self, current_state, previous_kernel_results, seed=None):
        """One sweep: every unit of every layer resampled once from its conditional under f_beta (see the class).

        Per unit, with s = 1 - 2 h_li (+1: h_li is 0) and the logits b' = b + s W_i of the child were h_li toggled,
        log p(c | toggled) - log p(c | current) = s c.W_i - sum_d [softplus(b'_d) - softplus(b_d)] (Bernoulli);
        c.W_i is one matmul per layer (c does not change while layer l is swept), softplus(b) is carried and
        replaced where the unit toggles, so each unit costs one softplus per child logit (and per later unit of an
        autoregressive layer, whose s h_l.U_i is one matmul per layer too: only units j > i enter it, and those
        are not yet redrawn).
        """
        h = [tf.convert_to_tensor(p, tf.float32) for p in current_state]
        own, obs = self._logits(h)
        categorical = self._model.likelihood == "categorical"
        x = self._x
        seeds = tf.unstack(tf.random.experimental.stateless_split(tf.convert_to_tensor(seed, tf.int32), len(h)))
        changed = tf.zeros(tf.shape(h[0])[:-1])
        count = tf.reduce_sum(x, axis=-1)[..., None]  # words per document (categorical)
        for k in range(len(h)):
            units = int(h[k].shape[-1])
            noise = tf.random.stateless_uniform(tf.shape(h[k]), seeds[k])
            child_kernel = self._child_kernels[k]
            bernoulli_child = not (k == 0 and categorical)
            scale = self._beta if k == 0 else tf.constant(1.0)
            # [..., B, K_l]: c.W_i for every unit i of the layer (the linear part of the child's log-probability)
            child_linear = tf.linalg.matvec(child_kernel, x if k == 0 else h[k - 1])
            child_logits = obs if k == 0 else own[k - 1]
            child_logits = tf.broadcast_to(child_logits, tf.concat([tf.shape(h[k])[:-1], tf.shape(child_logits)[-1:]],
                                                                   0))
            child_norm = tf.nn.softplus(child_logits) if bernoulli_child else tf.reduce_logsumexp(
                child_logits, -1, keepdims=True)
            autoregressive = self._own[k].autoregressive
            ar_kernel = self._own[k].output_layer.masked_kernel() if autoregressive else tf.zeros([units, 0])
            own_linear = tf.linalg.matvec(ar_kernel, h[k]) if autoregressive else tf.zeros_like(h[k])
            own_norm = tf.nn.softplus(own[k]) if autoregressive else own[k][..., :0]
            eye = tf.eye(units)

            def body(i, h_l, a, own_norm, b, child_norm, moved, child_kernel=child_kernel, scale=scale,
                     child_linear=child_linear, bernoulli_child=bernoulli_child, ar_kernel=ar_kernel,
                     own_linear=own_linear, autoregressive=autoregressive, noise=noise, eye=eye):
                h_i = tf.gather(h_l, i, axis=-1)[..., None]  # [..., B, 1]
                sign = 1.0 - 2.0 * h_i  # +1: a toggle sets h_li to 1
                toggled = b + sign * tf.gather(child_kernel, i)  # the child's logits were h_li toggled
                if bernoulli_child:
                    toggled_norm = tf.nn.softplus(toggled)
                    norm_change = tf.reduce_sum(toggled_norm - child_norm, -1)
                else:
                    toggled_norm = tf.reduce_logsumexp(toggled, -1, keepdims=True)
                    norm_change = (count * (toggled_norm - child_norm))[..., 0]
                sign = sign[..., 0]
                # log p(c | h_li = 1) - log p(c | h_li = 0): the toggle's change of the child's log-probability,
                # times the sign that orients it from 0 to 1
                child = tf.gather(child_linear, i, axis=-1) - sign * norm_change
                logit = tf.gather(a, i, axis=-1) + scale * child
                if autoregressive:  # units j > i of the same layer see h_li through U_ji (U_ji = 0 for j <= i)
                    own_toggled = a + sign[..., None] * tf.gather(ar_kernel, i)
                    toggled_own_norm = tf.nn.softplus(own_toggled)
                    logit += tf.gather(own_linear, i, axis=-1) - sign * tf.reduce_sum(toggled_own_norm - own_norm, -1)
                new = tf.cast(tf.gather(noise, i, axis=-1) < tf.sigmoid(logit), tf.float32)
                flip = tf.not_equal(new, h_i[..., 0])[..., None]
                h_l = tf.where(flip, h_l + sign[..., None] * tf.gather(eye, i), h_l)
                b, child_norm = tf.where(flip, toggled, b), tf.where(flip, toggled_norm, child_norm)
                if autoregressive:
                    a, own_norm = tf.where(flip, own_toggled, a), tf.where(flip, toggled_own_norm, own_norm)
                return i + 1, h_l, a, own_norm, b, child_norm, moved + tf.cast(flip[..., 0], tf.float32)

            _, h[k], own[k], _, child_logits, _, changed = tf.while_loop(
                lambda i, *_, units=units: i < units, body,
                (tf.constant(0), h[k], own[k], own_norm, child_logits, child_norm, changed),
                maximum_iterations=units)
            if k == 0:
                obs = child_logits
            else:
                own[k - 1] = child_logits
        target = self._target(h)  # recomputed, not accumulated: the weights see no rounding drift of the logits
        total = float(sum(int(p.shape[-1]) for p in h))
        return h, GibbsSweepResults(target, changed / total)


class _Annealer:
    """One compiled AIS run over a chunk of chains for a batch of examples, any schedule direction.

    With states h_0 ~ f_{beta_0} (normalised) and transitions T_t leaving f_{beta_t} invariant:

      log w = sum_{t=1..T} [log f_{beta_t}(h_{t-1}) - log f_{beta_{t-1}}(h_{t-1})],   h_t ~ T_t(h_{t-1}, .)

    so E[w] = Z_{beta_T} / Z_{beta_0}: p(x) forward (beta 0 -> 1, h_0 ~ p(h)), 1 / p(x) reverse (beta 1 -> 0,
    h_0 ~ p(h | x) exactly). The difference of two targets at the same state is taken from the values `tfp.mcmc`
    computes anyway (the new kernel's `bootstrap_results`, the old kernel's accepted state), so each temperature
    costs one transition and one gradient evaluation more.

    Transitions: Gaussian latents, one `tfp.mcmc.HamiltonianMonteCarlo` step of `leapfrog_steps` leapfrog steps
    per temperature, its step size (one per example, shared by the chains) carried from one temperature to the
    next and adapted by `tfp.mcmc.SimpleStepSizeAdaptation` towards acceptance 0.65 (multiplied or divided by
    1 + `adaptation_rate` on the mean acceptance over the example's chains), as Wu et al. (2017) do for decoder
    models. Binary latents, `transition`:
      'gibbs': one systematic-scan Gibbs sweep per temperature (`GibbsSweep`): every unit h_li of every layer
        redrawn once from its exact conditional under f_beta,
          h_li ~ Bernoulli(sigmoid(log f_beta(h_li = 1, rest) - log f_beta(h_li = 0, rest))),
        the log-odds made of its own logit, the terms of the later units of its layer (fDARN) and beta times (for
        the bottom layer; 1 above) the change of its child layer's log-probability, with the logits updated
        incrementally (a sweep costs about one forward pass of arithmetic). Acceptance: the fraction of the
        units that changed in a sweep.
      'metropolis': `proposals` Metropolis steps (`tfp.mcmc.RandomWalkMetropolis` with the symmetric flip proposal
        of `_flip_proposal`), each one density evaluation. Acceptance: the mean of min(1, f(h') / f(h)).
    """

    def __init__(self, model, binary: bool, structured: bool, leapfrog_steps: int, proposals: int, flips: int,
                 adaptation_rate: float, jit_compile: bool, transition: str | None = None):
        self.model_ref = weakref.ref(model)
        self.binary = binary
        self.gibbs = binary and transition == "gibbs"
        self.structured = structured
        self.leapfrog_steps = leapfrog_steps
        self.proposals = proposals
        self.flips = flips
        self.adaptation_rate = adaptation_rate
        self.run = tf.function(self._run, jit_compile=jit_compile, reduce_retracing=True)

    def _kernel(self, x, beta, step_size):
        if self.gibbs:
            return GibbsSweep(self.model_ref(), x, beta)
        target = _target_fn(self.model_ref(), x, beta, self.structured)
        if self.binary:
            return tfp.mcmc.RandomWalkMetropolis(target, new_state_fn=_flip_proposal(self.flips))
        hmc = tfp.mcmc.HamiltonianMonteCarlo(target, step_size=step_size, num_leapfrog_steps=self.leapfrog_steps)
        return tfp.mcmc.SimpleStepSizeAdaptation(
            hmc, num_adaptation_steps=2**30, target_accept_prob=TARGET_ACCEPT, adaptation_rate=self.adaptation_rate
        )

    @staticmethod
    def _accepted_target(results):
        if isinstance(results, GibbsSweepResults):
            return results.target_log_prob, None
        inner = getattr(results, "inner_results", results)
        return inner.accepted_results.target_log_prob, inner.log_accept_ratio

    def _run(self, x, parts, betas, seed, step_size):
        """x [B, D]; parts: list of [C, B, K_l] starting states; betas [T + 1]; step_size: list of [B, 1].

        Returns (log w [C, B], mean acceptance probability [B], final step sizes)."""
        num_steps = tf.shape(betas)[0] - 1
        target0 = _target_fn(self.model_ref(), x, betas[0], self.structured)(*parts)

        def body(t, parts, log_w, previous, step_size, accept):
            kernel = self._kernel(x, betas[t], step_size)
            results = kernel.bootstrap_results(parts)
            current, _ = self._accepted_target(results)
            log_w = log_w + current - previous  # log f_t(h_{t-1}) - log f_{t-1}(h_{t-1})
            step_seed = tf.random.experimental.stateless_fold_in(seed, t)
            if self.gibbs:
                parts, results = kernel.one_step(parts, results, seed=step_seed)
                t_accept = results.changed
            elif self.binary:  # `proposals` Metropolis steps in a loop (unrolled, XLA would compile each copy)

                def propose(i, parts, results, total):
                    parts, results = kernel.one_step(
                        parts, results, seed=tf.random.experimental.stateless_fold_in(step_seed, i))
                    return i + 1, parts, results, total + tf.exp(tf.minimum(results.log_accept_ratio, 0.0))

                _, parts, results, t_accept = tf.while_loop(
                    lambda i, *_: i < self.proposals, propose,
                    (tf.constant(0), parts, results, tf.zeros_like(current)))
                t_accept = t_accept / self.proposals
            else:
                parts, results = kernel.one_step(parts, results, seed=step_seed)
                _, log_ratio = self._accepted_target(results)
                t_accept = tf.exp(tf.minimum(log_ratio, 0.0))
                step_size = [tf.reshape(v, [-1, 1]) for v in results.new_step_size]
            previous, _ = self._accepted_target(results)
            accept = accept + tf.reduce_mean(t_accept, axis=0)
            return t + 1, parts, log_w, previous, step_size, accept

        # Temperatures 1..T-1 each get a transition; the last only its weight update (T_T would not change w).
        batch = tf.shape(x)[0]
        init = (tf.constant(1), parts, tf.zeros_like(target0), target0, step_size, tf.zeros([batch]))
        _, parts, log_w, previous, step_size, accept = tf.while_loop(lambda t, *_: t < num_steps, body, init)
        final = _target_fn(self.model_ref(), x, betas[num_steps], self.structured)(*parts)
        log_w = log_w + final - previous
        transitions = tf.maximum(num_steps - 1, 1)
        return log_w, accept / tf.cast(transitions, tf.float32), step_size


_ANNEALERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _annealer(model, **settings) -> _Annealer:
    key = tuple(sorted(settings.items()))
    per_model = _ANNEALERS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = _Annealer(model, isinstance(model, SBN), **settings)
    return per_model[key]


def _as_parts(h):
    return list(h) if isinstance(h, (list, tuple)) else [h]


def _latent_structure(model) -> bool:
    """True if the model's latent h is a list of layers (DLGM, SBN), False if one tensor (VAE)."""
    _, h = model.sample_joint(1, tf.constant([0, 0], tf.int32))
    return isinstance(h, (list, tuple))


def _anneal(model, x, start_parts, betas, seed, chains_per_chunk, chains, settings, initial_step_size):
    """log w [chains, B] and mean acceptance [B] of AIS runs from `start_parts(chunk, seed)` ([c, B, K_l] each)."""
    structured = _latent_structure(model)
    annealer = _annealer(model, structured=structured, **settings)
    batch = int(x.shape[0])
    betas = tf.constant(betas, tf.float32)
    log_ws, accepts = [], []
    for index, first in enumerate(range(0, chains, chains_per_chunk)):
        chunk = min(chains_per_chunk, chains - first)
        chunk_seed = tf.random.experimental.stateless_fold_in(seed, index)
        init_seed, run_seed = tf.unstack(tf.random.experimental.stateless_split(chunk_seed, 2))
        parts = start_parts(chunk, init_seed)
        step = [tf.fill([batch, 1], float(initial_step_size)) for _ in parts]
        log_w, accept, _ = annealer.run(x, parts, betas, run_seed, step)
        log_ws.append(log_w.numpy())
        accepts.append(accept.numpy() * chunk)
    return np.concatenate(log_ws, axis=0).astype(np.float64), np.sum(accepts, axis=0) / chains


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """a [n, ...] padded to [size, ...] with copies of its last row (the compiled runs keep one shape)."""
    return np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)]) if len(a) < size else a


def _prior_parts(model, batch):
    """Starting states h_0 ~ p(h): [c, B, K_l] per layer, drawn with the model's ancestral sampler."""

    def draw(chunk, seed):
        _, h = model.sample_joint(chunk * batch, seed)
        return [tf.reshape(p, [chunk, batch, -1]) for p in _as_parts(h)]

    return draw


# ----------------------------------------------------------------------------------------------------------------
# Public estimators


def _transition(model, transition) -> str | None:
    """The binary latents' transition ('gibbs' or 'metropolis'; None: `DEFAULT_BINARY_TRANSITION`), checked;
    None for Gaussian latents (HMC), which take no transition."""
    if transition is not None and transition not in TRANSITIONS:
        raise ValueError(f"transition must be one of {', '.join(map(repr, TRANSITIONS))} (or None for the "
                         f"default); got {transition!r}")
    if not isinstance(model, SBN):
        if transition is not None:
            raise ValueError(f"transition={transition!r} is for binary latents (SBN, fDARN); "
                             f"{type(model).__name__} has Gaussian latents (HMC): leave transition unset")
        return None
    transition = transition or DEFAULT_BINARY_TRANSITION
    if transition == "gibbs":  # the one-line error for layers without an incremental conditional, now
        GibbsSweep(model, tf.zeros([1, model.event_size]), 1.0)
    return transition


def _settings(model, leapfrog_steps, proposals, flips, adaptation_rate, jit_compile, transition=None):
    _check_counts(leapfrog_steps=leapfrog_steps, proposals=proposals, flips=flips)
    if not 0.0 < float(adaptation_rate) < 1.0:
        raise ValueError(f"adaptation_rate must be in (0, 1); got {adaptation_rate!r}")
    return dict(leapfrog_steps=int(leapfrog_steps), proposals=int(proposals), flips=int(flips),
                adaptation_rate=float(adaptation_rate), jit_compile=bool(jit_compile),
                transition=_transition(model, transition))


def ais_batches(model, x, steps: int = 1000, chains: int = 16, seed: int = 0, batch_size: int = 100,
                start: int = 0, rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK, leapfrog_steps: int = 10,
                proposals: int = 10, flips: int = 1, adaptation_rate: float = 0.05, initial_step_size: float = 0.2,
                jit_compile: bool = True, transition: str | None = None):
    """Forward AIS batch by batch: yields `(first, log_w [chains, n], acceptance [n])` for x[first:first + n].

    The generator behind `ais_log_likelihood`, for callers that keep each batch as it finishes (the CLI writes
    them to disk). Batch b's randomness depends on (seed, start + b * batch_size) alone, so a run resumed at an
    example index gives the numbers an uninterrupted run would have. Arguments as in `ais_log_likelihood`.
    """
    _check_counts(steps=steps, chains=chains, batch_size=batch_size, rows_per_chunk=rows_per_chunk)
    _check_model(model)
    settings = _settings(model, leapfrog_steps, proposals, flips, adaptation_rate, jit_compile, transition)
    x = model.check_input(x)
    betas = sigmoid_schedule(int(steps))
    chains_per_chunk = max(1, min(int(chains), int(rows_per_chunk) // int(batch_size)))
    for first in range(0, len(x), batch_size):
        n = len(x[first : first + batch_size])
        batch = tf.constant(_pad(x[first : first + batch_size], batch_size))  # one shape: traced once
        batch_seed = tf.constant([int(seed), start + first], tf.int32)
        log_w, accept = _anneal(model, batch, _prior_parts(model, batch_size), betas, batch_seed, chains_per_chunk,
                                int(chains), settings, initial_step_size)
        yield start + first, log_w[:, :n], accept[:n]


def ais_result(log_w: np.ndarray, acceptance: np.ndarray, steps: int) -> AISLogLikelihood:
    """`AISLogLikelihood` from the log weights [C, N] of N examples: log-mean-exp and mean over the C chains."""
    log_w = np.asarray(log_w, np.float64)
    chains = log_w.shape[0]
    top = log_w.max(axis=0)
    values = top + np.log(np.mean(np.exp(log_w - top), axis=0))
    means = log_w.mean(axis=0)
    if not np.isfinite(values).all():
        raise FloatingPointError("AIS estimate is not finite; the model or data produce NaN/inf")
    spread = log_w.std(axis=0, ddof=1) if chains > 1 else np.zeros_like(values)
    return AISLogLikelihood(float(values.mean()), _stderr(values), float(means.mean()), _stderr(means), chains,
                            len(values), values, means, steps=int(steps), log_weight_std=spread,
                            acceptance=float(np.mean(acceptance)))


def ais_log_likelihood(model, x, steps: int = 1000, chains: int = 16, seed: int = 0, batch_size: int = 100,
                       rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK, leapfrog_steps: int = 10, proposals: int = 10,
                       flips: int = 1, adaptation_rate: float = 0.05, initial_step_size: float = 0.2,
                       jit_compile: bool = True, progress: bool = False,
                       transition: str | None = None) -> AISLogLikelihood:
    """Annealed importance sampling estimate of log p(x) per example (Neal 2001):

      f_beta(h) = p(h) p(x | h)^beta,   0 = beta_0 < ... < beta_T = 1 (`sigmoid_schedule`),   h_0 ~ p(h)
      log w_c = sum_{t=1..T} (beta_t - beta_{t-1}) log p(x | h_{t-1}),   h_t ~ T_t(h_{t-1}, .) leaving f_{beta_t}
      log p(x) ~= log (1/C) sum_{c=1..C} w_c

    E[w_c] = p(x), so the estimate is a stochastic lower bound (Jensen) that is exact as T grows, whatever the
    recognition model. Transitions: HMC with adapted step sizes for Gaussian latents (VAE, DLGM: z and the xi's);
    for binary latents (SBN, fDARN) by default one Gibbs sweep per temperature (`GibbsSweep`), every unit drawn
    from its exact conditional

      h_li ~ Bernoulli(sigmoid(log f_beta(h_li = 1, h_-li) - log f_beta(h_li = 0, h_-li))),

    or `proposals` Metropolis flips (transition='metropolis'); see `_Annealer`. The step-size adaptation uses the
    chains' own acceptance, which makes the weights very slightly dependent on it (as in Wu et al. 2017); the
    tests check the estimate against exact values. Every batch of examples runs its chains in one compiled call
    per chunk of at most `rows_per_chunk` chains x examples: memory does not grow with C.

    Args:
      model: a `LatentVariableModel` with a prior (VAE, DLGM, SBN).
      x: float32 [N, D] data (binary for Bernoulli models), finite.
      steps: T, the number of temperatures.
      chains: C, independent AIS runs per example.
      seed: makes the estimate reproducible.
      batch_size: examples per compiled call.
      rows_per_chunk: chains x examples annealed at once (memory bound).
      leapfrog_steps: leapfrog steps of each HMC transition (Gaussian latents).
      proposals, flips: Metropolis proposals per temperature and units flipped by each (binary latents,
        transition='metropolis').
      adaptation_rate, initial_step_size: HMC step-size adaptation (see `tfp.mcmc.SimpleStepSizeAdaptation`).
      progress: show a tqdm bar over batches.
      transition: binary latents only: 'gibbs' (one sweep per temperature) or 'metropolis' (`proposals` flips);
        None: `DEFAULT_BINARY_TRANSITION` ('gibbs', chosen by measurement: bench/AIS_SPEED.md). Must be None for
        Gaussian latents.

    Returns:
      `AISLogLikelihood`: per-example log p(x) estimates, their mean and standard error over examples, the mean
      log weight, the spread of log w over chains and the acceptance rate (HMC, Metropolis: the mean acceptance
      probability; Gibbs: the mean fraction of latent units that changed per sweep).

    Example:
      >>> result = ais_log_likelihood(model, x_test[:100], steps=500, chains=16)   # doctest: +SKIP
      >>> result.log_likelihood, result.per_example.shape                          # doctest: +SKIP
    """
    batches = ais_batches(model, x, steps, chains, seed, batch_size, 0, rows_per_chunk, leapfrog_steps, proposals,
                          flips, adaptation_rate, initial_step_size, jit_compile, transition)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=math.ceil(len(x) / batch_size), desc=f"AIS T={steps} C={chains}", unit="batch")
    log_ws, accepts = [], []
    for _, log_w, accept in batches:
        log_ws.append(log_w)
        accepts.append(accept)
    return ais_result(np.concatenate(log_ws, axis=1), np.concatenate(accepts), steps)


def bdmc(model, num_examples: int = 100, steps: int = 1000, chains: int = 16, seed: int = 0,
         batch_size: int = 100, rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK, leapfrog_steps: int = 10,
         proposals: int = 10, flips: int = 1, adaptation_rate: float = 0.05, initial_step_size: float = 0.2,
         jit_compile: bool = True, transition: str | None = None) -> BDMC:
    """Bidirectional Monte Carlo (Grosse et al. 2015) on data simulated from the model:

      (x_n, h_n) ~ p(x, h),  n = 1..N
      lower_n = log (1/C) sum_c w_c      forward AIS from h ~ p(h)                    E[lower_n] <= log p(x_n)
      upper_n = -log (1/C) sum_c w'_c    reverse AIS (beta 1 -> 0) from h_n, an exact  E[upper_n] >= log p(x_n)
                                         posterior sample, with E[w'_c] = 1 / p(x_n)

    Both bounds use the same schedule and transitions (settings as in `ais_log_likelihood`, `transition`
    included); the gap upper - lower bounds the error of forward AIS on
    such data: a gap near 0 says that these settings estimate log p(x) accurately (on real data, which is not
    drawn from the model, it is evidence, not a proof).

    Returns:
      `BDMC` with the mean bounds, their standard errors over examples, the gap, the per-example bounds and the
      simulated data.
    """
    _check_counts(num_examples=num_examples, steps=steps, chains=chains, batch_size=batch_size)
    _check_model(model)
    settings = _settings(model, leapfrog_steps, proposals, flips, adaptation_rate, jit_compile, transition)
    chains = int(chains)
    data_seed = tf.constant([int(seed), -1], tf.int32)
    x_all, h_all = model.sample_joint(int(num_examples), data_seed)
    x_all = np.asarray(x_all, np.float32)
    h_all = [np.asarray(p) for p in _as_parts(h_all)]
    betas = sigmoid_schedule(int(steps))
    chains_per_chunk = max(1, min(chains, int(rows_per_chunk) // int(batch_size)))
    lower, upper = [], []
    for first in range(0, len(x_all), batch_size):
        n = min(batch_size, len(x_all) - first)
        batch = tf.constant(_pad(x_all[first : first + n], batch_size))
        exact = [tf.constant(_pad(p[first : first + n], batch_size), tf.float32) for p in h_all]
        batch_seed = tf.constant([int(seed), first], tf.int32)
        forward_seed, reverse_seed = tf.unstack(tf.random.experimental.stateless_split(batch_seed, 2))
        log_w, _ = _anneal(model, batch, _prior_parts(model, batch_size), betas, forward_seed, chains_per_chunk,
                           chains, settings, initial_step_size)
        start_exact = lambda chunk, _seed, exact=exact: [tf.repeat(p[None], chunk, axis=0) for p in exact]  # noqa: E731
        log_w_rev, _ = _anneal(model, batch, start_exact, betas[::-1].copy(), reverse_seed, chains_per_chunk, chains,
                               settings, initial_step_size)
        lower.append(ais_result(log_w, np.zeros(batch_size), steps).per_example[:n])
        upper.append(-ais_result(log_w_rev, np.zeros(batch_size), steps).per_example[:n])
    lower, upper = np.concatenate(lower), np.concatenate(upper)
    gap = upper - lower
    return BDMC(float(lower.mean()), _stderr(lower), float(upper.mean()), _stderr(upper), float(gap.mean()),
                _stderr(gap), int(steps), chains, len(lower), lower, upper, x_all)


# ----------------------------------------------------------------------------------------------------------------
# Inference gaps


def _variational_family(model, x):
    """(initial parameters, make_q): the recognition model's family with free per-example parameters.

    VAE: q(z) = N(mu, diag(sigma^2)), (mu, log sigma) from the encoder. DLGM: prod_l q_l(xi_l), each layer's
    Gaussian head family (diagonal or rank-one precision) at the encoder's parameters; with top-down recognition,
    the encoder's own conditional structure with free per-example offsets of every head's parameters
    (`DLGM.offset_posterior`, starting at zero: the amortised q). SBN / fDARN: likewise the recognition model's
    own structure, prod_l prod_j Bernoulli(h_lj; sigmoid(a_lj(h_{l-1}) + d_lj)), with free per-example offsets
    d_l of each layer's logits (`SBN.offset_posterior`, starting at zero)."""
    if isinstance(model, SBN):  # the recognition model's own structure with per-example logit offsets
        offsets = [tf.zeros([tf.shape(x)[0], size]) for size in model.latent_sizes]
        return offsets, lambda p: model.offset_posterior(x, p), True
    if getattr(model, "top_down", False):  # DLGM with top-down recognition: per-example offsets of every head
        per_layer = [tuple(p) for p in model.recognition_parameters(x)]
        sizes = [len(p) for p in per_layer]
        offsets = [tf.zeros_like(t) for p in per_layer for t in p]

        def make_q(p):
            grouped, i = [], 0
            for s in sizes:
                grouped.append(tuple(p[i : i + s]))
                i += s
            return model.offset_posterior(x, grouped)

        return offsets, make_q, False
    if hasattr(model, "heads"):  # DLGM
        per_layer = [tuple(p) for p in model.recognition_parameters(x)]
        sizes = [len(p) for p in per_layer]
        params = [t for p in per_layer for t in p]

        def make_q(p):
            grouped, i = [], 0
            for s in sizes:
                grouped.append(tuple(p[i : i + s]))
                i += s
            return tfd.JointDistributionSequential(
                [head.make_distribution(g) for head, g in zip(model.heads, grouped, strict=True)])

        return params, make_q, False
    loc, log_scale = model.encoder_parameters(x)
    return [loc, log_scale], (lambda p: tfd.MultivariateNormalDiag(p[0], tf.exp(p[1]))), False


def optimised_elbo(model, x, samples: int = 16, learning_rate: float | None = None, max_iterations: int = 10000,
                   check_every: int = 100, tolerance: float = 0.001, patience: int = 3, eval_samples: int = 1000,
                   seed: int = 0, decays: int = 2):
    """max over per-example q_n in the recognition family of ELBO(q_n) = E_q[log p(x_n, h) - log q_n(h)], per
    example, by Adam from the encoder's output (`_variational_family`).

    Gradients: reparameterised for Gaussian latents, with log q at stopped parameters (Roeder et al. 2017: zero
    variance where q is the posterior, so the optimum is reached, not circled); for binary latents the
    score-function estimator with the leave-one-out baseline of the other K - 1 samples (Kool et al. 2019),
    NVIL's centring without a network:
      grad ~= (1/K) sum_k (l_k - (1/(K-1)) sum_{j != k} l_j) grad log q(h_k),   l_k = log p(x, h_k) - log q(h_k).
    Adam's step size starts at `learning_rate` (default 0.01 for Gaussian latents, 0.05 for binary ones) and is
    divided by 10 at each plateau, `decays` times: a fixed step leaves the parameters jittering around the optimum
    at a distance set by the step (with 0.1, the rank-one DLGM's optimised ELBO fell by 8.6 nats between updates 100
    and 1,500 instead of rising), and a small one from the start is slow under score-function noise.
    Plateau: every `check_every` updates the training ELBO averaged over the block is compared with the best block
    so far, both for the mean over examples and for each example. An example has stalled once `patience` blocks in
    a row failed to beat its best by `tolerance` nats (divided by 10 at each decay, as the step size; it stays
    stalled until the next decay, and keeps being optimised with the others); a plateau is reached when every
    example has stalled and the mean over examples has too (the mean is the less noisy test under score-function
    gradients, the per-example one keeps a slow example from being stopped by the others). The plateau at the last
    step size ends the optimisation (`converged`); reaching `max_iterations` first ends it with `converged` False.
    The returned ELBO is re-estimated with `eval_samples` fresh samples.

    Returns (elbo [B] float64, iterations, converged).
    """
    x = tf.convert_to_tensor(model.check_input(x))
    init, make_q, binary = _variational_family(model, x)
    if learning_rate is None:
        learning_rate = 0.05 if binary else 0.01
    if int(decays) < 0:
        raise ValueError(f"decays must be a non-negative integer; got {decays!r}")
    variables = [tf.Variable(tf.identity(p)) for p in init]
    optimizer = keras.optimizers.Adam(learning_rate)

    def log_weights(q, h):
        return model.log_joint(x, h) - q.log_prob(h)

    def block(step0):
        total = tf.zeros([tf.shape(x)[0]])
        for i in tf.range(check_every):
            s = tf.stack([tf.constant(int(seed), tf.int32), step0 + i])
            with tf.GradientTape() as tape:
                q = make_q(variables)
                if binary:
                    h = [tf.stop_gradient(t) for t in q.sample(samples, seed=s)]
                    l = log_weights(q, h)  # noqa: E741
                    loo = (tf.reduce_sum(l, 0, keepdims=True) - l) / (samples - 1)
                    surrogate = tf.reduce_mean(tf.stop_gradient(l - loo) * q.log_prob(h), 0)
                    loss = -tf.reduce_sum(surrogate)
                else:
                    h = q.sample(samples, seed=s)
                    # "Sticking the landing" (Roeder et al. 2017): log q at stopped parameters drops the score term,
                    # whose mean is zero and whose noise does not vanish at the optimum (it does not change E[grad]).
                    l = log_weights(make_q([tf.stop_gradient(v) for v in variables]), h)  # noqa: E741
                    loss = -tf.reduce_sum(tf.reduce_mean(l, 0))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            total += tf.reduce_mean(l, 0)
        return total / check_every

    block = tf.function(block)
    best, iterations, stalled, converged, stage = -np.inf, 0, 0, False, 0
    best_each = np.full(int(x.shape[0]), -np.inf)
    stalled_each = np.zeros(int(x.shape[0]), np.int64)
    done_each = np.zeros(int(x.shape[0]), bool)
    while iterations < max_iterations:
        each = block(tf.constant(iterations, tf.int32)).numpy().astype(np.float64)
        current = float(each.mean())
        iterations += check_every
        threshold = tolerance / 10.0**stage  # the progress a block makes shrinks with the step size
        stalled = stalled + 1 if current < best + threshold else 0
        best = max(best, current)
        stalled_each = np.where(each < best_each + threshold, stalled_each + 1, 0)
        best_each = np.maximum(best_each, each)
        done_each |= stalled_each >= patience
        if stalled >= patience and done_each.all():
            if stage == int(decays):
                converged = True
                break
            stage += 1
            optimizer.learning_rate.assign(learning_rate / 10.0**stage)
            stalled, stalled_each[:], done_each[:] = 0, 0, False
    q = make_q([tf.convert_to_tensor(v) for v in variables])
    h = q.sample(eval_samples, seed=tf.constant([int(seed), -1], tf.int32))
    return tf.reduce_mean(log_weights(q, h), 0).numpy().astype(np.float64), iterations, converged


def inference_gaps(model, x, steps: int = 1000, chains: int = 16, seed: int = 0, batch_size: int = 100,
                   elbo_samples: int = 1000, optimiser_samples: int = 16, learning_rate: float | None = None,
                   max_iterations: int = 10000, check_every: int = 100, tolerance: float = 0.001, patience: int = 3,
                   decays: int = 2, **ais_settings) -> InferenceGaps:
    """Where the nats go (Cremer, Li & Duvenaud 2018), per example:

      log p(x) - ELBO_amortised = (log p(x) - ELBO_opt) + (ELBO_opt - ELBO_amortised)
                                  approximation gap       amortisation gap

    log p(x) by `ais_log_likelihood` (steps, chains and its `ais_settings`, e.g. transition='gibbs'); ELBO_opt by
    `optimised_elbo` (the best per-example q in the recognition family, from the encoder's output, until the ELBO
    rises by less than `tolerance` nats per `check_every` updates at the last of `decays` tenfold step-size
    reductions); ELBO_amortised = mean of
    log p(x, h) - log q(h | x) over `elbo_samples` h ~ q(h | x) of the recognition network.

    Returns:
      `InferenceGaps` with the per-example values and their means (`as_dict`).
    """
    _check_counts(steps=steps, chains=chains, elbo_samples=elbo_samples, optimiser_samples=optimiser_samples,
                  max_iterations=max_iterations, check_every=check_every)
    x = model.check_input(x)
    ais = ais_log_likelihood(model, x, steps, chains, seed, batch_size, **ais_settings)
    optimised, amortised, iterations, converged = [], [], 0, True
    for first in range(0, len(x), batch_size):
        batch = x[first : first + batch_size]
        elbo, its, conv = optimised_elbo(model, batch, optimiser_samples, learning_rate, max_iterations, check_every,
                                         tolerance, patience, elbo_samples, seed + first, decays)
        optimised.append(elbo)
        iterations, converged = max(iterations, its), converged and conv
        log_w = model.log_importance_weights(tf.constant(batch), elbo_samples, tf.constant([int(seed), first]))
        amortised.append(tf.reduce_mean(log_w, 0).numpy().astype(np.float64))
    return InferenceGaps(ais.per_example, np.concatenate(optimised), np.concatenate(amortised), iterations,
                         converged, ais)

