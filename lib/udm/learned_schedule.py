"""A learned noise schedule: SNR(t) = exp(-omega_eta(t)) with omega_eta a monotone network.

The schedule is written through omega_eta(t) = -log SNR(t) for a continuous time
t in [0, 1]. Noise must grow with t, so SNR must fall, so omega_eta must increase: the
network here is increasing *by construction* (positive weights, increasing activations),
whatever its parameters, so gradient steps can never break the schedule. Then
alpha_bar(t) = sigmoid(-omega_eta(t)) and 1 - alpha_bar(t) = sigmoid(omega_eta(t)).

A discrete schedule of T steps evaluates it at t_i = (i - 1) / (T - 1), i = 1..T, so that
omega(0) sets the first latent's SNR and omega(1) the last one's; alpha_bar_0 = 1 stays the
clean data. :func:`vdm_loss` is the negative ELBO of that discrete VDM, differentiable in
both the denoiser and the schedule, for training them jointly.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm.schedules import NoiseSchedule
from udm.validate import (
    check_batch_vector,
    check_int_at_least,
    check_same_shape,
    check_tensor,
    per_example,
)


class PositiveLinear(nn.Module):
    """A linear layer ``x @ softplus(W).T + b`` whose weights are all positive.

    With positive weights the layer is increasing in every input; composed with
    increasing activations, the whole network stays increasing.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        check_int_at_least("in_features", in_features, 1)
        check_int_at_least("out_features", out_features, 1)
        self.raw_weight = nn.Parameter(torch.randn(out_features, in_features) / in_features)
        self.bias = nn.Parameter(torch.zeros(out_features))

    @property
    def weight(self) -> Tensor:
        """The positive weights softplus(raw_weight), shape (out_features, in_features)."""
        return F.softplus(self.raw_weight)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``x`` of shape (B, in_features)."""
        return x @ self.weight.T + self.bias


class MonotoneNetwork(nn.Module):
    """omega_eta(t) = -log SNR(t), strictly increasing in t in [0, 1] for any parameters.

    Following Kingma et al.'s VDM, an unnormalised increasing function
    ``h(t) = l1(t) + l3(sigmoid(l2(l1(t))))`` (all three layers :class:`PositiveLinear`,
    ``hidden`` sigmoid units) is rescaled to run exactly from ``omega_min`` at t = 0 to
    ``omega_max`` at t = 1:

        omega(t) = omega_min + (omega_max - omega_min) (h(t) - h(0)) / (h(1) - h(0)).

    h is strictly increasing (its slope is at least the positive weight of l1), so the
    denominator is positive. Both endpoints are learned; ``omega_max - omega_min`` is kept
    positive through a softplus. The defaults -7 and 10 are close to a linear schedule's
    first and last log-SNR with alpha_bar_T near 4e-5.

    Book: eq. (eq-learned-snr), Chapter on VDMs.
    """

    def __init__(self, hidden: int = 32, omega_min: float = -7.0, omega_max: float = 10.0) -> None:
        super().__init__()
        check_int_at_least("hidden", hidden, 1)
        if not (math.isfinite(omega_min) and math.isfinite(omega_max) and omega_min < omega_max):
            raise ValueError(
                f"omega_min must be below omega_max (both finite), got {omega_min} and {omega_max}"
            )
        self.l1 = PositiveLinear(1, 1)
        self.l2 = PositiveLinear(1, hidden)
        self.l3 = PositiveLinear(hidden, 1)
        self.omega_min = nn.Parameter(torch.tensor(float(omega_min)))
        gap = omega_max - omega_min
        # softplus^{-1}(gap) = log(exp(gap) - 1), written stably for large gaps.
        self.raw_gap = nn.Parameter(torch.tensor(gap + math.log(-math.expm1(-gap))))

    @property
    def omega_max(self) -> Tensor:
        """omega(1) = omega_min + softplus(raw_gap), always above omega_min."""
        return self.omega_min + F.softplus(self.raw_gap)

    def _unnormalised(self, t: Tensor) -> Tensor:
        h = self.l1(t[:, None])
        return (h + self.l3(torch.sigmoid(self.l2(h))))[:, 0]

    def forward(self, t: Tensor) -> Tensor:
        """omega_eta(t) for times ``t`` of shape (B,) in [0, 1]; returns shape (B,)."""
        check_tensor("t", t, shape=(None,))
        if t.numel() and ((t < 0) | (t > 1)).any():
            raise ValueError(
                f"t must lie in [0, 1], got values from {t.min().item()} to {t.max().item()}"
            )
        ends = self._unnormalised(torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device))
        fraction = (self._unnormalised(t) - ends[0]) / (ends[1] - ends[0])
        return self.omega_min + (self.omega_max - self.omega_min) * fraction

    def log_snr(self, t: Tensor) -> Tensor:
        """log SNR(t) = -omega_eta(t), shape (B,).

        Book: eq. (eq-learned-snr), Chapter on VDMs.
        """
        return -self(t)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar(t) = sigmoid(-omega_eta(t)), shape (B,).

        Book: eq. (eq-learned-alpha-bar), Chapter on VDMs.
        """
        return torch.sigmoid(-self(t))

    def grid(self, T: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The times t_i = (i - 1) / (T - 1) of the steps i = 1..T, shape (T,)."""
        check_int_at_least("T", T, 2)
        device = self.omega_min.device
        return torch.linspace(0.0, 1.0, T, dtype=dtype, device=device)

    def alpha_bar_at_steps(self, t: Tensor, T: int) -> Tensor:
        """alpha_bar of the steps ``t`` (int64, shape (B,), 1..T) of the T-step schedule.

        Differentiable in the network's parameters: pass
        ``lambda t: omega.alpha_bar_at_steps(t, T)`` to a model that needs the schedule.

        Book: eq. (eq-learned-alpha-bar), Chapter on VDMs.
        """
        steps = _check_steps(t, t.shape[0] if isinstance(t, Tensor) else 0, T)
        grid = self.grid(T, self.omega_min.dtype)
        return self.alpha_bar(grid[steps.to(grid.device) - 1])

    def to_schedule(self, T: int) -> NoiseSchedule:
        """The discrete schedule alpha_bar_i = sigmoid(-omega(t_i)), i = 1..T, as constants.

        Evaluated in float64 without gradients, so the result plugs into
        :mod:`udm.diffusion` like any fixed schedule.

        Book: eq. (eq-learned-alpha-bar), Chapter on VDMs.
        """
        with torch.no_grad():
            omega = copy.deepcopy(self).double()(self.grid(T, torch.float64))
        return NoiseSchedule.from_alpha_bars(torch.sigmoid(-omega).cpu())


def _check_steps(t: Tensor, batch: int, T: int) -> Tensor:
    """Check integer steps of shape (batch,) with values in 1..T."""
    check_batch_vector("t", t, batch)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must have an integer dtype, got {t.dtype}")
    if t.numel() and ((t < 1) | (t > T)).any():
        raise ValueError(f"t must lie in 1..T = 1..{T}, got values from {t.min()} to {t.max()}")
    return t.long()


def vdm_loss(
    model: nn.Module,
    omega: MonotoneNetwork,
    x0: Tensor,
    T: int,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative ELBO of the T-step VDM with the learned schedule, in nats per example.

    One-sample estimate, averaged over the batch ``x0`` (B, ...), differentiable in the
    x_0-predictor ``model(x_t, t)`` (t int64 in 1..T) and in ``omega``. The steps ``t``
    (shape (B,)) and the standard Gaussian ``noise`` (shaped like ``x0``) are drawn from
    ``generator`` unless given. With SNR_i = exp(-omega(t_i)) and t ~ Uniform{1..T}:

        T * w_t * ||model(x_t, t) - x_0||^2                      (diffusion and decoder error)
        + D / 2 * log(2 pi / SNR_1)                             (decoder normaliser)
        + KL(N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I) || N(0, I))   (prior)

    with w_t = (SNR_{t-1} - SNR_t) / 2 for t >= 2 and w_1 = SNR_1 / 2, the weights of
    :func:`udm.diffusion.x0_loss_weight`.

    Book: eq. (eq-x0-loss-snr) and eq. (eq-learned-snr), Chapter on VDMs.
    """
    check_tensor("x0", x0, min_ndim=2)
    check_int_at_least("T", T, 2)
    if not isinstance(omega, MonotoneNetwork):
        raise TypeError(f"omega must be a MonotoneNetwork, got {type(omega).__name__}")
    batch, dim = x0.shape[0], x0[0].numel()
    omegas = omega(omega.grid(T, x0.dtype))  # (T,), entry i - 1 is step i
    if t is None:
        t = torch.randint(1, T + 1, (batch,), generator=generator)
    steps = _check_steps(t, batch, T).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    check_same_shape("x0", x0, "noise", noise)
    noise = noise.to(x0.device)

    omega_t = omegas[steps - 1]
    x_t = (
        per_example(torch.sigmoid(-omega_t).sqrt(), x0) * x0
        + per_example(torch.sigmoid(omega_t).sqrt(), x0) * noise
    )
    squared_error = (model(x_t, steps) - x0).square().reshape(batch, -1).sum(dim=1)
    snr = torch.exp(-omegas)
    snr_prev = torch.cat([snr.new_zeros(1), snr[:-1]])[steps - 1]  # entry for t = 1 unused
    # w_1 = SNR_1 / 2 (decoder); for t >= 2, (SNR_{t-1} - SNR_t) / 2.
    weight = torch.where(steps == 1, snr[steps - 1] / 2, (snr_prev - snr[steps - 1]) / 2)
    diffusion = T * weight * squared_error
    decoder_normaliser = 0.5 * dim * (math.log(2 * math.pi) + omegas[0])
    alpha_bar_T = torch.sigmoid(-omegas[-1])
    prior = 0.5 * (
        alpha_bar_T * x0.square().reshape(batch, -1).sum(dim=1)
        + dim * (1 - alpha_bar_T)
        - dim
        - dim * torch.log(torch.sigmoid(omegas[-1]))
    )
    return (diffusion + decoder_normaliser + prior).mean()
