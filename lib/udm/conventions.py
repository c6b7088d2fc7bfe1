"""Translations between the notations of papers and libraries for one noise schedule.

The book writes a noised example as ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``
with integer steps t = 1..T (Luo's notation, :mod:`udm.schedules`). The same numbers appear as

- **DDPM**: ``beta_t = 1 - alpha_t``, ``alpha_bar_t``: the same symbols, the same step index;
- **score SDE, VP**: a rate ``beta(s)`` on continuous time s in [0, 1], with
  ``alpha_bar(s) = exp(-int_0^s beta(u) du)`` (:class:`udm.paths.ContinuousVP`); the linear
  rate ``beta(s) = beta_min + s (beta_max - beta_min)`` discretised at T steps has
  ``beta_t = beta(s) / T``;
- **EDM / VE**: ``x = s (x_0 + sigma eps)`` with ``s = sqrt(alpha_bar)`` and
  ``sigma = sqrt((1 - alpha_bar) / alpha_bar) = 1 / sqrt(SNR)`` (VE: s = 1);
- **diffusers**: 0-indexed tables, ``alphas_cumprod[i] = alpha_bar_{i+1}``, a
  ``prediction_type`` naming what the network outputs (translated once, in
  :data:`udm.parameterizations.DIFFUSERS_PREDICTION_TYPES`), and a ``timestep_spacing``
  choosing which steps a short sampler visits.

Every function here converts one of these; the appendix "Notation crosswalk" checks each.
The VP relations themselves (alpha_bar, log-SNR, sigma) are :mod:`udm.paths`'.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from udm.paths import vp_log_alpha_bar, vp_sigma
from udm.schedules import NoiseSchedule, check_schedule, linear_schedule
from udm.validate import (
    check_int_at_least,
    check_positive,
    check_tensor,
)

#: diffusers' rules for spreading a sampler's steps over the training steps.
TIMESTEP_SPACINGS: tuple[str, ...] = ("linspace", "leading", "trailing")


# ----------------------------------------------------------------------------- checks
def _check_in_range(
    name: str, x: Tensor, low: float, high: float, *, low_open: bool, high_open: bool
) -> Tensor:
    """Raise unless every value of the floating tensor ``x`` lies in the stated interval."""
    check_tensor(name, x)
    above = x > low if low_open else x >= low
    below = x < high if high_open else x <= high
    if not (above & below).all():  # NaN fails every comparison, so it is caught too
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(
            f"{name} must lie in {interval}, got values from {x.min().item():.6g} "
            f"to {x.max().item():.6g}"
        )
    return x


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_vp_rates(beta_min: float, beta_max: float) -> None:
    check_positive("beta_min", beta_min)
    check_positive("beta_max", beta_max)
    if beta_max < beta_min:
        raise ValueError(f"beta_max must be at least beta_min = {beta_min}, got {beta_max}")


# ----------------------------------------------------------------------------- diffusers
def diffusers_tables(schedule: NoiseSchedule) -> dict[str, Tensor]:
    """The schedule as diffusers stores it: ``betas``, ``alphas``, ``alphas_cumprod``.

    Each is a float64 tensor of length T indexed from 0: entry ``i`` holds this book's
    ``beta_{i+1}``, ``alpha_{i+1}`` and ``alpha_bar_{i+1}``, because diffusers' timestep
    ``i`` means "i + 1 noising steps applied". The book's tables have length T + 1 and
    entry 0 is the clean data; diffusers has no entry for it and uses 1 where it needs
    ``alpha_bar_0`` (``one`` in its DDPM scheduler, ``final_alpha_cumprod`` in DDIM's with
    ``set_alpha_to_one=True``).

    Book: eq. (eq-alpha-bar), Appendix "Notation crosswalk".
    """
    schedule = check_schedule(schedule)
    return {
        "betas": schedule.betas[1:].clone(),
        "alphas": schedule.alphas[1:].clone(),
        "alphas_cumprod": schedule.alpha_bars[1:].clone(),
    }


def diffusers_timesteps(
    num_train_timesteps: int,
    num_inference_steps: int,
    timestep_spacing: str,
    steps_offset: int = 0,
) -> Tensor:
    """The 0-indexed timesteps, largest first, that a diffusers sampler visits.

    With T = ``num_train_timesteps`` and n = ``num_inference_steps`` (as in diffusers'
    ``set_timesteps``, Table 2 of Lin et al., 2024):

    - ``"linspace"``: n values evenly spaced from 0 to T - 1, rounded; the first and
      last training steps are both visited;
    - ``"leading"``: the multiples of ``T // n`` from 0 up, plus ``steps_offset``; the
      largest is ``(n - 1) * (T // n) + steps_offset``, so the noisiest step T - 1 is
      skipped unless the offset reaches it;
    - ``"trailing"``: T - 1 down in strides of ``T / n``, rounded; always starts at
      the noisiest step T - 1.

    Returns an int64 tensor of shape (n,). Add 1 to get this book's steps t.

    Book: Appendix "Notation crosswalk", timestep spacing.
    """
    check_int_at_least("num_train_timesteps", num_train_timesteps, 1)
    check_int_at_least("num_inference_steps", num_inference_steps, 1)
    check_int_at_least("steps_offset", steps_offset, 0)
    _check_choice("timestep_spacing", timestep_spacing, TIMESTEP_SPACINGS)
    T, n = num_train_timesteps, num_inference_steps
    if n > T:
        raise ValueError(f"num_inference_steps must be at most num_train_timesteps = {T}, got {n}")
    if timestep_spacing == "linspace":
        steps = np.linspace(0, T - 1, n).round()[::-1]
    elif timestep_spacing == "leading":
        steps = (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset
    else:
        # diffusers' float arange has n + 1 entries for some (T, n), e.g. (1000, 61): the
        # extra one, about -1e-13, becomes a stray step -1. Keep the n intended values.
        steps = np.round(np.arange(T, 0, -T / n)[:n]) - 1
    steps = steps.astype(np.int64)
    if steps.max() > T - 1:
        raise ValueError(
            f"steps_offset = {steps_offset} pushes the largest timestep to {steps.max()}, "
            f"past num_train_timesteps - 1 = {T - 1}"
        )
    return torch.from_numpy(steps.copy())


# ----------------------------------------------------------------------------- EDM / VE
def edm_sigma(alpha_bar: Tensor) -> Tensor:
    """EDM's noise level sigma = sqrt((1 - alpha_bar) / alpha_bar) = 1 / sqrt(SNR).

    ``x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps`` is ``s (x_0 + sigma eps)``
    with ``s = sqrt(alpha_bar)``: dividing a VP sample by ``s`` gives a VE sample at
    noise level sigma. ``alpha_bar`` is a floating tensor with values in (0, 1]
    (alpha_bar = 1, the clean data, gives sigma = 0).

    Book: eq. (eq-snr), Appendix "Notation crosswalk".
    """
    _check_in_range("alpha_bar", alpha_bar, 0.0, 1.0, low_open=True, high_open=False)
    # In float64 and through log alpha_bar: 1 - alpha_bar would lose digits near 1.
    return vp_sigma(alpha_bar.double().log()).to(alpha_bar.dtype)


def edm_scale(alpha_bar: Tensor) -> Tensor:
    """EDM's scale s = sqrt(alpha_bar) of a VP process written as ``s (x_0 + sigma eps)``.

    Book: eq. (eq-alpha-bar), Appendix "Notation crosswalk".
    """
    _check_in_range("alpha_bar", alpha_bar, 0.0, 1.0, low_open=True, high_open=False)
    return torch.sqrt(alpha_bar)


def alpha_bar_from_edm_sigma(sigma: Tensor) -> Tensor:
    """The VP coefficient alpha_bar = 1 / (1 + sigma**2) of an EDM / VE noise level sigma.

    The inverse of :func:`edm_sigma`; ``sigma`` must be finite and non-negative.

    Book: eq. (eq-snr), Appendix "Notation crosswalk".
    """
    _check_in_range("sigma", sigma, 0.0, float("inf"), low_open=False, high_open=True)
    return vp_log_alpha_bar(-2.0 * sigma.double().log()).exp().to(sigma.dtype)


# ----------------------------------------------------------------------------- VP SDE
def vp_sde_endpoints(schedule: NoiseSchedule) -> tuple[float, float]:
    """The VP SDE rates (beta_min, beta_max) = (T beta_1, T beta_T) of a linear schedule.

    Only a schedule whose betas are evenly spaced (relative deviation from a straight
    line below 1e-9 of beta_T) has a linear continuous rate; any other raises.

    Book: Appendix "Notation crosswalk", VP SDE.
    """
    schedule = check_schedule(schedule)
    betas = schedule.betas[1:]
    line = torch.linspace(betas[0].item(), betas[-1].item(), schedule.T, dtype=torch.float64)
    if (betas - line).abs().max() > 1e-9 * betas.abs().max():
        raise ValueError(
            "schedule must be linear (evenly spaced betas) to have VP SDE endpoints "
            "beta_min, beta_max"
        )
    return schedule.T * betas[0].item(), schedule.T * betas[-1].item()


def vp_sde_schedule(T: int, beta_min: float = 0.1, beta_max: float = 20.0) -> NoiseSchedule:
    """The T-step discretisation of the linear VP SDE: beta_t from beta_min / T to beta_max / T.

    This is score_sde's ``VPSDE.discrete_betas`` (and, for T = 1000, DDPM's schedule):
    ``beta_t = beta(s_t) / T`` with ``s_t = (t - 1) / (T - 1)``. Its alpha_bar_t
    approaches the continuous ``alpha_bar(t / T)`` with an error of order 1 / T.

    Book: Appendix "Notation crosswalk", VP SDE.
    """
    check_int_at_least("T", T, 2)
    _check_vp_rates(beta_min, beta_max)
    if beta_max / T >= 1.0:
        raise ValueError(
            f"T must exceed beta_max = {beta_max} so that every beta_t = beta(s) / T < 1, got {T}"
        )
    return linear_schedule(T, beta_min / T, beta_max / T)
