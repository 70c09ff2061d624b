"""Sigmoid belief networks and fDARN (Mnih & Gregor 2014): layers of binary latents with sigmoid conditionals,
optionally autoregressive within a layer, trained by NVIL (two optimizers: model and baseline) or wake-sleep.
"""

from __future__ import annotations

import numpy as np

from tfrecog import checks
from tfrecog._tf import keras, tf, tfd, tfp
from tfrecog.estimators.nvil import NVILState
from tfrecog.layers import random
from tfrecog.layers.bernoulli import bernoulli_log_prob  # defined there; still importable from here
from tfrecog.layers.masked import MaskedDense
from tfrecog.layers.mlp import MLP, initializer
from tfrecog.models.base import LatentVariableModel, sample_blocks

# A training step holds about K x (D + sum of latent sizes) float32 activations per example per sample path (DisARM
# draws L + 1 paths), plus VIMCO's K x K leave-one-out table; a K whose share exceeds this bound per example (16 MiB,
# so 1.6 GiB per set of activations for a minibatch of 100) is refused at construction.
MAX_TRAINING_BYTES_PER_EXAMPLE = 16 * 2**20
# `log_importance_weights` scores the K x B samples in blocks of about this many rows (see there).
SCORING_BLOCK_ROWS = 1024
# Autoregressive layers are sampled in blocks of this many units (`_autoregressive_sample`; 64 was fastest of
# 16-128 at 300-784 units under XLA:CPU, bench/results/SPEED_NOTES.md).
AUTOREGRESSIVE_BLOCK = 64


def _sum(terms):
    """Sum of tensors with broadcasting (tf.add_n needs equal shapes; a prior term may lack the batch axis)."""
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _autoregressive_sample(noise, start, kernel, block: int = AUTOREGRESSIVE_BLOCK):
    """h [..., U] with h_j = 1[u_j < sigmoid(a_j)], a_j = start_j + sum_{i<j} kernel_ij h_i (kernel [U, U] strictly
    upper triangular), drawn unit by unit in blocks of B units (B = U when U <= 4 B).

    Within a block, `running` holds a_j for the block's units and each draw adds h_j kernel_j. to it ([N, B] work per
    unit); after the block one product adds h_block kernel[block, :] to every unit's logit. The units of the block
    and before it are never read again, so only the later units' logits matter, and those receive exactly
    sum_{i in block} h_i kernel_ij. The result equals the one-unit-at-a-time recursion given the noise (up to float
    summation order in a_j) at O(N U B) elementwise work instead of O(N U^2) (2.2x faster at U = 784, N = 100).
    """
    units = int(noise.shape[-1])
    block = units if units <= 4 * block else block
    num_blocks = -(-units // block)
    padded = num_blocks * block
    batch_shape = tf.shape(noise)[:-1]
    noise = tf.reshape(noise, [-1, units])
    rows = tf.shape(noise)[0]
    # Padded units get noise 2 (never on) and no connections.
    noise = tf.pad(noise, [[0, 0], [0, padded - units]], constant_values=2.0)
    running = tf.pad(tf.reshape(start, [-1, units]), [[0, 0], [0, padded - units]])
    kernel = tf.pad(kernel, [[0, padded - units], [0, padded - units]])
    eye = tf.eye(block)

    def one_block(b, h, running):
        first = b * block
        u = tf.slice(noise, [0, first], [rows, block])
        within = tf.slice(kernel, [first, first], [block, block])

        def one_unit(j, h_block, a):
            h_j = tf.cast(tf.gather(u, j, axis=1) < tf.sigmoid(tf.gather(a, j, axis=1)), tf.float32)
            return j + 1, h_block + h_j[:, None] * eye[j], a + h_j[:, None] * within[j]

        _, h_block, _ = tf.while_loop(lambda j, *_: j < block, one_unit,
                                      (tf.constant(0), tf.zeros([rows, block]), tf.slice(running, [0, first],
                                                                                         [rows, block])),
                                      maximum_iterations=block)
        later = tf.matmul(h_block, tf.slice(kernel, [first, 0], [block, padded]))
        return b + 1, h + tf.one_hot(b, num_blocks)[:, None, None] * h_block, running + later

    _, h, _ = tf.while_loop(lambda b, *_: b < num_blocks, one_block,
                            (tf.constant(0), tf.zeros([num_blocks, rows, block]), running),
                            maximum_iterations=num_blocks)
    h = tf.reshape(tf.transpose(h, [1, 0, 2]), [rows, padded])[:, :units]
    return tf.reshape(h, tf.concat([batch_shape, [units]], axis=0))


@keras.saving.register_keras_serializable(package="tfrecog")
class BernoulliLayer(keras.layers.Layer):
    """A layer of binary units h [..., units] given a context c: p(h | c) = prod_j Bernoulli(h_j; sigmoid(a_j)).

      no context, factorial:   a = b                                  (learned logits of a top prior)
      factorial:               a = W f(c) + b
      autoregressive:          a_j = [W f(c) + b]_j + sum_{i<j} U_ji h_i  (one masked matmul, `MaskedDense`)

    with f(c) = c, or f(c) = tanh(V c + d) when `hidden_size` is given. Scoring an h is one pass; sampling an
    autoregressive layer loops over the units (a `tf.while_loop` with static shapes that XLA compiles).
    Samples are h_j = 1[u_j < sigmoid(a_j)] for uniform noise u, so given the noise they are deterministic.

    Args:
      units: number of binary units.
      context_size: width of the conditioning input c, or None (a top prior).
      hidden_size: width of the tanh hidden layer f, or None for affine logits (needs a context).
      autoregressive: connections h_i -> h_j for i < j within the layer.
      activation: nonlinearity of the hidden layer.
      kernel_initializer: Keras initializer name or 'paper'.
    """

    def __init__(self, units: int, context_size: int | None = None, hidden_size: int | None = None,
                 autoregressive: bool = False, activation: str = "tanh", kernel_initializer: str = "glorot_uniform",
                 **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer; got {units!r}")
        if hidden_size is not None and context_size is None:
            raise ValueError("hidden_size needs a context: a layer without context_size has only learned logits")
        self.units = int(units)
        self.context_size = None if context_size is None else int(context_size)
        self.hidden_size = None if hidden_size is None else int(hidden_size)
        self.autoregressive = bool(autoregressive)
        self.activation = activation
        self.kernel_initializer = kernel_initializer
        bias_init = initializer("paper" if kernel_initializer == "paper" else "zeros")
        self.hidden = None
        if self.hidden_size is not None:
            self.hidden = keras.layers.Dense(self.hidden_size, activation=activation, name="hidden",
                                             kernel_initializer=initializer(kernel_initializer),
                                             bias_initializer=bias_init)
        feature_size = self.hidden_size if self.hidden is not None else self.context_size
        self.feature_size = feature_size
        self.output_layer = None
        if self.autoregressive:
            self.output_layer = MaskedDense(self.units, context_size=feature_size, name="masked",
                                            kernel_initializer=kernel_initializer)
        elif self.context_size is not None:
            self.output_layer = keras.layers.Dense(self.units, name="dense",
                                                   kernel_initializer=initializer(kernel_initializer),
                                                   bias_initializer=bias_init)

    def build(self, input_shape=None):
        if self.hidden is not None:
            self.hidden.build((None, self.context_size))
        if self.autoregressive:
            self.output_layer.build((None, self.units))
        elif self.output_layer is not None:
            self.output_layer.build((None, self.feature_size))
        else:
            self.logits_bias = self.add_weight(shape=(self.units,), initializer="zeros", name="logits")
        self.built = True

    def _features(self, context):
        if self.context_size is None:
            if context is not None:
                raise ValueError(f"{self.name} has no context input; got one")
            return None
        if context is None:
            raise ValueError(f"{self.name}: expected a context of width {self.context_size}; got None")
        return self.hidden(context) if self.hidden is not None else context

    def logits(self, h, context=None):
        """a [..., units]: the logits of p(h | c); for an autoregressive layer a_j uses h_<j (teacher forcing)."""
        features = self._features(context)
        if self.autoregressive:
            return self.output_layer(h, context=features)
        if self.output_layer is not None:
            return self.output_layer(features)
        return tf.convert_to_tensor(self.logits_bias)

    def log_prob(self, h, context=None):
        """log p(h | c) = sum_j log Bernoulli(h_j; sigmoid(a_j)), summed over the units: [...]."""
        return bernoulli_log_prob(self.logits(h, context), h)

    def distribution(self, context=None, batch_shape=None):
        """p(h | c) as a TFP distribution: `Independent(Bernoulli)`, or `Autoregressive` of those."""
        if not self.autoregressive:
            return tfd.Independent(tfd.Bernoulli(logits=self.logits(None, context), dtype=tf.float32), 1)
        if batch_shape is None:
            batch_shape = tf.shape(context)[:-1] if context is not None else tf.constant([], tf.int32)
        sample0 = tf.zeros(tf.concat([batch_shape, [self.units]], axis=0))
        return tfd.Autoregressive(
            lambda h: tfd.Independent(tfd.Bernoulli(logits=self.logits(h, context), dtype=tf.float32), 1),
            sample0=sample0, num_steps=self.units,
        )

    def sample(self, noise, context=None, offset=None):
        """(h, a): h_j = 1[u_j < sigmoid(a_j)] for uniform noise u [..., units]; a the logits at h (no gradient
        flows through h). `offset` d (broadcastable to [..., units]) is added to every logit, a_j + d_j (for an
        autoregressive layer inside the loop, so later units see h drawn at the offset logits)."""
        if not self.autoregressive:
            logits = self.logits(None, context)
            if offset is not None:
                logits = logits + offset
            return tf.cast(noise < tf.sigmoid(logits), tf.float32), logits
        kernel = self.output_layer.masked_kernel()
        start = tf.broadcast_to(self.output_layer.context_term(self._features(context)), tf.shape(noise))
        if offset is not None:
            start = start + offset
        h = _autoregressive_sample(noise, start, kernel)
        h = tf.stop_gradient(h)
        logits = self.logits(h, context)
        return h, logits if offset is None else logits + offset

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "context_size": self.context_size,
            "hidden_size": self.hidden_size,
            "autoregressive": self.autoregressive,
            "activation": self.activation,
            "kernel_initializer": self.kernel_initializer,
        }


@keras.saving.register_keras_serializable(package="tfrecog")
class SBN(LatentVariableModel):
    """Sigmoid belief network / fDARN with L = 1..3 layers of binary latents h_1 (bottom) .. h_L (top).

    Generative model (all conditionals sigmoid-affine; fDARN adds masked connections within a layer):
      p(h_L)             = prod_j Bernoulli(sigmoid(b_j [+ sum_{i<j} U_ji h_L,i]))
      p(h_l | h_{l+1})   = prod_j Bernoulli(sigmoid([W h_{l+1} + b]_j [+ sum_{i<j} U_ji h_l,i]))
      p(x | h_1)         = prod_d Bernoulli(sigmoid([W h_1 + b]_d [+ sum_{e<d} U_de x_e]))            ('bernoulli')
      log p(x | h_1)     = sum_w x_w log softmax(W h_1 + b)_w                                    ('categorical')
    Recognition model: q(h_1 | x) q(h_2 | h_1) ... q(h_L | h_{L-1}), each factorial with affine logits (or an
    MLP with one tanh hidden layer of `recognition_hidden_size`), or autoregressive within the layer.

    The categorical observation is the probability of the document's word sequence, N_d independent draws from
    softmax(W h_1 + b): the quantity whose per-word average defines perplexity (Mnih & Gregor 2014, NVDM). It is
    `tfd.Multinomial(N_d, logits).log_prob(x)` minus the log number of orderings log(N_d! / prod_w x_w!), a
    constant of the data; so `decode` returns the Multinomial (for sampling and means) while `log_joint` uses the
    sequence probability, in nats, so that perplexity = exp(-sum_d log p(x_d) / sum_d N_d).

    Latent samples are float32 0/1 tensors, a list with one [K, B, size_l] tensor per layer, bottom first.

    Args:
      event_size: D (784 for MNIST; the vocabulary size for documents).
      latent_sizes: sizes of the latent layers, bottom (nearest x) first, 1 to 3 layers, e.g. (200, 200, 200).
      likelihood: 'bernoulli' (binary pixels) or 'categorical' (word counts).
      estimator: 'nvil' (default), 'wake_sleep', or from `tfrecog.estimators`: 'vimco', 'rws' (wake-phase q
        update), 'rws_sleep', 'rws_wake_sleep', 'disarm' (factorial q only).
      num_samples: samples of h per example in a training step (K >= 2 for 'vimco' and the 'rws' variants; K
        antithetic pairs for 'disarm'); bounded by `MAX_TRAINING_BYTES_PER_EXAMPLE`.
      autoregressive_prior: fDARN: autoregressive connections within every latent layer of p.
      autoregressive_visible: fDARN: autoregressive connections within the visible layer ('bernoulli' only).
      autoregressive_posterior: autoregressive connections within every layer of q.
      recognition_hidden_size: width of a tanh hidden layer in each q(h_l | .), or None for affine logits.
      baseline_hidden_size: tanh hidden units of the input-dependent baseline C(x) (100 in the paper; None for a
        linear baseline).
      centering, input_dependent_baseline, variance_normalization, local_signals: NVIL's variance reduction
        techniques, each switchable (see `tfrecog.estimators.nvil.nvil`).
      signal_decay: alpha of NVIL's running mean and variance (0.8 in the paper).
      document_length: N of documents drawn by `sample_joint` ('categorical'; p(x) does not model length).
      weight_prior_scale: sigma of a MAP prior N(0, sigma^2 I) on the generative weights, or None.
      kernel_initializer: Keras initializer name or 'paper'.
      seed: base of all stateless seeds.

    Example:
      >>> model = SBN(event_size=784, latent_sizes=(200, 200))
      >>> model.compile(optimizer=keras.optimizers.Adam(3e-4), baseline_optimizer=keras.optimizers.Adam(1e-3))
      >>> model.fit(x_train, batch_size=100, epochs=10)        # doctest: +SKIP
      >>> h, log_q = model.sample_posterior(x_test[:5], 1, seed=tf.constant([0, 1]))   # doctest: +SKIP
    """

    family = "sbn"  # its name in the estimator registry's `families` (tfrecog.estimators)

    def __init__(
        self,
        event_size: int = 784,
        latent_sizes=(200,),
        likelihood: str = "bernoulli",
        estimator: str = "nvil",
        num_samples: int = 1,
        autoregressive_prior: bool = False,
        autoregressive_visible: bool = False,
        autoregressive_posterior: bool = False,
        recognition_hidden_size: int | None = None,
        baseline_hidden_size: int | None = 100,
        centering: bool = True,
        input_dependent_baseline: bool = True,
        variance_normalization: bool = True,
        local_signals: bool = True,
        signal_decay: float = 0.8,
        document_length: int = 100,
        weight_prior_scale: float | None = None,
        kernel_initializer: str = "glorot_uniform",
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(event_size, likelihood, estimator, num_samples, weight_prior_scale, seed, **kwargs)
        if likelihood not in ("bernoulli", "categorical"):
            raise ValueError(f"SBN likelihood must be 'bernoulli' or 'categorical'; got {likelihood!r}")
        if isinstance(latent_sizes, int):
            latent_sizes = (latent_sizes,)
        sizes = latent_sizes if isinstance(latent_sizes, (list, tuple)) else ()
        if not 1 <= len(sizes) <= 3 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                           for s in sizes):
            raise ValueError(f"latent_sizes must list 1 to 3 positive layer sizes (bottom first); got {latent_sizes!r}")
        if estimator == "disarm" and autoregressive_posterior:
            raise ValueError("estimator 'disarm' needs factorial recognition layers; expected "
                             "autoregressive_posterior=False")
        k = int(num_samples)
        paths = len(sizes) + 1 if estimator == "disarm" else 1
        step_bytes = 4 * (k * (int(event_size) + sum(sizes)) * paths + (k * k if estimator == "vimco" else 0))
        if step_bytes > MAX_TRAINING_BYTES_PER_EXAMPLE:
            raise ValueError(f"num_samples={k} needs {step_bytes / 2**20:.0f} MiB of activations per example for "
                             f"{estimator!r}; expected at most {MAX_TRAINING_BYTES_PER_EXAMPLE // 2**20} MiB "
                             "(tfrecog.models.sbn.MAX_TRAINING_BYTES_PER_EXAMPLE): use a smaller num_samples")
        if autoregressive_visible and likelihood != "bernoulli":
            raise ValueError("autoregressive_visible needs likelihood='bernoulli' (word counts are exchangeable)")
        if not 0.0 <= float(signal_decay) < 1.0:
            raise ValueError(f"signal_decay must be in [0, 1); got {signal_decay!r}")
        self._latent_sizes = sizes = tuple(int(s) for s in sizes)
        self.autoregressive_prior = bool(autoregressive_prior)
        self.autoregressive_visible = bool(autoregressive_visible)
        self.autoregressive_posterior = bool(autoregressive_posterior)
        self.recognition_hidden_size = (None if not recognition_hidden_size else
                                        checks.integer(recognition_hidden_size, "recognition_hidden_size", 1))
        self.baseline_hidden_size = (None if not baseline_hidden_size else
                                     checks.integer(baseline_hidden_size, "baseline_hidden_size", 1))
        self.centering = bool(centering)
        self.input_dependent_baseline = bool(input_dependent_baseline)
        self.variance_normalization = bool(variance_normalization)
        self.local_signals = bool(local_signals)
        self.signal_decay = float(signal_decay)
        self.document_length = checks.integer(document_length, "document_length", 1)
        self.kernel_initializer = kernel_initializer
        self.baseline_optimizer = None

        num_layers = len(sizes)
        init = kernel_initializer
        # Recognition model: q(h_1 | x), q(h_{l+1} | h_l).
        self.inference_layers = [
            BernoulliLayer(size, context_size=event_size if k == 0 else sizes[k - 1],
                           hidden_size=self.recognition_hidden_size, autoregressive=self.autoregressive_posterior,
                           kernel_initializer=init, name=f"q_{k + 1}")
            for k, size in enumerate(sizes)
        ]
        # Generative model: p(h_L), p(h_l | h_{l+1}), p(x | h_1).
        self.prior_layer = BernoulliLayer(sizes[-1], autoregressive=self.autoregressive_prior,
                                          kernel_initializer=init, name=f"p_{num_layers}")
        self.generative_layers = [
            BernoulliLayer(sizes[k], context_size=sizes[k + 1], autoregressive=self.autoregressive_prior,
                           kernel_initializer=init, name=f"p_{k + 1}")
            for k in range(num_layers - 1)
        ]
        if likelihood == "bernoulli":
            self.observation_layer = BernoulliLayer(event_size, context_size=sizes[0],
                                                    autoregressive=self.autoregressive_visible,
                                                    kernel_initializer=init, name="p_x")
        else:
            self.observation_layer = keras.layers.Dense(event_size, kernel_initializer=initializer(init),
                                                        name="p_x")
        self.baseline_network = None
        if estimator == "nvil" and self.input_dependent_baseline:
            hidden = (self.baseline_hidden_size,) if self.baseline_hidden_size else ()
            self.baseline_network = MLP(hidden, "tanh", num_layers, init, name="baseline")
        # NVIL's running mean c and variance v of l_i - C_i(x), per layer: saved with the weights and kept equal
        # on every replica (the estimator averages the minibatch statistics over replicas before the update).
        self.signal_mean = self.add_weight(shape=(num_layers,), initializer="zeros", trainable=False,
                                           name="signal_mean", aggregation="only_first_replica")
        self.signal_variance = self.add_weight(shape=(num_layers,), initializer="zeros", trainable=False,
                                               name="signal_variance", aggregation="only_first_replica")
        for layer in [*self.inference_layers, self.prior_layer, *self.generative_layers]:
            layer.build()
        if likelihood == "bernoulli":
            self.observation_layer.build()
        else:
            self.observation_layer.build((None, sizes[0]))
        if self.baseline_network is not None:
            self.baseline_network.build((None, event_size))

    # -- structure ---------------------------------------------------------------------------------------------

    @property
    def latent_sizes(self):
        """Sizes of the latent layers, bottom first."""
        return list(self._latent_sizes)


    @property
    def generative_variables(self):
        layers = [self.prior_layer, *self.generative_layers, self.observation_layer]
        return [v for layer in layers for v in layer.trainable_variables]

    @property
    def recognition_variables(self):
        return [v for layer in self.inference_layers for v in layer.trainable_variables]

    @property
    def model_variables(self):
        """The variables the model optimizer updates: generative then recognition (not the baseline)."""
        return self.generative_variables + self.recognition_variables

    @property
    def baseline_variables(self):
        return list(self.baseline_network.trainable_variables) if self.baseline_network is not None else []

    def _layers_of(self, h):
        if tf.is_tensor(h) or not isinstance(h, (list, tuple)):
            h = [h]
        h = [tf.convert_to_tensor(t, tf.float32) for t in h]
        if len(h) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} latent layers (bottom first); got {len(h)}")
        return h

    # -- distributions -----------------------------------------------------------------------------------------

    def encode(self, x):
        """q(h_1 | x): `Independent(Bernoulli)` (factorial) or `Autoregressive` (autoregressive_posterior)."""
        return self.inference_layers[0].distribution(self.validate(x))

    def prior(self):
        """p(h_L), the top layer's prior."""
        return self.prior_layer.distribution(None, batch_shape=tf.constant([], tf.int32))

    def _observation_logits(self, x, h1):
        if self.likelihood == "categorical":
            return self.observation_layer(h1)
        return self.observation_layer.logits(x, h1)

    def decode(self, h, total_count=None):
        """p(x | h_1): `Independent(Bernoulli)`, `Autoregressive` (fDARN visible) or `Multinomial(total_count)`
        (categorical; total_count defaults to `document_length`)."""
        h1 = self._layers_of(h)[0]
        if self.likelihood == "categorical":
            count = float(self.document_length) if total_count is None else total_count
            return tfd.Multinomial(total_count=count, logits=self.observation_layer(h1))
        return self.observation_layer.distribution(h1)

    def observation_log_prob(self, x, h1):
        """log p(x | h_1) [...]: Bernoulli pixels, or sum_w x_w log softmax(logits)_w for word counts (h_1, or the
        list of every layer's samples)."""
        if isinstance(h1, (list, tuple)):
            h1 = self._layers_of(h1)[0]
        if self.likelihood == "categorical":
            # Word-sequence probability (see the class docstring): no TFP distribution is this density; it is
            # the Multinomial's log_prob without the log multinomial coefficient.
            return tf.reduce_sum(x * tf.nn.log_softmax(self.observation_layer(h1)), axis=-1)
        return self.observation_layer.log_prob(x, h1)

    def observation_mean(self, h):
        h1 = self._layers_of(h)[0]
        if self.likelihood == "categorical":
            return tf.nn.softmax(self.observation_layer(h1))
        return tf.sigmoid(self._greedy_logits(self.observation_layer, h1, self.event_size))

    def _greedy_logits(self, layer, context, units):
        """Logits along the path h_j = 1[sigmoid(a_j) > 1/2] (noise 1/2): the exact logits for a factorial layer,
        a deterministic summary for an autoregressive one."""
        if not layer.autoregressive:
            return tf.broadcast_to(layer.logits(None, context), tf.concat([tf.shape(context)[:-1], [units]], 0))
        noise = tf.fill(tf.concat([tf.shape(context)[:-1], [units]], 0), 0.5)
        return layer.sample(noise, context)[1]

    def call(self, x, training=False):
        """Probabilities sigmoid(a) of q(h_1 | x) [B, size_1] (along the greedy path if autoregressive)."""
        return tf.sigmoid(self.export_outputs(self.validate(x))["logits_1"])

    # -- generic latent-variable API ---------------------------------------------------------------------------

    def sample_posterior_terms(self, x, num_samples, seed):
        """h ~ q(h | x), layer by layer: (h [K, B, size_l] per layer, [log q(h_l | h_{l-1})] each [K, B])."""
        x = tf.convert_to_tensor(x, tf.float32)
        return self._posterior_from_noise(x, self._posterior_noise(x, num_samples, seed))

    def _posterior_noise(self, x, num_samples, seed):
        """The uniform draws of `sample_posterior_terms`: one [K, B, size_l] block per layer."""
        seeds = tfp.random.split_seed(seed, self.num_layers)
        batch = tf.shape(x)[0]
        return [random.uniform([num_samples, batch, size], seeds[k]) for k, size in enumerate(self._latent_sizes)]

    def _posterior_from_noise(self, x, noise, offsets=None):
        """h_l = 1[u_l < sigmoid(a_l + d_l)] layer by layer from the uniforms u_l: (samples, [log q(h_l | h_{l-1})]);
        d_l the per-example logit offsets of `offset_posterior` (none: q itself)."""
        offsets = offsets if offsets is not None else [None] * self.num_layers
        context, samples, terms = x, [], []
        for layer, u, d in zip(self.inference_layers, noise, offsets, strict=True):
            h, logits = layer.sample(u, context, offset=d)
            h = tf.stop_gradient(h)
            terms.append(bernoulli_log_prob(logits, h))
            samples.append(h)
            context = h
        return samples, terms

    def offset_posterior(self, x, offsets):
        """q_d(h | x) = prod_l prod_j Bernoulli(h_lj; sigmoid(a_lj(h_{l-1}) + d_lj)): the recognition model with
        per-example offsets d_l [B, size_l] (bottom first) added to each layer's logits, a_l what the recognition
        network computes from the sampled layer below (and, autoregressive, from h_l,<j). Zero offsets give q
        itself. The free family of `tfrecog.annealing.optimised_elbo` for binary latents, which keeps the
        dependence of each layer on the one below. Returns an object with `sample(num_samples, seed)` (the list
        [h_1, ..., h_L], each [K, B, size_l]) and `log_prob(h)`."""
        if len(offsets) != self.num_layers:
            raise ValueError(f"expected one offset per latent layer ({self.num_layers}); got {len(offsets)}")
        return _OffsetPosterior(self, tf.convert_to_tensor(x, tf.float32), list(offsets))

    def sample_posterior(self, x, num_samples, seed):
        samples, terms = self.sample_posterior_terms(x, num_samples, seed)
        return samples, _sum(terms)

    def recognition_log_prob_terms(self, x, h, offsets=None):
        """[log q(h_1 | x), log q(h_2 | h_1), ...], each [...] (h with or without the leading K axis); with
        `offsets` d_l, those of `offset_posterior`, log Bernoulli(h_l; sigmoid(a_l + d_l))."""
        h = self._layers_of(h)
        contexts = [tf.convert_to_tensor(x, tf.float32), *h[:-1]]
        if offsets is None:
            return [layer.log_prob(h_l, c) for layer, h_l, c in zip(self.inference_layers, h, contexts, strict=True)]
        return [bernoulli_log_prob(layer.logits(h_l, c) + d, h_l)
                for layer, h_l, c, d in zip(self.inference_layers, h, contexts, offsets, strict=True)]

    def recognition_log_prob(self, x, h):
        return _sum(self.recognition_log_prob_terms(x, h))

    def log_joint_terms(self, x, h):
        """[log p(x | h_1), log p(h_1 | h_2), ..., log p(h_L)], each [...] (the terms NVIL's local signals use)."""
        h = self._layers_of(h)
        x = tf.convert_to_tensor(x, tf.float32)
        terms = [self.observation_log_prob(x, h[0])]
        for k, layer in enumerate(self.generative_layers):
            terms.append(layer.log_prob(h[k], h[k + 1]))
        terms.append(self.prior_layer.log_prob(h[-1]))
        return terms

    def log_joint(self, x, h):
        return _sum(self.log_joint_terms(x, h))

    def log_importance_weights(self, x, num_samples, seed):
        """log w_k = log p(x, h_k) - log q(h_k | x), h_k ~ q(h | x), k = 1..K; returns [K, B].

        The same uniform draws and values as `sample_posterior` + `log_joint`, but when there are more than
        `SCORING_BLOCK_ROWS` rows (samples x examples), the draws are split into blocks of about that many rows,
        each sampled through the layers and scored in turn (`tf.map_fn`; a while loop under XLA), so that the
        intermediates of the importance-sampled evaluation stay in cache.
        """
        x = tf.convert_to_tensor(x, tf.float32)
        batch = x.shape[0]

        def score(noise):
            samples, terms = self._posterior_from_noise(x, noise)
            return self.log_joint(x, samples) - _sum(terms)

        plan = sample_blocks(num_samples, batch, SCORING_BLOCK_ROWS)
        noise = self._posterior_noise(x, num_samples, seed)
        if plan is None:
            return score(noise)
        num_blocks, samples_per_block, padding = plan
        noise = [tf.reshape(tf.pad(u, [[0, padding], [0, 0], [0, 0]], constant_values=0.5),
                            [num_blocks, samples_per_block, batch, size])
                 for u, size in zip(noise, self._latent_sizes, strict=True)]
        log_w = tf.map_fn(score, noise, fn_output_signature=tf.TensorSpec([samples_per_block, batch], tf.float32))
        return tf.reshape(log_w, [num_blocks * samples_per_block, batch])[:num_samples]

    def sample_joint(self, num_examples, seed):
        """Ancestral sampling: h_L ~ p(h_L), h_l ~ p(h_l | h_{l+1}), x ~ p(x | h_1); returns (x [n, D], [h_l])."""
        seeds = tfp.random.split_seed(seed, self.num_layers + 1)
        n = num_examples
        uniform = lambda size, s: random.uniform(tf.stack([n, size]), s)  # noqa: E731
        h_top, _ = self.prior_layer.sample(uniform(self._latent_sizes[-1], seeds[-1]))
        samples = [h_top]
        for k in reversed(range(self.num_layers - 1)):
            h_l, _ = self.generative_layers[k].sample(uniform(self._latent_sizes[k], seeds[k + 1]), samples[0])
            samples.insert(0, h_l)
        if self.likelihood == "categorical":
            x = self.decode(samples).sample(seed=seeds[0])
        else:
            x, _ = self.observation_layer.sample(uniform(self.event_size, seeds[0]), samples[0])
        return tf.stop_gradient(x), [tf.stop_gradient(t) for t in samples]

    # -- export protocol (tfrecog.export) -----------------------------------------------------------------------

    def export_outputs(self, x):
        """{'logits_1': the logits a of q(h_1 | x) [B, size_1]}.

        Only layer 1 is a function of x alone: q(h_l | h_{l-1}) for l > 1 needs a sample of the layer below, so
        its logits come from `export_sample`, given noise. For an autoregressive q the logits of unit j depend on
        h_<j; they are given along the greedy path h_j = 1[sigmoid(a_j) > 1/2].
        """
        x = tf.convert_to_tensor(x, tf.float32)
        return {"logits_1": self._greedy_logits(self.inference_layers[0], x, self._latent_sizes[0])}

    def export_noise_spec(self):
        """Noise inputs of `export_sample`: 'noise_l' -> size of layer l, uniform draws on [0, 1)."""
        return {f"noise_{k + 1}": size for k, size in enumerate(self._latent_sizes)}

    def export_sample(self, x, noise):
        """A posterior sample from given uniform noise, layer by layer: h_l = 1[u_l < sigmoid(a_l)].

        Returns {'sample_l': h_l [B, size_l], 'logits_l': a_l [B, size_l]} for every layer l (deterministic).
        """
        context = tf.convert_to_tensor(x, tf.float32)
        outputs = {}
        for k, layer in enumerate(self.inference_layers):
            h, logits = layer.sample(tf.convert_to_tensor(noise[f"noise_{k + 1}"], tf.float32), context)
            outputs[f"sample_{k + 1}"], outputs[f"logits_{k + 1}"] = h, logits
            context = h
        return outputs

    def export_decoder_outputs(self, h):
        """{'logits': the logits of p(x | h_1)} [B, D] for h_1 [B, size_1] (or the list of layers): Bernoulli
        logits, or the softmax logits over the vocabulary; for an autoregressive visible layer, along the greedy
        path x_d = 1[sigmoid(a_d) > 1/2]."""
        h1 = self._layers_of(h)[0] if isinstance(h, (list, tuple)) else tf.convert_to_tensor(h, tf.float32)
        if self.likelihood == "categorical":
            return {"logits": self.observation_layer(h1)}
        return {"logits": self._greedy_logits(self.observation_layer, h1, self.event_size)}

    # -- training ----------------------------------------------------------------------------------------------

    def nvil_state(self) -> NVILState:
        """NVIL's running mean c and variance v of the learning signals, one entry per layer."""
        return NVILState(tf.convert_to_tensor(self.signal_mean), tf.convert_to_tensor(self.signal_variance))

    def assign_nvil_state(self, state: NVILState):
        self.signal_mean.assign(state.mean)
        self.signal_variance.assign(state.variance)

    def nvil_settings(self) -> dict:
        """The keyword arguments of `tfrecog.estimators.nvil.nvil` for this model: its baseline network C(x),
        samples per example and NVIL's switches (what the registry's 'nvil' estimator passes)."""
        return {
            "baseline": self.baseline_network,
            "num_samples": self.num_samples,
            "centering": self.centering,
            "input_dependent_baseline": self.input_dependent_baseline,
            "variance_normalization": self.variance_normalization,
            "local_signals": self.local_signals,
            "decay": self.signal_decay,
        }

    def _optimizers(self) -> list:
        """The model optimizer and, once compiled, NVIL's baseline optimizer."""
        baseline = [self.baseline_optimizer] if self.baseline_optimizer is not None else []
        return [*super()._optimizers(), *baseline]

    def compile(self, optimizer="adam", baseline_optimizer="adam", **kwargs):
        """Like `LatentVariableModel.compile`, plus the optimizer of NVIL's baseline network (the GAN-guide pattern).

        `optimizer` updates the generative and recognition parameters; `baseline_optimizer` (default Adam 1e-3)
        updates the baseline network C(x).
        """
        if isinstance(baseline_optimizer, str) and baseline_optimizer == "adam":
            baseline_optimizer = keras.optimizers.Adam(1e-3)
        self.baseline_optimizer = keras.optimizers.get(baseline_optimizer)
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        """The base class's compile arguments plus the baseline optimizer, so `.keras` files restore both."""
        config = super().get_compile_config()
        if config is not None and self.baseline_optimizer is not None:
            config = {**config, "baseline_optimizer": keras.optimizers.serialize(self.baseline_optimizer)}
        return config

    def _build_optimizers(self):
        with self.distribute_strategy.scope():
            # The model optimizer holds slots for the model's variables only; the baseline has its own optimizer.
            if not self.optimizer.built:
                self.optimizer.build(self.model_variables)
            if self.baseline_optimizer is not None and not self.baseline_optimizer.built and self.baseline_variables:
                self.baseline_optimizer.build(self.baseline_variables)

    def build_for_training(self):
        if getattr(self, "optimizer", None) is None:
            raise RuntimeError(f"{type(self).__name__}: call compile() before fit() or evaluate()")
        with self.distribute_strategy.scope():
            if not self.built:
                self.build((None, self.event_size))
            self._build_optimizers()
            super().build_for_training()

    def get_config(self):
        return {
            **super().get_config(),
            "latent_sizes": list(self._latent_sizes),
            "autoregressive_prior": self.autoregressive_prior,
            "autoregressive_visible": self.autoregressive_visible,
            "autoregressive_posterior": self.autoregressive_posterior,
            "recognition_hidden_size": self.recognition_hidden_size,
            "baseline_hidden_size": self.baseline_hidden_size,
            "centering": self.centering,
            "input_dependent_baseline": self.input_dependent_baseline,
            "variance_normalization": self.variance_normalization,
            "local_signals": self.local_signals,
            "signal_decay": self.signal_decay,
            "document_length": self.document_length,
            "kernel_initializer": self.kernel_initializer,
        }


class _OffsetPosterior:
    """The distribution returned by `SBN.offset_posterior`: the recognition model's sampler and density with the
    offsets added to each layer's logits."""

    def __init__(self, model, x, offsets):
        self.model, self.x, self.offsets = model, x, offsets

    def sample(self, num_samples, seed):
        """h_l = 1[u_l < sigmoid(a_l + d_l)] layer by layer, u_l uniform: [h_1, ..., h_L], each [K, B, size_l]."""
        noise = self.model._posterior_noise(self.x, num_samples, seed)
        return self.model._posterior_from_noise(self.x, noise, self.offsets)[0]

    def log_prob(self, h):
        """log q_d(h | x) = sum_l sum_j log Bernoulli(h_lj; sigmoid(a_lj + d_lj))."""
        return _sum(self.model.recognition_log_prob_terms(self.x, h, self.offsets))


# ----------------------------------------------------------------------------------------------------------------
# Exact answers for tiny models (tests, teaching): enumerate every latent configuration.


def latent_configurations(latent_sizes, max_bits: int = 20):
    """Every joint configuration of the latent layers: a list of float32 [2^n, size_l] tensors, n = sum of sizes."""
    total = int(sum(latent_sizes))
    if total > max_bits:
        raise ValueError(f"enumeration needs at most {max_bits} latent bits; this model has {total}")
    codes = tf.range(2**total)[:, None]
    bits = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(codes, tf.range(total)[None, :]), 1), tf.float32)
    return tf.split(bits, list(latent_sizes), axis=1)


def exact_log_joint_table(model: SBN, x):
    """(log p(x, h), log q(h | x)) for every configuration h, each [2^n, B]."""
    h = [t[:, None, :] for t in latent_configurations(model.latent_sizes)]
    x = tf.convert_to_tensor(x, tf.float32)
    return model.log_joint(x, h), model.recognition_log_prob(x, h)


def exact_log_likelihood(model: SBN, x):
    """log p(x) = log sum_h p(x, h) by enumeration, [B] (tiny models only)."""
    log_joint, _ = exact_log_joint_table(model, x)
    return tf.reduce_logsumexp(log_joint, axis=0)


def exact_elbo(model: SBN, x):
    """ELBO(x) = sum_h q(h | x) (log p(x, h) - log q(h | x)) by enumeration, [B]; differentiable."""
    log_joint, log_q = exact_log_joint_table(model, x)
    return tf.reduce_sum(tf.exp(log_q) * (log_joint - log_q), axis=0)
