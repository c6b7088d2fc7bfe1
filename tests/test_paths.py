"""Tests for udm.paths against SymPy, SciPy quadrature, the schedules' tables and simulation."""

import math

import numpy as np
import pytest
import scipy.integrate
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import paths
from udm.learned_schedule import MonotoneNetwork
from udm.schedules import NoiseSchedule, cosine_schedule, linear_schedule
from udm.symbolic import complete_the_square

F64 = torch.float64
t_sym = sp.symbols("t", positive=True)

# Closed forms of a(t) and s(t), written here in SymPy from the papers' definitions.
B0, B1 = 0.1, 20.0
SMIN, SMAX = 0.01, 50.0
CLOSED_FORMS = {
    "ContinuousVP": (
        paths.ContinuousVP(),
        sp.exp(-(B0 * t_sym + (B1 - B0) * t_sym**2 / 2) / 2),
        sp.sqrt(1 - sp.exp(-(B0 * t_sym + (B1 - B0) * t_sym**2 / 2))),
    ),
    "VE": (paths.VE(), sp.Integer(1), SMIN * (sp.Float(SMAX) / SMIN) ** t_sym),
    "EDM": (paths.EDM(), sp.Integer(1), t_sym),
    "StraightLine": (paths.StraightLine(), 1 - t_sym, t_sym),
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def interior_times(path, n=200, seed=0):
    """Random times strictly inside (0, t_max)."""
    u = torch.rand(n, generator=gen(seed), dtype=F64)
    return path.t_max * (1e-4 + (1 - 2e-4) * u)


ALL_PATHS = {
    "discrete linear": linear_schedule(100).path,
    "discrete cosine": cosine_schedule(50).path,
    **{name: value[0] for name, value in CLOSED_FORMS.items()},
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_coefficients_and_derivatives_match_sympy(name):
    path, a_expr, s_expr = CLOSED_FORMS[name]
    t = interior_times(path)
    numeric = {
        "a": a_expr,
        "s": s_expr,
        "da": sp.diff(a_expr, t_sym),
        "ds": sp.diff(s_expr, t_sym),
        "sigma": s_expr / a_expr,
        "log_snr": 2 * sp.log(a_expr / s_expr),
        "drift": sp.diff(a_expr, t_sym) / a_expr,
        "diffusion_squared": sp.diff(s_expr**2, t_sym)
        - 2 * sp.diff(a_expr, t_sym) / a_expr * s_expr**2,
    }
    for method, expr in numeric.items():
        reference = np.broadcast_to(sp.lambdify(t_sym, expr, "numpy")(t.numpy()), t.shape)
        np.testing.assert_allclose(getattr(path, method)(t).numpy(), reference, rtol=1e-10)


def test_sde_coefficients_are_the_papers():
    """VP: f = -beta/2, g^2 = beta; VE: g^2 = d sigma^2/dt; EDM: g^2 = 2t; line: 2t/(1-t)."""
    t = torch.tensor([0.1, 0.5, 0.9], dtype=F64)
    vp = paths.ContinuousVP()
    beta = B0 + t * (B1 - B0)
    torch.testing.assert_close(vp.drift(t), -beta / 2, rtol=1e-12, atol=0)
    torch.testing.assert_close(vp.diffusion_squared(t), beta, rtol=1e-12, atol=0)
    torch.testing.assert_close(vp.beta(t), beta, rtol=1e-12, atol=0)
    ve = paths.VE()
    sigma = SMIN * (SMAX / SMIN) ** t
    torch.testing.assert_close(
        ve.diffusion_squared(t), 2 * sigma**2 * math.log(SMAX / SMIN), rtol=1e-12, atol=0
    )
    torch.testing.assert_close(paths.EDM().diffusion_squared(t), 2 * t, rtol=1e-12, atol=0)
    line = paths.StraightLine()
    torch.testing.assert_close(line.diffusion_squared(t), 2 * t / (1 - t), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["ContinuousVP", "VE", "StraightLine", "discrete linear"])
def test_forward_sde_simulated_reaches_the_path_marginal(name):
    """Euler-Maruyama of dx = f x dt + g dw from x(t0) ~ N(a0 x0, s0^2) lands on N(a x0, s^2)."""
    path = ALL_PATHS[name]
    t0, t1, n_steps, n = 0.2, 0.8, 3000, 20_000
    x0 = 1.3
    g = gen(1)
    x = path.a(t0).item() * x0 + path.s(t0).item() * torch.randn(n, generator=g, dtype=F64)
    times = torch.linspace(t0, t1, n_steps + 1, dtype=F64)
    f, g2 = path.drift(times).tolist(), path.diffusion_squared(times).tolist()
    h = (t1 - t0) / n_steps
    for i in range(n_steps):
        x = x + h * f[i] * x + math.sqrt(g2[i] * h) * torch.randn(n, generator=g, dtype=F64)
    a1, s1 = path.a(t1).item(), path.s(t1).item()
    se_mean, se_var = s1 / math.sqrt(n), s1**2 * math.sqrt(2 / n)
    assert abs(x.mean().item() - a1 * x0) < 5 * se_mean + 1e-3
    assert abs(x.var().item() - s1**2) < 5 * se_var + 2e-3 * s1**2


@pytest.mark.parametrize("name", list(ALL_PATHS))
def test_time_log_snr_and_sigma_round_trip(name):
    path = ALL_PATHS[name]
    t = interior_times(path, seed=2)
    torch.testing.assert_close(path.t_from_log_snr(path.log_snr(t)), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(path.t_from_sigma(path.sigma(t)), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(path.log_snr(t), -2 * path.sigma(t).log(), rtol=1e-10, atol=1e-10)
    assert path.t_from_log_snr(math.inf).item() == 0 and path.t_from_sigma(0.0).item() == 0
    assert path.a(0.0).item() == 1 and path.s(0.0).item() == 0
    assert (path.log_snr(t).diff() * t.diff() < 0).all()  # the SNR falls with t


def test_vp_paths_preserve_variance_and_match_the_integral():
    vp = paths.ContinuousVP(beta_min=0.3, beta_max=12.0)
    for t in (0.0, 0.01, 0.37, 1.0):
        integral, _ = scipy.integrate.quad(lambda u: 0.3 + u * 11.7, 0.0, t)
        assert vp.alpha_bar(t).item() == pytest.approx(math.exp(-integral), rel=1e-12)
        assert vp.a(t).item() ** 2 + vp.s(t).item() ** 2 == pytest.approx(1.0, abs=1e-15)
    assert vp.prior_std() == pytest.approx(1.0, abs=1e-15)


def test_discrete_path_is_the_table_at_the_grid_and_geometric_between():
    schedule = cosine_schedule(40)
    path = schedule.path
    grid = torch.arange(41, dtype=F64) / 40
    assert torch.equal(path.alpha_bar(grid), schedule.alpha_bars)  # exactly, not approximately
    mid = (torch.arange(1, 41, dtype=F64) - 0.5) / 40
    geometric = (schedule.alpha_bars[:-1] * schedule.alpha_bars[1:]).sqrt()
    torch.testing.assert_close(path.alpha_bar(mid), geometric, rtol=1e-12, atol=0)
    assert torch.equal(path.grid(), grid.flip(0))
    # The rate on ((k-1)/T, k/T] is step k's: beta = -T log alpha_k, also at the grid time k/T.
    rates = -40 * schedule.alphas[1:].log()
    torch.testing.assert_close(path.beta(mid), rates, rtol=1e-10, atol=0)
    torch.testing.assert_close(path.beta(grid[1:]), rates, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", ALL_PATHS)
def test_rates_from_above_are_the_next_intervals_on_a_discrete_path(name):
    """Heun's corrector at t takes the rate of the interval above t (the step it crosses)."""
    path = ALL_PATHS[name]
    if isinstance(path, paths.DiscreteVP):
        T = path.T
        grid = torch.arange(1, T, dtype=F64) / T
        above = path._coefficients_from_above(grid)
        rate = -2 * above.da / above.a  # beta = -L' and a' = a L' / 2
        torch.testing.assert_close(rate, path.beta(grid + 0.5 / T), rtol=1e-12, atol=0)
        zero = above.a * above.da + above.s * above.ds  # a^2 + s^2 = 1 differentiated
        torch.testing.assert_close(zero, torch.zeros_like(zero), rtol=0, atol=1e-12)
        assert torch.equal(above.a, path.a(grid)) and torch.equal(above.s, path.s(grid))
        assert not torch.allclose(above.da, path.da(grid))  # the rates do jump at the grid
    else:
        times = interior_times(path)
        above, usual = path._coefficients_from_above(times), path.coefficients(times)
        assert all(torch.equal(x, y) for x, y in zip(above, usual, strict=True))


def test_discrete_path_sde_between_grid_times_is_exactly_the_discrete_step():
    """f, g^2 integrated over ((k-1)/T, k/T] give q(x_k | x_{k-1}): sqrt(alpha_k), 1 - alpha_k."""
    schedule = linear_schedule(20, 0.02, 0.4)
    path = schedule.path
    for k in (1, 7, 20):
        lo, hi = (k - 1) / 20, k / 20

        def f(u):
            return path.drift(u).item()

        def log_mean(u, hi=hi):
            return scipy.integrate.quad(f, u, hi, epsabs=0, epsrel=1e-12)[0]

        mean_factor = math.exp(log_mean(lo))
        added, _ = scipy.integrate.quad(
            lambda u: math.exp(2 * log_mean(u)) * path.diffusion_squared(u).item(),
            lo,
            hi,
            epsabs=0,
            epsrel=1e-10,
        )
        alpha = schedule.alphas[k].item()
        assert mean_factor == pytest.approx(math.sqrt(alpha), rel=1e-10)
        assert added == pytest.approx(1 - alpha, rel=1e-8)


def test_posterior_coefficients_match_the_completed_square():
    """q(x_s | x_t, x_0) from Bayes' rule on the path, by SymPy, for every kind of path."""
    xs, xt, x0 = sp.symbols("x_s x_t x_0", real=True)
    a_t, s_t, a_s, s_s = sp.symbols("a_t s_t a_s s_s", positive=True)
    ratio = a_t / a_s
    exponent = (xt - ratio * xs) ** 2 / (s_t**2 - ratio**2 * s_s**2) + (xs - a_s * x0) ** 2 / s_s**2
    curvature, mean, _ = complete_the_square(exponent, xs)
    coef_x = sp.lambdify((a_t, s_t, a_s, s_s), sp.diff(mean, xt))
    coef_0 = sp.lambdify((a_t, s_t, a_s, s_s), sp.diff(mean, x0))
    variance = sp.lambdify((a_t, s_t, a_s, s_s), 1 / curvature)
    for name, path in ALL_PATHS.items():
        t = torch.tensor([0.9, 0.5, 0.21], dtype=F64) * path.t_max
        s = torch.tensor([0.6, 0.49, 0.2], dtype=F64) * path.t_max
        c_x, c_0, var = path.posterior_coefficients(t, s)
        args = (path.a(t).numpy(), path.s(t).numpy(), path.a(s).numpy(), path.s(s).numpy())
        np.testing.assert_allclose(c_x.numpy(), coef_x(*args), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(c_0.numpy(), coef_0(*args), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(var.numpy(), variance(*args), rtol=1e-9, err_msg=name)
    c_x, c_0, var = paths.VE().posterior_coefficients(0.3, 0.0)  # to the data: x_0 itself
    assert (c_x.item(), c_0.item(), var.item()) == (0.0, 1.0, 0.0)


def test_continuous_elbo_weight_is_minus_half_the_snr_derivative():
    path = paths.ContinuousVP()
    snr = sp.exp(-(B0 * t_sym + (B1 - B0) * t_sym**2 / 2))
    snr = snr / (1 - snr)
    reference = sp.lambdify(t_sym, -sp.diff(snr, t_sym) / 2)
    t = interior_times(path, seed=3)
    np.testing.assert_allclose(
        path.elbo_weight(t).numpy(), (1 - path.t_min) * reference(t.numpy()), rtol=1e-10
    )


def test_discrete_weights_are_half_snr_differences_and_approach_continuous_time():
    schedule = linear_schedule(200)
    snr = schedule.alpha_bars / (1 - schedule.alpha_bars)  # the subtraction, in float64
    weights = schedule.path.x0_weights()
    torch.testing.assert_close(weights[2:], 0.5 * (snr[1:-1] - snr[2:]), rtol=1e-9, atol=0)
    assert weights[1].item() == pytest.approx(0.5 * snr[1].item(), rel=1e-12)
    # T w_k -> -1/2 dSNR/dt as T grows: tabulate the continuous VP SDE at many steps.
    vp = paths.ContinuousVP()
    T = 100_000
    fine = torch.arange(1, T + 1, dtype=F64) / T
    tabulated = NoiseSchedule.from_alpha_bars(vp.alpha_bar(fine)).path
    t = torch.tensor([0.1, 0.4, 0.8], dtype=F64)
    continuous = vp.elbo_weight(t) / (1 - vp.t_min)
    torch.testing.assert_close(tabulated.elbo_weight(t), continuous, rtol=2e-3, atol=0)


def test_learned_path_is_the_network_and_carries_gradients():
    omega = MonotoneNetwork(hidden=8, omega_min=-5.0, omega_max=6.0).double()
    learned = omega.path(30)
    frozen = omega.to_schedule(30).path
    t = torch.linspace(0.01, 1.0, 57, dtype=F64)
    torch.testing.assert_close(
        learned.alpha_bar(t).detach(), frozen.alpha_bar(t), rtol=1e-10, atol=0
    )
    u = torch.linspace(0, 1, 30, dtype=F64)
    torch.testing.assert_close(learned.log_snr_table()[1:], -omega(u), rtol=0, atol=0)
    learned.a(torch.tensor([0.3, 0.7], dtype=F64)).sum().backward()
    assert omega.omega_min.grad is not None and omega.omega_min.grad.abs() > 0


def test_sample_t_draws_the_grid_or_the_interval():
    path = linear_schedule(50).path
    t = path.sample_t(10_000, generator=gen(4))
    steps = (t * 50).round()
    torch.testing.assert_close(t * 50, steps, rtol=0, atol=1e-9)
    assert steps.min() == 1 and steps.max() == 50
    vp = paths.ContinuousVP()
    t = vp.sample_t(10_000, generator=gen(5))
    assert vp.t_min <= t.min() and t.max() <= 1.0 and abs(t.mean().item() - 0.5) < 0.01


def test_q_sample_is_a_x0_plus_s_noise():
    path = paths.StraightLine()
    x0, noise = torch.randn(4, 1, 3, 3, dtype=F64), torch.randn(4, 1, 3, 3, dtype=F64)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    out = path.q_sample(x0, t, noise)
    expected = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * noise
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(path.q_sample(x0, 0.25, noise), 0.75 * x0 + 0.25 * noise)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 1.0))
def test_python_numbers_and_numpy_numbers_are_times(t):
    path = paths.ContinuousVP()
    assert (
        path.a(t).item()
        == path.a(np.float64(t)).item()
        == path.a(torch.tensor(t, dtype=F64)).item()
    )


# ---------------------------------------------------------------------- bad input
def test_bad_times_are_refused_with_their_name():
    path = linear_schedule(10, 0.01, 0.2).path
    with pytest.raises(TypeError, match=r"t must be a floating-point time.*k / T"):
        path.a(torch.tensor([3]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, t_max\]"):
        path.a(1.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, t_max\]"):
        path.s(torch.tensor([0.5, float("nan")], dtype=F64))
    with pytest.raises(TypeError, match="t must be a real number"):
        path.a("0.5")
    with pytest.raises(ValueError, match="log_snr must be at least"):
        path.t_from_log_snr(-100.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        path.t_from_sigma(-1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        paths.VE().t_from_sigma(1e-4)
    with pytest.raises(ValueError, match="t_prev must be earlier"):
        path.posterior_coefficients(0.3, 0.5)


def test_bad_path_parameters_are_refused():
    with pytest.raises(TypeError, match="beta_min must be a real number"):
        paths.ContinuousVP(beta_min="0.1")
    with pytest.raises(ValueError, match="beta_min must be below beta_max"):
        paths.ContinuousVP(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match="sigma_min must be below sigma_max"):
        paths.VE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="t_min"):
        paths.StraightLine(t_min=0.0)
    with pytest.raises(ValueError, match="log_alpha_bars"):
        paths.DiscreteVP(torch.tensor([0.0, -1.0, -0.5], dtype=F64))
    with pytest.raises(TypeError, match="path must be a udm.paths.Path.*schedule.path"):
        paths.check_path(linear_schedule(10, 0.01, 0.2))


def test_q_sample_refuses_mixed_dtypes_nan_and_bad_t():
    path = paths.ContinuousVP()
    x0 = torch.randn(4, 2)
    with pytest.raises(TypeError, match="x0 and noise must have the same dtype"):
        path.q_sample(x0, 0.5, torch.randn(4, 2, dtype=F64))
    with pytest.raises(ValueError, match="x0 must be finite"):
        path.q_sample(torch.full((4, 2), float("nan")), 0.5, torch.randn(4, 2))
    with pytest.raises(ValueError, match="noise must be finite"):
        path.q_sample(x0, 0.5, torch.full((4, 2), float("inf")))
    with pytest.raises(ValueError, match=r"t must be a number or have shape \(4,\)"):
        path.q_sample(x0, torch.rand(3, dtype=F64), torch.randn(4, 2))
    with pytest.raises(ValueError, match="x0 and noise must have the same shape"):
        path.q_sample(x0, 0.5, torch.randn(4, 3))
