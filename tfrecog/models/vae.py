"""The variational auto-encoder of Kingma & Welling (2014): Gaussian q(z | x) by an MLP, MLP decoder, N(0, I) prior.

Trained by SGVB (A or B), the importance-weighted bound or wake-sleep, chosen by `estimator`.
"""

from __future__ import annotations

from tfrecog import checks
from tfrecog._tf import keras, tf, tfd
from tfrecog.layers import MLP, random
from tfrecog.layers.bernoulli import bernoulli_log_prob
from tfrecog.models.base import LatentVariableModel, layer_sizes, sample_blocks

# Rows (samples x examples) pushed through the decoder at once when many samples are scored (importance-sampled
# evaluation): the [rows, hidden] and [rows, D] intermediates of a block then stay in the CPU caches instead of
# streaming through memory. VAE 784-500-20, K=5000, 20 points: 20,000-row chunks 16.9 points/s, blocks of 5,000 rows
# 18.5, 2,500 rows 20.9-21.2, 1,000 rows 22.0, 500 rows 22.4 (bench/SPEED_NOTES.md).
DECODER_BLOCK_ROWS = 1024


@keras.saving.register_keras_serializable(package="tfrecog")
class VAE(LatentVariableModel):
    """VAE with q(z | x) = N(mu(x), diag(sigma(x)^2)), p(z) = N(0, I) and p(x | z) Bernoulli or Gaussian.

      encoder: h = act(W x + b) (x len(hidden_sizes)); mu = W_mu h + b_mu; log sigma = W_s h + b_s
      decoder: Bernoulli: logits = MLP(z);  Gaussian: mean = sigmoid(MLP_mu(z)), log scale = MLP_s(z)
               (scale floored at `min_scale` so densities of near-constant pixels stay finite)

    Args:
      event_size: D, the flattened data size (784 for MNIST, 560 for Frey faces).
      latent_size: dimension of z.
      hidden_sizes: hidden layer widths of encoder and decoder (the paper: (500,) MNIST, (200,) Frey faces).
      activation: hidden nonlinearity ('tanh' in the paper; 'gated' for gated linear units, see `MLP`).
      likelihood: 'bernoulli' or 'gaussian'.
      estimator: 'sgvb_b' (analytic KL), 'sgvb_a' (Monte-Carlo KL), 'iwae' or 'wake_sleep'.
      num_samples: L samples per datapoint (K for 'iwae').
      weight_prior_scale: sigma of the MAP prior N(0, sigma^2 I) on decoder weights (1.0 in the paper) or None.
      kernel_initializer: a Keras initializer name, or 'paper' for N(0, 0.01^2) weights and biases.
      min_scale: lower bound on the Gaussian decoder's standard deviation.

    Example:
      >>> model = VAE(event_size=784, latent_size=20)
      >>> model.compile()
      >>> model.fit(x_train, batch_size=100, epochs=10)        # doctest: +SKIP
      >>> q = model.encode(x_test[:5]); q.mean().shape           # doctest: +SKIP
      TensorShape([5, 20])
    """

    family = "vae"  # its name in the estimator registry's `families` (tfrecog.estimators)

    def __init__(
        self,
        event_size: int = 784,
        latent_size: int = 20,
        hidden_sizes=(500,),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        estimator: str = "sgvb_b",
        num_samples: int = 1,
        weight_prior_scale: float | None = None,
        kernel_initializer: str = "glorot_uniform",
        min_scale: float = 1e-3,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(event_size, likelihood, estimator, num_samples, weight_prior_scale, seed, **kwargs)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"VAE likelihood must be 'bernoulli' or 'gaussian'; got {likelihood!r}")
        self.latent_size = checks.integer(latent_size, "latent_size", 1)
        self.hidden_sizes = layer_sizes(hidden_sizes, "hidden_sizes")
        min_scale = checks.number(min_scale, "min_scale", 0.0)
        self.activation = activation
        self.kernel_initializer = kernel_initializer
        self.min_scale = float(min_scale)
        outputs = event_size * (2 if likelihood == "gaussian" else 1)
        self.encoder = MLP(self.hidden_sizes, activation, 2 * self.latent_size, kernel_initializer, name="encoder")
        self.decoder = MLP(self.hidden_sizes[::-1], activation, outputs, kernel_initializer, name="decoder")

    # -- distributions ----------------------------------------------------------------------------------------

    def prior(self):
        """p(z) = N(0, I)."""
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.latent_size]), scale_diag=tf.ones([self.latent_size]))

    def encoder_parameters(self, x):
        """(mu, log sigma) of q(z | x), each [B, latent_size]."""
        out = self.encoder(x)
        return out[..., : self.latent_size], out[..., self.latent_size :]

    def encode(self, x):
        """q(z | x) = N(mu(x), diag(exp(2 log sigma(x)))), batch shape [B], event shape [latent_size]."""
        loc, log_scale = self.encoder_parameters(self.validate(x))
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(log_scale))

    def decode(self, z):
        """p(x | z): independent Bernoulli(logits) or Normal(mean, scale) over the D pixels."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return tfd.Independent(tfd.Bernoulli(logits=out, dtype=tf.float32), 1)
        loc = tf.sigmoid(out[..., : self.event_size])
        scale = self.min_scale + tf.exp(out[..., self.event_size :])
        return tfd.Independent(tfd.Normal(loc, scale), 1)

    def observation_mean(self, z):
        return self.decode(z).mean()

    # -- generic latent-variable API ---------------------------------------------------------------------------

    def sample_posterior(self, x, num_samples, seed):
        q = self.encode(x)
        z = random.sample(q, num_samples, seed)  # q.sample, by the generator suited to the trace
        return z, q.log_prob(z)

    def observation_log_prob(self, x, z):
        """log p(x | z) [...], the density of `decode(z)` at x (x [B, D] broadcasts against z [..., B, latent]).

        Bernoulli pixels are scored by `bernoulli_log_prob` on the decoder's logits, not by `decode(z).log_prob`:
        the same density with one exp and one log1p per pixel where TFP's Bernoulli takes two softplus and two
        selects. Importance-sampled evaluation scores all D pixels of every one of the K samples, which made this
        the largest elementwise cost of `tfrecog.evaluate.log_likelihood` (bench/SPEED_NOTES.md). `decode` still
        returns the TFP distribution for sampling, means and everything else.
        """
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(self.decoder(z), x)
        return self.decode(z).log_prob(x)

    def log_joint(self, x, z):
        return self.prior().log_prob(z) + self.observation_log_prob(x, z)

    def log_importance_weights(self, x, num_samples, seed):
        """log w_k = log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x), k = 1..K; returns [K, B].

        The same draws and values as the generic `sample_posterior` + `log_joint`, with the decoder applied to
        blocks of about `DECODER_BLOCK_ROWS` rows of the K x B samples in turn (`tf.map_fn`; a while loop under
        XLA) when there are more rows than that, so scoring many samples keeps its intermediates in cache.
        """
        q = self.encode(x)
        z = random.sample(q, num_samples, seed)  # [K, B, latent]
        log_w = self.prior().log_prob(z) - q.log_prob(z)
        batch = z.shape[1]
        plan = sample_blocks(num_samples, batch, DECODER_BLOCK_ROWS)
        if plan is None:
            return log_w + self.observation_log_prob(x, z)
        num_blocks, samples_per_block, padding = plan  # padded with zero latents, scored and then dropped
        blocks = tf.reshape(tf.pad(z, [[0, padding], [0, 0], [0, 0]]),
                            [num_blocks, samples_per_block, batch, self.latent_size])
        log_px = tf.map_fn(lambda block: self.observation_log_prob(x, block), blocks,
                           fn_output_signature=tf.TensorSpec([samples_per_block, batch], tf.float32))
        return log_w + tf.reshape(log_px, [num_blocks * samples_per_block, batch])[:num_samples]

    def recognition_log_prob(self, x, z):
        return self.encode(x).log_prob(z)

    def sample_joint(self, num_examples, seed):
        prior_seed, data_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = self.prior().sample(num_examples, seed=prior_seed)
        return self.decode(z).sample(seed=data_seed), z

    # -- export protocol (tfrecog.export) -----------------------------------------------------------------------

    def export_outputs(self, x):
        """Named posterior parameters for deployment: {'mean': mu [B, d], 'log_scale': log sigma [B, d]}."""
        loc, log_scale = self.encoder_parameters(x)
        return {"mean": loc, "log_scale": log_scale}

    def export_noise_spec(self):
        """Noise inputs of `export_sample`: name -> size per example (standard normal draws)."""
        return {"noise": self.latent_size}

    def export_sample(self, x, noise):
        """A posterior sample computed from given noise: z = mu + sigma * noise['noise'] (deterministic graph)."""
        loc, log_scale = self.encoder_parameters(x)
        return {"sample": loc + tf.exp(log_scale) * noise["noise"]}

    def export_decoder_outputs(self, z):
        """Named parameters of p(x | z): Bernoulli 'logits', or Gaussian 'mean' and 'log_scale' (scale floor added)."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            return {"logits": out}
        scale = self.min_scale + tf.exp(out[..., self.event_size :])
        return {"mean": tf.sigmoid(out[..., : self.event_size]), "log_scale": tf.math.log(scale)}

    @property
    def latent_sizes(self):
        """Sizes of the latent layers, bottom first."""
        return [self.latent_size]

    @property
    def generative_variables(self):
        return list(self.decoder.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "latent_size": self.latent_size,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "kernel_initializer": self.kernel_initializer,
            "min_scale": self.min_scale,
        }
