"""Tests for udm.learned_schedule: monotone by construction, and its loss is the VDM's -ELBO."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import diffusion as D
from udm.learned_schedule import MonotoneNetwork, PositiveLinear, vdm_loss
from udm.schedules import NoiseSchedule

PROPERTY = settings(max_examples=30, deadline=None)
F64 = torch.float64


def scrambled_network(seed: int, scale: float, hidden: int = 16) -> MonotoneNetwork:
    """A network whose raw parameters are random and large, as after wild gradient steps."""
    torch.manual_seed(seed)
    omega = MonotoneNetwork(hidden=hidden, omega_min=-5.0, omega_max=6.0).double()
    with torch.no_grad():
        for parameter in omega.parameters():
            parameter.copy_(scale * torch.randn_like(parameter))
    return omega


@PROPERTY
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 5.0))
def test_network_is_increasing_for_any_parameters(seed, scale):
    omega = scrambled_network(seed, scale)
    t = torch.linspace(0, 1, 201, dtype=F64, requires_grad=True)
    values = omega(t)
    assert (values[1:] > values[:-1]).all()
    slope = torch.autograd.grad(values.sum(), t)[0]
    assert (slope > 0).all()
    # The rescaling pins the endpoints to omega_min and omega_max exactly.
    assert values[0].item() == pytest.approx(omega.omega_min.item(), abs=1e-9)
    assert values[-1].item() == pytest.approx(omega.omega_max.item(), abs=1e-9)
    assert omega.omega_max.item() > omega.omega_min.item()


def test_positive_linear_has_positive_weights_whatever_its_raw_parameters():
    layer = PositiveLinear(3, 4)
    with torch.no_grad():
        layer.raw_weight.fill_(-30.0)
    assert (layer.weight > 0).all()
    x = torch.randn(5, 3)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)


def test_initial_endpoints_are_the_requested_ones():
    omega = MonotoneNetwork(omega_min=-7.0, omega_max=10.0)
    values = omega(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(values, torch.tensor([-7.0, 10.0]), rtol=0, atol=1e-5)


def test_alpha_bar_and_snr_follow_from_omega():
    omega = scrambled_network(1, 1.0)
    t = torch.rand(50, dtype=F64, generator=torch.Generator().manual_seed(0))
    alpha_bar = omega.alpha_bar(t)
    # SNR = alpha_bar / (1 - alpha_bar) = exp(-omega), computed the long way round.
    torch.testing.assert_close(
        alpha_bar / (1 - alpha_bar), torch.exp(-omega(t)), rtol=1e-10, atol=0
    )
    torch.testing.assert_close(omega.log_snr(t), -omega(t))


def test_to_schedule_tabulates_the_network_on_the_step_grid():
    omega = scrambled_network(2, 1.0).float()
    T = 30
    schedule = omega.to_schedule(T)
    assert isinstance(schedule, NoiseSchedule) and schedule.T == T
    grid = torch.linspace(0, 1, T, dtype=F64)
    expected = -omega.double()(grid)
    torch.testing.assert_close(
        schedule.log_snr(torch.arange(1, T + 1), dtype=F64), expected.detach(), rtol=1e-8, atol=1e-8
    )


def test_vdm_loss_averaged_over_steps_is_the_negative_elbo():
    """Mean over t = 1..T of the loss (same noise) = -(ELBO) from udm.diffusion's terms."""
    torch.manual_seed(3)
    T = 12
    omega = scrambled_network(3, 0.5)
    model = lambda x_t, t: 0.1 + 0.8 * x_t * (1 + 0.01 * t[:, None])  # noqa: E731
    g = torch.Generator().manual_seed(4)
    x0, noise = torch.randn(5, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    average = (
        sum(
            vdm_loss(model, omega, x0, T, t=torch.full((5,), t), noise=noise)
            for t in range(1, T + 1)
        )
        / T
    )
    schedule = omega.to_schedule(T)
    elbo = (
        D.reconstruction_term(model, schedule, x0, noise)
        - D.prior_matching_term(schedule, x0)
        - sum(D.denoising_matching_term(model, schedule, x0, t, noise) for t in range(2, T + 1))
    )
    assert average.item() == pytest.approx(-elbo.mean().item(), rel=1e-8)


def test_vdm_loss_trains_both_the_denoiser_and_the_schedule():
    omega = MonotoneNetwork(hidden=8)
    weight = torch.nn.Parameter(torch.tensor(0.9))
    loss = vdm_loss(lambda x_t, t: weight * x_t, omega, torch.randn(16, 2), 20)
    loss.backward()
    assert torch.isfinite(loss)
    assert weight.grad is not None and weight.grad.abs() > 0
    grads = [p.grad for p in omega.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert omega.omega_min.grad.abs() > 0 and omega.raw_gap.grad.abs() > 0


def test_bad_inputs_raise_errors_naming_the_argument():
    omega = MonotoneNetwork()
    with pytest.raises(ValueError, match="t must lie in"):
        omega(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="t must have shape"):
        omega(torch.zeros(2, 1))
    with pytest.raises(ValueError, match="omega_min"):
        MonotoneNetwork(omega_min=3.0, omega_max=3.0)
    with pytest.raises(ValueError, match="hidden"):
        MonotoneNetwork(hidden=0)
    with pytest.raises(ValueError, match="T must be at least 2"):
        omega.to_schedule(1)
    with pytest.raises(TypeError, match="omega"):
        vdm_loss(lambda x, t: x, "schedule", torch.randn(4, 2), 10)
    with pytest.raises(ValueError, match="t must lie in 1..T"):
        vdm_loss(lambda x, t: x, omega, torch.randn(4, 2), 10, t=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="noise"):
        vdm_loss(lambda x, t: x, omega, torch.randn(4, 2), 10, noise=torch.randn(4, 3))
    with pytest.raises(ValueError, match="x0"):
        vdm_loss(lambda x, t: x, omega, torch.randn(4), 10)
    assert math.isfinite(vdm_loss(lambda x, t: x, omega, torch.randn(4, 2), 10).item())
