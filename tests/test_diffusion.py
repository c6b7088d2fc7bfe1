"""Tests for udm.diffusion against SymPy, closed forms, SciPy and brute-force Monte Carlo.

The samplers that run this model are tested in test_samplers.py; its training loss in
test_parameterizations.py.
"""

import math

import numpy as np
import pytest
import scipy.stats
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import diffusion as D
from udm import samplers
from udm.nets import TimeConditionedMLP
from udm.parameterizations import Denoiser, MixtureDenoiser, prediction_loss
from udm.schedules import NoiseSchedule, cosine_schedule, linear_schedule
from udm.symbolic import complete_the_square
from udm.toy import default_mixture
from udm.train import train

PROPERTY = settings(max_examples=30, deadline=None)
F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def log_linear_snr_schedule(T: int, log_snr_max: float = 10.0, log_snr_min: float = -10.0):
    """log SNR falling linearly in t: every step changes the SNR by the same small factor."""
    log_snr = torch.linspace(log_snr_max, log_snr_min, T, dtype=F64)
    return NoiseSchedule.from_alpha_bars(torch.sigmoid(log_snr))


class Gaussian1D:
    """Data x_0 ~ N(m, s^2) in one dimension: every quantity has a closed form."""

    def __init__(self, m: float, s: float) -> None:
        self.m, self.s = m, s

    def denoiser(self, schedule: NoiseSchedule):
        """E[x_0 | x_t] = m + sqrt(ab) s^2 / (ab s^2 + 1 - ab) (x_t - sqrt(ab) m), t = k / T."""

        def model(x_t, t):
            ab = schedule.path.alpha_bar(t).to(x_t.dtype)[:, None]
            gain = ab.sqrt() * self.s**2 / (ab * self.s**2 + 1 - ab)
            return self.m + gain * (x_t - ab.sqrt() * self.m)

        return model

    def log_prob(self, x):
        return torch.from_numpy(scipy.stats.norm.logpdf(x[:, 0].numpy(), self.m, self.s))


# ------------------------------------------------------------------ SymPy closed forms
def _sympy_posterior():
    """Mean and variance of q(x_{t-1} | x_t, x_0), derived here by completing the square."""
    xp, xt, x0 = sp.symbols("x_prev x_t x_0", real=True)
    a, abp = sp.symbols("alpha_t alphabar_prev", positive=True)
    # -2 log of q(x_t | x_{t-1}) q(x_{t-1} | x_0), up to terms without x_{t-1}
    exponent = (xt - sp.sqrt(a) * xp) ** 2 / (1 - a) + (xp - sp.sqrt(abp) * x0) ** 2 / (1 - abp)
    curvature, mean, _ = complete_the_square(exponent, xp)
    return sp.lambdify((xt, x0, a, abp), mean, "numpy"), sp.lambdify((a, abp), 1 / curvature)


POSTERIOR_MEAN, POSTERIOR_VARIANCE = _sympy_posterior()


@st.composite
def schedules(draw, max_T=12):
    T = draw(st.integers(2, max_T))
    betas = draw(st.lists(st.floats(1e-3, 0.5), min_size=T, max_size=T))
    return NoiseSchedule(torch.tensor(betas, dtype=F64))


@PROPERTY
@given(schedules(), st.integers(0, 2**31 - 1))
def test_posterior_matches_sympy_completed_square(schedule, seed):
    g = gen(seed)
    B = 6
    t = torch.randint(2, schedule.T + 1, (B,), generator=g)
    x_t, x0 = torch.randn(B, 3, generator=g, dtype=F64), torch.randn(B, 3, generator=g, dtype=F64)
    mean, variance = D.posterior_mean_variance(schedule, x_t, x0, t)
    a = schedule.alphas[t].numpy()[:, None]
    abp = schedule.alpha_bars[t - 1].numpy()[:, None]
    np.testing.assert_allclose(mean.numpy(), POSTERIOR_MEAN(x_t.numpy(), x0.numpy(), a, abp), 1e-10)
    np.testing.assert_allclose(variance.numpy(), POSTERIOR_VARIANCE(a[:, 0], abp[:, 0]), 1e-10)
    assert variance.shape == (B,)


def test_posterior_at_t1_is_the_point_mass_at_x0():
    schedule = linear_schedule(50)
    x_t, x0 = torch.randn(4, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    mean, variance = D.posterior_mean_variance(schedule, x_t, x0, 1)
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-12)
    assert (variance == 0).all()


def test_posterior_is_the_conditional_of_the_joint_gaussian():
    """Conditioning (x_{t-1}, x_t) given x_0 by linear regression gives the same moments."""
    schedule = cosine_schedule(30)
    t = 17
    ab_prev = schedule.alpha_bars[t - 1].item()
    alpha = schedule.alphas[t].item()
    # Given x_0: Var(x_{t-1}) = 1 - ab_prev, Cov(x_{t-1}, x_t) = sqrt(alpha) (1 - ab_prev),
    # Var(x_t) = 1 - ab_t.
    cov = math.sqrt(alpha) * (1 - ab_prev)
    var_t = 1 - schedule.alpha_bars[t].item()
    x0 = torch.tensor([[0.7]], dtype=F64)
    x_t = torch.tensor([[-1.3]], dtype=F64)
    expected_mean = math.sqrt(ab_prev) * 0.7 + cov / var_t * (
        -1.3 - math.sqrt(ab_prev * alpha) * 0.7
    )
    expected_var = (1 - ab_prev) - cov**2 / var_t
    mean, variance = D.posterior_mean_variance(schedule, x_t, x0, t)
    assert mean.item() == pytest.approx(expected_mean, rel=1e-12)
    assert variance.item() == pytest.approx(expected_var, rel=1e-12)


# ------------------------------------------------------------------------ forward process
def test_forward_marginal_matches_iterated_one_step_process():
    schedule = linear_schedule(40)
    g = gen(0)
    mixture = default_mixture()
    x0 = mixture.sample(40_000, generator=g, dtype=F64)
    x = x0
    for t in range(1, schedule.T + 1):
        x = D.q_step(schedule, x, t, torch.randn(x.shape, generator=g, dtype=F64))
        if t in (1, 10, 40):
            direct = D.q_sample(schedule, x0, t, torch.randn(x.shape, generator=g, dtype=F64))
            ab = schedule.alpha_bars[t].item()
            # E[x_t | x_0] = sqrt(ab) x_0 and Var(x_t | x_0) = 1 - ab: check the residuals.
            residual = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
            assert residual.mean().abs().item() < 0.02
            assert residual.var(dim=0).sub(1).abs().max().item() < 0.03
            assert (residual[:, 0] * residual[:, 1]).mean().abs().item() < 0.02
            # Same marginal moments as one-shot sampling.
            torch.testing.assert_close(x.mean(0), direct.mean(0), atol=0.03, rtol=0)
            torch.testing.assert_close(x.var(0), direct.var(0), atol=0.05, rtol=0.03)


def test_q_sample_at_t0_returns_the_data():
    x0 = torch.randn(3, 2)
    torch.testing.assert_close(
        D.q_sample(linear_schedule(10, 0.01, 0.2), x0, 0, torch.randn(3, 2)), x0
    )


# --------------------------------------------------------------------------- ELBO terms
def linear_model(a: float, b: float):
    """A deliberately imperfect x_0-predictor a + b x_t (the same at every t)."""
    return lambda x_t, t: a + b * x_t


def test_prior_term_matches_monte_carlo():
    schedule = linear_schedule(20, 0.01, 0.2)
    x0 = torch.tensor([[1.5, -0.5]], dtype=F64)
    ab = schedule.alpha_bars[-1].item()
    z = scipy.stats.norm.rvs(size=(400_000, 2), random_state=1)
    x_T = math.sqrt(ab) * x0.numpy() + math.sqrt(1 - ab) * z
    log_ratio = (
        scipy.stats.norm.logpdf(x_T, math.sqrt(ab) * x0.numpy(), math.sqrt(1 - ab))
        - scipy.stats.norm.logpdf(x_T)
    ).sum(1)
    se = log_ratio.std() / math.sqrt(len(log_ratio))
    assert D.prior_matching_term(schedule, x0).item() == pytest.approx(log_ratio.mean(), abs=5 * se)


def test_reconstruction_term_matches_closed_form_on_average():
    schedule = linear_schedule(20, 0.05, 0.2)
    x0 = torch.full((200_000, 1), 0.8, dtype=F64)
    a, b = 0.1, 0.9
    values = D.reconstruction_term(
        linear_model(a, b), schedule, x0, torch.randn(x0.shape, generator=gen(2), dtype=F64)
    )
    alpha1, var = schedule.alphas[1].item(), D.decoder_variance(schedule)
    error2 = (a + b * math.sqrt(alpha1) * 0.8 - 0.8) ** 2 + b**2 * (1 - alpha1)
    expected = -0.5 * math.log(2 * math.pi * var) - error2 / (2 * var)
    se = values.std().item() / math.sqrt(len(values))
    assert values.mean().item() == pytest.approx(expected, abs=5 * se)


def test_denoising_term_is_a_kl_checked_by_sampling_x_prev():
    """KL(q || p) as E_q[log q - log p] over samples of x_{t-1}, with SciPy densities."""
    schedule = cosine_schedule(25)
    t, model = 9, linear_model(0.2, 0.7)
    x0 = torch.tensor([[0.4, -1.1]], dtype=F64)
    noise = torch.tensor([[0.3, 1.2]], dtype=F64)
    kl = D.denoising_matching_term(model, schedule, x0, t, noise).item()
    x_t = D.q_sample(schedule, x0, t, noise)
    a, abp = schedule.alphas[t].item(), schedule.alpha_bars[t - 1].item()
    mean_q = POSTERIOR_MEAN(x_t.numpy(), x0.numpy(), a, abp)
    mean_p = POSTERIOR_MEAN(x_t.numpy(), model(x_t, None).numpy(), a, abp)
    sd = math.sqrt(POSTERIOR_VARIANCE(a, abp))
    x_prev = mean_q + sd * scipy.stats.norm.rvs(size=(400_000, 2), random_state=3)
    log_ratio = (
        scipy.stats.norm.logpdf(x_prev, mean_q, sd) - scipy.stats.norm.logpdf(x_prev, mean_p, sd)
    ).sum(1)
    se = log_ratio.std() / math.sqrt(len(log_ratio))
    assert kl == pytest.approx(log_ratio.mean(), abs=5 * se + 1e-9)


@PROPERTY
@given(schedules(), st.integers(0, 2**31 - 1))
def test_denoising_term_equals_snr_weighted_x0_error(schedule, seed):
    """KL of the reverse steps (via posterior means) = 1/2 (SNR(t-1) - SNR(t)) ||x0_hat - x0||^2."""
    g = gen(seed)
    x0 = torch.randn(5, 2, generator=g, dtype=F64)
    noise = torch.randn(5, 2, generator=g, dtype=F64)
    t = torch.randint(2, schedule.T + 1, (5,), generator=g)
    model = linear_model(0.3, 0.5)
    kl = D.denoising_matching_term(model, schedule, x0, t, noise)
    x0_hat = model(D.q_sample(schedule, x0, t, noise), t)
    snr = schedule.alpha_bars / (1 - schedule.alpha_bars)
    weight = 0.5 * (snr[t - 1] - snr[t])
    torch.testing.assert_close(kl, weight * (x0_hat - x0).square().sum(1), rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(D.x0_loss_weight(schedule, t), weight, rtol=1e-10, atol=0)


def test_x0_loss_weight_at_t1_is_the_decoder_precision():
    schedule = linear_schedule(100)
    expected = 0.5 / D.decoder_variance(schedule)
    assert D.x0_loss_weight(schedule, 1).item() == pytest.approx(expected, rel=1e-12)
    assert D.x0_loss_weight(schedule, 1).item() == pytest.approx(
        0.5 * schedule.snr(1, dtype=F64).item(), rel=1e-12
    )


def test_elbo_terms_sum_to_the_brute_force_elbo_on_1d_gaussian_data():
    """The second decomposition equals E_q[log p(x_{0:T}) - log q(x_{1:T} | x_0)] (definition)."""
    schedule = NoiseSchedule(torch.tensor([0.05, 0.2, 0.4, 0.6], dtype=F64))
    model = linear_model(0.1, 0.8)
    n, x0_value = 200_000, 0.6
    g = gen(4)
    x0 = torch.full((n, 1), x0_value, dtype=F64)
    # Brute force: simulate whole trajectories, score them with SciPy densities.
    xs = [x0]
    for t in range(1, schedule.T + 1):
        a = schedule.alphas[t].item()
        xs.append(
            math.sqrt(a) * xs[-1] + math.sqrt(1 - a) * torch.randn(n, 1, generator=g, dtype=F64)
        )
    xs = [x.numpy()[:, 0] for x in xs]
    log_q = sum(
        scipy.stats.norm.logpdf(
            xs[t],
            math.sqrt(schedule.alphas[t].item()) * xs[t - 1],
            math.sqrt(1 - schedule.alphas[t].item()),
        )
        for t in range(1, schedule.T + 1)
    )
    log_p = scipy.stats.norm.logpdf(xs[-1])
    for t in range(2, schedule.T + 1):
        a, abp = schedule.alphas[t].item(), schedule.alpha_bars[t - 1].item()
        x0_hat = 0.1 + 0.8 * xs[t]
        mean = POSTERIOR_MEAN(xs[t], x0_hat, a, abp)
        log_p += scipy.stats.norm.logpdf(xs[t - 1], mean, math.sqrt(POSTERIOR_VARIANCE(a, abp)))
    log_p += scipy.stats.norm.logpdf(
        xs[0], 0.1 + 0.8 * xs[1], math.sqrt(D.decoder_variance(schedule))
    )
    brute = log_p - log_q
    terms = D.elbo_terms(model, schedule, x0, generator=gen(5))
    assert terms.denoising.shape == (n, schedule.T - 1)
    se = math.hypot(brute.std(), terms.elbo.std().item()) / math.sqrt(n)
    assert terms.elbo.mean().item() == pytest.approx(brute.mean(), abs=5 * se)
    # The second estimator has the smaller variance (one random variable per term).
    assert terms.elbo.var().item() < brute.var()


@pytest.mark.parametrize("T", [1000])
def test_exact_denoiser_makes_the_bound_tight_on_gaussian_data(T):
    """With E[x_0 | x_t] as the model and many small steps, ELBO ~ log p(x_0) (and never above)."""
    data = Gaussian1D(m=0.5, s=0.8)
    schedule = log_linear_snr_schedule(T)
    x0 = 0.5 + 0.8 * torch.randn(4000, 1, generator=gen(6), dtype=F64)
    terms = D.elbo_terms(data.denoiser(schedule), schedule, x0, generator=gen(7))
    log_p = data.log_prob(x0).mean().item()
    gap = log_p - terms.elbo.mean().item()
    se = terms.elbo.std().item() / math.sqrt(len(x0))
    assert -3 * se < gap < 0.1


def test_exact_mixture_denoiser_elbo_is_a_bound_close_to_log_likelihood():
    mixture = default_mixture()
    schedule = log_linear_snr_schedule(400, 8.0, -10.0)
    x0 = mixture.sample(1000, generator=gen(8), dtype=F64)
    terms = D.elbo_terms(MixtureDenoiser(mixture, schedule.path), schedule, x0, generator=gen(9))
    gap = mixture.log_prob(x0).mean().item() - terms.elbo.mean().item()
    assert 0 < gap < 0.3
    assert torch.isfinite(terms.bits_per_dim).all()


def test_bits_per_dim_converts_nats():
    terms = D.ELBOTerms(
        torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([[0.25, 0.25]]), dim=4
    )
    assert terms.elbo.item() == pytest.approx(0.0)
    terms = D.ELBOTerms(torch.tensor([-2.0]), torch.tensor([0.0]), torch.zeros(1, 0), dim=4)
    assert terms.bits_per_dim.item() == pytest.approx(2.0 / (4 * math.log(2)))


# ------------------------------------------------------------------------------ losses
def test_elbo_weighted_loss_is_unbiased_for_the_denoising_sum():
    """Averaging the t-sampled ELBO loss over every t gives sum_t w_t ||x0_hat - x0||^2."""
    schedule = linear_schedule(12, 0.02, 0.4)
    g = gen(11)
    x0, noise = torch.randn(6, 2, generator=g, dtype=F64), torch.randn(6, 2, generator=g, dtype=F64)
    model = Denoiser(linear_model(0.0, 0.9), schedule.path, "x0")
    average = (
        sum(
            prediction_loss(
                model, x0, weighting="elbo", t=torch.full((6,), t / 12, dtype=F64), noise=noise
            )
            for t in range(1, schedule.T + 1)
        )
        / schedule.T
    )
    x1_error = (model(D.q_sample(schedule, x0, 1, noise), 1 / 12) - x0).square().sum(1)
    expected = D.x0_loss_weight(schedule, 1) * x1_error + sum(
        D.denoising_matching_term(model, schedule, x0, t, noise) for t in range(2, schedule.T + 1)
    )
    assert average.item() == pytest.approx(expected.mean().item(), rel=1e-10)


def test_tiny_training_run_approaches_the_bayes_error():
    """A loose regression bound: 300 steps already get within 10 % of E||E[x_0|x_t] - x_0||^2."""
    mixture = default_mixture()
    schedule = linear_schedule(50)
    data = mixture.sample(4000, generator=gen(14))
    torch.manual_seed(0)
    model = Denoiser(
        TimeConditionedMLP(2, hidden=64, depth=2, time_scale=50),
        schedule.path,
        "x0",
        data_std=data.std().item(),
    )
    train(
        model,
        lambda m, b: prediction_loss(m, b[0]),
        data,
        steps=300,
        batch_size=128,
        lr=2e-3,
        progress=False,
    )
    g = gen(15)
    x0 = mixture.sample(4000, generator=g)
    t = torch.randint(1, schedule.T + 1, (4000,), generator=g)
    x_t = D.q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))
    with torch.no_grad():
        model_error = (model(x_t, t.to(F64) / 50) - x0).square().sum(1).mean().item()
    bayes = mixture.denoiser(x_t.double(), schedule.alpha_bar(t, dtype=F64)) - x0.double()
    assert model_error / bayes.square().sum(1).mean().item() < 1.10


# ---------------------------------------------------------------- shapes and boundaries
def test_image_shaped_data_gives_the_same_numbers_as_flat_data():
    schedule = cosine_schedule(15)
    torch.manual_seed(0)
    net = TimeConditionedMLP(16, hidden=16, depth=1, time_scale=15)
    model = Denoiser(net, schedule.path, "x0", data_std=0.7)
    g = gen(16)
    images = torch.randn(3, 1, 4, 4, generator=g)
    noise = torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([1, 7, 15])
    flat, flat_noise = images.flatten(1), noise.flatten(1)
    torch.testing.assert_close(
        D.q_sample(schedule, images, t, noise).flatten(1), D.q_sample(schedule, flat, t, flat_noise)
    )
    m_img, v_img = D.posterior_mean_variance(schedule, noise, images, t)
    m_flat, v_flat = D.posterior_mean_variance(schedule, flat_noise, flat, t)
    torch.testing.assert_close(m_img.flatten(1), m_flat)
    torch.testing.assert_close(v_img, v_flat)
    times = t.to(F64) / 15
    torch.testing.assert_close(model(images, times).flatten(1), model(flat, times))
    img_terms = D.elbo_terms(model, schedule, images, generator=gen(17))
    flat_terms = D.elbo_terms(model, schedule, flat, generator=gen(17))
    torch.testing.assert_close(img_terms.elbo, flat_terms.elbo)
    assert img_terms.dim == 16
    for weighting in ("simple", "elbo"):
        torch.testing.assert_close(
            prediction_loss(model, images, weighting=weighting, t=times, noise=noise),
            prediction_loss(model, flat, weighting=weighting, t=times, noise=flat_noise),
        )
    path = schedule.path
    out = samplers.ancestral(model, path, path.grid(), torch.randn(2, 1, 4, 4, generator=g), g)
    assert out.shape == (2, 1, 4, 4)


@pytest.mark.parametrize("make", [linear_schedule, cosine_schedule], ids=["linear", "cosine"])
@pytest.mark.parametrize("T", [100, 1000])
def test_no_nan_or_infinity_at_the_first_and_last_step(make, T):
    schedule = make(T)
    x0 = torch.randn(4, 2)
    noise = torch.randn(4, 2)
    model = Denoiser(
        TimeConditionedMLP(2, hidden=8, depth=1, time_scale=T), schedule.path, "x0", data_std=1.0
    )
    for t in (1, 2, T):
        x_t = D.q_sample(schedule, x0, t, noise)
        mean, variance = D.posterior_mean_variance(schedule, x_t, x0, t)
        values = [x_t, mean, variance, D.x0_loss_weight(schedule, t), model(x_t, t / T)]
        if t > 1:
            values.append(D.denoising_matching_term(model, schedule, x0, t, noise))
        assert all(torch.isfinite(v).all() for v in values), t
    for weighting in ("simple", "elbo"):
        assert torch.isfinite(prediction_loss(model, x0, weighting=weighting))
    assert torch.isfinite(D.prior_matching_term(schedule, x0)).all()
    assert torch.isfinite(D.reconstruction_term(model, schedule, x0, noise)).all()
    path = schedule.path
    with torch.no_grad():
        out = samplers.ancestral(model, path, path.grid(), torch.randn(3, 2), gen(0))
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_errors_naming_the_argument():
    schedule = linear_schedule(10, 0.01, 0.2)
    x0, noise = torch.randn(4, 2), torch.randn(4, 2)
    model = linear_model(0.0, 1.0)
    with pytest.raises(TypeError, match="schedule"):
        D.q_sample(torch.linspace(0.1, 0.2, 10), x0, 1, noise)
    with pytest.raises(ValueError, match="t must lie in 0..T"):
        D.q_sample(schedule, x0, 11, noise)
    with pytest.raises(ValueError, match="t must lie in 1..T"):
        D.posterior_mean_variance(schedule, x0, x0, 0)
    with pytest.raises(TypeError, match="t must have an integer dtype"):
        D.q_sample(schedule, x0, torch.ones(4), noise)
    with pytest.raises(ValueError, match="t must have shape"):
        D.q_sample(schedule, x0, torch.ones(3, dtype=torch.long), noise)
    with pytest.raises(TypeError, match="t must be an int"):
        D.q_sample(schedule, x0, 1.0, noise)
    with pytest.raises(ValueError, match="noise"):
        D.q_sample(schedule, x0, 1, torch.randn(4, 3))
    with pytest.raises(TypeError, match="x0 and noise must have the same dtype"):
        D.q_sample(schedule, x0, 1, noise.double())
    with pytest.raises(ValueError, match="x0 must be finite"):
        D.q_sample(schedule, torch.full((4, 2), float("nan")), 1, noise)
    with pytest.raises(ValueError, match="x0"):
        D.q_sample(schedule, torch.randn(4), 1, torch.randn(4))
    with pytest.raises(ValueError, match="x0"):
        D.posterior_mean_variance(schedule, x0, torch.randn(4, 3), 2)
    with pytest.raises(ValueError, match="t must lie in 2..T"):
        D.denoising_matching_term(model, schedule, x0, 1, noise)
    with pytest.raises(ValueError, match="denoiser must return"):
        D.reconstruction_term(lambda x, t: x[:, :1], schedule, x0, noise)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        D.reconstruction_term("model", schedule, x0, noise)
    with pytest.raises(ValueError, match="denoiser was built on"):
        D.elbo_terms(Denoiser(model, linear_schedule(20, 0.01, 0.2).path, "x0"), schedule, x0)
    with pytest.raises(TypeError, match="schedule"):
        D.decoder_variance(None)
    assert torch.equal(D.q_sample(schedule, x0, np.int64(0), noise), x0)  # NumPy ints are steps
