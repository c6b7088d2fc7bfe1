"""Tests for udm.schedules against NumPy, SymPy and the schedules' defining formulas."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from udm.schedules import NoiseSchedule, cosine_schedule, linear_schedule

# Linear schedules for short T need explicit endpoints (the defaults scale with 1000 / T).
SCHEDULES = {
    **{f"cosine-{T}": (lambda T=T: cosine_schedule(T)) for T in (1, 2, 10, 1000)},
    **{f"linear-{T}": (lambda T=T: linear_schedule(T, 0.05, 0.5)) for T in (1, 2, 10)},
    "linear-1000": lambda: linear_schedule(1000),
    "linear-50": lambda: linear_schedule(50),
}


@pytest.fixture(params=list(SCHEDULES), ids=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()


# ---------------------------------------------------------------- the tables


def test_alpha_bar_matches_sympy_product_for_three_steps():
    b1, b2, b3 = sp.symbols("beta1:4")
    values = {b1: sp.Rational(1, 10), b2: sp.Rational(1, 5), b3: sp.Rational(1, 2)}
    # alpha_bar_t = prod_{s=1}^{t} (1 - beta_s): a product up to t, not T.
    alpha_bar_sympy = [1, 1 - b1, (1 - b1) * (1 - b2), (1 - b1) * (1 - b2) * (1 - b3)]
    schedule = NoiseSchedule(torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64))
    for t, exact in enumerate(alpha_bar_sympy):
        expected = float(sp.sympify(exact).subs(values))
        assert schedule.alpha_bar(t, dtype=torch.float64).item() == pytest.approx(
            expected, rel=1e-15
        )
    for t in (1, 2, 3):
        assert schedule.alpha(t, dtype=torch.float64).item() == pytest.approx(
            float(1 - values[(b1, b2, b3)[t - 1]]), rel=1e-15
        )


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(1e-4, 0.5)))
def test_alpha_bar_matches_numpy_cumprod(betas):
    schedule = NoiseSchedule(torch.from_numpy(betas))
    expected = np.concatenate([[1.0], np.cumprod(1.0 - betas)])
    t = torch.arange(0, len(betas) + 1)
    np.testing.assert_allclose(
        schedule.alpha_bar(t, dtype=torch.float64).numpy(), expected, rtol=1e-12
    )
    np.testing.assert_allclose(schedule.alpha_bars.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(schedule.betas[1:].numpy(), betas, rtol=0)
    assert schedule.T == len(betas)


def test_snr_log_snr_and_sigma_are_consistent(schedule):
    t = torch.arange(1, schedule.T + 1)
    alpha_bar = schedule.alpha_bars[1:].numpy()
    snr = schedule.snr(t, dtype=torch.float64).numpy()
    np.testing.assert_allclose(snr, alpha_bar / (1.0 - alpha_bar), rtol=1e-12)
    np.testing.assert_allclose(
        schedule.log_snr(t, dtype=torch.float64).numpy(), np.log(snr), rtol=1e-12, atol=1e-12
    )
    sigma = schedule.noise_std(torch.arange(0, schedule.T + 1), dtype=torch.float64).numpy()
    np.testing.assert_allclose(sigma**2 + schedule.alpha_bars.numpy(), 1.0, rtol=0, atol=1e-15)


def test_everything_is_finite_and_monotone(schedule):
    ends = torch.tensor([1, schedule.T])
    for method in (
        schedule.alpha,
        schedule.alpha_bar,
        schedule.noise_std,
        schedule.snr,
        schedule.log_snr,
    ):
        values = method(ends)
        assert values.dtype == torch.float32
        assert torch.isfinite(values).all(), method.__name__
    assert (schedule.alpha_bars[1:] < schedule.alpha_bars[:-1]).all()
    assert (schedule.alpha_bars > 0).all()
    log_snr = schedule.log_snr(torch.arange(1, schedule.T + 1), dtype=torch.float64)
    assert (log_snr[1:] < log_snr[:-1]).all()


def test_alpha_bar_of_zero_is_one_and_python_ints_work(schedule):
    assert schedule.alpha_bar(0).item() == 1.0
    assert schedule.noise_std(0).item() == 0.0
    assert schedule.alpha_bar(schedule.T).shape == ()
    assert schedule.alpha(1, dtype=torch.float64).item() == 1.0 - schedule.betas[1].item()


def test_lookup_follows_the_timestep_tensor():
    schedule = linear_schedule(100)
    t = torch.tensor([3, 1, 100, 3], dtype=torch.int32)
    values = schedule.alpha_bar(t, dtype=torch.float64)
    expected = torch.stack([schedule.alpha_bars[i] for i in (3, 1, 100, 3)])
    torch.testing.assert_close(values, expected, rtol=0, atol=0)


# ---------------------------------------------------------------- named schedules


@pytest.mark.parametrize("T", [50, 1000, 4000])
def test_linear_default_endpoints_scale_with_T(T):
    schedule = linear_schedule(T)
    scale = 1000 / T
    assert schedule.betas[1].item() == pytest.approx(scale * 1e-4, rel=1e-12)
    assert schedule.betas[T].item() == pytest.approx(scale * 0.02, rel=1e-12)
    np.testing.assert_allclose(
        np.diff(schedule.betas[1:].numpy()), (scale * 0.0199) / (T - 1), rtol=1e-9
    )


def test_linear_explicit_endpoints():
    schedule = linear_schedule(5, 0.1, 0.5)
    np.testing.assert_allclose(schedule.betas[1:].numpy(), [0.1, 0.2, 0.3, 0.4, 0.5], rtol=1e-14)


@pytest.mark.parametrize("T", [1, 2, 10, 1000])
def test_cosine_alpha_bar_matches_the_formula(T):
    s = 0.008
    schedule = cosine_schedule(T, s=s)

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    # Every step but the last follows f(t) / f(0); the last beta is clipped at 0.999
    # (unclipped it would be 1, since f(T) = cos(pi / 2)**2 = 0).
    for t in range(0, T):
        assert schedule.alpha_bar(t, dtype=torch.float64).item() == pytest.approx(
            f(t) / f(0), rel=1e-10
        )
    assert schedule.betas[T].item() == pytest.approx(0.999, rel=1e-15)
    assert schedule.alpha_bars[T].item() == pytest.approx(0.001 * f(T - 1) / f(0), rel=1e-10)


def test_from_alpha_bars_round_trips():
    original = cosine_schedule(200)
    rebuilt = NoiseSchedule.from_alpha_bars(original.alpha_bars[1:].float())
    np.testing.assert_allclose(
        rebuilt.alpha_bars.numpy(), original.alpha_bars.float().double().numpy(), rtol=1e-12
    )


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "betas",
    [[0.1, 0.0], [0.1, 1.0], [-0.1, 0.2], [0.1, float("nan")], [1.5]],
    ids=["zero", "one", "negative", "nan", "above-one"],
)
def test_betas_outside_open_unit_interval_are_rejected(betas):
    with pytest.raises(ValueError, match=r"betas must lie strictly inside \(0, 1\)"):
        NoiseSchedule(torch.tensor(betas, dtype=torch.float64))


def test_betas_of_wrong_shape_or_type_are_rejected():
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match=r"betas must hold at least one value \(T >= 1\)"):
        NoiseSchedule(torch.tensor([]))
    with pytest.raises(TypeError, match="betas"):
        NoiseSchedule([0.1, 0.2])
    with pytest.raises(TypeError, match="betas"):
        NoiseSchedule(torch.tensor([1, 2]))


def test_betas_that_stall_or_underflow_alpha_bar_are_rejected():
    # 1 - 1e-17 rounds to 1 in float64: alpha_bar_1 == alpha_bar_0, a step with no noise.
    with pytest.raises(ValueError, match="betas gives alpha_bar_1 >= alpha_bar_0"):
        NoiseSchedule(torch.tensor([1e-17, 0.5], dtype=torch.float64))
    # 0.01**200 = 1e-400 underflows to 0.
    with pytest.raises(ValueError, match="betas gives alpha_bar_.* = 0"):
        NoiseSchedule(torch.full((200,), 0.99, dtype=torch.float64))


def test_from_alpha_bars_rejects_bad_values():
    with pytest.raises(ValueError, match="alpha_bars gives alpha_bar_2 >= alpha_bar_1"):
        NoiseSchedule.from_alpha_bars(torch.tensor([0.9, 0.95, 0.5]))
    with pytest.raises(ValueError, match=r"alpha_bars must lie strictly inside \(0, 1\)"):
        NoiseSchedule.from_alpha_bars(torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match=r"alpha_bars must lie strictly inside \(0, 1\)"):
        NoiseSchedule.from_alpha_bars(torch.tensor([0.5, 0.0]))


@pytest.mark.parametrize("t", [-1, 11, torch.tensor([1, 11]), torch.tensor([0, 5])])
def test_timestep_out_of_range_is_rejected(t):
    schedule = linear_schedule(10, 0.1, 0.2)
    with pytest.raises(ValueError, match=r"t must lie in 1\.\.T = 1\.\.10"):
        schedule.snr(t)


@pytest.mark.parametrize("method", ["alpha", "snr", "log_snr"])
def test_step_zero_is_rejected_where_undefined(method):
    # alpha_0 and SNR(0) = 1 / 0 are not quantities of the book's schedule.
    with pytest.raises(ValueError, match=r"t must lie in 1\.\.T = 1\.\.10"):
        getattr(linear_schedule(10, 0.1, 0.2), method)(0)


def test_alpha_bar_range_includes_zero():
    schedule = linear_schedule(10, 0.1, 0.2)
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.T = 0\.\.10"):
        schedule.alpha_bar(torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.T = 0\.\.10"):
        schedule.noise_std(11)


@pytest.mark.parametrize("dtype", [torch.long, torch.bool, torch.int32, "float32", None])
def test_a_non_floating_dtype_is_refused(dtype):
    with pytest.raises(TypeError, match="dtype must be a floating-point torch dtype"):
        linear_schedule(10, 0.1, 0.2).alpha_bar(5, dtype=dtype)


def test_numpy_integers_are_steps():
    schedule = linear_schedule(10, 0.1, 0.2)
    assert schedule.alpha_bar(np.int64(5)).item() == schedule.alpha_bar(5).item()


def test_the_path_is_the_schedule_on_the_time_axis():
    schedule = cosine_schedule(30)
    steps = torch.arange(0, 31)
    torch.testing.assert_close(
        schedule.path.alpha_bar(steps.double() / 30), schedule.alpha_bar(steps, dtype=torch.float64)
    )
    torch.testing.assert_close(
        schedule.path.s(steps[1:].double() / 30), schedule.noise_std(steps[1:], dtype=torch.float64)
    )
    torch.testing.assert_close(
        schedule.path.log_snr(steps[1:].double() / 30),
        schedule.log_snr(steps[1:], dtype=torch.float64),
    )


@pytest.mark.parametrize("t", [1.0, torch.tensor([1.0]), True, torch.tensor([True])])
def test_non_integer_timestep_is_rejected(t):
    with pytest.raises(TypeError, match="t must"):
        linear_schedule(10, 0.1, 0.2).alpha(t)


def test_timestep_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="t must have shape"):
        linear_schedule(10, 0.1, 0.2).alpha(torch.ones(2, 2, dtype=torch.long))


def test_schedule_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="T must be at least 1"):
        linear_schedule(0)
    with pytest.raises(TypeError, match="T must be an int"):
        cosine_schedule(10.0)
    with pytest.raises(ValueError, match="beta_end"):
        linear_schedule(10)  # default beta_end = 100 * 0.02 = 2
    with pytest.raises(ValueError, match="beta_start"):
        linear_schedule(10, 0.0, 0.5)
    with pytest.raises(TypeError, match="beta_start must be a real number"):
        linear_schedule(10, "0.1", 0.5)
    with pytest.raises(ValueError, match="s must be a positive"):
        cosine_schedule(10, s=0.0)
    with pytest.raises(ValueError, match="max_beta"):
        cosine_schedule(10, max_beta=1.0)
