"""The flow log-likelihood against closed forms, finite differences and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.stats import multivariate_normal

from udm.likelihood import (
    divergence_exact,
    divergence_hutchinson,
    ode_log_likelihood,
    standard_normal_log_prob,
)

F64 = torch.float64


def test_linear_flow_matches_the_matrix_exponential() -> None:
    a = torch.tensor([[0.3, -0.7], [0.4, -0.2]], dtype=F64)
    x = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-0.4, 0.9]], dtype=F64)

    def velocity(y: torch.Tensor, t: float) -> torch.Tensor:
        return y @ a.T

    result = ode_log_likelihood(
        velocity, x, standard_normal_log_prob, t_start=0.0, t_end=1.0, rtol=1e-10, atol=1e-10
    )
    flow = expm(a.numpy())
    endpoint = x.numpy() @ flow.T
    expected = multivariate_normal(np.zeros(2), np.eye(2)).logpdf(endpoint) + np.trace(a.numpy())
    assert np.allclose(result.endpoint.numpy(), endpoint, atol=1e-8)
    assert np.allclose(result.log_prob.numpy(), expected, atol=1e-8)
    assert result.n_evaluations > 0


def test_straight_line_flow_of_gaussian_data_recovers_the_data_density() -> None:
    # Data N(0, diag(c^2)) on the path x_t = (1 - t) x_0 + t eps has x_t ~ N(0, diag(r_t^2)),
    # r_t^2 = (1 - t)^2 c^2 + t^2, and the marginal velocity is (d r_t / dt) / r_t * x.
    c = torch.tensor([0.5, 1.5], dtype=F64)

    def velocity(y: torch.Tensor, t: float) -> torch.Tensor:
        r2 = (1 - t) ** 2 * c**2 + t**2
        dr2 = -2 * (1 - t) * c**2 + 2 * t
        return 0.5 * dr2 / r2 * y

    x = torch.tensor([[0.1, -3.0], [-0.8, 1.0], [0.0, 0.0]], dtype=F64)
    result = ode_log_likelihood(
        velocity, x, standard_normal_log_prob, t_start=0.0, t_end=1.0, rtol=1e-9, atol=1e-9
    )
    exact = multivariate_normal(np.zeros(2), np.diag(c.numpy() ** 2)).logpdf(x.numpy())
    assert np.allclose(result.log_prob.numpy(), exact, atol=1e-6)
    # A sign error in the change of variables would be off by twice the integrated divergence.
    assert np.abs(result.integrated_divergence.numpy()).min() > 0.1


def _mlp_velocity(seed: int, dim: int):
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim + 1, 16, generator=g, dtype=F64)
    w2 = torch.randn(16, dim, generator=g, dtype=F64) / 4

    def velocity(y: torch.Tensor, t: float) -> torch.Tensor:
        inputs = torch.cat([y, torch.full((y.shape[0], 1), t, dtype=y.dtype)], dim=1)
        return torch.tanh(inputs @ w1) @ w2

    return velocity


def test_exact_divergence_matches_finite_differences() -> None:
    velocity = _mlp_velocity(0, 3)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    f, div = divergence_exact(velocity, x, 0.4)
    h = 1e-6
    numeric = torch.zeros(5, dtype=F64)
    for i in range(3):
        step = torch.zeros_like(x)
        step[:, i] = h
        numeric += (velocity(x + step, 0.4)[:, i] - velocity(x - step, 0.4)[:, i]) / (2 * h)
    assert torch.allclose(div, numeric, atol=1e-7)
    assert torch.allclose(f, velocity(x, 0.4))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(kind: str) -> None:
    velocity = _mlp_velocity(2, 4)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=F64)
    _, exact = divergence_exact(velocity, x, 0.7)
    draw = torch.randn(4000, 3, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    probes = draw.sign() if kind == "rademacher" else draw
    per_probe = torch.stack([divergence_hutchinson(velocity, x, 0.7, p[None])[1] for p in probes])
    mean, se = per_probe.mean(0), per_probe.std(0) / math.sqrt(len(probes))
    assert ((mean - exact).abs() < 4 * se).all()
    assert (se > 0).all()


def test_hutchinson_likelihood_is_close_to_the_exact_one() -> None:
    velocity = _mlp_velocity(5, 2)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    exact = ode_log_likelihood(velocity, x, standard_normal_log_prob, t_start=0.0, t_end=1.0)
    estimate = ode_log_likelihood(
        velocity,
        x,
        standard_normal_log_prob,
        t_start=0.0,
        t_end=1.0,
        divergence="hutchinson",
        n_probes=64,
        generator=torch.Generator().manual_seed(7),
    )
    assert torch.allclose(estimate.endpoint, exact.endpoint, atol=1e-5)
    assert (estimate.log_prob - exact.log_prob).abs().max() < 0.2


def test_standard_normal_log_prob_matches_scipy() -> None:
    z = torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    expected = multivariate_normal(np.zeros(4), np.eye(4)).logpdf(z.reshape(6, 4).numpy())
    assert np.allclose(standard_normal_log_prob(z).numpy(), expected)


def test_bad_input_names_the_argument() -> None:
    x = torch.zeros(2, 2, dtype=F64)

    def velocity(y: torch.Tensor, t: float) -> torch.Tensor:
        return y

    def call(**overrides):
        kwargs = dict(t_start=0.0, t_end=1.0) | overrides
        return ode_log_likelihood(velocity, x, standard_normal_log_prob, **kwargs)

    with pytest.raises(ValueError, match="divergence must be one of"):
        call(divergence="approximate")
    with pytest.raises(ValueError, match="t_start must be below t_end"):
        call(t_start=1.0, t_end=0.5)
    with pytest.raises(ValueError, match="x must be finite"):
        ode_log_likelihood(
            velocity, torch.full((2, 2), math.nan), standard_normal_log_prob, t_start=0, t_end=1
        )
    with pytest.raises(ValueError, match="velocity must return a tensor shaped like x"):
        ode_log_likelihood(
            lambda y, t: y[:, :1], x, standard_normal_log_prob, t_start=0.0, t_end=1.0
        )
    with pytest.raises(ValueError, match="probes must have shape"):
        divergence_hutchinson(velocity, x, 0.0, torch.zeros(1, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match="n_probes must be at least 1"):
        call(divergence="hutchinson", n_probes=0)
