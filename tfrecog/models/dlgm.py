"""Deep latent Gaussian models (Rezende, Mohamed & Wierstra 2014): layers of Gaussian latents joined by MLPs.

The recognition model is a shared MLP with a Gaussian head per layer, diagonal or rank-one precision, and the
whole model is trained by stochastic backpropagation on the free energy (the paper's eq. 6 with its weight prior).
"""

from __future__ import annotations

from tfrecog import checks
from tfrecog._tf import keras, tf, tfb, tfd
from tfrecog.layers import MLP, random
from tfrecog.layers.bernoulli import bernoulli_log_prob
from tfrecog.layers.gaussian import COVARIANCES, GaussianHead
from tfrecog.models.base import LatentVariableModel, layer_sizes

__all__ = ["DLGM", "NOISE_MATRICES", "OBSERVATION_SCALES", "RECOGNITION_STRUCTURES"]

NOISE_MATRICES = ("diagonal", "full")
OBSERVATION_SCALES = ("shared", "predicted")
RECOGNITION_STRUCTURES = ("independent", "top_down")


@keras.saving.register_keras_serializable(package="tfrecog")
class DLGM(LatentVariableModel):
    """Deep latent Gaussian model with a per-layer Gaussian recognition model.

    Generative model (layers l = 1..L, bottom first; xi_l ~ N(0, I_{K_l}) independent):

      h_L = G_L xi_L
      h_l = T_l(h_{l+1}) + G_l xi_l,           l = L-1, ..., 1
      p(x | h_1): Bernoulli(logits = T_0(h_1))   or   N(T_0(h_1), diag(psi))

    Gaussian noise variance psi (`observation_scale`): 'shared', a learned per-pixel variance common to every
    example (as in factor analysis); or 'predicted', psi(h_1) = (min_scale + exp(S_0(h_1)))^2
    per example and pixel, S_0 a second head of T_0's output layer (as the VAE's Gaussian decoder).

    T_l are MLPs (`hidden_sizes`, `activation`), affine when `linear=True`. G_l is a learned diagonal matrix
    (`noise_matrix='diagonal'`, the default, initialised to I) or a full K_l x K_l matrix ('full', initialised to I).
    A one-layer model with `linear=True` and a Gaussian likelihood is factor analysis:
    x = W G xi + b + e, so p(x) = N(b, W G G^T W^T + diag(psi)).

    Latent variables: the model's h is the list [xi_1, ..., xi_L] (each [..., B, K_l]); the prior is
    p(xi) = prod_l N(xi_l; 0, I) and x depends on xi through the deterministic maps above, so

      log_joint(x, xi) = sum_l log N(xi_l; 0, I) + log p(x | h_1(xi))

    Recognition model: f = MLP_r(x) shared by all layers, then per layer (`GaussianHead`)

      'independent' (`recognition_structure`, the paper's):  q(xi | x) = prod_l q(xi_l | x),
          q(xi_l | x) = N(mu_l(f), C_l(f))
      'top_down':  q(xi | x) = q(xi_L | x) prod_{l<L} q(xi_l | x, h_{l+1}),
          q(xi_l | x, h_{l+1}) = N(mu_l([f, h_{l+1}]), C_l([f, h_{l+1}])),  h_{l+1} = the generative state above,
          computed from the xi_{l+1..L} drawn first (sampling goes down the layers as the generative model does)
        'diagonal': C_l = diag(exp(2 log_scale_l))
        'rank_one': C_l = (D_l + u_l u_l^T)^-1, D_l = diag(exp(-2 log_scale_l))   (O(K) sampling and density)

    With independent layers the posterior cannot express that h_1 = T_1(h_2) + G_1 xi_1 is pinned by x whatever
    xi_2 is (so xi_1 and xi_2 are strongly dependent under the true posterior); the top-down form can. Its KL to the
    prior is analytic within each layer given the layers above and Monte Carlo across layers
    (`sample_posterior_and_kl`).

    Objective (estimator 'sgvb_b'): the negative of the paper's free energy per example,

      F(x) = -E_q[log p(x | xi)] + sum_l KL(q(xi_l | x) || N(0, I)) + ||theta||^2 / (2 kappa N)

    with the KL terms analytic, gradients by stochastic backpropagation (reparameterisation), and the weight prior
    N(0, kappa I) on the generative parameters theta (T_l, G_l, the observation layer) through
    `weight_prior_scale` = sqrt(kappa). The other estimators of `tfrecog.estimators` work as for the VAE.

    Args:
      event_size: D, the flattened data size.
      latent_sizes: K_1, ..., K_L, bottom (next to x) first.
      hidden_sizes: hidden widths of every generative MLP T_l (ignored when `linear`).
      activation: hidden nonlinearity of the generative and recognition MLPs: a Keras activation name, or 'gated'
        for gated linear units (see `MLP`).
      linear: T_l affine (no hidden layers).
      noise_matrix: 'diagonal' or 'full' G_l.
      covariance: 'rank_one' or 'diagonal' recognition covariance.
      recognition_hidden_sizes: hidden widths of the shared recognition MLP (may be empty: heads read x directly).
      recognition_structure: 'independent' (the paper's) or 'top_down' (see above).
      likelihood: 'bernoulli' or 'gaussian'.
      mean_activation: Gaussian likelihood only: None (identity, factor analysis) or 'sigmoid' (data in [0, 1]).
      estimator, num_samples, weight_prior_scale, seed: see `LatentVariableModel`.
      kernel_initializer: a Keras initializer name, or 'paper' for N(0, 0.01^2).
      min_scale: lower bound on the Gaussian observation standard deviation.
      observation_scale: Gaussian likelihood only: 'shared' (per-pixel, learned) or 'predicted' (per example and
        pixel, from h_1).

    Example:
      >>> model = DLGM(event_size=784, latent_sizes=(50, 20), covariance="rank_one")
      >>> model.compile()
      >>> model.fit(x_train, batch_size=100, epochs=10)          # doctest: +SKIP
      >>> [xi.shape for xi in model.encode(x_test[:5]).sample(seed=[0, 1])]   # doctest: +SKIP
      [TensorShape([5, 50]), TensorShape([5, 20])]
    """

    family = "dlgm"  # its name in the estimator registry's `families` (tfrecog.estimators)

    def __init__(
        self,
        event_size: int = 784,
        latent_sizes=(50,),
        hidden_sizes=(200,),
        activation: str = "tanh",
        linear: bool = False,
        noise_matrix: str = "diagonal",
        covariance: str = "rank_one",
        recognition_hidden_sizes=(200,),
        recognition_structure: str = "independent",
        likelihood: str = "bernoulli",
        mean_activation: str | None = None,
        estimator: str = "sgvb_b",
        num_samples: int = 1,
        weight_prior_scale: float | None = None,
        kernel_initializer: str = "glorot_uniform",
        min_scale: float = 1e-3,
        observation_scale: str = "shared",
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(event_size, likelihood, estimator, num_samples, weight_prior_scale, seed, **kwargs)
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"DLGM likelihood must be 'bernoulli' or 'gaussian'; got {likelihood!r}")
        latent_sizes = layer_sizes(latent_sizes, "latent_sizes", allow_empty=False)
        hidden_sizes = layer_sizes(hidden_sizes, "hidden_sizes")
        recognition_hidden_sizes = layer_sizes(recognition_hidden_sizes, "recognition_hidden_sizes")
        min_scale = checks.number(min_scale, "min_scale", 0.0)
        if noise_matrix not in NOISE_MATRICES:
            raise ValueError(f"noise_matrix must be one of {', '.join(NOISE_MATRICES)}; got {noise_matrix!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}; got {covariance!r}")
        if recognition_structure not in RECOGNITION_STRUCTURES:
            known = ", ".join(RECOGNITION_STRUCTURES)
            raise ValueError(f"recognition_structure must be one of {known}; got {recognition_structure!r}")
        if mean_activation not in (None, "sigmoid"):
            raise ValueError(f"mean_activation must be None or 'sigmoid'; got {mean_activation!r}")
        if observation_scale not in OBSERVATION_SCALES:
            known = ", ".join(OBSERVATION_SCALES)
            raise ValueError(f"observation_scale must be one of {known}; got {observation_scale!r}")
        self._latent_sizes = tuple(int(k) for k in latent_sizes)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.linear = bool(linear)
        self.noise_matrix = noise_matrix
        self.covariance = covariance
        self.recognition_hidden_sizes = tuple(int(h) for h in recognition_hidden_sizes)
        self.recognition_structure = recognition_structure
        self.mean_activation = mean_activation
        self.kernel_initializer = kernel_initializer
        self.min_scale = float(min_scale)
        self.observation_scale = observation_scale
        predicted = likelihood == "gaussian" and observation_scale == "predicted"

        widths = () if self.linear else self.hidden_sizes
        sizes = self._latent_sizes
        # transitions[l - 1] is T_l: h_{l+1} -> R^{K_l}, l = 1..L-1.
        self.transitions = [
            MLP(widths, activation, sizes[layer - 1], kernel_initializer, name=f"transition_{layer}")
            for layer in range(1, len(sizes))
        ]
        self.noise_matrices = [
            self.add_weight(
                shape=(k,) if noise_matrix == "diagonal" else (k, k),
                initializer="ones" if noise_matrix == "diagonal" else "identity",
                name=f"noise_matrix_{layer + 1}",
            )
            for layer, k in enumerate(sizes)
        ]
        outputs = event_size * (2 if predicted else 1)  # predicted: [mean pre-activation, log(scale - min_scale)]
        self.observation = MLP(widths, activation, outputs, kernel_initializer, name="observation")
        if likelihood == "gaussian" and not predicted:
            # log of (scale - min_scale): the per-pixel noise standard deviation sqrt(psi).
            self.observation_log_scale = self.add_weight(
                shape=(event_size,), initializer="zeros", name="observation_log_scale"
            )
        self.recognition = MLP(self.recognition_hidden_sizes, activation, None, kernel_initializer, name="recognition")
        self.heads = [
            GaussianHead(k, covariance, kernel_initializer, name=f"recognition_head_{layer + 1}")
            for layer, k in enumerate(sizes)
        ]

    # -- structure ----------------------------------------------------------------------------------------------

    @property
    def latent_sizes(self):
        """Sizes K_1, ..., K_L of the latent layers, bottom first."""
        return list(self._latent_sizes)


    def _check_latents(self, xi):
        if not isinstance(xi, (list, tuple)) or len(xi) != self.num_layers:
            raise ValueError(
                f"latents must be a list of {self.num_layers} tensors [..., K_l] with K = {self.latent_sizes}; "
                f"got {type(xi).__name__}" + (f" of length {len(xi)}" if isinstance(xi, (list, tuple)) else "")
            )
        return [tf.convert_to_tensor(t, tf.float32) for t in xi]

    def _apply_noise_matrix(self, layer, xi):
        """G_l xi_l for xi_l [..., K_l] (layer zero-based)."""
        g = self.noise_matrices[layer]
        if self.noise_matrix == "diagonal":
            return g * xi
        return tf.einsum("ij,...j->...i", g, xi)

    def _state(self, layer, above, xi):
        """h_l from xi_l (layer zero-based): G_L xi_L for the top layer (`above` None), else T_l(h_{l+1}) + G_l xi_l."""
        noise = self._apply_noise_matrix(layer, xi)
        return noise if above is None else self.transitions[layer](above) + noise

    def generative_states(self, xi):
        """[h_1, ..., h_L] from [xi_1, ..., xi_L]: h_L = G_L xi_L, h_l = T_l(h_{l+1}) + G_l xi_l."""
        xi = self._check_latents(xi)
        states = [None] * self.num_layers
        h = None
        for layer in range(self.num_layers - 1, -1, -1):
            h = states[layer] = self._state(layer, h, xi[layer])
        return states

    # -- distributions ----------------------------------------------------------------------------------------

    def prior(self):
        """p(xi) = prod_l N(xi_l; 0, I_{K_l}), a `tfd.JointDistributionSequential` over the list of layers."""
        return tfd.JointDistributionSequential(
            [tfd.MultivariateNormalDiag(loc=tf.zeros([k]), scale_diag=tf.ones([k])) for k in self._latent_sizes]
        )

    @property
    def top_down(self) -> bool:
        return self.recognition_structure == "top_down"

    def _head_parameters(self, layer, features, above):
        """The parameters of layer l's Gaussian: from f, or (top-down, l < L) from [f, h_{l+1}], f broadcast over
        the leading sample dimensions of h_{l+1}."""
        inputs = features
        if self.top_down and above is not None:
            shape = tf.concat([tf.shape(above)[:-1], tf.shape(features)[-1:]], 0)
            inputs = tf.concat([tf.broadcast_to(features, shape), above], axis=-1)
        return self.heads[layer](inputs)

    def _posterior_pass(self, x, draw, offsets=None):
        """Walks q(xi | x) from the top layer down.

        `draw(layer, q_l)` (layer zero-based, q_l the layer's Gaussian) returns xi_l. With top-down recognition the
        head of layer l < L reads [f, h_{l+1}], h_{l+1} the generative state from the xi already drawn above;
        otherwise every head reads f alone. `offsets` (optional, bottom first): per layer a tuple added to the
        head's parameters (mu_l + d_mu, log_scale_l + d_s[, u_l + d_u]), the free per-example parameters of
        `tfrecog.annealing.optimised_elbo` (zero offsets give q itself).

        Returns (parameters, distributions, latents), each a list bottom first.
        """
        features = self.recognition(x)
        num = self.num_layers
        parameters, distributions, latents = [None] * num, [None] * num, [None] * num
        h = None
        for layer in range(num - 1, -1, -1):
            parameters[layer] = self._head_parameters(layer, features, h)
            if offsets is not None:
                parameters[layer] = tuple(a + d for a, d in zip(parameters[layer], offsets[layer], strict=True))
            distributions[layer] = self.heads[layer].make_distribution(parameters[layer])
            latents[layer] = draw(layer, distributions[layer])
            if self.top_down and layer > 0:
                h = self._state(layer, h, latents[layer])
        return parameters, distributions, latents

    @staticmethod
    def _log_q(distributions, latents):
        """sum_l log q_l(xi_l): the per-layer densities of a `_posterior_pass`, summed."""
        return tf.add_n([q.log_prob(v) for q, v in zip(distributions, latents, strict=True)])

    def offset_posterior(self, x, offsets):
        """q_d(xi | x): the recognition model with per-example offsets d_l added to every layer's head parameters,
        q_d(xi | x) = q(xi_L | x; theta_L + d_L) prod_{l<L} q(xi_l | x, h_{l+1}; theta_l(h_{l+1}) + d_l), theta_l
        what the recognition network computes (independent layers: q(xi_l | x; theta_l + d_l)). `offsets`, bottom
        first, holds per layer a tuple shaped like the head's parameters (`recognition_parameters`); zero offsets
        give q itself. The free family of `tfrecog.annealing.optimised_elbo` for top-down recognition: the
        dependence of the lower layers on the draws above is kept (reparameterised). Returns an object with
        `sample(num_samples, seed)` (the list [xi_1, ..., xi_L], leading sample dimension) and `log_prob(xi)`."""
        return _OffsetPosterior(self, x, offsets)

    def _mean_pass(self, x):
        """The posterior parameters along the mean path (top-down: each layer given the means above)."""
        parameters, _, _ = self._posterior_pass(x, lambda layer, q: q.loc)
        return parameters

    def recognition_parameters(self, x):
        """Per layer, the tuple (mu_l, log_scale_l) or (mu_l, log_scale_l, u_l) of q(xi_l | x), each [B, K_l];
        with top-down recognition, those of q(xi_l | x, h_{l+1}) with the layers above at their means."""
        if self.top_down:
            return self._mean_pass(x)
        features = self.recognition(x)
        return [head(features) for head in self.heads]

    def encode(self, x):
        """q(xi | x) as a TFP joint distribution over the list [xi_1, ..., xi_L] (batch [B], events [K_l]).

        Independent layers: `tfd.JointDistributionSequential` of the per-layer Gaussians. Top-down: a
        `tfd.JointDistributionSequential` from the top layer down (each layer's Gaussian a function of the draws
        above), restructured into the bottom-first list by `tfb.Restructure`.
        """
        x = self.validate(x)
        if not self.top_down:
            return tfd.JointDistributionSequential(
                [head.make_distribution(p) for head, p in zip(self.heads, self.recognition_parameters(x), strict=True)]
            )
        num = self.num_layers
        features = self.recognition(x)

        def conditional(layer):
            def make(*above):  # JDS passes the draws so far, most recent first: xi_{l+1}, ..., xi_L
                h = None
                for k, value in zip(range(num - 1, layer, -1), reversed(above), strict=True):
                    h = self._state(k, h, value)
                return self.heads[layer].make_distribution(self._head_parameters(layer, features, h))

            return make

        top = conditional(num - 1)()
        top_first = tfd.JointDistributionSequential([top] + [conditional(layer) for layer in range(num - 2, -1, -1)])
        return tfd.TransformedDistribution(top_first, tfb.Restructure(list(range(num - 1, -1, -1))))

    @property
    def data_range(self):
        """[0, 1] as for every model, except for a Gaussian with identity mean (factor analysis): unbounded."""
        if self.likelihood == "gaussian" and self.mean_activation is None:
            return None
        return super().data_range

    @property
    def _predicts_scale(self):
        return self.likelihood == "gaussian" and self.observation_scale == "predicted"

    def _observation_parameters(self, xi):
        out = self.observation(self.generative_states(xi)[0])
        if self.likelihood == "bernoulli":
            return out, None
        if self._predicts_scale:
            out, log_excess = out[..., : self.event_size], out[..., self.event_size :]
            scale = self.min_scale + tf.exp(log_excess)
        else:
            scale = tf.broadcast_to(self.min_scale + tf.exp(self.observation_log_scale), tf.shape(out))
        mean = tf.sigmoid(out) if self.mean_activation == "sigmoid" else out
        return mean, scale

    def decode(self, xi):
        """p(x | xi) = p(x | h_1(xi)): independent Bernoulli(logits) or Normal(mean, sqrt(psi)) over the D pixels."""
        first, scale = self._observation_parameters(xi)
        if self.likelihood == "bernoulli":
            return tfd.Independent(tfd.Bernoulli(logits=first, dtype=tf.float32), 1)
        return tfd.Independent(tfd.Normal(first, scale), 1)

    def call(self, x, training=False):
        """The posterior means [mu_1, ..., mu_L] concatenated, [B, sum_l K_l]: a deterministic embedding."""
        return tf.concat([p[0] for p in self.recognition_parameters(self.validate(x))], axis=-1)

    # -- generic latent-variable API ---------------------------------------------------------------------------

    def _sample_top_down(self, x, num_samples, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, self.num_layers))
        top = self.num_layers - 1  # the top layer draws the samples; each layer below one draw per sample above
        return self._posterior_pass(
            x, lambda layer, q: random.sample(q, num_samples if layer == top else None, seeds[layer])
        )

    def sample_posterior(self, x, num_samples, seed):
        if self.top_down:
            _, distributions, xi = self._sample_top_down(x, num_samples, seed)
            return xi, self._log_q(distributions, xi)
        q = self.encode(x)
        xi = random.sample(q, num_samples, seed)  # q.sample, by the generator suited to the trace
        return xi, q.log_prob(xi)

    def sample_posterior_and_kl(self, x, num_samples, seed, analytic_kl: bool = True):
        """Top-down recognition: KL(q || p) = sum_l E_q[KL(q(xi_l | x, h_{l+1}) || N(0, I))], each layer's KL
        in closed form at the sampled layers above, averaged over the samples (analytic_kl); or the Monte-Carlo
        mean of log q - log p. Independent layers: the closed form of `LatentVariableModel`."""
        if not self.top_down:
            return super().sample_posterior_and_kl(x, num_samples, seed, analytic_kl)
        _, distributions, xi = self._sample_top_down(x, num_samples, seed)
        if analytic_kl:
            kl = 0.0
            for q, p in zip(distributions, self.prior().model, strict=True):
                layer_kl = tfd.kl_divergence(q, p)  # [B] (top layer) or [L, B]
                kl += layer_kl if layer_kl.shape.rank == 1 else tf.reduce_mean(layer_kl, axis=0)
            return xi, kl
        return xi, tf.reduce_mean(self._log_q(distributions, xi) - self.prior().log_prob(xi), axis=0)

    def observation_log_prob(self, x, xi):
        """log p(x | xi) [...]: Bernoulli pixels scored by `bernoulli_log_prob` on the logits (the density of
        `decode(xi)` with one exp and one log1p per pixel), Gaussian pixels by `decode(xi).log_prob`."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_prob(self._observation_parameters(self._check_latents(xi))[0], x)
        return self.decode(xi).log_prob(x)

    def log_joint(self, x, xi):
        xi = self._check_latents(xi)
        return self.prior().log_prob(xi) + self.observation_log_prob(x, xi)

    def recognition_log_prob(self, x, xi):
        xi = self._check_latents(xi)
        if self.top_down:
            _, distributions, _ = self._posterior_pass(x, lambda layer, q: xi[layer])
            return self._log_q(distributions, xi)
        return self.encode(x).log_prob(xi)

    def sample_joint(self, num_examples, seed):
        prior_seed, data_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        xi = self.prior().sample(num_examples, seed=prior_seed)
        return self.decode(xi).sample(seed=data_seed), xi

    @property
    def generative_variables(self):
        variables = [v for t in self.transitions for v in t.trainable_variables]
        variables += list(self.noise_matrices) + list(self.observation.trainable_variables)
        if self.likelihood == "gaussian" and not self._predicts_scale:
            variables.append(self.observation_log_scale)
        return variables

    # -- factor analysis -----------------------------------------------------------------------------------------

    def marginal(self):
        """The exact p(x) = N(b, W G G^T W^T + diag(psi)) of a one-layer linear Gaussian DLGM (factor analysis).

        Returns a `tfd.MultivariateNormalTriL`; raises for any other configuration (no closed form).
        """
        factor_analysis = self.linear and self.num_layers == 1 and self.likelihood == "gaussian"
        if not (factor_analysis and self.mean_activation is None and not self._predicts_scale):
            raise ValueError(
                "marginal() needs a one-layer linear DLGM with a Gaussian likelihood, identity mean and "
                "observation_scale='shared' (factor analysis)"
            )
        if not self.built:
            self.build((None, self.event_size))
        dense = self.observation.dense_layers[0]
        g = self.noise_matrices[0]
        g = tf.linalg.diag(g) if self.noise_matrix == "diagonal" else g
        loading = tf.matmul(dense.kernel, g, transpose_a=True)  # W G, [D, K]
        psi = tf.square(self.min_scale + tf.exp(self.observation_log_scale))
        covariance = tf.matmul(loading, loading, transpose_b=True) + tf.linalg.diag(psi)
        return tfd.MultivariateNormalTriL(loc=dense.bias, scale_tril=tf.linalg.cholesky(covariance))

    # -- export protocol (tfrecog.export) -----------------------------------------------------------------------

    def export_outputs(self, x):
        """Named posterior parameters for layers l = 1..L: 'mean_l', 'log_scale_l' and, rank-one, 'rank_one_l'.

        'log_scale_l' is log of D_l^(-1/2) (the log standard deviation when u_l = 0); q(xi_l | x) has covariance
        (diag(exp(-2 log_scale_l)) + u_l u_l^T)^-1.
        """
        outputs = {}
        for layer, parameters in enumerate(self.recognition_parameters(x), start=1):
            outputs[f"mean_{layer}"] = parameters[0]
            outputs[f"log_scale_{layer}"] = parameters[1]
            if self.covariance == "rank_one":
                outputs[f"rank_one_{layer}"] = parameters[2]
        return outputs

    def export_noise_spec(self):
        """Noise inputs of `export_sample`: 'noise_l' -> K_l standard normal draws per example."""
        return {f"noise_{layer}": k for layer, k in enumerate(self._latent_sizes, start=1)}

    def export_sample(self, x, noise):
        """Posterior samples from given noise: 'sample_l' = mu_l + S_l noise['noise_l'] with S_l S_l^T = C_l
        (top-down recognition: mu_l and S_l of q(xi_l | x, h_{l+1}) at the samples drawn above)."""
        _, _, latents = self._posterior_pass(
            x, lambda layer, q: q.loc + q.scale.matvec(noise[f"noise_{layer + 1}"])
        )
        return {f"sample_{layer}": xi for layer, xi in enumerate(latents, start=1)}

    def export_decoder_outputs(self, xi):
        """Named parameters of p(x | xi): Bernoulli 'logits', or Gaussian 'mean' and 'log_scale' (floor added)."""
        first, scale = self._observation_parameters(xi)
        if self.likelihood == "bernoulli":
            return {"logits": first}
        return {"mean": first, "log_scale": tf.math.log(scale)}

    def get_config(self):
        return {
            **super().get_config(),
            "latent_sizes": list(self._latent_sizes),
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "linear": self.linear,
            "noise_matrix": self.noise_matrix,
            "covariance": self.covariance,
            "recognition_hidden_sizes": list(self.recognition_hidden_sizes),
            "recognition_structure": self.recognition_structure,
            "mean_activation": self.mean_activation,
            "kernel_initializer": self.kernel_initializer,
            "min_scale": self.min_scale,
            "observation_scale": self.observation_scale,
        }


class _OffsetPosterior:
    """The distribution returned by `DLGM.offset_posterior`: sampling and scoring walk `DLGM._posterior_pass` with
    the offsets added to each head's parameters."""

    def __init__(self, model, x, offsets):
        self.model, self.x, self.offsets = model, x, offsets

    def sample(self, num_samples, seed):
        """xi ~ q_d(xi | x): num_samples draws of the top layer, each lower layer drawn given the layers above."""
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, self.model.num_layers))
        top = self.model.num_layers - 1
        _, _, xi = self.model._posterior_pass(
            self.x, lambda layer, q: q.sample(num_samples if layer == top else (), seed=seeds[layer]),
            offsets=self.offsets)
        return xi

    def log_prob(self, xi):
        """log q_d(xi | x) = sum_l log q_d(xi_l | x, h_{l+1})."""
        _, distributions, _ = self.model._posterior_pass(self.x, lambda layer, q: xi[layer], offsets=self.offsets)
        return self.model._log_q(distributions, xi)
