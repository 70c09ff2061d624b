"""Gaussian recognition heads: diagonal covariance, or the rank-one precision C = (D + u u^T)^-1 of Rezende et al.

Everything about the rank-one form is O(K) per example (Sherman-Morrison and the matrix determinant lemma).
"""

from __future__ import annotations

from tfrecog._tf import keras, tf, tfd
from tfrecog.layers.mlp import initializer

__all__ = [
    "COVARIANCES",
    "GaussianHead",
    "LinearOperatorRankOnePrecisionSqrt",
    "MultivariateNormalRankOnePrecision",
    "rank_one_sqrt_gamma",
]

COVARIANCES = ("diagonal", "rank_one")


def rank_one_sqrt_gamma(squared_norm):
    """gamma(n) with (I + v v^T)^(-1/2) = I - gamma v v^T, n = |v|^2.

      gamma = (1 - 1/sqrt(1 + n)) / n = 1 / (r (1 + r)),   r = sqrt(1 + n)

    The second form is the same number without the 0/0 at n = 0 (where gamma = 1/2).
    Check: (I - g v v^T)^2 = I - (2g - g^2 n) v v^T and 2g - g^2 n = 1/(1 + n), the Sherman-Morrison coefficient.
    """
    r = tf.sqrt(1.0 + squared_norm)
    return 1.0 / (r * (1.0 + r))


class LinearOperatorRankOnePrecisionSqrt(tf.linalg.LinearOperator):
    """A square root S of C = (D + u u^T)^-1 with D = diag(exp(-2 log_scale)): S S^T = C, never formed densely.

    With s = D^(-1/2) = exp(log_scale) and v = s * u (elementwise),

      C = D^(-1/2) (I + v v^T)^-1 D^(-1/2),   (I + v v^T)^(-1/2) = I - gamma v v^T   (see `rank_one_sqrt_gamma`)
      S = diag(s) (I - gamma v v^T)
      S^-1 = (I + beta v v^T) diag(1/s),      beta = 1 / (1 + r),  r = sqrt(1 + |v|^2)   (Sherman-Morrison)
      log|det S| = sum_i log s_i - log(1 + |v|^2) / 2                                  (determinant lemma)

    so products, solves and the log-determinant cost O(K). With u = 0 it is diag(s): `log_scale` is then the log
    standard deviation, as in a diagonal Gaussian.

    Args:
      log_scale: [..., K], minus half the log of the diagonal precision D.
      rank_one: u, [..., K] (broadcast against `log_scale`).
    """

    def __init__(self, log_scale, rank_one, name: str = "LinearOperatorRankOnePrecisionSqrt"):
        parameters = dict(log_scale=log_scale, rank_one=rank_one, name=name)
        with tf.name_scope(name):
            self._log_scale = tf.convert_to_tensor(log_scale, name="log_scale")
            self._rank_one = tf.convert_to_tensor(rank_one, dtype=self._log_scale.dtype, name="rank_one")
            self._s = tf.exp(self._log_scale)
            self._v = self._s * self._rank_one
            self._squared_norm = tf.reduce_sum(tf.square(self._v), axis=-1)
            root = tf.sqrt(1.0 + self._squared_norm)
            self._gamma = 1.0 / (root * (1.0 + root))
            self._beta = 1.0 / (1.0 + root)
            super().__init__(
                dtype=self._log_scale.dtype,
                is_non_singular=True,
                is_self_adjoint=None,
                is_positive_definite=None,
                is_square=True,
                parameters=parameters,
                name=name,
            )

    @property
    def log_scale(self):
        return self._log_scale

    @property
    def rank_one(self):
        return self._rank_one

    def _shape(self):
        shape = tf.broadcast_static_shape(self._log_scale.shape, self._rank_one.shape)
        return shape.concatenate(shape[-1:])

    def _shape_tensor(self):
        shape = tf.broadcast_dynamic_shape(tf.shape(self._log_scale), tf.shape(self._rank_one))
        return tf.concat([shape, shape[-1:]], 0)

    def _rank_one_apply(self, x, coefficient):
        """(I + coefficient v v^T) x for x [..., K, M]."""
        v = self._v[..., :, None]
        return x + coefficient[..., None, None] * v * tf.reduce_sum(v * x, axis=-2, keepdims=True)

    def _matmul(self, x, adjoint=False, adjoint_arg=False):
        x = tf.linalg.adjoint(x) if adjoint_arg else x
        s = self._s[..., :, None]
        if adjoint:  # S^T x = (I - gamma v v^T) (s * x)
            return self._rank_one_apply(s * x, -self._gamma)
        return s * self._rank_one_apply(x, -self._gamma)

    def _solve(self, rhs, adjoint=False, adjoint_arg=False):
        rhs = tf.linalg.adjoint(rhs) if adjoint_arg else rhs
        s = self._s[..., :, None]
        if adjoint:  # S^-T y = (1/s) * ((I + beta v v^T) y)
            return self._rank_one_apply(rhs, self._beta) / s
        return self._rank_one_apply(rhs / s, self._beta)

    def _log_abs_determinant(self):
        return tf.reduce_sum(self._log_scale, axis=-1) - 0.5 * tf.math.log1p(self._squared_norm)

    def _diag_part(self):
        return self._s * (1.0 - self._gamma[..., None] * tf.square(self._v))

    def _to_dense(self):
        """Dense S [..., K, K]; for tests and diagnostics only."""
        k = tf.shape(self._v)[-1]
        eye = tf.eye(k, dtype=self.dtype)
        outer = self._v[..., :, None] * self._v[..., None, :]
        return self._s[..., :, None] * (eye - self._gamma[..., None, None] * outer)

    def covariance_diag(self):
        """diag(C) = s^2 (1 - v^2 / (1 + |v|^2)), O(K)."""
        return tf.square(self._s) * (1.0 - tf.square(self._v) / (1.0 + self._squared_norm[..., None]))

    @property
    def _composite_tensor_fields(self):
        return ("log_scale", "rank_one")

    @property
    def _experimental_parameter_ndims_to_matrix_ndims(self):
        return {"log_scale": 1, "rank_one": 1}


class MultivariateNormalRankOnePrecision(tfd.MultivariateNormalLinearOperator):
    """N(loc, C) with precision C^-1 = D + u u^T, D = diag(exp(-2 log_scale)) (Rezende et al. 2014, eq. 13).

      x = loc + S eps,  eps ~ N(0, I),  S = `LinearOperatorRankOnePrecisionSqrt(log_scale, rank_one)`
      log q(x) = -K/2 log(2 pi) - log|det S| - |S^-1 (x - loc)|^2 / 2

    all in O(K); reparameterised. KL divergence to a `tfd.MultivariateNormalDiag` (the N(0, I) prior) is
    registered in O(K) as well (TFP's generic rule would form dense K x K matrices).

    Args:
      loc: [..., K] mean.
      log_scale: [..., K]; with rank_one = 0 the log standard deviations.
      rank_one: u, [..., K].

    Example:
      >>> q = MultivariateNormalRankOnePrecision(tf.zeros([3]), tf.zeros([3]), tf.ones([3]))
      >>> q.log_prob(q.sample(2, seed=[1, 2])).shape
      TensorShape([2])
    """

    def __init__(
        self,
        loc,
        log_scale,
        rank_one,
        validate_args: bool = False,
        allow_nan_stats: bool = True,
        name: str = "MultivariateNormalRankOnePrecision",
    ):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            loc = tf.convert_to_tensor(loc, name="loc")
            log_scale = tf.convert_to_tensor(log_scale, dtype=loc.dtype, name="log_scale")
            rank_one = tf.convert_to_tensor(rank_one, dtype=loc.dtype, name="rank_one")
            self._log_scale = log_scale
            self._rank_one = rank_one
            super().__init__(
                loc=loc,
                scale=LinearOperatorRankOnePrecisionSqrt(log_scale, rank_one),
                validate_args=validate_args,
                allow_nan_stats=allow_nan_stats,
                name=name,
            )
            self._parameters = parameters

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        from tensorflow_probability.python.internal import parameter_properties

        return dict(
            loc=parameter_properties.ParameterProperties(event_ndims=1),
            log_scale=parameter_properties.ParameterProperties(event_ndims=1),
            rank_one=parameter_properties.ParameterProperties(event_ndims=1),
        )

    @property
    def log_scale(self):
        return self._log_scale

    @property
    def rank_one(self):
        return self._rank_one

    def _variance(self):
        variance = self.scale.covariance_diag()
        return tf.broadcast_to(variance, tf.broadcast_dynamic_shape(tf.shape(variance), tf.shape(self.loc)))

    def _stddev(self):
        return tf.sqrt(self._variance())


@tfd.RegisterKL(MultivariateNormalRankOnePrecision, tfd.MultivariateNormalDiag)
def _kl_rank_one_precision_diag(q, p, name=None):
    """KL(N(m, C) || N(mu, diag(sigma^2))) in O(K), C = (D + u u^T)^-1.

    KL = 1/2 [ sum_i C_ii / sigma_i^2 + sum_i (m_i - mu_i)^2 / sigma_i^2 - K + 2 sum_i log sigma_i - log det C ]
    log det C = 2 log|det S|,   C_ii from `LinearOperatorRankOnePrecisionSqrt.covariance_diag`
    """
    with tf.name_scope(name or "kl_rank_one_precision_diag"):
        prior_variance = tf.square(p.stddev())
        trace = tf.reduce_sum(q.scale.covariance_diag() / prior_variance, axis=-1)
        mahalanobis = tf.reduce_sum(tf.square(q.mean() - p.mean()) / prior_variance, axis=-1)
        k = tf.cast(tf.shape(q.loc)[-1], q.dtype)
        log_det_prior = tf.reduce_sum(tf.math.log(prior_variance), axis=-1)
        return 0.5 * (trace + mahalanobis - k + log_det_prior) - q.scale.log_abs_determinant()


@keras.saving.register_keras_serializable(package="tfrecog")
class GaussianHead(keras.layers.Layer):
    """An affine map from features to the parameters of a Gaussian over K latent units.

      loc = W_m f + b_m;  log_scale = W_s f + b_s;  (rank_one) u = W_u f + b_u
      diagonal: q = N(loc, diag(exp(2 log_scale)))
      rank_one: q = N(loc, (D + u u^T)^-1), D = diag(exp(-2 log_scale))    (`MultivariateNormalRankOnePrecision`)

    `call(features)` returns the tuple (loc, log_scale) or (loc, log_scale, u), each [..., K];
    `distribution(features)` returns the TFP distribution.

    Args:
      latent_size: K.
      covariance: 'diagonal' or 'rank_one'.
      kernel_initializer: Keras initializer name or 'paper' (N(0, 0.01^2)).
    """

    def __init__(
        self, latent_size: int, covariance: str = "diagonal", kernel_initializer: str = "glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {', '.join(COVARIANCES)}; got {covariance!r}")
        if int(latent_size) < 1:
            raise ValueError(f"latent_size must be a positive integer; got {latent_size!r}")
        self.latent_size = int(latent_size)
        self.covariance = covariance
        self.kernel_initializer = kernel_initializer
        self.num_parameters = 3 if covariance == "rank_one" else 2
        bias = "paper" if kernel_initializer == "paper" else "zeros"
        self.dense = keras.layers.Dense(
            self.num_parameters * self.latent_size,
            kernel_initializer=initializer(kernel_initializer),
            bias_initializer=initializer(bias),
            name="dense",
        )

    def build(self, input_shape):
        self.dense.build(tuple(input_shape))
        self.built = True

    def call(self, features):
        out = self.dense(features)
        k = self.latent_size
        return tuple(out[..., i * k : (i + 1) * k] for i in range(self.num_parameters))

    def make_distribution(self, parameters):
        """The Gaussian given the tuple returned by `call`."""
        if self.covariance == "rank_one":
            loc, log_scale, rank_one = parameters
            return MultivariateNormalRankOnePrecision(loc, log_scale, rank_one)
        loc, log_scale = parameters
        return tfd.MultivariateNormalDiag(loc=loc, scale_diag=tf.exp(log_scale))

    def distribution(self, features):
        return self.make_distribution(self(features))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.latent_size,)
        return (shape,) * self.num_parameters

    def get_config(self):
        return {
            **super().get_config(),
            "latent_size": self.latent_size,
            "covariance": self.covariance,
            "kernel_initializer": self.kernel_initializer,
        }
