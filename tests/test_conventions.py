"""Tests for udm.conventions: each translation against an independent computation."""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm.conventions import (
    TIMESTEP_SPACINGS,
    alpha_bar_from_edm_sigma,
    diffusers_tables,
    diffusers_timesteps,
    edm_scale,
    edm_sigma,
    vp_sde_endpoints,
    vp_sde_schedule,
)
from udm.paths import ContinuousVP
from udm.schedules import cosine_schedule, linear_schedule

F64 = torch.float64


def vp_sde_alpha_bar(t: torch.Tensor, beta_min: float = 0.1, beta_max: float = 20.0):
    """The VP SDE's alpha_bar(t), from udm.paths (its one home)."""
    return ContinuousVP(beta_min, beta_max).alpha_bar(t)


# ----------------------------------------------------------------------------- diffusers
def test_diffusers_tables_match_diffusers_own_linear_recipe() -> None:
    # diffusers' DDPMScheduler, beta_schedule="linear": linspace, 1 - betas, cumprod.
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    tables = diffusers_tables(linear_schedule(1000))
    torch.testing.assert_close(tables["betas"], betas, rtol=0, atol=1e-15)
    torch.testing.assert_close(tables["alphas"], alphas, rtol=0, atol=1e-15)
    torch.testing.assert_close(tables["alphas_cumprod"], alphas_cumprod, rtol=1e-12, atol=0)


def test_diffusers_index_i_is_book_step_i_plus_one() -> None:
    schedule = linear_schedule(50)
    cumprod = diffusers_tables(schedule)["alphas_cumprod"]
    for i in (0, 1, 24, 49):
        # Book: alpha_bar_t is the product of the first t alphas (1-based).
        by_hand = math.prod(1.0 - schedule.betas[s].item() for s in range(1, i + 2))
        assert cumprod[i].item() == pytest.approx(by_hand, rel=1e-12)
        assert cumprod[i].item() == pytest.approx(schedule.alpha_bar(i + 1, dtype=F64).item())


def test_diffusers_cosine_recipe_matches_cosine_schedule() -> None:
    # diffusers' betas_for_alpha_bar ("squaredcos_cap_v2"), written out with math.cos.
    T = 200

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    tables = diffusers_tables(cosine_schedule(T))
    torch.testing.assert_close(tables["betas"], torch.tensor(betas, dtype=F64), rtol=1e-12, atol=0)


def test_diffusers_tables_are_copies() -> None:
    schedule = linear_schedule(30)
    diffusers_tables(schedule)["betas"][0] = 0.5
    assert schedule.betas[1].item() == pytest.approx(1e-4 * 1000 / 30)


def test_timesteps_reproduce_table_2_of_lin_et_al() -> None:
    # "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2 (T = 1000, 10 steps).
    expected = {
        "linspace": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
        "leading": [901, 801, 701, 601, 501, 401, 301, 201, 101, 1],
        "trailing": [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
    }
    for spacing, steps in expected.items():
        offset = 1 if spacing == "leading" else 0
        got = diffusers_timesteps(1000, 10, spacing, steps_offset=offset)
        assert got.dtype == torch.int64
        assert got.tolist() == steps, spacing


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 2000), data=st.data())
def test_timesteps_properties(T: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, T))
    for spacing in TIMESTEP_SPACINGS:
        steps = diffusers_timesteps(T, n, spacing)
        assert steps.shape == (n,)
        assert (steps >= 0).all() and (steps <= T - 1).all()
        assert (steps[1:] < steps[:-1]).all(), f"{spacing}: not strictly decreasing"
    assert diffusers_timesteps(T, n, "trailing")[0] == T - 1  # starts at pure noise
    linspace = diffusers_timesteps(T, n, "linspace")
    assert linspace[-1] == 0 and (n == 1 or linspace[0] == T - 1)
    leading = diffusers_timesteps(T, n, "leading")
    assert leading[-1] == 0 and leading[0] == (n - 1) * (T // n)


# ----------------------------------------------------------------------------- EDM / VE
def test_edm_sigma_symbolically() -> None:
    a, x0, eps = sp.symbols("alpha_bar x_0 epsilon", positive=True)
    sigma = sp.sqrt((1 - a) / a)
    scale = sp.sqrt(a)
    # s (x0 + sigma eps) is the book's sqrt(a) x0 + sqrt(1 - a) eps
    assert sp.simplify(scale * (x0 + sigma * eps) - (sp.sqrt(a) * x0 + sp.sqrt(1 - a) * eps)) == 0
    assert sp.simplify(1 / sigma**2 - a / (1 - a)) == 0  # sigma = 1 / sqrt(SNR)
    assert sp.simplify(1 / (1 + sigma**2) - a) == 0  # the inverse map
    ab = torch.tensor([0.9, 0.5, 1e-3, 1.0], dtype=F64)
    expected = [float(sigma.subs(a, v)) for v in ab.tolist()]
    torch.testing.assert_close(edm_sigma(ab), torch.tensor(expected, dtype=F64))
    torch.testing.assert_close(edm_scale(ab), ab.sqrt())


def test_edm_form_reproduces_book_noising_on_images() -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 1, 8, 8, generator=gen, dtype=F64)
    eps = torch.randn(5, 1, 8, 8, generator=gen, dtype=F64)
    ab = torch.tensor([0.99, 0.7, 0.3, 0.01, 1e-4], dtype=F64)
    s, sigma = edm_scale(ab)[:, None, None, None], edm_sigma(ab)[:, None, None, None]
    book = ab.sqrt()[:, None, None, None] * x0 + (1 - ab).sqrt()[:, None, None, None] * eps
    torch.testing.assert_close(s * (x0 + sigma * eps), book, rtol=1e-12, atol=1e-12)


def test_edm_vp_formula_of_karras_table_1() -> None:
    # EDM Table 1, VP: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), s = 1 / sqrt(e^...).
    t = torch.linspace(1e-3, 1.0, 50, dtype=F64)
    exponent = 0.5 * 19.9 * t**2 + 0.1 * t
    ab = vp_sde_alpha_bar(t, 0.1, 20.0)
    torch.testing.assert_close(
        edm_sigma(ab), torch.sqrt(torch.exp(exponent) - 1), rtol=1e-10, atol=0
    )
    torch.testing.assert_close(edm_scale(ab), torch.exp(-0.5 * exponent), rtol=1e-12, atol=0)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-6, 1.0))
def test_edm_round_trip(alpha_bar: float) -> None:
    ab = torch.tensor([alpha_bar], dtype=F64)
    torch.testing.assert_close(alpha_bar_from_edm_sigma(edm_sigma(ab)), ab, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- VP SDE
def test_vp_marginal_solves_the_moment_odes() -> None:
    s, b0, b1 = sp.symbols("s beta_min beta_max", positive=True)
    m, v = sp.Function("m"), sp.Function("v")
    beta = b0 + s * (b1 - b0)
    # dx = -beta x / 2 ds + sqrt(beta) dW: the mean and the variance obey linear ODEs.
    mean = sp.dsolve(sp.Eq(m(s).diff(s), -beta * m(s) / 2), m(s), ics={m(0): 1}).rhs
    var = sp.dsolve(sp.Eq(v(s).diff(s), -beta * v(s) + beta), v(s), ics={v(0): 0}).rhs
    integral = sp.integrate(beta, (s, 0, s))
    assert sp.simplify(mean - sp.exp(-integral / 2)) == 0
    assert sp.simplify(var - (1 - sp.exp(-integral))) == 0
    mean_f = sp.lambdify((s, b0, b1), mean)
    var_f = sp.lambdify((s, b0, b1), var)
    t = torch.tensor([0.0, 1e-4, 0.1, 0.5, 1.0], dtype=F64)
    for lo, hi in [(0.1, 20.0), (0.5, 5.0), (1.0, 1.5)]:
        path = ContinuousVP(lo, hi)
        expected_m = torch.tensor([mean_f(u, lo, hi) for u in t.tolist()], dtype=F64)
        expected_std = torch.tensor([math.sqrt(var_f(u, lo, hi)) for u in t.tolist()], dtype=F64)
        torch.testing.assert_close(path.a(t), expected_m, rtol=1e-12, atol=0)
        torch.testing.assert_close(path.s(t), expected_std, rtol=1e-9, atol=1e-15)
        torch.testing.assert_close(path.a(t) ** 2, path.alpha_bar(t), rtol=1e-12, atol=0)


def test_vp_alpha_bar_against_quadrature() -> None:
    for u in (0.0, 0.3, 1.0):
        integral, _ = scipy.integrate.quad(lambda r: 0.1 + r * (20.0 - 0.1), 0.0, u)
        got = vp_sde_alpha_bar(torch.tensor([u], dtype=F64)).item()
        assert got == pytest.approx(math.exp(-integral), rel=1e-12)
    assert ContinuousVP().beta(torch.tensor([0.0, 1.0], dtype=F64)).tolist() == [0.1, 20.0]


def test_vp_endpoints_of_linear_schedules() -> None:
    assert vp_sde_endpoints(linear_schedule(1000)) == pytest.approx((0.1, 20.0), rel=1e-12)
    assert vp_sde_endpoints(linear_schedule(50)) == pytest.approx((0.1, 20.0), rel=1e-12)
    # ... and the way back: the VP rates discretised at T steps are the same schedule.
    torch.testing.assert_close(vp_sde_schedule(1000).betas, linear_schedule(1000).betas)


def test_vp_schedule_converges_to_the_sde_at_rate_one_over_T() -> None:
    errors = []
    for T in (100, 1000, 10000):
        schedule = vp_sde_schedule(T)
        t = torch.arange(T + 1, dtype=F64) / T
        errors.append((schedule.alpha_bars - vp_sde_alpha_bar(t)).abs().max().item())
        assert errors[-1] < 2.0 / T  # the bound the appendix states
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(8 < r < 12 for r in ratios), f"error ratios {ratios}, expected about 10 (order 1/T)"


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(TypeError, match="schedule"):
        diffusers_tables(torch.ones(3))
    with pytest.raises(ValueError, match="timestep_spacing"):
        diffusers_timesteps(1000, 10, "uniform")
    with pytest.raises(ValueError, match="num_inference_steps"):
        diffusers_timesteps(10, 11, "linspace")
    with pytest.raises(ValueError, match="steps_offset"):
        diffusers_timesteps(10, 10, "leading", steps_offset=1)
    with pytest.raises(TypeError, match="num_train_timesteps"):
        diffusers_timesteps(10.0, 5, "linspace")
    with pytest.raises(ValueError, match="alpha_bar"):
        edm_sigma(torch.tensor([0.0]))
    with pytest.raises(ValueError, match="alpha_bar"):
        edm_scale(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="alpha_bar"):
        edm_sigma(torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="alpha_bar"):
        edm_sigma(torch.tensor([1]))
    with pytest.raises(ValueError, match="sigma"):
        alpha_bar_from_edm_sigma(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="t must lie"):
        vp_sde_alpha_bar(torch.tensor([1.5], dtype=F64))
    with pytest.raises(ValueError, match="linear"):
        vp_sde_endpoints(cosine_schedule(100))
    with pytest.raises(ValueError, match="T must exceed"):
        vp_sde_schedule(20)
