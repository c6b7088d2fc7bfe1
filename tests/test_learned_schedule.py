"""Tests for udm.learned_schedule: monotone by construction, and its loss is the VDM's -ELBO."""

import contextlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import diffusion as D
from udm.learned_schedule import LearnedVP, MonotoneNetwork, PositiveLinear, vdm_loss
from udm.parameterizations import Denoiser
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

    def net(x_t, t):  # an imperfect x_0-predictor that depends on the step T t
        return 0.1 + 0.8 * x_t * (1 + 0.01 * T * t[:, None])

    g = torch.Generator().manual_seed(4)
    x0, noise = torch.randn(5, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    model = Denoiser(net, omega.path(T), "x0")
    average = (
        sum(
            vdm_loss(model, x0, t=torch.full((5,), t / T, dtype=F64), noise=noise)
            for t in range(1, T + 1)
        )
        / T
    )
    schedule = omega.to_schedule(T)
    frozen = Denoiser(net, schedule.path, "x0")
    elbo = (
        D.reconstruction_term(frozen, schedule, x0, noise)
        - D.prior_matching_term(schedule, x0)
        - sum(D.denoising_matching_term(frozen, schedule, x0, t, noise) for t in range(2, T + 1))
    )
    assert average.item() == pytest.approx(-elbo.mean().item(), rel=1e-8)


def test_vdm_loss_trains_both_the_denoiser_and_the_schedule():
    omega = MonotoneNetwork(hidden=8)
    weight = torch.nn.Parameter(torch.tensor(0.9))
    model = Denoiser(lambda x_t, t: weight * x_t, omega.path(20), "x0", data_std=1.0)
    loss = vdm_loss(model, torch.randn(16, 2))
    loss.backward()
    assert torch.isfinite(loss)
    assert weight.grad is not None and weight.grad.abs() > 0
    grads = [p.grad for p in omega.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert omega.omega_min.grad.abs() > 0 and omega.raw_gap.grad.abs() > 0


def test_holding_the_learned_path_changes_neither_the_loss_nor_its_gradients(monkeypatch):
    """vdm_loss evaluates omega once (LearnedVP.held); the same loss without holding agrees."""
    omega = scrambled_network(5, 0.5)
    model = Denoiser(lambda x_t, t: 0.9 * x_t, omega.path(16), "eps", data_std=1.0)
    x0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(6), dtype=F64)

    def loss_and_gradients():
        loss = vdm_loss(model, x0, generator=torch.Generator().manual_seed(7))
        return loss.detach(), torch.autograd.grad(loss, list(omega.parameters()))

    held_loss, held_grads = loss_and_gradients()
    calls = []
    omega.register_forward_hook(lambda *args: calls.append(1))
    loss_and_gradients()
    assert len(calls) == 1  # one evaluation of omega for the whole loss
    monkeypatch.setattr(LearnedVP, "held", lambda self: contextlib.nullcontext())
    loss, grads = loss_and_gradients()
    assert len(calls) > 2  # without holding, every use of the path evaluates omega again
    torch.testing.assert_close(held_loss, loss, rtol=1e-12, atol=0)
    for held_grad, grad in zip(held_grads, grads, strict=True):
        torch.testing.assert_close(held_grad, grad, rtol=1e-10, atol=1e-14)
    assert model.path._held is None  # released after the loss


def test_the_elbo_weights_use_the_expm1_form_and_stay_accurate_in_float32():
    """(SNR_{t-1} - SNR_t) / 2 from a float32 log-SNR table: subtracting the two SNRs loses
    about 6e-8 / (lambda_{t-1} - lambda_t) of relative accuracy, the expm1 form does not.

    Reference: the same float32 lambda values, exponentiated and subtracted in float64.
    """
    omega = MonotoneNetwork(hidden=8, omega_min=-18.0, omega_max=6.0)
    path = LearnedVP(omega, 10_000)
    with torch.no_grad():
        lam = path.log_snr_table()[1:]  # float32, k = 1..T
        weights = path.x0_weights()[2:]
    lam64 = lam.double()
    reference = 0.5 * (lam64[:-1].exp() - lam64[1:].exp())
    subtracted = 0.5 * (lam[:-1].exp() - lam[1:].exp())  # what the loss used to compute
    error_expm1 = ((weights.double() - reference) / reference).abs().max().item()
    error_subtracted = ((subtracted.double() - reference) / reference).abs().max().item()
    assert error_expm1 < 1e-5 < error_subtracted, (error_expm1, error_subtracted)


def test_learned_path_freezes_into_the_tabulated_schedule():
    omega = scrambled_network(5, 0.7)
    path, frozen = omega.path(25), omega.to_schedule(25).path
    t = torch.linspace(0.0, 1.0, 101, dtype=F64)
    torch.testing.assert_close(path.alpha_bar(t).detach(), frozen.alpha_bar(t), rtol=1e-9, atol=0)
    assert path.T == 25 and path.t_min == 1 / 25


def test_bad_inputs_raise_errors_naming_the_argument():
    omega = MonotoneNetwork()
    model = Denoiser(lambda x, t: x, omega.path(10), "x0")
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
    with pytest.raises(TypeError, match="omega must be a MonotoneNetwork"):
        LearnedVP("schedule", 10)
    with pytest.raises(TypeError, match="denoiser must be a udm.parameterizations.Denoiser"):
        vdm_loss(lambda x, t: x, torch.randn(4, 2))
    with pytest.raises(ValueError, match="t must be above 0"):
        vdm_loss(model, torch.randn(4, 2), t=torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=F64))
    with pytest.raises(ValueError, match="noise"):
        vdm_loss(model, torch.randn(4, 2), noise=torch.randn(4, 3))
    with pytest.raises(ValueError, match="x0"):
        vdm_loss(model, torch.randn(4))
    assert math.isfinite(vdm_loss(model, torch.randn(4, 2)).item())
