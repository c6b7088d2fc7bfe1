"""The flow log-likelihood against closed forms, finite differences and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.stats import multivariate_normal

from udm.likelihood import (
    continuous_elbo,
    divergence_exact,
    divergence_hutchinson,
    ode_log_likelihood,
    standard_normal_log_prob,
)
from udm.parameterizations import MixtureDenoiser
from udm.paths import VE, ContinuousVP
from udm.toy import GaussianMixture, default_mixture

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


# ------------------------------------------------------------- the continuous-time ELBO
def _gaussian_data_elbo(variances: torch.Tensor, path) -> tuple[float, float, float]:
    """Closed forms, averaged over x_0 ~ N(0, diag(v)) with the exact denoiser (per coordinate
    summed): the diffusion term 1/2 log((1 + v SNR_max) / (1 + v SNR_min)) (SymPy-free: the
    integral of 1/2 e^l v / (1 + v e^l)), the Gaussian decoder's expected log-density and the
    prior KL."""
    snr_max = math.exp(path.log_snr(path.t_min).item())
    snr_min = math.exp(path.log_snr(path.t_max).item())
    v = variances.double()
    diffusion = 0.5 * torch.log((1 + v * snr_max) / (1 + v * snr_min)).sum().item()
    sigma2 = 1 / snr_max  # the decoder's variance sigma(t_min)^2
    posterior_var = v * sigma2 / (v + sigma2)
    recon = (-0.5 * math.log(2 * math.pi * sigma2) - 0.5 * posterior_var / sigma2).sum().item()
    a2 = path.a(path.t_max).item() ** 2
    s2 = path.s(path.t_max).item() ** 2
    prior = (0.5 * (a2 * v + s2 - 1 - math.log(s2))).sum().item()
    return recon, prior, diffusion


def test_continuous_elbo_of_gaussian_data_matches_closed_forms() -> None:
    variances = torch.tensor([0.3, 1.7], dtype=F64)
    data = GaussianMixture(torch.zeros(1, 2), torch.diag(variances)[None], [1.0])
    path = ContinuousVP(t_min=1e-2)
    g = torch.Generator().manual_seed(0)
    x0 = data.sample(20_000, generator=g, dtype=F64)
    terms = continuous_elbo(MixtureDenoiser(data, path), path, x0, n_nodes=48, generator=g)
    recon, prior, diffusion = _gaussian_data_elbo(variances, path)
    for name, got, want in [
        ("reconstruction", terms.reconstruction, recon),
        ("prior", terms.prior, prior),
        ("diffusion", terms.diffusion, diffusion),
    ]:
        se = got.std().item() / math.sqrt(len(got))
        assert abs(got.mean().item() - want) < 4 * se + 1e-9, (name, got.mean().item(), want)
    # and it is a bound on the exact average log-density of the data
    log_p = data.log_prob(x0).mean().item()
    assert terms.elbo.mean().item() < log_p
    assert terms.bits_per_dim.shape == (20_000,)


def test_continuous_elbo_depends_on_the_path_only_through_its_log_snr_endpoints() -> None:
    # A VP path and a VE path with the same log-SNR endpoints give the same diffusion term for
    # the same x_0 and noise (common random numbers); the VE path's x_t is the VP path's / a.
    mixture = default_mixture()
    vp = ContinuousVP(t_min=1e-2)
    ve = VE(sigma_min=vp.sigma(vp.t_min).item(), sigma_max=vp.sigma(1.0).item(), t_min=1e-12)
    g = torch.Generator().manual_seed(1)
    x0 = mixture.sample(200, generator=g, dtype=F64)
    noise = torch.randn(200, 2, generator=g, dtype=F64)
    d_vp = continuous_elbo(MixtureDenoiser(mixture, vp), vp, x0, noise=noise).diffusion
    ve_terms = continuous_elbo(MixtureDenoiser(mixture, ve), ve, x0, noise=noise, n_nodes=32)
    assert torch.allclose(d_vp, ve_terms.diffusion, rtol=1e-9, atol=1e-9)


def test_continuous_elbo_rejects_bad_input() -> None:
    path = ContinuousVP()
    denoiser = MixtureDenoiser(default_mixture(), path)
    x0 = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="noise"):
        continuous_elbo(denoiser, path, x0, noise=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="n_nodes"):
        continuous_elbo(denoiser, path, x0, n_nodes=0)
    with pytest.raises(TypeError, match="path"):
        continuous_elbo(denoiser, "vp", x0)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_log_likelihood_is_unbiased_for_a_linear_flow(probe: str) -> None:
    # For f = A x the divergence is tr A everywhere; with one probe per example the Hutchinson
    # estimate of the integrated divergence has mean tr A and standard deviation sd(v^T A v).
    a = torch.tensor([[1.0, -0.7], [0.4, 0.5]], dtype=F64)
    n = 4000
    x = torch.tensor([[0.5, -1.0]], dtype=F64).repeat(n, 1)
    result = ode_log_likelihood(
        lambda y, t: y @ a.T,
        x,
        standard_normal_log_prob,
        t_start=0.0,
        t_end=1.0,
        divergence="hutchinson",
        probe=probe,
        generator=torch.Generator().manual_seed(3),
    )
    sym = (a + a.T) / 2
    variance = 2 * sym.square().sum()
    if probe == "rademacher":
        variance = variance - 2 * sym.diagonal().square().sum()
    estimates = result.integrated_divergence
    se = math.sqrt(variance.item() / n)
    assert abs(estimates.mean().item() - torch.trace(a).item()) < 4 * se
    assert abs(estimates.var().item() / variance.item() - 1) < 0.15
