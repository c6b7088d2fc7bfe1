"""A learned noise schedule: SNR(t) = exp(-omega_eta(t)) with omega_eta a monotone network.

The schedule is written through omega_eta(t) = -log SNR(t) for a continuous time
t in [0, 1]. Noise must grow with t, so SNR must fall, so omega_eta must increase: the
network here is increasing *by construction* (positive weights, increasing activations),
whatever its parameters, so gradient steps can never break the schedule. Then
alpha_bar(t) = sigmoid(-omega_eta(t)) and 1 - alpha_bar(t) = sigmoid(omega_eta(t)).

A discrete schedule of T steps evaluates it at u_i = (i - 1) / (T - 1), i = 1..T, so that
omega(0) sets the first latent's SNR and omega(1) the last one's; alpha_bar_0 = 1 stays the
clean data. On the book's time axis step i sits at t = i / T: :class:`LearnedVP` is that
path, computed from the network at every use so that gradients reach it, and
:func:`vdm_loss` is the negative ELBO of the T-step VDM on it, differentiable in both the
denoiser and the schedule, for training them jointly.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm.parameterizations import Denoiser, prediction_loss
from udm.paths import DiscreteVP, vp_log_alpha_bar
from udm.schedules import NoiseSchedule
from udm.validate import check_int_at_least, check_tensor


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

    def path(self, T: int) -> LearnedVP:
        """The T-step path of this schedule, differentiable in the network's parameters.

        Book: eq. (eq-learned-alpha-bar), Chapter on VDMs.
        """
        return LearnedVP(self, T)

    def to_schedule(self, T: int) -> NoiseSchedule:
        """The discrete schedule alpha_bar_i = sigmoid(-omega(t_i)), i = 1..T, as constants.

        Evaluated in float64 without gradients, so the result plugs into
        :mod:`udm.diffusion` and the samplers like any fixed schedule.

        Book: eq. (eq-learned-alpha-bar), Chapter on VDMs.
        """
        with torch.no_grad():
            omega = copy.deepcopy(self).double()(self.grid(T, torch.float64))
        return NoiseSchedule.from_alpha_bars(torch.sigmoid(-omega).cpu())


class LearnedVP(DiscreteVP):
    """The T-step VP path of a :class:`MonotoneNetwork`, recomputed at every use.

    Step k = 1..T sits at the time k / T with alpha_bar_k = sigmoid(-omega(u_k)),
    u_k = (k - 1) / (T - 1), and log SNR_k = -omega(u_k) exactly; between steps it
    interpolates like every :class:`udm.paths.DiscreteVP`. The table is evaluated from the
    network each time the path is used, so a :class:`udm.parameterizations.Denoiser` on it
    (its preconditioning coefficients, its x_t) carries gradients to the schedule. Freeze it
    for sampling with ``omega.to_schedule(T).path``.

    Book: eq. (eq-learned-snr) and eq. (eq-learned-alpha-bar), Chapter on VDMs.
    """

    def __init__(self, omega: MonotoneNetwork, T: int) -> None:
        if not isinstance(omega, MonotoneNetwork):
            raise TypeError(f"omega must be a MonotoneNetwork, got {type(omega).__name__}")
        check_int_at_least("T", T, 2)
        self.omega, self.T, self.t_min = omega, T, 1.0 / T
        self._on_grid = None  # recomputed from the network at every use, never cached
        self._held: Tensor | None = None

    def __repr__(self) -> str:
        return f"LearnedVP(T={self.T})"

    def _key(self) -> tuple:
        return (id(self.omega), self.T)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Within the block, omega is evaluated once and every use of the path shares it.

        For one loss evaluation (:func:`vdm_loss` holds the path while it computes its
        terms): the same graph node carries every term's gradient to omega, and the network
        runs once instead of once per use. Outside the block the path follows omega again.
        """
        self._held = self._omegas()
        try:
            yield
        finally:
            self._held = None

    def _omegas(self) -> Tensor:
        if self._held is not None:
            return self._held
        return self.omega(self.omega.grid(self.T, self.omega.omega_min.dtype))

    def table(self) -> Tensor:
        """log alpha_bar_k = log sigmoid(-omega(u_k)) for k = 0..T (entry 0 is 0)."""
        log_alpha_bars = F.logsigmoid(-self._omegas())
        return torch.cat([log_alpha_bars.new_zeros(1), log_alpha_bars])

    def log_snr_table(self) -> Tensor:
        """log SNR_k = -omega(u_k) for k = 0..T (entry 0 is +inf)."""
        omegas = self._omegas()
        return torch.cat([omegas.new_full((1,), math.inf), -omegas])


def vdm_loss(
    denoiser: Denoiser,
    x0: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The negative ELBO of a T-step VDM, in nats per example, averaged over the batch.

    ``denoiser`` is a :class:`udm.parameterizations.Denoiser` on a discrete path, usually a
    :class:`LearnedVP`; the loss is differentiable in its network and in the schedule. One
    sample of the steps (times k / T, ``t``) and of the ``noise``, drawn from ``generator``
    unless given:

        T * w_k * ||x0_hat - x_0||^2                              (diffusion and decoder error)
        + D / 2 * log(2 pi / SNR_1)                               (decoder normaliser)
        + KL(N(sqrt(alpha_bar_T) x_0, (1 - alpha_bar_T) I) || N(0, I))   (prior)

    with w_1 = SNR_1 / 2 and w_k = (SNR_{k-1} - SNR_k) / 2 in the expm1 form of
    :meth:`udm.paths.DiscreteVP.x0_weights`: the first line is
    :func:`udm.parameterizations.prediction_loss` with ``weighting="elbo"``.

    Book: eq. (eq-x0-loss-snr) and eq. (eq-learned-snr), Chapter on VDMs.
    """
    if not isinstance(denoiser, Denoiser) or not isinstance(denoiser.path, DiscreteVP):
        raise TypeError(
            "denoiser must be a udm.parameterizations.Denoiser on a discrete path (such as "
            f"omega.path(T)), got {type(denoiser).__name__}"
        )
    check_tensor("x0", x0, min_ndim=2)
    path = denoiser.path
    held = path.held() if isinstance(path, LearnedVP) else contextlib.nullcontext()
    with held:  # a learned schedule's network runs once for all the terms
        diffusion = prediction_loss(
            denoiser, x0, weighting="elbo", t=t, noise=noise, generator=generator
        )
        log_snrs = path.log_snr_table()
    dim = x0[0].numel()
    decoder_normaliser = 0.5 * dim * (math.log(2 * math.pi) - log_snrs[1])
    log_alpha_bar_T = vp_log_alpha_bar(log_snrs[-1])
    alpha_bar_T = log_alpha_bar_T.exp()
    prior = 0.5 * (
        alpha_bar_T * x0.square().reshape(x0.shape[0], -1).sum(dim=1).mean()
        + dim * (1 - alpha_bar_T)
        - dim
        - dim * torch.log(-torch.expm1(log_alpha_bar_T))
    )
    return diffusion + decoder_normaliser + prior
