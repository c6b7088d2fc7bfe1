"""Tests for udm.score against closed forms: Gaussian data, exact mixture scores, exact flows.

For data N(m, s^2 I) every noised score is linear in x, so each sampler is a linear
recursion whose mean and variance can be iterated exactly (independently of the sampler's
code), and the probability-flow ODE has an exact solution: the affine map that carries one
Gaussian marginal to the next. Tolerances are stated with each test.
"""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from udm import diffusion
from udm import score as S
from udm.toy import GaussianMixture, default_mixture, two_mode_mixture

F64 = torch.float64
MEAN = torch.tensor([1.0, -2.0], dtype=F64)  # the single Gaussian N(MEAN, STD^2 I)
STD = 0.7


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian_ve_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Score of N(MEAN, (STD^2 + sigma^2) I), the data plus N(0, sigma^2 I) noise."""
    return -(x - MEAN) / (STD**2 + sigma[:, None] ** 2)


def vp_marginal(sde: S.VPSDE, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, 2) and variance (B, 1) of x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, x_0 ~ data."""
    ab = sde.alpha_bar(t)[:, None]
    return ab.sqrt() * MEAN, ab * STD**2 + 1.0 - ab


def gaussian_vp_score(sde: S.VPSDE):
    def score_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mean, var = vp_marginal(sde, t)
        return -(x - mean) / var

    return score_fn


def exact_flow(sde: S.VPSDE, x_init: torch.Tensor, t_min: float) -> torch.Tensor:
    """The probability-flow ODE's exact solution from t = 1 to t_min for Gaussian data.

    In one dimension the flow is a monotone map carrying N(mu_1, v_1) to N(mu_t, v_t); the
    only such affine map is x -> mu_t + sqrt(v_t / v_1) (x - mu_1), and the isotropic 2-D
    case is that map in each coordinate.
    """
    mean_1, var_1 = vp_marginal(sde, torch.ones(1, dtype=F64))
    mean_t, var_t = vp_marginal(sde, torch.full((1,), t_min, dtype=F64))
    return mean_t + (var_t / var_1).sqrt() * (x_init - mean_1)


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
    """A 'network' that outputs the exact noise prediction for Gaussian data, VE or VP."""

    def __init__(self, kind: str, sde: S.VPSDE | None = None, data_std: float = 1.0) -> None:
        super().__init__()
        self.kind, self.sde, self.data_std = kind, sde, data_std

    def forward(self, x_in: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if (
            self.kind == "ve"
        ):  # input c_in x with c_in = 1 / sqrt(sigma^2 + data_std^2), c = log sigma
            sigma = c.double().exp()[:, None]
            x = x_in * (sigma**2 + self.data_std**2).sqrt()
            return sigma * (x - MEAN) / (STD**2 + sigma**2)  # E[z | x] = -sigma * score
        mean, var = vp_marginal(self.sde, c.double())
        sigma = self.sde.sigma(c.double())[:, None]
        return sigma * (x_in - mean) / var


def test_noise_conditional_score_net_turns_the_exact_noise_into_the_exact_score():
    model = S.NoiseConditionalScoreNet(OracleNoise("ve", data_std=1.3), data_std=1.3)
    g = gen(3)
    x = 3 * torch.randn(64, 2, generator=g, dtype=F64)
    sigma = torch.exp(torch.empty(64, dtype=F64).uniform_(-4, 2, generator=g))
    assert torch.allclose(model(x, sigma), gaussian_ve_score(x, sigma), atol=1e-10)


def test_vp_score_model_gives_the_exact_score_and_posterior_mean():
    sde = S.VPSDE()
    model = S.VPScoreModel(OracleNoise("vp", sde=sde), sde)
    g = gen(4)
    x = 2 * torch.randn(64, 2, generator=g, dtype=F64)
    t = torch.empty(64, dtype=F64).uniform_(1e-3, 1.0, generator=g)
    assert torch.allclose(model(x, t), gaussian_vp_score(sde)(x, t), atol=1e-9)
    data = GaussianMixture(MEAN[None], (STD**2 * torch.eye(2, dtype=F64))[None], [1.0])
    assert torch.allclose(model.x0(x, t), data.denoiser(x, sde.alpha_bar(t)), atol=1e-8)


# ----------------------------------------------------------------------------- VP SDE
def test_vp_sde_alpha_bar_is_exp_of_minus_the_integrated_rate():
    sde = S.VPSDE(beta_min=0.3, beta_max=12.0)
    for t in (0.0, 0.01, 0.37, 1.0):
        integral, _ = scipy.integrate.quad(
            lambda u: sde.beta(torch.tensor(u, dtype=F64)).item(), 0.0, t
        )
        time = torch.tensor(t, dtype=F64)
        assert sde.alpha_bar(time).item() == pytest.approx(math.exp(-integral), rel=1e-9)
        assert sde.sigma(time).item() ** 2 == pytest.approx(
            1 - math.exp(-integral), rel=1e-9, abs=1e-15
        )


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1.0))
def test_t_from_sigma_inverts_sigma(t):
    sde = S.VPSDE()
    sigma = sde.sigma(torch.tensor([t], dtype=F64))
    assert sde.t_from_sigma(sigma).item() == pytest.approx(t, rel=1e-7, abs=1e-9)


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


def recursion_reverse_sde(sde, n_steps, t_min):
    """Mean and variance after Euler-Maruyama on the reverse SDE, iterated exactly."""
    times = S.time_grid(n_steps, t_min)
    mean, var = torch.zeros(2, dtype=F64), 1.0
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist(), strict=True):
        h, beta = t - t_next, sde.beta(torch.tensor(t)).item()
        m_t, v_t = vp_marginal(sde, torch.tensor([t], dtype=F64))
        a = 1 + h * beta * (0.5 - 1 / v_t.item())  # x' = a x + b + sqrt(beta h) z
        b = h * beta * m_t[0] / v_t.item()
        mean, var = a * mean + b, a**2 * var + beta * h
    return mean, var


def test_reverse_sde_matches_its_recursion_and_the_data():
    sde, n, t_min = S.VPSDE(), 40_000, 1e-3
    x_init = torch.randn(n, 2, generator=gen(10), dtype=F64)
    out = S.reverse_sde_sample(gaussian_vp_score(sde), sde, x_init, 400, gen(11), t_min=t_min)
    mean, var = recursion_reverse_sde(sde, 400, t_min)
    assert_moments(out, mean, var)
    true_mean, true_var = vp_marginal(sde, torch.tensor([t_min], dtype=F64))
    assert_moments(out, true_mean[0], true_var.item(), extra_rel=0.03)  # discretisation bias


def flow_error(sampler, n_steps):
    sde, t_min = S.VPSDE(), 1e-3
    x_init = torch.randn(256, 2, generator=gen(12), dtype=F64)
    out = sampler(gaussian_vp_score(sde), sde, x_init, n_steps, t_min=t_min)
    return (out - exact_flow(sde, x_init, t_min)).abs().max().item()


def test_probability_flow_heun_follows_the_exact_flow_with_second_order():
    errors = [flow_error(S.probability_flow_sample, n) for n in (25, 50, 100)]
    assert errors[-1] < 2e-3
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 3.0 < coarse / fine < 5.0, errors  # halving h divides the error by 2^2


def test_ddim_follows_the_exact_flow_with_first_order():
    errors = [flow_error(S.ddim_sample, n) for n in (50, 100, 200)]
    assert errors[-1] < 4e-2
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 1.6 < coarse / fine < 2.5, errors  # halving h halves the error


def test_ddim_is_exact_in_one_step_for_a_point_mass():
    """For data at a single point m, eps_hat is constant along the flow: one DDIM step is exact."""
    sde, t_min = S.VPSDE(), 1e-3

    def score_fn(x, t):
        ab = sde.alpha_bar(t)[:, None]
        return -(x - ab.sqrt() * MEAN) / (1 - ab)

    x_init = torch.randn(16, 2, generator=gen(13), dtype=F64)
    out = S.ddim_sample(score_fn, sde, x_init, 1, t_min=t_min)
    ab_1, ab_min = (sde.alpha_bar(torch.tensor(t, dtype=F64)).item() for t in (1.0, t_min))
    eps = (x_init - math.sqrt(ab_1) * MEAN) / math.sqrt(1 - ab_1)
    assert torch.allclose(out, math.sqrt(ab_min) * MEAN + math.sqrt(1 - ab_min) * eps, atol=1e-12)


def test_ancestral_model_runs_udm_diffusion_sample_on_a_score():
    sde, t_min, n = S.VPSDE(), 1e-3, 40_000
    model, schedule = S.ancestral_model(gaussian_vp_score(sde), sde, 200, t_min=t_min)
    times = torch.linspace(t_min, 1.0, 200, dtype=F64)
    assert torch.allclose(schedule.alpha_bars[1:], sde.alpha_bar(times), rtol=1e-12)
    # Tweedie through the score is the exact posterior mean of the mixture at that noise level.
    mixture, x = default_mixture(), torch.randn(32, 2, generator=gen(14), dtype=F64)
    mixture_model, _ = S.ancestral_model(
        lambda y, t: mixture.noised(sde.alpha_bar(t[:1]).item()).score(y), sde, 200, t_min=t_min
    )
    steps = torch.full((32,), 37, dtype=torch.long)
    expected = mixture.denoiser(x, schedule.alpha_bars[37].item())
    assert torch.allclose(mixture_model(x, steps), expected, atol=1e-10)
    out = diffusion.sample(
        lambda y, t: model(y.double(), t).float(), schedule, n, 2, generator=gen(15)
    ).double()
    # The last step returns E[x_0 | x_1], whose variance is a shade below STD^2.
    assert_moments(out, MEAN, STD**2, extra_rel=0.03)


# ----------------------------------------------------------------------- bad input
def test_samplers_reject_bad_step_counts_and_step_sizes():
    x, sde = torch.zeros(4, 2), S.VPSDE()
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
    for sampler in (S.probability_flow_sample, S.ddim_sample):
        with pytest.raises(ValueError, match="n_steps"):
            sampler(lambda y, t: -y, sde, x, 0)
        with pytest.raises(TypeError, match="n_steps"):
            sampler(lambda y, t: -y, sde, x, True)
    with pytest.raises(ValueError, match="n_steps"):
        S.reverse_sde_sample(lambda y, t: -y, sde, x, -3)
    with pytest.raises(ValueError, match="n_steps"):
        S.ancestral_model(lambda y, t: -y, sde, 0)
    for t_min in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="t_min"):
            S.ddim_sample(lambda y, t: -y, sde, x, 10, t_min=t_min)


def test_other_bad_inputs_name_the_argument():
    x, sde = torch.zeros(4, 2), S.VPSDE()
    with pytest.raises(ValueError, match="sigmas"):
        S.annealed_langevin(lambda y, s: -y, torch.tensor([0.1, 0.5]), x, 0.001, 1)
    with pytest.raises(ValueError, match="sigmas"):
        S.annealed_langevin(lambda y, s: -y, torch.tensor([0.5, -0.1]), x, 0.001, 1)
    with pytest.raises(ValueError, match="x_init"):
        S.langevin(lambda y: -y, torch.zeros(4), 0.1, 1)
    with pytest.raises(ValueError, match="score_fn"):
        S.langevin(lambda y: y[:, :1], x, 0.1, 1)
    with pytest.raises(TypeError, match="score_fn"):
        S.reverse_sde_sample(None, sde, x, 5)
    with pytest.raises(TypeError, match="sde"):
        S.probability_flow_sample(lambda y, t: -y, "vp", x, 5)
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
    with pytest.raises(ValueError, match="beta_min"):
        S.VPSDE(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="sigma"):
        sde.t_from_sigma(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="sigma"):
        S.ve_noised(two_mode_mixture(), 0.0)
