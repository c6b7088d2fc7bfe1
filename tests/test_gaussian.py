"""Tests for udm.gaussian against SciPy, torch.distributions, Monte Carlo and autograd."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from udm.gaussian import (
    diag_gaussian_log_prob,
    kl_diag_gaussians,
    kl_to_standard_normal,
    sample_diag_gaussian,
)

PROPERTY = settings(max_examples=30, deadline=None)


def random_params(shape, seed, dtype=torch.float64):
    """Means in about [-2, 2] and log-variances in [-2, 2], seeded."""
    g = torch.Generator().manual_seed(seed)
    mean = 2.0 * torch.randn(shape, generator=g, dtype=dtype)
    log_var = 4.0 * torch.rand(shape, generator=g, dtype=dtype) - 2.0
    return mean, log_var


@st.composite
def gaussian_pair(draw, max_batch=3, max_dim=3):
    """Two diagonal Gaussians (q, p) of one shape (B, D), as float64 tensors."""
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_dim)))

    def tensor(low, high):
        values = arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False))
        return torch.from_numpy(draw(values))

    return tensor(-3, 3), tensor(-2, 2), tensor(-3, 3), tensor(-2, 2)


# ---------------------------------------------------------------- log-density


def test_log_prob_matches_scipy_multivariate_normal():
    mean, log_var = random_params((4, 3), seed=0)
    x = torch.randn((4, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = diag_gaussian_log_prob(x, mean, log_var)
    expected = [
        scipy.stats.multivariate_normal(mean=m, cov=np.diag(np.exp(v))).logpdf(xi)
        for xi, m, v in zip(x.numpy(), mean.numpy(), log_var.numpy(), strict=True)
    ]
    assert ours.shape == (4,)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_log_prob_image_shape_matches_scipy_norm():
    mean, log_var = random_params((2, 1, 4, 4), seed=2)
    x = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ours = diag_gaussian_log_prob(x, mean, log_var)
    scale = np.exp(0.5 * log_var.numpy())
    expected = scipy.stats.norm.logpdf(x.numpy(), mean.numpy(), scale).sum(axis=(1, 2, 3))
    assert ours.shape == (2,)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_log_prob_of_batch_vector_is_per_example():
    x, mean, log_var = torch.tensor([0.5, -1.0]), torch.zeros(2), torch.tensor([0.0, 1.0])
    expected = scipy.stats.norm.logpdf([0.5, -1.0], 0.0, [1.0, math.exp(0.5)])
    np.testing.assert_allclose(
        diag_gaussian_log_prob(x, mean, log_var).numpy(), expected, rtol=1e-6
    )


# ---------------------------------------------------------------- KL divergences


@PROPERTY
@given(gaussian_pair())
def test_kl_is_nonnegative(params):
    assert (kl_diag_gaussians(*params) >= -1e-12).all()


@PROPERTY
@given(gaussian_pair())
def test_kl_of_a_distribution_with_itself_is_zero(params):
    mean, log_var, _, _ = params
    kl = kl_diag_gaussians(mean, log_var, mean, log_var)
    torch.testing.assert_close(kl, torch.zeros_like(kl), rtol=0, atol=1e-12)


@PROPERTY
@given(gaussian_pair())
def test_kl_matches_torch_distributions(params):
    mean_q, log_var_q, mean_p, log_var_p = params
    q = torch.distributions.Normal(mean_q, torch.exp(0.5 * log_var_q))
    p = torch.distributions.Normal(mean_p, torch.exp(0.5 * log_var_p))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1)
    torch.testing.assert_close(kl_diag_gaussians(*params), expected, rtol=1e-10, atol=1e-10)


# Derandomized: the tolerance fails by chance with probability about 6e-7 per value,
# and a fixed set of examples keeps that chance from accumulating over runs.
@settings(max_examples=25, deadline=None, derandomize=True)
@given(gaussian_pair(max_batch=2, max_dim=2), st.integers(0, 2**31 - 1))
def test_kl_matches_monte_carlo_within_five_standard_errors(params, seed):
    # KL(q || p) = E_q[log q(x) - log p(x)]: average n draws from q, with log-densities
    # from torch.distributions (an implementation independent of ours).
    mean_q, log_var_q, mean_p, log_var_p = params
    n = 20_000
    q = torch.distributions.Normal(mean_q, torch.exp(0.5 * log_var_q))
    p = torch.distributions.Normal(mean_p, torch.exp(0.5 * log_var_p))
    eps = torch.randn((n, *mean_q.shape), generator=torch.Generator().manual_seed(seed))
    draws = q.loc + q.scale * eps.double()  # (n, B, D)
    log_ratio = (q.log_prob(draws) - p.log_prob(draws)).sum(dim=2)  # (n, B)
    estimate = log_ratio.mean(dim=0)
    standard_error = log_ratio.std(dim=0) / math.sqrt(n)
    closed_form = kl_diag_gaussians(*params)
    assert ((closed_form - estimate).abs() <= 5 * standard_error + 1e-9).all()


@PROPERTY
@given(gaussian_pair())
def test_kl_to_standard_normal_is_kl_to_zero_mean_unit_variance(params):
    mean, log_var, _, _ = params
    zeros = torch.zeros_like(mean)
    expected = kl_diag_gaussians(mean, log_var, zeros, zeros)
    torch.testing.assert_close(
        kl_to_standard_normal(mean, log_var), expected, rtol=1e-12, atol=1e-12
    )


def test_kl_to_standard_normal_on_images_has_batch_shape():
    mean, log_var = random_params((3, 1, 8, 8), seed=4)
    kl = kl_to_standard_normal(mean, log_var)
    # Per coordinate: KL(N(m, v) || N(0, 1)) = (v + m^2 - 1 - log v) / 2, from scratch.
    v = log_var.exp()
    expected = 0.5 * (v + mean**2 - 1 - log_var)
    torch.testing.assert_close(kl, expected.sum(dim=(1, 2, 3)), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- sampling


def test_samples_have_the_requested_mean_and_variance():
    n = 200_000
    mean = torch.tensor([1.5, -0.5], dtype=torch.float64).expand(n, 2)
    log_var = torch.tensor([-1.0, 0.7], dtype=torch.float64).expand(n, 2)
    g = torch.Generator().manual_seed(5)
    x = sample_diag_gaussian(mean, log_var, generator=g)
    var = log_var[0].exp()
    # Standard errors: sqrt(v / n) for the mean, v * sqrt(2 / (n - 1)) for the variance.
    assert ((x.mean(0) - mean[0]).abs() <= 5 * torch.sqrt(var / n)).all()
    assert ((x.var(0) - var).abs() <= 5 * var * math.sqrt(2 / (n - 1))).all()


def test_sampling_is_reproducible_with_a_generator():
    mean, log_var = random_params((4, 2), seed=6)
    a = sample_diag_gaussian(mean, log_var, generator=torch.Generator().manual_seed(7))
    b = sample_diag_gaussian(mean, log_var, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradients_flow_through_the_reparameterized_sample():
    mean, log_var = random_params((3, 2), seed=8)
    mean.requires_grad_(True)
    log_var.requires_grad_(True)
    sample = sample_diag_gaussian(mean, log_var, generator=torch.Generator().manual_seed(9))
    sample.sum().backward()
    # Replay the same noise: d sample / d mean = 1, d sample / d log_var = exp(log_var / 2) eps / 2.
    eps = torch.randn((3, 2), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    torch.testing.assert_close(mean.grad, torch.ones_like(mean))
    torch.testing.assert_close(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * eps)


# ---------------------------------------------------------------- bad input


def test_shape_mismatch_names_the_argument():
    x, mean = torch.zeros(4, 2), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="log_var"):
        diag_gaussian_log_prob(x, mean, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="mean_p"):
        kl_diag_gaussians(mean, mean, torch.zeros(2, 4), mean)
    with pytest.raises(ValueError, match="log_var"):
        kl_to_standard_normal(mean, torch.zeros(4))
    with pytest.raises(ValueError, match="log_var"):
        sample_diag_gaussian(mean, torch.zeros(()))


def test_integer_dtype_names_the_argument():
    with pytest.raises(TypeError, match="x"):
        diag_gaussian_log_prob(
            torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2), torch.zeros(4, 2)
        )
    with pytest.raises(TypeError, match="log_var_q"):
        kl_diag_gaussians(
            torch.zeros(2, 2),
            torch.zeros(2, 2, dtype=torch.int32),
            torch.zeros(2, 2),
            torch.zeros(2, 2),
        )


def test_non_tensor_names_the_argument():
    with pytest.raises(TypeError, match="mean"):
        kl_to_standard_normal([0.0, 1.0], torch.zeros(2))
    with pytest.raises(TypeError, match="log_var"):
        sample_diag_gaussian(torch.zeros(2), 0.0)


def test_scalar_without_batch_axis_names_the_argument():
    with pytest.raises(ValueError, match="x"):
        diag_gaussian_log_prob(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0))


def test_device_mismatch_names_the_argument():
    meta = torch.zeros(2, 2, device="meta")
    with pytest.raises(ValueError, match="log_var"):
        kl_to_standard_normal(torch.zeros(2, 2), meta)


def test_bad_generator_names_the_argument():
    with pytest.raises(TypeError, match="generator"):
        sample_diag_gaussian(torch.zeros(2), torch.zeros(2), generator=0)


def test_non_finite_arguments_are_named():
    mean, log_var = torch.zeros(2, 3), torch.zeros(2, 3)
    bad = torch.tensor([[0.0, float("inf"), 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="log_var must be finite"):
        kl_to_standard_normal(mean, bad)
    with pytest.raises(ValueError, match="mean must be finite"):
        kl_to_standard_normal(bad * float("nan"), log_var)
    with pytest.raises(ValueError, match="x must be finite"):
        diag_gaussian_log_prob(bad, mean, log_var)
    with pytest.raises(ValueError, match="log_var_p must be finite"):
        kl_diag_gaussians(mean, log_var, mean, bad)
