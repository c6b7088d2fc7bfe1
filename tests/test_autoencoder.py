"""Tests for udm.autoencoder: shapes, input checks, the loss, the linear autoencoder = PCA,
and probabilistic PCA against scikit-learn, SciPy densities and a numerical optimizer."""

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from torch import nn

from udm.autoencoder import PPCA, Autoencoder, fit_ppca, reconstruction_loss
from udm.train import train


@settings(max_examples=25, deadline=None)
@given(
    data_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    latent_dim=st.integers(1, 5),
    batch=st.integers(1, 6),
    depth=st.integers(0, 2),
)
def test_shapes_round_trip_for_any_trailing_shape(data_shape, latent_dim, batch, depth):
    model = Autoencoder(data_shape, latent_dim, hidden=8, depth=depth)
    x = torch.randn(batch, *data_shape)
    z = model.encode(x)
    assert z.shape == (batch, latent_dim)
    assert model.decode(z).shape == (batch, *data_shape)
    assert model(x).shape == x.shape
    assert model.data_dim == int(np.prod(data_shape))


def test_images_are_flattened_row_major():
    # An image batch gives exactly what the same numbers give as flat rows.
    torch.manual_seed(0)
    images = Autoencoder((1, 8, 8), 3)
    flat = Autoencoder(64, 3)
    flat.load_state_dict(images.state_dict())
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(images.encode(x), flat.encode(x.reshape(5, 64)))
    torch.testing.assert_close(images(x).reshape(5, 64), flat(x.reshape(5, 64)))


def test_depth_zero_is_one_linear_map_each_way():
    model = Autoencoder(6, 2, depth=0)
    assert isinstance(model.encoder, nn.Linear) and isinstance(model.decoder, nn.Linear)
    x = torch.randn(4, 6)
    expected = (x @ model.encoder.weight.T + model.encoder.bias) @ model.decoder.weight.T
    torch.testing.assert_close(model(x), expected + model.decoder.bias)


def test_reconstruction_loss_is_mean_squared_error_per_coordinate():
    torch.manual_seed(1)
    model = Autoencoder((1, 8, 8), 2, hidden=16)
    x = torch.randn(7, 1, 8, 8)
    labels = torch.arange(7)
    loss = reconstruction_loss(model, (x, labels))  # extra entries are ignored
    with torch.no_grad():
        x_hat = model.decode(model.encode(x))
    torch.testing.assert_close(loss, F.mse_loss(x_hat, x))
    # = the objective (sum over coordinates, mean over examples) divided by D = 64.
    per_example = ((x_hat - x) ** 2).flatten(1).sum(1)
    torch.testing.assert_close(loss, per_example.mean() / 64)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_shape": 0}, "data_shape"),
        ({"data_shape": ()}, "data_shape"),
        ({"data_shape": (1, 0, 8)}, "data_shape"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"depth": -1}, "depth must be at least 0"),
        ({"hidden": 0}, "hidden"),
    ],
)
def test_constructor_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(**({"data_shape": 4, "latent_dim": 2} | kwargs))


def test_rejects_non_int_sizes():
    with pytest.raises(TypeError, match="data_shape"):
        Autoencoder((1, 8.0, 8), 2)
    with pytest.raises(TypeError, match="latent_dim"):
        Autoencoder(4, 2.5)


def test_rejects_wrong_data_and_code_shapes():
    model = Autoencoder((1, 8, 8), 2)
    with pytest.raises(ValueError, match="x must have shape"):
        model.encode(torch.randn(3, 64))  # flat rows where images were declared
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(3, 1, 8, 7))
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(torch.randn(3, 3))
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        model.encode(torch.zeros(3, 1, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="batch"):
        reconstruction_loss(model, torch.randn(3, 1, 8, 8))


def test_linear_autoencoder_learns_the_pca_subspace():
    # Data with a 2-D signal of unequal variances (9 and 4), small isotropic noise and
    # a non-zero mean. A linear autoencoder with a 2-D code, trained on squared error,
    # must find the span of the top two principal directions (Theorem thm-pca-optimal):
    # its decoder's columns span that subspace and its error is the sum of the
    # discarded eigenvalues of the sample covariance.
    generator = torch.Generator().manual_seed(0)
    n, dim, noise = 2000, 10, 0.1
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=generator))
    signal = torch.randn(n, 2, generator=generator) * torch.tensor([3.0, 2.0])
    mean = torch.linspace(-1.0, 1.0, dim)
    x = mean + signal @ basis.T + noise * torch.randn(n, dim, generator=generator)

    torch.manual_seed(0)
    model = Autoencoder(dim, 2, depth=0)
    train(model, reconstruction_loss, x, steps=1000, batch_size=500, lr=0.02, progress=False)

    x64 = x.double().numpy()
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x64, rowvar=False, bias=True))
    top2 = eigenvectors[:, -2:]
    decoder_columns = model.decoder.weight.detach().double().numpy()
    angles = scipy.linalg.subspace_angles(decoder_columns, top2)
    assert angles.max() < 0.02, f"principal angles {angles} rad"

    with torch.no_grad():
        mse = reconstruction_loss(model, (x,)).item()
    optimum = eigenvalues[:-2].sum() / dim  # per coordinate, as reconstruction_loss reports
    assert optimum <= mse * (1 + 1e-4)  # nothing linear beats PCA (float32 slack)
    assert mse < 1.02 * optimum, f"mse {mse:.5f} vs PCA optimum {optimum:.5f}"


# --------------------------------------------------------------- probabilistic PCA


def correlated_data(n: int = 400, dim: int = 5, seed: int = 0) -> np.ndarray:
    """Rows from a Gaussian with distinct eigenvalues and a non-zero mean."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    scales = np.linspace(2.0, 0.3, dim)
    return rng.standard_normal((n, dim)) * scales @ basis.T + rng.standard_normal(dim)


def test_ppca_fit_matches_scikit_learn():
    """sklearn's PCA is the same model fitted to the covariance divided by N - 1."""
    x = correlated_data()
    n = len(x)
    for k in (1, 2, 4):
        model = fit_ppca(x, k)
        reference = PCA(n_components=k).fit(x)
        np.testing.assert_allclose(model.mean, reference.mean_, atol=1e-12)
        np.testing.assert_allclose(model.noise_var * n / (n - 1), reference.noise_variance_)
        np.testing.assert_allclose(model.covariance() * n / (n - 1), reference.get_covariance())


def test_ppca_fit_is_the_maximum_a_numerical_optimizer_finds():
    x = correlated_data(dim=4, seed=1)
    k, dim = 2, x.shape[1]
    model = fit_ppca(x, k)

    def negative_log_likelihood(theta):
        weight = theta[: dim * k].reshape(dim, k)
        candidate = PPCA(model.mean, weight, float(np.exp(theta[-1])))
        return -candidate.log_prob(x).mean()

    start = np.concatenate([0.1 * np.random.default_rng(2).standard_normal(dim * k), [0.0]])
    result = scipy.optimize.minimize(negative_log_likelihood, start, method="BFGS")
    best = -model.log_prob(x).mean()
    assert best <= result.fun + 1e-9  # nothing beats the closed form
    assert result.fun - best < 1e-6  # and the optimizer gets there
    found = result.x[: dim * k].reshape(dim, k)
    # same subspace, same W W^T (W itself only up to a rotation of z)
    assert np.degrees(scipy.linalg.subspace_angles(found, model.weight)).max() < 0.1
    np.testing.assert_allclose(found @ found.T, model.weight @ model.weight.T, atol=1e-3)


def test_ppca_log_prob_is_the_gaussian_density_of_the_marginal():
    x = correlated_data(n=50)
    model = fit_ppca(correlated_data(seed=3), 2)
    expected = scipy.stats.multivariate_normal(model.mean, model.covariance()).logpdf(x)
    np.testing.assert_allclose(model.log_prob(x), expected, rtol=1e-12)


def test_ppca_posterior_is_gaussian_conditioning_of_the_joint():
    """p(z | x) from the joint covariance [[I, W^T], [W, C]] by the conditioning formula."""
    model = fit_ppca(correlated_data(), 3)
    x = correlated_data(n=6, seed=4)
    weight, cov = model.weight, model.covariance()
    gain = weight.T @ np.linalg.inv(cov)
    mean, covariance = model.posterior(x)
    np.testing.assert_allclose(mean, (x - model.mean) @ gain.T, atol=1e-12)
    np.testing.assert_allclose(covariance, np.eye(3) - gain @ weight, atol=1e-12)


def test_ppca_samples_have_the_model_covariance():
    model = fit_ppca(correlated_data(), 2)
    samples = model.sample(200_000, np.random.default_rng(5))
    np.testing.assert_allclose(samples.mean(0), model.mean, atol=0.02)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), model.covariance(), atol=0.03)
    means = model.sample(50_000, np.random.default_rng(6), noise=False)
    np.testing.assert_allclose(
        np.cov(means, rowvar=False), model.weight @ model.weight.T, atol=0.03
    )


def test_ppca_bad_input_names_the_argument():
    x = correlated_data(n=10, dim=3)
    with pytest.raises(ValueError, match="k must be below"):
        fit_ppca(x, 3)
    with pytest.raises(ValueError, match="k"):
        fit_ppca(x, 0)
    with pytest.raises(TypeError, match="x must be a 2-D NumPy float array"):
        fit_ppca(torch.zeros(10, 3), 1)
    with pytest.raises(ValueError, match="x must hold at least 2 rows"):
        fit_ppca(x[:1], 1)
    with pytest.raises(ValueError, match="discarded eigenvalues are all zero"):
        fit_ppca(np.c_[x[:, :1], np.zeros((10, 2))], 1)
    model = fit_ppca(x, 1)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        model.log_prob(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="noise_var"):
        PPCA(model.mean, model.weight, 0.0)
    with pytest.raises(ValueError, match="weight"):
        PPCA(model.mean, model.weight.T, 1.0)
    with pytest.raises(TypeError, match="rng"):
        model.sample(3, 0)
