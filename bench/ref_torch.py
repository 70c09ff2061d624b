"""PyTorch references for the benchmark suite, written the way PyTorch users write them: `nn.Module`s, a Python loop
over shuffled minibatches, `loss.backward()` and Adam; `torch.compile` variants compile the loss (forward and, through
AOTAutograd, backward) and the optimizer step. Same architectures and estimators as tfrecog's models.

  VAE 784-500-20 (tanh), Bernoulli decoder, SGVB estimator B (analytic KL).
  SBN 200-200-200 (affine sigmoid conditionals) trained by NVIL: running-average centring, input-dependent baseline
  MLP (784-100 tanh-3), variance normalisation and local learning signals (Mnih & Gregor 2014).
  Importance-sampled log p(x): logsumexp over chunks of the K samples (ROWS_PER_CHUNK rows at once).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from .common import (
    BATCH_SIZE,
    EVENT_SIZE,
    LEARNING_RATE,
    NVIL_DECAY,
    ROWS_PER_CHUNK,
    SBN_BASELINE_HIDDEN,
    SBN_LAYERS,
    VAE_HIDDEN,
    VAE_LATENT,
    Candidate,
)

torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def bernoulli_log_prob(logits, value):
    """sum_d log Bernoulli(value_d; sigmoid(logits_d)) over the last axis (value broadcast to the logits)."""
    return -F.binary_cross_entropy_with_logits(logits, value.expand_as(logits), reduction="none").sum(-1)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(EVENT_SIZE, VAE_HIDDEN), nn.Tanh(),
                                     nn.Linear(VAE_HIDDEN, 2 * VAE_LATENT))
        self.decoder = nn.Sequential(nn.Linear(VAE_LATENT, VAE_HIDDEN), nn.Tanh(), nn.Linear(VAE_HIDDEN, EVENT_SIZE))

    def forward(self, x):
        """-ELBO averaged over the batch, estimator B: KL(q || N(0, I)) analytic, one reparameterised sample."""
        mean, log_scale = self.encoder(x).chunk(2, dim=-1)
        z = mean + log_scale.exp() * torch.randn_like(mean)
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = 0.5 * (mean.square() + (2 * log_scale).exp() - 1 - 2 * log_scale).sum()
        return (reconstruction + kl) / x.shape[0]

    def log_weights(self, x, samples: int):
        """log w_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x): [samples, B]."""
        mean, log_scale = self.encoder(x).chunk(2, dim=-1)
        eps = torch.randn((samples, *mean.shape), dtype=x.dtype)
        z = mean + log_scale.exp() * eps
        log_q = (-0.5 * eps.square() - log_scale - HALF_LOG_2PI).sum(-1)
        log_prior = (-0.5 * z.square() - HALF_LOG_2PI).sum(-1)
        return bernoulli_log_prob(self.decoder(z), x) + log_prior - log_q


class SBN(nn.Module):
    def __init__(self, sizes=SBN_LAYERS):
        super().__init__()
        self.sizes = tuple(sizes)
        contexts = (EVENT_SIZE, *sizes[:-1])
        self.recognition = nn.ModuleList(nn.Linear(c, s) for c, s in zip(contexts, sizes))  # q(h_l | h_{l-1})
        self.top_logits = nn.Parameter(torch.zeros(sizes[-1]))  # p(h_L)
        self.generative = nn.ModuleList(nn.Linear(sizes[k + 1], sizes[k]) for k in range(len(sizes) - 1))
        self.observation = nn.Linear(sizes[0], EVENT_SIZE)  # p(x | h_1)
        self.baseline = nn.Sequential(nn.Linear(EVENT_SIZE, SBN_BASELINE_HIDDEN), nn.Tanh(),
                                      nn.Linear(SBN_BASELINE_HIDDEN, len(sizes)))
        self.register_buffer("signal_mean", torch.zeros(len(sizes)))
        self.register_buffer("signal_variance", torch.zeros(len(sizes)))

    def sample_posterior(self, x, samples=None):
        """h_l ~ q(h_l | h_{l-1}) layer by layer; returns the samples and [log q(h_l | h_{l-1})]."""
        context = x if samples is None else x.expand(samples, *x.shape)
        h, log_q = [], []
        for layer in self.recognition:
            logits = layer(context)
            with torch.no_grad():
                sample = torch.bernoulli(torch.sigmoid(logits))
            h.append(sample)
            log_q.append(bernoulli_log_prob(logits, sample))
            context = sample
        return h, log_q

    def log_joint_terms(self, x, h):
        """[log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)]."""
        terms = [bernoulli_log_prob(self.observation(h[0]), x)]
        for k, layer in enumerate(self.generative):
            terms.append(bernoulli_log_prob(layer(h[k + 1]), h[k]))
        terms.append(bernoulli_log_prob(self.top_logits.expand_as(h[-1]), h[-1]))
        return terms

    def forward(self, x):
        """NVIL surrogate loss (model + recognition + baseline) on a minibatch; updates the running statistics."""
        h, log_q = self.sample_posterior(x)
        log_p = torch.stack(self.log_joint_terms(x, h))  # [L + 1, B]
        log_q = torch.stack(log_q)  # [L, B]
        num_layers = len(self.sizes)
        with torch.no_grad():
            # local signals l_i = sum_{j >= i-1} log p-terms - sum_{j >= i} log q-terms (reverse cumulative sums)
            signals = log_p.flip(0).cumsum(0).flip(0)[:num_layers] - log_q.flip(0).cumsum(0).flip(0)
        baseline = self.baseline(x).t()  # [L, B]
        mean, variance = self.signal_mean.clone()[:, None], self.signal_variance.clone()[:, None]
        residual = signals - baseline.detach()
        advantage = (residual - mean) / variance.sqrt().clamp(min=1.0)
        model_loss = -log_p.sum(0).mean()
        recognition_loss = -(advantage * log_q).sum(0).mean()
        baseline_loss = (signals - mean - baseline).square().sum(0).mean()
        with torch.no_grad():
            self.signal_mean.mul_(NVIL_DECAY).add_((1 - NVIL_DECAY) * residual.mean(1))
            self.signal_variance.mul_(NVIL_DECAY).add_((1 - NVIL_DECAY) * residual.var(1, unbiased=False))
        return model_loss + recognition_loss + baseline_loss

    def log_weights(self, x, samples: int):
        h, log_q = self.sample_posterior(x, samples)
        return sum(self.log_joint_terms(x, h)) - sum(log_q)


MODELS = {"vae": VAE, "sbn": SBN}


def _adam(model, fused: bool):
    # One Adam over every parameter: for the SBN identical to separate model and baseline Adams at the same rate.
    return torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=fused)


def training_candidate(name: str, model_name: str, x_numpy, compile: bool = False, fused_adam: bool = True):
    """A unit is one epoch over x (a fresh permutation, minibatches of 100)."""
    torch.manual_seed(0)
    model = MODELS[model_name]()
    optimizer = _adam(model, fused_adam)
    x = torch.from_numpy(x_numpy)
    loss_fn = model
    step = optimizer.step
    if compile:
        loss_fn = torch.compile(model)
        step = torch.compile(optimizer.step)
    steps = len(x) // BATCH_SIZE

    def run(epochs):
        for _ in range(int(epochs)):
            order = torch.randperm(len(x))
            for i in range(steps):
                batch = x[order[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]]
                loss = loss_fn(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                step()

    note = ("torch.compile(model) + torch.compile(optimizer.step)" if compile else "eager") + (
        ", Adam(fused=True)" if fused_adam else ", Adam(foreach)")
    return Candidate(name, run, steps * BATCH_SIZE, note)


def log_likelihood(log_weights, x, samples: int, batch_size: int = BATCH_SIZE, rows_per_chunk: int = ROWS_PER_CHUNK):
    """log (1/K) sum_k w_k per example, as a logsumexp over chunks of the K samples."""
    chunk = max(1, min(samples, rows_per_chunk // batch_size))
    results = []
    with torch.inference_mode():
        for batch in x.split(batch_size):
            partial = [torch.logsumexp(log_weights(batch, min(chunk, samples - start)), dim=0)
                       for start in range(0, samples, chunk)]
            results.append(torch.logsumexp(torch.stack(partial), dim=0) - math.log(samples))
    return torch.cat(results)


def evaluation_candidate(name: str, model_name: str, x_numpy, samples: int, compile: bool = False,
                         batch_size: int | None = None):
    """A unit is the IS estimate over the test points x (batches of `batch_size`, default all of x)."""
    batch_size = batch_size or len(x_numpy)
    torch.manual_seed(0)
    model = MODELS[model_name]().eval()
    x = torch.from_numpy(x_numpy)
    log_weights = torch.compile(model.log_weights) if compile else model.log_weights

    def run(units):
        for _ in range(int(units)):
            log_likelihood(log_weights, x, samples, batch_size)

    return Candidate(name, run, len(x), "torch.compile(log_weights)" if compile else "eager, inference_mode")


def memory_work(model_name: str, samples: int, x_numpy):
    model = MODELS[model_name]().eval()
    x = torch.from_numpy(x_numpy)
    return lambda: log_likelihood(model.log_weights, x, samples)


def encoder_function(keras_vae, compile: bool = False):
    """The tfrecog VAE's encoder weights in a torch encoder returning posterior mean and log-scale (numpy in/out)."""
    dense = keras_vae.encoder.dense_layers
    encoder = nn.Sequential(nn.Linear(EVENT_SIZE, VAE_HIDDEN), nn.Tanh(), nn.Linear(VAE_HIDDEN, 2 * VAE_LATENT))
    with torch.no_grad():
        for linear, layer in zip((encoder[0], encoder[2]), dense):
            linear.weight.copy_(torch.from_numpy(layer.kernel.numpy().T))
            linear.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    encoder.eval()
    forward = torch.compile(encoder) if compile else encoder

    def encode(x):
        with torch.inference_mode():
            out = forward(torch.from_numpy(x)).numpy()
        return {"mean": out[:, :VAE_LATENT], "log_scale": out[:, VAE_LATENT:]}

    return encode
