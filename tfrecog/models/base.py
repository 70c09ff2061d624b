"""The base class of every tfrecog model: a generative model p(x, h) with a recognition model q(h | x).

It owns what all families share: the distribution API, input checks, seeds, the estimator (by name, from
`tfrecog.estimators`) and the MAP weight prior. The fused XLA training loop (`compile`, `fit`, `train_step`, ...) is
inherited from `tfrecog.models.trainer.FusedTrainer`.
"""

from __future__ import annotations

import numpy as np

from tfrecog import cards, checks, estimators
from tfrecog._tf import keras, tf, tfd
from tfrecog.layers import random
from tfrecog.models.trainer import FusedTrainer, InputError

LIKELIHOODS = ("bernoulli", "gaussian", "categorical")


class LatentVariableModel(FusedTrainer, keras.Model):
    """A directed latent-variable model with an amortised recognition model.

    Subclasses implement the distribution API below (h is a tensor or a list of tensors with leading [K, B]):

      encode(x)                      -> q(h_1 | x), a TFP distribution
      decode(h)                      -> p(x | h), a TFP distribution with event shape [D]
      sample_posterior(x, K, seed)   -> (h, log q(h | x) [K, B]),  h ~ q(h | x)
      log_joint(x, h)                -> log p(x, h) [K, B]
      recognition_log_prob(x, h)     -> log q(h | x) [K, B]
      sample_joint(n, seed)          -> (x [n, D], h),  (x, h) ~ p(x, h)
      generative_variables           -> the parameters theta of p(x, h) (the weight prior applies to these)

    and get the rest: `log_importance_weights`, `elbo`, `sample`, `reconstruct`, and from `FusedTrainer` a fused
    `fit`, `train_step` and `test_step` that work with `compile`/`fit`/`evaluate`, callbacks, `jit_compile` and
    `tf.distribute`.

    Training objective: `loss = -mean_b objective(x_b) + ||theta||^2 / (2 sigma^2 N)` where the second term is the
    MAP weight prior p(theta) = N(0, sigma^2 I) (`weight_prior_scale` = sigma; None switches it off) divided by the
    training-set size N, so that summed over an epoch of N/M minibatches it counts once, as in Kingma & Welling.
    `kl_warmup_steps` = T > 0 (SGVB estimators only) weights the KL term of training update t by min(1, t / T)
    (`objective`); the training `loss` metric is then that weighted loss, the `elbo` metric the unweighted bound.
    `estimator_options`: the settings of an estimator that has them, saved in the config (`estimator="mcem"`:
    the fields of `MCEMSettings`, e.g. `{"num_leapfrog_steps": 10, "num_burnin_steps": 20}`).
    """

    family: str | None = None  # subclasses: their name in the estimator registry (`Estimator.families`)

    def __init__(
        self,
        event_size: int,
        likelihood: str = "bernoulli",
        estimator: str = "sgvb_b",
        num_samples: int = 1,
        weight_prior_scale: float | None = None,
        seed: int = 0,
        kl_warmup_steps: int = 0,
        estimator_options: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; got {likelihood!r}")
        event_size = checks.integer(event_size, "event_size", 1)
        num_samples = checks.integer(num_samples, "num_samples", 1)
        seed = checks.integer(seed, "seed", 0, checks.LIMITS["seed"])
        try:
            kl_warmup_steps = checks.integer(kl_warmup_steps, "kl_warmup_steps", 0)
        except ValueError:
            raise ValueError(f"kl_warmup_steps must be >= 0 (an integer); got {kl_warmup_steps!r}") from None
        if weight_prior_scale is not None:
            weight_prior_scale = checks.number(weight_prior_scale, "weight_prior_scale (sigma of the weight prior; "
                                               "None switches it off)", 0.0)
        self.event_size = int(event_size)
        self.likelihood = likelihood
        self.estimator = estimator
        # A clear error now, not at the first fit, for an unknown estimator, one the family lacks, or too few samples.
        estimators.check(estimator, self.family, num_samples)
        self.estimator_options = estimators.check_options(estimator, estimator_options)
        self.num_samples = int(num_samples)
        self.weight_prior_scale = None if weight_prior_scale is None else float(weight_prior_scale)
        self.seed = int(seed)
        if int(kl_warmup_steps) and not self.estimator_spec.kl_weight:
            weighted = " or ".join(repr(n) for n, e in estimators.ESTIMATORS.items() if e.kl_weight)
            raise ValueError(f"kl_warmup_steps needs an SGVB estimator ({weighted}); got {estimator!r}")
        self.kl_warmup_steps = int(kl_warmup_steps)

    # ------------------------------------------------------------------------------------------------------------
    # Distribution API (subclasses)

    def encode(self, x):
        raise NotImplementedError

    def decode(self, h):
        raise NotImplementedError

    def observation_log_prob(self, x, h):
        """log p(x | h) [...], the density of `decode(h)` at x; families override it with a cheaper form of the
        same density (the estimators score reconstructions through it)."""
        return self.decode(h).log_prob(x)

    def sample_posterior(self, x, num_samples, seed):
        raise NotImplementedError

    def log_joint(self, x, h):
        raise NotImplementedError

    def sample_posterior_and_kl(self, x, num_samples, seed, analytic_kl: bool = True):
        """`(h, kl)`: h ~ q(h | x) reparameterised ([num_samples, B, ...]) and KL(q(h | x) || p(h)) per example [B].

        analytic_kl: KL from `tfd.kl_divergence(encode(x), prior())` (closed form); otherwise the Monte-Carlo mean
        over the samples of log q(h | x) - log p(h). The SGVB estimators take both from here, so that a family
        whose posterior has no closed-form KL as a whole (a DLGM with top-down recognition) can supply its own.
        """
        posterior = self.encode(x)
        prior = self.prior()
        h = random.sample(posterior, num_samples, seed)  # posterior.sample, XLA's fast generator if compiled
        if analytic_kl:
            return h, tfd.kl_divergence(posterior, prior)
        return h, tf.reduce_mean(posterior.log_prob(h) - prior.log_prob(h), axis=0)

    def recognition_log_prob(self, x, h):
        raise NotImplementedError

    def sample_joint(self, num_examples, seed):
        raise NotImplementedError

    @property
    def generative_variables(self):
        raise NotImplementedError

    @property
    def latent_sizes(self):
        """Sizes of the latent layers, bottom first."""
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        """Number of latent layers."""
        return len(self.latent_sizes)

    @property
    def data_range(self):
        """(low, high) of the data the observation model describes, or None where unbounded: [0, 1] for Bernoulli
        pixels and for Gaussian pixels with a sigmoid mean (the VAE's, a DLGM's with `mean_activation='sigmoid'`);
        None for word counts. `tfrecog.impute` keeps its completions in this range."""
        return (0.0, 1.0) if self.likelihood in ("bernoulli", "gaussian") else None

    @property
    def recognition_variables(self):
        gen = {id(v) for v in self.generative_variables}
        return [v for v in self.trainable_variables if id(v) not in gen]

    # ------------------------------------------------------------------------------------------------------------
    # Shared quantities

    def log_importance_weights(self, x, num_samples, seed):
        """log w_k = log p(x, h_k) - log q(h_k | x), h_k ~ q(h | x), k = 1..K; returns [K, B]."""
        h, log_q = self.sample_posterior(x, num_samples, seed)
        return self.log_joint(x, h) - log_q

    def elbo(self, x, num_samples: int = 1, seed=None):
        """Monte-Carlo ELBO per example: mean_k log w_k with K = num_samples; returns [B]."""
        x = self._prepare(x)
        return tf.reduce_mean(self.log_importance_weights(x, num_samples, self._seed(seed)), axis=0)

    def sample(self, num_examples: int, seed=None, mean: bool = True):
        """Draws x ~ p(x); with `mean`, returns E[x | h] for the sampled h (cleaner images)."""
        x, h = self.sample_joint(int(num_examples), self._seed(seed))
        return self.observation_mean(h) if mean else x

    def reconstruct(self, x, seed=None):
        """E[x | h] for h ~ q(h | x) (one posterior sample); returns [B, D]."""
        x = self._prepare(x)
        h, _ = self.sample_posterior(x, 1, self._seed(seed))
        return self.observation_mean(tf.nest.map_structure(lambda t: t[0], h))

    def observation_mean(self, h):
        """E[x | h], the mean of p(x | h) (`sample` and `reconstruct` return it; `tfrecog.impute` may use it)."""
        return self.decode(h).mean()

    def __call__(self, x, *args, **kwargs):
        # Checked before Keras's own `__call__`, which would wrap the one-line error in a multi-line report.
        if not isinstance(x, keras.KerasTensor):  # symbolic Keras inputs (the functional API) have no values
            x = self.validate(x)
        return super().__call__(x, *args, **kwargs)

    def call(self, x, training=False):
        """Returns the mean of q(h_1 | x) (a deterministic embedding), so the model is callable like any layer."""
        return self.encode(self.validate(x)).mean()

    # ------------------------------------------------------------------------------------------------------------
    # Input checks and seeds

    @tf.autograph.experimental.do_not_convert
    def check_input(self, x, what: str = "x", domain: str = "density") -> np.ndarray:
        """Validates data eagerly and returns it as a float32 numpy array [N, event_size]; InputError (one line)
        naming what was expected otherwise. Every entry point checks its data here (`encode`, `__call__`,
        `predict`, `fit`, `evaluate`, `tfrecog.log_likelihood`, `tfrecog.impute`).

        Checked: numeric (real or bool) dtype; shape [N, event_size] (an image batch such as [N, 28, 28] is refused
        with the reshape to use); finite values; and the likelihood's domain:

          domain='density' (fit, evaluate, log_likelihood: x is scored by p(x | h)): Bernoulli x in {0, 1};
            categorical x non-negative integer counts;
          domain='range' (encode, __call__, predict, impute: x is only fed to q(h | x)): Bernoulli x in [0, 1]
            (grey levels, e.g. probabilities or imputation means); categorical x >= 0.

        Integer pixels of 0-255 given to a model of data in [0, 1] are refused with the scaling to apply.
        """
        if domain not in ("density", "range"):
            raise ValueError(f"domain must be 'density' or 'range'; got {domain!r}")
        if tf.is_tensor(x):
            x = x.numpy()
        raw = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if raw.dtype.kind not in "biuf":
            raise InputError(f"{what} must be a real numeric array [N, {self.event_size}]; got dtype "
                             f"{raw.dtype if raw.dtype.kind != 'O' else type(x).__name__}")
        if raw.ndim != 2 or raw.shape[1] != self.event_size:
            shape = list(raw.shape)
            if raw.ndim > 2 and int(np.prod(shape[1:])) == self.event_size:
                hint = f": flatten each example first, e.g. {what}.reshape(len({what}), -1)"
            elif raw.ndim == 1 and shape[0] == self.event_size:
                hint = f": one example needs a batch axis, e.g. {what}[None]"
            else:
                hint = ""
            raise InputError(f"{what} must have shape [N, {self.event_size}] (flattened); got shape {shape}{hint}")
        arr = raw.astype(np.float32, copy=False)
        # On valid Bernoulli data the 0/1 check is the only pass (0/1 values are finite).
        if self.likelihood == "bernoulli" and _is_binary(arr):
            return arr
        if not np.isfinite(arr).all():
            raise InputError(f"{what} contains NaN or inf values; expected finite numbers")
        if arr.size and self.data_range == (0.0, 1.0) and (arr.max() > 1.0 or arr.min() < 0.0):
            looks_8bit = arr.min() >= 0.0 and arr.max() <= 255.0 and (raw.dtype.kind in "iu" or _is_integral(arr))
            if looks_8bit and (self.likelihood == "bernoulli" or raw.dtype.kind in "iu"):
                raise InputError(f"{what} holds values up to {arr.max():.0f}, like 8-bit pixels; expected values in "
                                 "[0, 1]: scale them, e.g. x / 255.0" + (" and binarize for a Bernoulli model"
                                                                        if self.likelihood == "bernoulli" else ""))
        if self.likelihood == "bernoulli":
            if domain == "range":
                if arr.min() < 0.0 or arr.max() > 1.0:
                    raise InputError(f"{what} must lie in [0, 1] for a Bernoulli model; got values in "
                                     f"[{arr.min():.3g}, {arr.max():.3g}]")
                return arr
            raise InputError(
                f"{what} must be binary (0/1) for a Bernoulli model; got values in "
                f"[{arr.min():.3g}, {arr.max():.3g}] (binarize the data, e.g. load(..., binarize='static'))"
            )
        if self.likelihood == "categorical":
            if (arr < 0).any():
                raise InputError(f"{what} must hold non-negative counts for a categorical (bag-of-words) model")
            if domain == "density" and not _is_integral(arr):
                raise InputError(f"{what} must hold whole word counts for a categorical (bag-of-words) model; got "
                                 "fractional values")
        return arr

    @tf.autograph.experimental.do_not_convert  # plain Python on values; autograph must not rewrite its calls
    def validate(self, x, what: str = "x"):
        """`x` for the recognition model (`encode`, `__call__`): an array or eager tensor is checked in full by
        `check_input` (domain 'range') and returned as a float32 tensor; a symbolic tensor (inside `tf.function`
        or XLA, where values are unknown) by its static shape only, at no cost to compiled code."""
        if tf.is_tensor(x) and not tf.executing_eagerly():  # symbolic: a graph being traced
            shape = x.shape
            if shape.rank is not None and (shape.rank != 2 or shape[-1] not in (None, self.event_size)):
                raise InputError(f"{what} must have shape [N, {self.event_size}] (flattened); got shape "
                                 f"{shape.as_list()}")
            return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)
        return tf.convert_to_tensor(self.check_input(x, what, domain="range"))

    def _prepare(self, x):
        if isinstance(x, np.ndarray) or not tf.is_tensor(x):
            x = self.check_input(x)
        return tf.convert_to_tensor(x, tf.float32)

    def _seed(self, seed):
        if seed is None:
            seed = np.random.randint(0, 2**31 - 1)
        if isinstance(seed, (int, np.integer)):
            return tf.constant([self.seed, int(seed)], tf.int32)
        return tf.cast(seed, tf.int32)

    # ------------------------------------------------------------------------------------------------------------
    # Objective

    @property
    def estimator_spec(self) -> estimators.Estimator:
        """The registry entry of this model's estimator (`tfrecog.estimators.get`), checked against its family."""
        return estimators.get(self.estimator, self.family)

    def objective(self, x, seed, training: bool = False):
        """`(loss, diagnostics)` of the configured estimator on one minibatch (no weight prior).

        With `kl_warmup_steps` = T > 0, training updates t = 1, 2, ... (the optimizer's count) minimise the SGVB
        loss with the KL term weighted by beta_t = min(1, t / T) (KL warm-up, Sonderby et al. 2016); the reported
        diagnostics, validation and evaluation always use beta = 1, the free energy itself.
        """
        kwargs = {}
        if training and self.kl_warmup_steps:
            t = tf.cast(self.optimizer.iterations, tf.float32) + 1.0
            kwargs["kl_weight"] = tf.minimum(1.0, t / float(self.kl_warmup_steps))
        return self.estimator_spec.objective(self, x, seed, num_samples=self.num_samples, **kwargs)

    def weight_penalty(self):
        """||theta||^2 / (2 sigma^2 N): the minibatch share of -log p(theta) per example (0 when switched off)."""
        if self.weight_prior_scale is None:
            return tf.constant(0.0)
        squared = tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.generative_variables])
        n = tf.maximum(self.num_train_examples, 1.0)
        return squared / (2.0 * self.weight_prior_scale**2 * n)

    # ------------------------------------------------------------------------------------------------------------
    # Serialization

    def get_config(self):
        return {
            "name": self.name,
            "event_size": self.event_size,
            "likelihood": self.likelihood,
            "estimator": self.estimator,
            "num_samples": self.num_samples,
            "weight_prior_scale": self.weight_prior_scale,
            "seed": self.seed,
            "kl_warmup_steps": self.kl_warmup_steps,
            **({"estimator_options": dict(self.estimator_options)} if self.estimator_options else {}),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset: str, compile: bool = True):
        """A pretrained model by zoo name (or a run folder), keras-hub style: `tfrecog.VAE.from_preset("vae-bmnist")`.

        The weights are verified against the card's sha256 before loading (`tfrecog.zoo.load`); with `compile`, the
        model is compiled with the recipe's optimizer, ready to fine-tune. The preset must be of this class's family
        (`tfrecog.SBN.from_preset` takes SBN and fDARN cards; `LatentVariableModel.from_preset` takes any).

        Raises:
          ValueError: (one line) an unknown name, or a preset of another family, naming the class to use.
        """
        source = cards.preset_source()
        found = source.model_class(preset)
        if not issubclass(found, cls):
            raise ValueError(f"{preset!r} is a {found.__name__} preset, not a {cls.__name__}: use "
                             f"tfrecog.{found.__name__}.from_preset({preset!r}) or tfrecog.zoo.load({preset!r})")
        return source.load(preset, compile=compile)


def sample_blocks(num_samples, batch, block_rows: int):
    """How to score K = `num_samples` samples of `batch` examples in blocks of about `block_rows` rows:
    (num_blocks, samples_per_block, padding), equal blocks with at most num_blocks - 1 padded samples; None when
    one pass is enough (K x B <= block_rows) or a size is not static."""
    if not batch or not isinstance(num_samples, int):
        return None
    samples_per_block = max(1, block_rows // batch)
    if num_samples <= samples_per_block:
        return None
    num_blocks = -(-num_samples // samples_per_block)
    samples_per_block = -(-num_samples // num_blocks)
    return num_blocks, samples_per_block, num_blocks * samples_per_block - num_samples


def layer_sizes(value, name: str, allow_empty: bool = True) -> tuple[int, ...]:
    """`value` as a tuple of layer widths (positive integers); ValueError (one line) naming `name` otherwise."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be positive integers (a list of layer widths); got {value!r}")
    widths = tuple(value)
    if not widths and not allow_empty:
        raise ValueError(f"{name} must be a non-empty list of positive integers (layer widths); got {value!r}")
    for width in widths:
        try:
            checks.integer(width, name, 1)
        except ValueError:
            raise ValueError(f"{name} must be positive integers (a list of layer widths); got {value!r}") from None
    return tuple(int(w) for w in widths)


def _is_integral(arr: np.ndarray) -> bool:
    return bool(np.all(arr == np.round(arr)))


def _is_binary(arr: np.ndarray, block_rows: int = 256) -> bool:
    """True when every entry of the 2-D float array is exactly 0 or 1 (NaN and inf are not).

    Checked in blocks of rows that stay in the CPU cache: 2.4x faster than one pass over a 10,000 x 784 array.
    """
    for start in range(0, len(arr), block_rows):
        block = arr[start:start + block_rows]
        if not ((block == 0.0) | (block == 1.0)).all():
            return False
    return True
