"""Tests of tfrecog.impute: the imputation Markov chain, the mask makers, the error curve and the figure."""

import os

import numpy as np
import pytest

from tfrecog._tf import keras
from tfrecog.impute import imputation_error, impute, missing_at_random, missing_square, plot_imputation
from tfrecog.models import DLGM, VAE


def binary_data(n=6, d=16, seed=0):
    return (np.random.default_rng(seed).random((n, d)) < 0.4).astype(np.float32)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    vae = VAE(event_size=16, latent_size=3, hidden_sizes=(8,))
    dlgm = DLGM(event_size=16, latent_sizes=(3, 2), hidden_sizes=(8,), recognition_hidden_sizes=(8,))
    gaussian = DLGM(
        event_size=16,
        latent_sizes=(3,),
        hidden_sizes=(8,),
        likelihood="gaussian",
        mean_activation="sigmoid",
        covariance="diagonal",
    )
    return {"vae": vae, "dlgm": dlgm, "gaussian": gaussian}


@pytest.mark.parametrize("name", ["vae", "dlgm", "gaussian"])
@pytest.mark.parametrize("use_mean", [False, True])
def test_observed_values_never_change(models, name, use_mean):
    model = models[name]
    x = binary_data()
    mask = missing_at_random(x.shape, 0.5, seed=1)
    chain = impute(model, x, mask, steps=4, seed=2, use_mean=use_mean)
    assert chain.shape == (5, 6, 16) and chain.dtype == np.float32
    observed = mask == 1
    for completion in chain:
        np.testing.assert_array_equal(completion[observed], x[observed])
    assert np.all(np.isfinite(chain))
    if model.likelihood == "bernoulli" and not use_mean:
        assert np.isin(chain, (0.0, 1.0)).all()  # missing values are draws from p(x | h)
    if use_mean:
        assert np.all((chain[1:] >= 0) & (chain[1:] <= 1))  # Bernoulli means and sigmoid Gaussian means
    final = impute(model, x, mask, steps=4, seed=2, use_mean=use_mean, return_chain=False)
    np.testing.assert_array_equal(final, chain[-1])  # same seed, same chain


def test_nothing_missing_returns_the_input(models):
    x = binary_data()
    chain = impute(models["dlgm"], x, np.ones_like(x), steps=3)
    assert chain.shape == (4, 6, 16)
    for completion in chain:
        np.testing.assert_array_equal(completion, x)
    np.testing.assert_array_equal(impute(models["vae"], x, np.ones(16), steps=2, return_chain=False), x)


def test_missing_entries_may_be_nan_and_inits(models):
    x = binary_data()
    mask = missing_square((4, 4), 2, num_examples=6)
    holey = np.where(mask == 1, x, np.nan)
    chain = impute(models["dlgm"], holey, mask, steps=2, seed=0)
    assert np.all(np.isfinite(chain))
    np.testing.assert_array_equal(chain, impute(models["dlgm"], x, mask, steps=2, seed=0))
    start = impute(models["dlgm"], x, mask, steps=0, init=0.25)
    assert start.shape == (1, 6, 16)
    np.testing.assert_array_equal(start[0][mask == 0], 0.25)
    start = impute(models["dlgm"], x, mask, steps=0, init="observed_mean")[0]
    # Per-column mean of the observed entries; 0.5 for the columns this (fixed-position) square hides entirely.
    column_means = np.array([x[mask[:, d] == 1, d].mean() if mask[:, d].any() else 0.5 for d in range(16)])
    np.testing.assert_allclose(start[mask == 0], np.broadcast_to(column_means, x.shape)[mask == 0], rtol=1e-6)
    assert np.isin(impute(models["dlgm"], x, mask, steps=0, init="noise")[0], (0.0, 1.0)).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mask=np.ones((6, 15))), "mask must have the shape of x"),
        (dict(mask=np.full((6, 16), 0.5)), "mask must hold 1 where a value is observed"),
        (dict(steps=-1), "steps must be an integer >= 0"),
        (dict(init="zeros"), "init must be 'noise', 'observed_mean' or a finite number"),
        (dict(x=np.ones((6, 15), np.float32)), r"x must have shape \[N, 16\]"),
        (dict(x=np.full((6, 16), np.nan, np.float32)), "NaN or inf at observed entries"),
        (dict(bounds=(1.0, 0.0)), "bounds must be 'auto', None or"),
        (dict(bounds="clip"), "bounds must be 'auto', None or"),
    ],
)
def test_bad_inputs_have_clear_errors(models, kwargs, message):
    arguments = dict(x=binary_data(), mask=np.ones((6, 16)), steps=1)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        impute(models["vae"], **arguments)


def test_gaussian_completions_stay_in_the_data_domain():
    """A Gaussian DLGM with a sigmoid mean and a predicted noise scale (about 1 before training) draws far outside
    [0, 1]; `bounds='auto'` clips its proposals to [0, 1], `bounds=None` does not, an explicit pair is used as is."""
    keras.utils.set_random_seed(1)
    model = DLGM(
        event_size=16, latent_sizes=(3,), hidden_sizes=(8,), likelihood="gaussian", mean_activation="sigmoid",
        observation_scale="predicted",
    )
    x = np.random.default_rng(0).random((50, 16)).astype(np.float32)
    mask = missing_at_random(x.shape, 0.5)
    free = impute(model, x, mask, steps=3, bounds=None)
    assert free.min() < -0.5 and free.max() > 1.5
    for bounds, (low, high) in (("auto", (0.0, 1.0)), ((0.2, 0.7), (0.2, 0.7))):
        chain = impute(model, x, mask, steps=3, bounds=bounds)
        missing = np.broadcast_to(mask == 0, chain.shape)
        values = chain[1:][missing[1:]]
        assert values.min() >= low and values.max() <= high
        assert np.isclose(values, low).any() and np.isclose(values, high).any()  # clipped, not merely in range
        np.testing.assert_array_equal(chain[:, mask == 1], np.broadcast_to(x[mask == 1], chain[:, mask == 1].shape))


def test_chain_samples_the_exact_conditional_of_factor_analysis():
    """With the exact posterior as recognition model, the chain is a Gibbs sampler of p(x_missing | x_observed).

    A one-latent factor model x = w xi + b + e, e ~ N(0, diag(psi)), is written into a linear DLGM, and its
    diagonal recognition head is set to the exact posterior N(P^-1 w^T Psi^-1 (x - b), P^-1), P = 1 + w^T Psi^-1 w.
    """
    rng = np.random.default_rng(0)
    d = 5
    w = rng.normal(size=d)
    b = rng.normal(size=d)
    psi = rng.uniform(0.2, 0.5, size=d)
    model = DLGM(
        event_size=d,
        latent_sizes=(1,),
        linear=True,
        likelihood="gaussian",
        covariance="diagonal",
        recognition_hidden_sizes=(),
    )
    model.build((None, d))
    observation = model.observation.dense_layers[0]
    observation.kernel.assign(w[None, :])
    observation.bias.assign(b)
    model.noise_matrices[0].assign([1.0])
    model.observation_log_scale.assign(np.log(np.sqrt(psi) - model.min_scale))
    precision = 1.0 + np.sum(w**2 / psi)
    gain = (w / psi) / precision  # posterior mean = gain . (x - b)
    head = model.heads[0].dense
    head.kernel.assign(np.stack([gain, np.zeros(d)], axis=1))
    head.bias.assign([-gain @ b, -0.5 * np.log(precision)])

    covariance = np.outer(w, w) + np.diag(psi)
    x_true = rng.multivariate_normal(b, covariance)
    missing = np.array([0, 3])
    observed = np.setdiff1d(np.arange(d), missing)
    gain_m = covariance[np.ix_(missing, observed)] @ np.linalg.inv(covariance[np.ix_(observed, observed)])
    conditional_mean = b[missing] + gain_m @ (x_true[observed] - b[observed])
    conditional_covariance = covariance[np.ix_(missing, missing)] - gain_m @ covariance[np.ix_(observed, missing)]

    chains = 4000
    x = np.tile(x_true.astype(np.float32), (chains, 1))
    mask = np.ones_like(x)
    mask[:, missing] = 0.0
    final = impute(model, x, mask, steps=30, seed=3, init=0.0, return_chain=False)[:, missing]
    # Independent chains after 30 steps (this sampler mixes in a few); s.e. of the mean is sqrt(var / n) and of a
    # variance var sqrt(2 / n); 5 s.e. each.
    variance = np.diag(conditional_covariance)
    assert np.all(np.abs(final.mean(0) - conditional_mean) < 5 * np.sqrt(variance / chains))
    assert np.all(np.abs(final.var(0) - variance) < 5 * variance * np.sqrt(2.0 / chains))


def test_missing_at_random():
    mask = missing_at_random((50, 20), 0.3, seed=4)
    assert mask.shape == (50, 20) and mask.dtype == np.float32
    np.testing.assert_array_equal((mask == 0).sum(axis=1), 6)  # exactly round(0.3 * 20) per row
    np.testing.assert_array_equal(mask, missing_at_random((50, 20), 0.3, seed=4))
    assert not np.array_equal(mask, missing_at_random((50, 20), 0.3, seed=5))
    assert len({tuple(np.flatnonzero(row == 0)) for row in mask}) > 40  # positions differ between rows
    assert missing_at_random(10, 0.5).shape == (10,)
    assert missing_at_random((3, 10), 0.0).all() and not missing_at_random((3, 10), 1.0).any()
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        missing_at_random((3, 10), 1.5)


def test_missing_square():
    mask = missing_square((6, 8), 3)
    assert mask.shape == (1, 48)
    image = mask.reshape(6, 8)
    np.testing.assert_array_equal(np.argwhere(image == 0).min(0), [1, 2])
    np.testing.assert_array_equal(np.argwhere(image == 0).max(0), [3, 4])
    corner = missing_square((6, 8), 2, num_examples=2, position=(0, 6)).reshape(2, 6, 8)
    assert (corner[:, 0:2, 6:8] == 0).all() and corner.sum() == 2 * (48 - 4)
    random = missing_square((6, 8), 3, num_examples=20, position="random", seed=1).reshape(20, 6, 8)
    for image in random:
        rows, cols = np.nonzero(image == 0)
        assert len(rows) == 9 and rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2
    assert len({tuple(np.argwhere(image == 0)[0]) for image in random}) > 1
    with pytest.raises(ValueError, match="size must be between 1 and 6"):
        missing_square((6, 8), 7)
    with pytest.raises(ValueError, match="does not fit"):
        missing_square((6, 8), 3, position=(5, 0))


def test_imputation_error():
    x = np.zeros((2, 3))
    mask = np.array([[1, 0, 0], [1, 1, 0]], np.float32)
    chain = np.stack([np.full((2, 3), 2.0), np.full((2, 3), 1.0)])
    np.testing.assert_allclose(imputation_error(chain, x, mask), [4.0, 1.0])
    chain[:, 0, 0] = 100.0  # observed entries do not count
    np.testing.assert_allclose(imputation_error(chain, x, mask), [4.0, 1.0])
    np.testing.assert_allclose(imputation_error(chain[1], x, mask), 1.0)
    np.testing.assert_array_equal(imputation_error(chain, x, np.ones_like(x)), [0.0, 0.0])
    with pytest.raises(ValueError, match="chain must be"):
        imputation_error(chain[:, :1], x, mask)


def test_plot_imputation_writes_a_figure_atomically(models, tmp_path):
    x = binary_data()
    mask = missing_square((4, 4), 2, num_examples=6)
    chain = impute(models["dlgm"], x, mask, steps=6, seed=0)
    path = tmp_path / "figures" / "imputation.png"
    assert plot_imputation(x, mask, chain, (4, 4), path, max_examples=4) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["imputation.png"]  # no temporary file left behind
    plot_imputation(x, mask, chain, (4, 4), tmp_path / "imputation.pdf", iterations=[0, 3, 6])
    assert (tmp_path / "imputation.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match=r"iterations must lie in \[0, 6\]"):
        plot_imputation(x, mask, chain, (4, 4), tmp_path / "bad.png", iterations=[7])
    with pytest.raises(ValueError, match="does not match D = 16"):
        plot_imputation(x, mask, chain, (4, 5), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_data_range_is_what_auto_bounds_clip_to(models):
    """'auto' bounds are the model's data_range: [0, 1] for pixels, none for factor analysis and word counts."""
    from tfrecog.models import SBN

    assert models["vae"].data_range == (0.0, 1.0) and models["dlgm"].data_range == (0.0, 1.0)
    assert models["gaussian"].data_range == (0.0, 1.0)  # sigmoid mean
    assert DLGM(event_size=4, latent_sizes=(2,), linear=True, likelihood="gaussian").data_range is None
    assert SBN(event_size=4, latent_sizes=(2,), likelihood="categorical").data_range is None
