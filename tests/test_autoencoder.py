"""Tests for udm.autoencoder: shapes, input checks, the loss, and the linear autoencoder = PCA."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from udm.autoencoder import Autoencoder, reconstruction_loss
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
