"""Tests for udm.score against closed forms: Gaussian data and exact mixture scores.

For data N(m, s^2 I) every noised score is linear in x, so each Langevin chain is a linear
recursion whose mean and variance can be iterated exactly (independently of the sampler's
code). The reverse-SDE, probability-flow and DDIM samplers are tested in test_samplers.py.
Tolerances are stated with each test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from udm import score as S
from udm.toy import default_mixture, two_mode_mixture

F64 = torch.float64
MEAN = torch.tensor([1.0, -2.0], dtype=F64)  # the single Gaussian N(MEAN, STD^2 I)
STD = 0.7


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_ve_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Score of N(MEAN, (STD^2 + sigma^2) I), the data plus N(0, sigma^2 I) noise."""
    return -(x - MEAN) / (STD**2 + sigma[:, None] ** 2)


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(0), x.var(0)


def assert_moments(x, mean, var, *, n_se: float = 4.0, extra_rel: float = 0.0) -> None:
    """Each coordinate's sample mean and variance within n_se standard errors (+ a bias)."""
    n = x.shape[0]
    got_mean, got_var = moments(x)
    mean = torch.as_tensor(mean, dtype=F64).expand_as(got_mean)
    var = torch.as_tensor(var, dtype=F64).expand_as(got_var)
    mean_tol = n_se * (var / n).sqrt() + extra_rel * var.sqrt()
    var_tol = n_se * var * math.sqrt(2.0 / (n - 1)) + extra_rel * var
    assert ((got_mean - mean).abs() <= mean_tol).all(), (got_mean, mean, mean_tol)
    assert ((got_var - var).abs() <= var_tol).all(), (got_var, var, var_tol)


# ------------------------------------------------------------------------- DSM loss
def test_dsm_loss_is_minimized_by_the_exact_noised_mixture_score():
    """Vincent: J_DSM(s) - J_DSM(s*) = 1/2 E||s - s*||^2, so the exact score is the minimum.

    VP noise at alpha_bar = 0.4 on the book's mixture; the exact score of the noised data is
    mixture.noised(0.4).score. Common random numbers for every candidate; the excess loss
    must match 1/2 E||s - s*||^2 within 4 Monte Carlo standard errors of the cross term.
    """
    mixture, alpha_bar, n = default_mixture(), 0.4, 40_000
    noised = mixture.noised(alpha_bar)
    g = gen(0)
    x0 = mixture.sample(n, generator=g, dtype=F64)
    z = torch.randn(n, 2, generator=g, dtype=F64)
    sigma = torch.full((n,), math.sqrt(1 - alpha_bar), dtype=F64)
    scale = torch.full((n,), math.sqrt(alpha_bar), dtype=F64)
    x_t = scale[:, None] * x0 + sigma[:, None] * z
    exact = noised.score(x_t)

    def loss(score_fn):
        return S.dsm_loss(score_fn, x0, sigma, scale=scale, noise=z).item()

    best = loss(lambda x, c: noised.score(x))
    rotation = torch.tensor([[0.0, -0.3], [0.3, 0.0]], dtype=F64)
    perturbations = {
        "shift": lambda x: torch.tensor([0.2, -0.1], dtype=F64).expand_as(x),
        "scale": lambda x: 0.15 * noised.score(x),
        "rotation": lambda x: x @ rotation.T,
    }
    residual = sigma[:, None] * exact + z  # sigma (s* + z / sigma): zero mean given x_t
    for name, delta_fn in perturbations.items():
        delta = delta_fn(x_t)
        excess = loss(lambda x, c, d=delta_fn: noised.score(x) + d(x)) - best
        predicted = 0.5 * (sigma[:, None] * delta).square().sum(1).mean().item()
        cross = (sigma[:, None] * delta * residual).sum(1)
        tolerance = 4 * cross.std().item() / math.sqrt(n)
        assert excess > 0, name
        assert abs(excess - predicted) < tolerance, (name, excess, predicted, tolerance)


def test_dsm_loss_value_for_gaussian_data_has_the_closed_form():
    """Data N(m, v I), VE noise sigma: min J_DSM = 1/2 D v / (v + sigma^2) (sigma^2 weighting).

    With s* = -(x - m) / (v + sigma^2): sigma s* + z = (v z - sigma (x0 - m)) / (v + sigma^2),
    whose expected squared norm is D v / (v + sigma^2). Without the sigma^2 weighting the
    value would be divided by sigma^2.
    """
    n, g = 100_000, gen(1)
    sigma_values = torch.tensor([0.3, 1.0, 3.0], dtype=F64)
    for sigma_value in sigma_values.tolist():
        x0 = MEAN + STD * torch.randn(n, 2, generator=g, dtype=F64)
        sigma = torch.full((n,), sigma_value, dtype=F64)
        value = S.dsm_loss(gaussian_ve_score, x0, sigma, generator=g).item()
        expected = 0.5 * 2 * STD**2 / (STD**2 + sigma_value**2)
        # The per-example loss is 1/2 a weighted chi-square with 2 d.o.f.: std about expected.
        assert value == pytest.approx(expected, abs=4 * expected / math.sqrt(n) + 1e-12)


def test_ve_noised_mixture_matches_a_monte_carlo_convolution():
    mixture, sigma = two_mode_mixture(), 0.8
    noised = S.ve_noised(mixture, sigma)
    g = gen(2)
    x = mixture.sample(200_000, generator=g, dtype=F64)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=F64)
    assert torch.allclose(y.mean(0), noised.weights @ noised.means, atol=0.01)
    centred = noised.means - noised.weights @ noised.means
    covariance = torch.einsum("k,kij->ij", noised.weights, noised.covariances) + torch.einsum(
        "k,ki,kj->ij", noised.weights, centred, centred
    )
    assert torch.allclose(torch.cov(y.T), covariance, atol=0.02)


# ---------------------------------------------------------------------- score models
class OracleNoise(nn.Module):
    """A 'network' that outputs the exact noise prediction for Gaussian data under VE noise."""

    def __init__(self, data_std: float = 1.0) -> None:
        super().__init__()
        self.data_std = data_std

    def forward(self, x_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # input c_in x with c_in = 1 / sqrt(sigma^2 + data_std^2), c = log sigma
        sigma = c.double().exp()[:, None]
        x = x_in * (sigma**2 + self.data_std**2).sqrt()
        return sigma * (x - MEAN) / (STD**2 + sigma**2)  # E[z | x] = -sigma * score


def test_noise_conditional_score_net_turns_the_exact_noise_into_the_exact_score():
    model = S.NoiseConditionalScoreNet(OracleNoise(data_std=1.3), data_std=1.3)
    g = gen(3)
    x = 3 * torch.randn(64, 2, generator=g, dtype=F64)
    sigma = torch.exp(torch.empty(64, dtype=F64).uniform_(-4, 2, generator=g))
    assert torch.allclose(model(x, sigma), gaussian_ve_score(x, sigma), atol=1e-10)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be positive and finite"):
            model(x, torch.full((64,), bad, dtype=F64))


# ------------------------------------------------------------------------- samplers
def test_langevin_reaches_the_exact_stationary_law_of_the_discrete_chain():
    """For N(m, v I), x' = x - eta (x - m) / v + sqrt(2 eta) z has stationary variance
    v / (1 - eta / (2 v)): with eta = 0.1 v that is 5% above v, which the test resolves."""
    v, eta, n = STD**2, 0.1 * STD**2, 40_000
    x_init = 4 * torch.randn(n, 2, generator=gen(5), dtype=F64)
    out = S.langevin(lambda x: -(x - MEAN) / v, x_init, eta, 300, gen(6))
    assert_moments(out, MEAN, v / (1 - eta / (2 * v)))


def test_langevin_chain_has_the_requested_shape():
    x_init = torch.zeros(5, 2, dtype=F64)
    chain = S.langevin(lambda x: -x, x_init, 0.1, 7, gen(7), return_chain=True)
    assert chain.shape == (8, 5, 2)
    assert torch.equal(chain[0], x_init)


def test_annealed_langevin_matches_the_exact_moment_recursion():
    """Each Langevin step on a Gaussian level is linear, so the chain's mean and variance
    follow M' = (1 - eta/v) M + eta/v m and V' = (1 - eta/v)^2 V + 2 eta exactly."""
    sigmas = S.geometric_sigmas(5.0, 0.05, 12)
    # Few steps per level, so that the result depends on every level's step size.
    step_size, per_level, n = 1.0 * 0.05**2, 5, 40_000
    x_init = 5.0 * torch.randn(n, 2, generator=gen(8), dtype=F64)
    out = S.annealed_langevin(gaussian_ve_score, sigmas, x_init, step_size, per_level, gen(9))
    mean, var = torch.zeros(2, dtype=F64), 25.0
    for sigma in sigmas.tolist():
        v = STD**2 + sigma**2
        eta = step_size * (sigma / sigmas[-1].item()) ** 2
        for _ in range(per_level):
            mean = (1 - eta / v) * mean + eta / v * MEAN
            var = (1 - eta / v) ** 2 * var + 2 * eta
    assert_moments(out, mean, var)
    assert var == pytest.approx(STD**2, rel=0.2)  # and even 5 steps a level come near the data


# ----------------------------------------------------------------------- bad input
def test_samplers_reject_bad_step_counts_and_step_sizes():
    x = torch.zeros(4, 2)
    sigmas = S.geometric_sigmas(1.0, 0.1, 3)
    with pytest.raises(ValueError, match="n_steps"):
        S.langevin(lambda y: -y, x, 0.1, 0)
    with pytest.raises(TypeError, match="n_steps"):
        S.langevin(lambda y: -y, x, 0.1, 2.0)
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step_size"):
            S.langevin(lambda y: -y, x, bad, 10)
        with pytest.raises(ValueError, match="step_size"):
            S.annealed_langevin(lambda y, s: -y, sigmas, x, bad, 10)
    with pytest.raises(ValueError, match="step_size"):  # overshoots: eta_1 > 2 sigma_1^2
        S.annealed_langevin(lambda y, s: -y, sigmas, x, 0.05, 10)
    with pytest.raises(ValueError, match="steps_per_level"):
        S.annealed_langevin(lambda y, s: -y, sigmas, x, 0.001, 0)


def test_other_bad_inputs_name_the_argument():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="sigmas"):
        S.annealed_langevin(lambda y, s: -y, torch.tensor([0.1, 0.5]), x, 0.001, 1)
    with pytest.raises(ValueError, match="sigmas"):
        S.annealed_langevin(lambda y, s: -y, torch.tensor([0.5, -0.1]), x, 0.001, 1)
    with pytest.raises(ValueError, match="x_init"):
        S.langevin(lambda y: -y, torch.zeros(4), 0.1, 1)
    with pytest.raises(ValueError, match="x_init must be finite"):
        S.langevin(lambda y: -y, torch.full((4, 2), float("nan")), 0.1, 1)
    with pytest.raises(TypeError, match="score_fn"):
        S.langevin(None, x, 0.1, 5)
    with pytest.raises(ValueError, match="score_fn"):
        S.langevin(lambda y: y[:, :1], x, 0.1, 1)
    with pytest.raises(ValueError, match="sigma"):
        S.dsm_loss(lambda y, s: -y, x, torch.ones(3))
    with pytest.raises(ValueError, match="sigma"):
        S.dsm_loss(lambda y, s: -y, x, torch.zeros(4))
    with pytest.raises(ValueError, match="noise"):
        S.dsm_loss(lambda y, s: -y, x, torch.ones(4), noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="n_levels"):
        S.geometric_sigmas(1.0, 0.1, 1)
    with pytest.raises(ValueError, match="sigma_min"):
        S.geometric_sigmas(1.0, -0.1, 4)
    with pytest.raises(ValueError, match="sigma"):
        S.ve_noised(two_mode_mixture(), 0.0)
