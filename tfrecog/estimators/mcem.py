"""Monte Carlo EM with Hamiltonian (Hybrid) Monte Carlo, the baseline of Kingma & Welling (2014), section 5: per-example
HMC chains on the posterior p(z | x) (the E-step), a gradient step on the Monte-Carlo complete-data log-likelihood
(the M-step). The generative model alone is trained; the recognition model is neither needed nor touched.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from tfrecog._tf import tf, tfp

__all__ = ["HMCDraws", "JitteredStepSize", "MCEMChains", "MCEMSettings", "complete_data_loss", "hmc_posterior",
           "latent_parts", "m_step", "mcem_objective", "mcem_settings", "mcem_train_update", "pack_latents"]


@dataclasses.dataclass(frozen=True)
class MCEMSettings:
    """The E-step's HMC and the M-step's updates.

    num_leapfrog_steps: leapfrog steps per HMC transition (10 in the paper).
    num_burnin_steps: transitions discarded before the samples are kept (re-initialised chains start at the prior).
    num_results: posterior samples kept per example (the Monte-Carlo estimate of E[log p(x, z)] averages them).
    step_size: the initial leapfrog step size (then adapted per example).
    target_accept_prob: the acceptance rate the step size is adapted to (0.9 in the paper).
    adaptation_rate: the step size is multiplied or divided by (1 + rate) after each adapted transition.
    num_adaptation_steps: the transitions after which the step size is adapted; None: the first half of the
      burn-in, or every transition when there is no burn-in (persistent chains, which adapt on every visit).
    m_steps: weight updates made with one E-step's samples (5 in the paper).
    """

    num_leapfrog_steps: int = 10
    num_burnin_steps: int = 20
    num_results: int = 1
    step_size: float = 0.1
    target_accept_prob: float = 0.9
    adaptation_rate: float = 0.05
    m_steps: int = 1
    num_adaptation_steps: int | None = None
    step_size_jitter: float = 0.5

    def __post_init__(self):
        for name in ("num_leapfrog_steps", "num_results", "m_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MCEMSettings.{name} must be an integer >= 1; got {getattr(self, name)!r}")
        if int(self.num_burnin_steps) < 0:
            raise ValueError(f"MCEMSettings.num_burnin_steps must be an integer >= 0; got {self.num_burnin_steps!r}")
        if not 0 <= self.step_size_jitter < 1:
            raise ValueError(f"MCEMSettings.step_size_jitter must lie in [0, 1); got {self.step_size_jitter!r}")
        if not self.step_size > 0 or not 0 < self.target_accept_prob < 1 or not self.adaptation_rate >= 0:
            raise ValueError("MCEMSettings needs step_size > 0, 0 < target_accept_prob < 1 and adaptation_rate >= 0; "
                             f"got {self.step_size!r}, {self.target_accept_prob!r}, {self.adaptation_rate!r}")


def mcem_settings(model) -> MCEMSettings:
    """`MCEMSettings(**model.estimator_options)`: the settings a model built with `estimator="mcem"` was given
    (saved in its config, so a reloaded model trains on as it did), the defaults for the fields it left out."""
    return MCEMSettings(**(getattr(model, "estimator_options", None) or {}))


def latent_parts(model, latents) -> list:
    """The latents of `model` (a tensor, or a list of layers for a DLGM) as a flat list of tensors."""
    return tf.nest.flatten(latents)


def pack_latents(model, parts):
    """A flat list of tensors as the latent structure of `model` (the structure of its prior's samples)."""
    return tf.nest.pack_sequence_as(model.prior().dtype, list(parts))


class HMCDraws(NamedTuple):
    """What `hmc_posterior` returns.

    samples: the kept states, a flat list of [S, B, K_l] tensors (S = num_results), one per latent layer.
    final_state: the last state, a flat list of [B, K_l] tensors (where a persistent chain resumes).
    step_size: the adapted step sizes after the last transition, a flat list of [B, 1] tensors.
    acceptance: [B], the fraction of the kept transitions that were accepted.
    """

    samples: list
    final_state: list
    step_size: list
    acceptance: tf.Tensor


def hmc_posterior(model, x, seed, initial_state, step_size, settings: MCEMSettings, num_burnin_steps=None):
    """HMC chains on p(z | x), one per example of x: S = `settings.num_results` kept states after the burn-in.

    The target is log p(z | x) + const = log p(x, z) = `model.log_joint(x, z)` with gradient
    grad_z log p(z) + grad_z log p(x | z); each transition takes `num_leapfrog_steps` leapfrog steps
    (`tfp.mcmc.HamiltonianMonteCarlo`) and then every chain's step size is multiplied by (1 + rate) when that
    chain's acceptance probability exceeded `target_accept_prob` and divided by it otherwise
    (`tfp.mcmc.SimpleStepSizeAdaptation`, per chain: the step size has shape [B, 1]) during the first
    `num_adaptation_steps` transitions. By default that is the first half of the burn-in: a chain's adapted step
    size depends on where the chain has been, and the fixed-kernel transitions of the second half (which leave
    p(z | x) invariant) wash that dependence out before samples are kept; with all of the burn-in adapted, the
    kept first sample of a 3-leapfrog chain had a posterior spread about 6% too wide on the linear-Gaussian model
    (within the 3% sampling error with the second half fixed). Without burn-in (persistent chains) every
    transition adapts: an adaptive sampler, each of whose transitions is still a valid Metropolis-Hastings step
    for the step size it used.
    A trajectory (leapfrog steps x step size) near a multiple of 2 pi posterior standard deviations returns
    close to where it started: on the linear-Gaussian model, 5 or 10 leapfrog steps at the adapted step size
    made chains that hardly moved. Each transition therefore scales the step size by u ~ U(1 - j, 1 + j)
    (`step_size_jitter`, Neal 2011, section 5.4.2.2), which leaves every transition valid (u is drawn
    independently of the state) and breaks the resonance.

    Args:
      model: exposes `log_joint(x, z)` for z [1, B, ...] and `prior()` (its sample structure is the latents').
      x: float32 [B, D]; seed: int32 [2].
      initial_state: a flat list of [B, K_l] tensors (e.g. a prior draw, or a persistent chain's last state).
      step_size: a flat list of [B, 1] tensors (or a float).
      settings: `MCEMSettings`.
      num_burnin_steps: overrides `settings.num_burnin_steps`.

    Returns:
      `HMCDraws`.
    """
    initial_state = [tf.convert_to_tensor(s, tf.float32) for s in initial_state]
    batch = tf.shape(initial_state[0])[0]
    if not isinstance(step_size, (list, tuple)):
        step_size = [tf.fill([batch, 1], tf.constant(float(step_size), tf.float32)) for _ in initial_state]
    burnin = settings.num_burnin_steps if num_burnin_steps is None else int(num_burnin_steps)

    def target_log_prob(*parts):
        return model.log_joint(x, pack_latents(model, [p[None] for p in parts]))[0]

    def run(initial_state, step_size, seed):
        kernel = tfp.mcmc.HamiltonianMonteCarlo(target_log_prob, step_size=list(step_size),
                                                num_leapfrog_steps=int(settings.num_leapfrog_steps),
                                                store_parameters_in_results=True)
        kernel = JitteredStepSize(kernel, float(settings.step_size_jitter))
        kernel = tfp.mcmc.SimpleStepSizeAdaptation(
            kernel, num_adaptation_steps=int(adaptation),
            target_accept_prob=float(settings.target_accept_prob), adaptation_rate=float(settings.adaptation_rate))
        return tfp.mcmc.sample_chain(
            int(settings.num_results), current_state=initial_state, kernel=kernel, num_burnin_steps=burnin,
            trace_fn=lambda _, results: (results.inner_results.is_accepted, results.new_step_size), seed=seed)

    adaptation = settings.num_adaptation_steps
    if adaptation is None:
        adaptation = burnin // 2 if burnin else int(settings.num_results)
    if tf.executing_eagerly():  # TFP's chains run far faster traced than eagerly (a model's `build` calls this)
        run = tf.function(run, autograph=False)
    samples, (accepted, new_step) = run(initial_state, list(step_size), seed)
    samples = [tf.stop_gradient(s) for s in samples]
    return HMCDraws(samples, [s[-1] for s in samples], [tf.stop_gradient(s[-1]) for s in new_step],
                    tf.reduce_mean(tf.cast(accepted, tf.float32), axis=0))


class JitteredStepSize(tfp.mcmc.TransitionKernel):
    """Wraps a `tfp.mcmc.HamiltonianMonteCarlo` (built with `store_parameters_in_results=True`): each transition
    uses the step size held in the results times u ~ U(1 - jitter, 1 + jitter), one u per chain (the step size's
    shape), and hands back the results with the unjittered step size, for a step-size adaptation outside it."""

    def __init__(self, inner_kernel, jitter: float):
        self._parameters = {"inner_kernel": inner_kernel, "jitter": float(jitter)}

    @property
    def parameters(self):
        return self._parameters

    @property
    def inner_kernel(self):
        return self._parameters["inner_kernel"]

    @property
    def is_calibrated(self):
        return self.inner_kernel.is_calibrated

    def bootstrap_results(self, init_state):
        return self.inner_kernel.bootstrap_results(init_state)

    def one_step(self, current_state, previous_kernel_results, seed=None):
        jitter = self._parameters["jitter"]
        jitter_seed, step_seed = tfp.random.split_seed(seed, 2)
        accepted = previous_kernel_results.accepted_results
        base = accepted.step_size
        if jitter:
            u = tf.random.stateless_uniform(tf.shape(base[0]), jitter_seed, 1.0 - jitter, 1.0 + jitter)
            previous_kernel_results = previous_kernel_results._replace(
                accepted_results=accepted._replace(step_size=[b * u for b in base]))
        state, results = self.inner_kernel.one_step(current_state, previous_kernel_results, seed=step_seed)
        return state, results._replace(accepted_results=results.accepted_results._replace(step_size=base))


def complete_data_loss(model, x, samples):
    """-Q(theta) = -1/S sum_s mean_b log p(x_b, z_bs): the negative Monte-Carlo estimate of the expected
    complete-data log-likelihood E_{p(z | x; theta_old)}[log p(x, z; theta)] (samples held fixed); its gradient in
    theta at theta_old is, by Fisher's identity, an unbiased estimate of -grad_theta log p(x) when the samples come
    from the exact posterior. `samples` is a flat list of [S, B, K_l] tensors."""
    log_joint = model.log_joint(x, pack_latents(model, [tf.stop_gradient(s) for s in samples]))  # [S, B]
    return -tf.reduce_mean(log_joint)


def m_step(model, x, samples, settings: MCEMSettings):
    """`settings.m_steps` optimizer steps on the generative variables along the gradient of
    `complete_data_loss` + the weight penalty, with the same samples; returns the last loss (before its step)."""
    variables = model.generative_variables
    loss = tf.constant(0.0)
    for _ in range(int(settings.m_steps)):
        with tf.GradientTape() as tape:
            loss = complete_data_loss(model, x, samples)
            total = (loss + model.weight_penalty()) / tf.distribute.get_strategy().num_replicas_in_sync
        model.optimizer.apply(tape.gradient(total, variables), variables)
    return loss


def _diagnostics(model, x, seed, draws, complete_data):
    """The registry's metrics: the recognition model's single-sample bound (MCEM does not train it, so it is the bound
    of whatever q the model holds), the complete-data term, the acceptance rate and the mean step size."""
    z, log_q = model.sample_posterior(x, 1, seed)
    return {
        "elbo": tf.reduce_mean(model.log_joint(x, z) - log_q),
        "complete_data": complete_data,
        "acceptance": tf.reduce_mean(draws.acceptance),
        "step_size": tf.reduce_mean(draws.step_size[0]),
    }


def _e_step(model, x, seed, settings):
    """HMC chains re-initialised at a prior draw for every example; returns `HMCDraws`."""
    init_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    initial = latent_parts(model, model.prior().sample(tf.shape(x)[0], seed=init_seed))
    return hmc_posterior(model, x, chain_seed, initial, settings.step_size, settings)


def mcem_objective(model, x, seed, num_samples: int = 1):
    """`(-Q, diagnostics)` on one minibatch, with no update: E-step chains re-initialised at a prior draw and run for
    `num_burnin_steps` + `num_results` transitions, Q = `complete_data_loss`'s estimate of E[log p(x, z)]."""
    settings = mcem_settings(model)
    e_seed, q_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    draws = _e_step(model, x, e_seed, settings)
    loss = complete_data_loss(model, x, draws.samples)
    return loss, _diagnostics(model, x, q_seed, draws, -loss)


def mcem_train_update(model, x, seed):
    """One MCEM iteration on a minibatch with chains re-initialised at a prior draw (the registry's 'mcem'):

      E-step: z_bs ~ HMC on p(z | x_b; theta), s = 1..S, after the burn-in (`hmc_posterior`)
      M-step: `m_steps` x  theta <- optimizer step along grad_theta [-1/S sum_s mean_b log p(x_b, z_bs; theta)
                                                                    + weight penalty]

    Re-initialised chains need no per-example state, so this runs inside the fused training loop
    (`model.fit`); `MCEMChains` keeps persistent chains instead, as the paper does. Returns the metrics of
    `mcem_objective` and `loss` = penalty - Q.
    """
    settings = mcem_settings(model)
    e_seed, q_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    draws = _e_step(model, x, e_seed, settings)
    loss = m_step(model, x, draws.samples, settings)
    return {"loss": loss + model.weight_penalty(), **_diagnostics(model, x, q_seed, draws, -loss)}


class MCEMChains:
    """Persistent per-example HMC chains over a training set of N examples, for MCEM as Kingma & Welling ran it:
    each visit of a minibatch resumes its examples' chains (state and adapted step size) for
    `num_burnin_steps` + `num_results` transitions, stores where they stopped, and makes `m_steps` weight updates
    with the samples (the paper: one transition of 10 leapfrog steps, then 5 updates).

    Args:
      model: a built, compiled model (its `optimizer` takes the M-step).
      num_examples: N; chains start at a draw from the prior.
      settings: `MCEMSettings`.
      seed: int, for the initial draw and every visit's transitions.

    Example:
      >>> chains = MCEMChains(model, len(x), MCEMSettings(num_burnin_steps=0, m_steps=5))   # doctest: +SKIP
      >>> logs = chains.update(x[idx], idx, step=0)                                        # doctest: +SKIP
    """

    def __init__(self, model, num_examples: int, settings: MCEMSettings | None = None, seed: int = 0):
        self.model = model
        self.settings = settings or MCEMSettings(num_burnin_steps=0, m_steps=5)
        self.seed = int(seed)
        initial = latent_parts(model, model.prior().sample(int(num_examples), seed=tf.constant([self.seed, 0])))
        self.state = [tf.Variable(s, trainable=False) for s in initial]
        self.step_size = [tf.Variable(tf.fill([int(num_examples), 1], float(self.settings.step_size)),
                                      trainable=False) for _ in initial]
        self._update = tf.function(self._update_fn, jit_compile=False, reduce_retracing=True)

    def _update_fn(self, x, indices, seed):
        state = [tf.gather(v, indices) for v in self.state]
        step_size = [tf.gather(v, indices) for v in self.step_size]
        draws = hmc_posterior(self.model, x, seed, state, step_size, self.settings)
        for variable, value in zip(self.state, draws.final_state):
            variable.scatter_nd_update(indices[:, None], value)
        for variable, value in zip(self.step_size, draws.step_size):
            variable.scatter_nd_update(indices[:, None], value)
        loss = m_step(self.model, x, draws.samples, self.settings)
        return {"loss": loss + self.model.weight_penalty(), "complete_data": -loss,
                "acceptance": tf.reduce_mean(draws.acceptance), "step_size": tf.reduce_mean(draws.step_size[0])}

    def update(self, x, indices, step: int) -> dict:
        """One MCEM iteration on the examples `indices` (int [B]) whose data is x [B, D]; `step` seeds it."""
        logs = self._update(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(indices, tf.int32),
                            tf.constant([self.seed + 1, int(step)], tf.int32))
        return {name: float(value) for name, value in logs.items()}
