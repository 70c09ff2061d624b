"""tfrecog.plots.latent_embedding: the points drawn are the posterior means (2-D latents) or their exact projection on
the top two principal components (checked against the eigendecomposition of their covariance)."""

import numpy as np
import pytest

from tfrecog import plots
from tfrecog.models import DLGM, VAE

X = (np.random.default_rng(0).random((60, 12)) < 0.4).astype(np.float32)
LABELS = np.arange(60) % 10


def test_two_latents_are_plotted_as_they_are(tmp_path):
    model = VAE(event_size=12, latent_size=2, hidden_sizes=(8,), seed=0)
    points = plots.latent_embedding(model, X, LABELS, tmp_path / "e.png")
    np.testing.assert_allclose(points, model.encode(X).mean().numpy(), rtol=1e-6, atol=1e-6)
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_more_latents_are_projected_on_the_top_two_principal_components(tmp_path):
    """The projection on the leading eigenvectors of the covariance S of the means: the points are centred, their
    covariance is diag(lambda_1, lambda_2) (the two largest eigenvalues of S), and each coordinate is the centred
    means times an eigenvector of S (up to sign)."""
    model = VAE(event_size=12, latent_size=5, hidden_sizes=(8,), seed=0)
    points = plots.latent_embedding(model, X, None, tmp_path / "e.png")
    means = model.encode(X).mean().numpy().astype(np.float64)
    centred = means - means.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred.T))
    np.testing.assert_allclose(points.mean(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(np.cov(points.T), np.diag(eigenvalues[::-1][:2]), rtol=1e-4, atol=1e-9)
    for k in range(2):
        expected = centred @ eigenvectors[:, -1 - k]
        assert min(np.abs(points[:, k] - expected).max(), np.abs(points[:, k] + expected).max()) < 1e-6


def test_layered_models_embed_every_layers_means(tmp_path):
    model = DLGM(event_size=12, latent_sizes=(2, 1), hidden_sizes=(8,), recognition_hidden_sizes=(8,), seed=0)
    means = plots.posterior_means(model, X, batch_size=25)  # batches of 25, 25 and 10 rows
    np.testing.assert_allclose(means, np.asarray(model(X)), rtol=1e-5, atol=1e-6)  # [mu_1, mu_2] in one call
    assert means.shape == (60, 3)
    plots.latent_embedding(model, X, LABELS, tmp_path / "e.png")


def test_labels_of_the_wrong_length_are_an_error(tmp_path):
    model = VAE(event_size=12, latent_size=2, hidden_sizes=(8,), seed=0)
    with pytest.raises(ValueError, match="one entry per example \\(60\\); got 3"):
        plots.latent_embedding(model, X, LABELS[:3], tmp_path / "e.png")
