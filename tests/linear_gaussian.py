"""A linear-Gaussian latent-variable model with every expectation in closed form, for exact estimator tests.

The model is a one-layer linear DLGM with a Gaussian likelihood (factor analysis, as `tfrecog.data.factor_analysis`
draws from and `DLGM.marginal` scores) and a linear diagonal-Gaussian recognition model:

  p(z) = N(0, I_K),  p(x | z) = N(A z + b, diag(psi)),  A = W^T diag(g),  psi_d = (min_scale + exp(s_d))^2
  q(z | x) = N(m(x), diag(exp(2 l(x)))),  m(x) = W_m^T x + b_m,  l(x) = W_s^T x + b_s

Every function below recomputes a quantity in float64 from the model's weights alone (no call into the model's
densities), so that the estimators' values and gradients can be checked against them:

  exact_elbo:            E_q[log p(x | z)] + E_q[log p(z)] - E_q[log q(z | x)]
                         = sum_d [-1/2 log(2 pi psi_d) - ((x - A m - b)_d^2 + sum_k A_dk^2 e^{2 l_k}) / (2 psi_d)]
                           - 1/2 sum_k (m_k^2 + e^{2 l_k} - 1 - 2 l_k)
  exact_log_marginal:    log N(x; b, A A^T + diag(psi))
  expected_log_joint:    E_q[log p(x, z)] (q held fixed: the wake phase's objective)
  expected_log_recognition: E_{p(x, z)}[log q(z | x)] (the sleep phase's objective), by the Gaussian moment
                         generating function: for y = (x, z) ~ N(mu, S), E[e^{u.y} (v.y + c)^2]
                         = e^{u.mu + u.S.u / 2} ((v.(mu + S u) + c)^2 + v.S.v)
"""

from __future__ import annotations

import numpy as np

from tfrecog import DLGM
from tfrecog._tf import tf

EVENT, LATENT = 4, 2
# Columns of A orthogonal and psi equal for every pixel: A^T diag(psi)^-1 A is diagonal, so the exact posterior is
# a diagonal Gaussian that the recognition model can represent (`set_exact_posterior`).
LOADING = np.array([[1.0, 0.5], [0.5, -1.0], [-1.0, 0.5], [0.5, 1.0]])  # A [D, K]
OFFSET = np.array([0.3, -0.2, 0.1, 0.4])  # b
NOISE_SCALE = 0.7  # sqrt(psi_d)


def model(estimator: str = "sgvb_b", num_samples: int = 1, estimator_options: dict | None = None) -> DLGM:
    """The linear-Gaussian DLGM with A, b, psi above and q at the exact posterior (see `set_exact_posterior`)."""
    m = DLGM(event_size=EVENT, latent_sizes=(LATENT,), linear=True, likelihood="gaussian", covariance="diagonal",
             recognition_hidden_sizes=(), estimator=estimator, num_samples=num_samples, seed=3,
             estimator_options=estimator_options)
    m.build((None, EVENT))
    dense = m.observation.dense_layers[0]
    dense.kernel.assign(LOADING.T.astype(np.float32))  # x-mean = h W + b with h = g * z: W = A^T when g = 1
    dense.bias.assign(OFFSET.astype(np.float32))
    m.noise_matrices[0].assign(np.ones(LATENT, np.float32))
    m.observation_log_scale.assign(np.full(EVENT, np.log(NOISE_SCALE - m.min_scale), np.float32))
    set_exact_posterior(m)
    return m


def exact_posterior_weights(m: DLGM):
    """(W_m, b_m, posterior log standard deviations) of the exact posterior p(z | x) = N(W_m^T x + b_m, Sigma)."""
    a, b, psi = generative(m)
    precision = np.eye(LATENT) + a.T @ np.diag(1 / psi) @ a
    cov = np.linalg.inv(precision)
    assert np.allclose(cov, np.diag(np.diag(cov)))  # diagonal by construction
    gain = cov @ a.T @ np.diag(1 / psi)  # [K, D]: mean = gain (x - b)
    return gain.T, -gain @ b, 0.5 * np.log(np.diag(cov))


def set_exact_posterior(m: DLGM, mean_shift: float = 0.0, log_scale_shift: float = 0.0, slope: float = 0.0):
    """q(z | x) := the exact posterior, its mean moved by `mean_shift`, its log scale by `log_scale_shift`, and
    `slope` * x_1 added to every log scale (so that the recognition log-scale weights matter too)."""
    w_m, b_m, log_sd = exact_posterior_weights(m)
    w_s = np.zeros((EVENT, LATENT))
    w_s[0, :] = slope
    head = m.heads[0].dense
    head.kernel.assign(np.concatenate([w_m, w_s], axis=1).astype(np.float32))
    head.bias.assign(np.concatenate([b_m + mean_shift, log_sd + log_scale_shift]).astype(np.float32))


def generative(m: DLGM):
    """(A [D, K], b [D], psi [D]) in float64 from the model's weights."""
    dense = m.observation.dense_layers[0]
    kernel = dense.kernel.numpy().astype(np.float64)  # [K, D]
    g = m.noise_matrices[0].numpy().astype(np.float64)
    a = (kernel * g[:, None]).T
    psi = (m.min_scale + np.exp(m.observation_log_scale.numpy().astype(np.float64))) ** 2
    return a, dense.bias.numpy().astype(np.float64), psi


def exact_log_marginal(m: DLGM, x) -> np.ndarray:
    """log p(x) [B] = log N(x; b, A A^T + diag(psi)), float64."""
    from scipy.stats import multivariate_normal

    a, b, psi = generative(m)
    return multivariate_normal(mean=b, cov=a @ a.T + np.diag(psi)).logpdf(np.asarray(x, np.float64))


# -- differentiable closed forms (TF float64 on the model's variables, so tf.GradientTape gives exact gradients) --


def _f64(v):
    return tf.cast(tf.convert_to_tensor(v), tf.float64)


def _generative_tensors(m: DLGM):
    dense = m.observation.dense_layers[0]
    a = tf.transpose(_f64(dense.kernel) * _f64(m.noise_matrices[0])[:, None])  # [D, K]
    psi = tf.square(m.min_scale + tf.exp(_f64(m.observation_log_scale)))
    return a, _f64(dense.bias), psi


def _recognition_tensors(m: DLGM):
    kernel, bias = _f64(m.heads[0].dense.kernel), _f64(m.heads[0].dense.bias)
    return kernel[:, :LATENT], bias[:LATENT], kernel[:, LATENT:], bias[LATENT:]


def _expected_log_likelihood(m, x, mean, log_sd):
    """E_q[log p(x | z)] [B] for q = N(mean, diag(exp(2 log_sd)))."""
    a, b, psi = _generative_tensors(m)
    residual = x - tf.matmul(mean, a, transpose_b=True) - b  # [B, D]
    spread = tf.matmul(tf.exp(2 * log_sd), tf.square(a), transpose_b=True)  # sum_k A_dk^2 s_k^2, [B, D]
    return tf.reduce_sum(-0.5 * tf.math.log(2 * np.pi * psi) - 0.5 * (tf.square(residual) + spread) / psi, axis=-1)


def _posterior(m, x):
    w_m, b_m, w_s, b_s = _recognition_tensors(m)
    return tf.matmul(x, w_m) + b_m, tf.matmul(x, w_s) + b_s


def exact_elbo(m: DLGM, x):
    """ELBO(x) [B] in closed form (float64 tensor, differentiable in every variable of the model)."""
    x = _f64(x)
    mean, log_sd = _posterior(m, x)
    kl = 0.5 * tf.reduce_sum(tf.square(mean) + tf.exp(2 * log_sd) - 1.0 - 2 * log_sd, axis=-1)
    return _expected_log_likelihood(m, x, mean, log_sd) - kl


def expected_log_joint(m: DLGM, x):
    """E_q[log p(x, z)] [B] with q's parameters held constant (differentiable in the generative variables only)."""
    x = _f64(x)
    mean, log_sd = (tf.stop_gradient(t) for t in _posterior(m, x))
    prior = tf.reduce_sum(-0.5 * np.log(2 * np.pi) - 0.5 * (tf.square(mean) + tf.exp(2 * log_sd)), axis=-1)
    return _expected_log_likelihood(m, x, mean, log_sd) + prior


def expected_log_recognition(m: DLGM):
    """E_{p(x, z)}[log q(z | x)] (a scalar) with p held constant (differentiable in the recognition variables)."""
    a, b, psi = (tf.stop_gradient(t) for t in _generative_tensors(m))
    w_m, b_m, w_s, b_s = _recognition_tensors(m)
    # y = (x, z): mean (b, 0), covariance [[A A^T + diag(psi), A], [A^T, I]].
    mu = tf.concat([b, tf.zeros([LATENT], tf.float64)], 0)
    cov = tf.concat([tf.concat([tf.matmul(a, a, transpose_b=True) + tf.linalg.diag(psi), a], 1),
                     tf.concat([tf.transpose(a), tf.eye(LATENT, dtype=tf.float64)], 1)], 0)
    total = tf.constant(0.0, tf.float64)
    for k in range(LATENT):
        # log q_k = -1/2 log 2 pi - l_k(x) - 1/2 e^{-2 l_k(x)} (z_k - m_k(x))^2
        u = tf.concat([-2.0 * w_s[:, k], tf.zeros([LATENT], tf.float64)], 0)
        v = tf.concat([-w_m[:, k], tf.one_hot(k, LATENT, dtype=tf.float64)], 0)
        c = -b_m[k]
        cu = tf.linalg.matvec(cov, u)
        tilt = tf.exp(-2.0 * b_s[k] + tf.tensordot(u, mu, 1) + 0.5 * tf.tensordot(u, cu, 1))
        square = tf.square(tf.tensordot(v, mu + cu, 1) + c) + tf.tensordot(v, tf.linalg.matvec(cov, v), 1)
        mean_l = tf.tensordot(w_s[:, k], b, 1) + b_s[k]
        total += -0.5 * np.log(2 * np.pi) - mean_l - 0.5 * tilt * square
    return total


def data(n: int, seed: int = 0) -> np.ndarray:
    """n draws of x from the model's own marginal (float32 [n, D])."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, LATENT))
    return (z @ LOADING.T + OFFSET + NOISE_SCALE * rng.normal(size=(n, EVENT))).astype(np.float32)
