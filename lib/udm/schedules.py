"""Discrete noise schedules: the numbers alpha_t, alpha_bar_t and SNR(t), t = 1..T.

Notation follows Luo (2022): ``x_0`` is the data and ``x_1, ..., x_T`` are latents. The
forward step ``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, (1 - alpha_t) I)`` keeps a
fraction ``alpha_t`` of the signal's variance; DDPM writes ``beta_t = 1 - alpha_t``.
Composing steps gives ``alpha_bar_t = alpha_1 * ... * alpha_t`` (a product up to
``t``, not ``T``), and ``SNR(t) = alpha_bar_t / (1 - alpha_bar_t)``.

A schedule is also a path on the book's one time axis: ``schedule.path`` is the
:class:`udm.paths.DiscreteVP` that puts step t at the time t / T and agrees with these
tables exactly there. Samplers, denoisers and losses take the path; the tables and the
per-step methods here are what Chapter 6 teaches.

Translation to libraries: diffusers' ``betas[i]`` and ``alphas_cumprod[i]`` are this
module's ``beta_{i+1}`` and ``alpha_bar_{i+1}`` (their index starts at step 1).
"""

from __future__ import annotations

import math
import numbers

import torch

from udm.paths import DiscreteVP
from udm.validate import (
    check_floating_dtype,
    check_int_at_least,
    check_positive,
    check_real,
    check_tensor,
)


def _as_float64_vector(name: str, values: object) -> torch.Tensor:
    """Return a detached float64 CPU copy of a non-empty 1-D floating tensor."""
    values = check_tensor(name, values, shape=(None,))
    if values.numel() == 0:
        raise ValueError(f"{name} must hold at least one value (T >= 1), got an empty tensor")
    return values.detach().to(device="cpu", dtype=torch.float64)


def check_schedule(schedule: object) -> NoiseSchedule:
    """Raise a ``TypeError`` naming ``schedule`` unless it is a :class:`NoiseSchedule`."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    return schedule


def _check_strictly_decreasing(name: str, alpha_bars: torch.Tensor) -> None:
    """Raise unless 1 = alpha_bar_0 > alpha_bar_1 > ... > alpha_bar_T > 0."""
    padded = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars])
    if not (alpha_bars > 0).all():
        t = int(torch.nonzero(alpha_bars <= 0)[0]) + 1
        raise ValueError(
            f"{name} gives alpha_bar_{t} = 0 (underflow): every alpha_bar_t must stay positive"
        )
    if not (padded[1:] < padded[:-1]).all():
        t = int(torch.nonzero(padded[1:] >= padded[:-1])[0]) + 1
        raise ValueError(
            f"{name} gives alpha_bar_{t} >= alpha_bar_{t - 1} (= {padded[t - 1].item():.17g}):"
            " alpha_bar_t must decrease strictly, every step must add noise"
        )


class NoiseSchedule:
    """A discrete noise schedule: the tables beta_t, alpha_t, alpha_bar_t for t = 0..T.

    Built from ``betas``, a 1-D floating tensor ``(beta_1, ..., beta_T)`` with every value
    strictly inside (0, 1). The tables are stored in float64 on the CPU, detached
    (constants, no gradients), and **indexed by the step t itself**, so each has length
    ``T + 1``:

    - ``betas[t] = beta_t`` and ``alphas[t] = alpha_t = 1 - beta_t`` for t = 1..T;
      entry 0 holds the do-nothing step ``beta_0 = 0``, ``alpha_0 = 1``.
    - ``alpha_bars[t] = alpha_bar_t = alpha_1 * ... * alpha_t`` for t = 0..T, with
      ``alpha_bars[0] = 1`` (the empty product: x_0 is the data itself), computed as
      ``exp(log_alpha_bars[t])`` with ``log_alpha_bars[t] = sum_{s <= t} log(1 - beta_s)``.

    The methods take the step ``t`` as an int (Python or NumPy) or an integer tensor of
    shape ``(B,)`` and return values of the floating ``dtype`` (default float32) on ``t``'s
    device: ``alpha(t)``, ``snr(t)`` and ``log_snr(t)`` accept t = 1..T; ``alpha_bar(t)``
    and ``noise_std(t)`` also accept t = 0. ``path`` is the same schedule on the continuous
    time axis (step t at time t / T), for samplers, denoisers and losses.

    Book: eq. (eq-forward-step), eq. (eq-alpha-bar), eq. (eq-snr), Chapter on VDMs.
    """

    def __init__(self, betas: torch.Tensor) -> None:
        b = _as_float64_vector("betas", betas)
        if not ((b > 0) & (b < 1)).all():  # NaN fails both comparisons, so it is caught too
            raise ValueError(
                "betas must lie strictly inside (0, 1), got values in "
                f"[{b.min().item():.6g}, {b.max().item():.6g}]"
            )
        zero = torch.zeros(1, dtype=torch.float64)
        # Sums of logs rather than a product: the same numbers, and the path's table.
        self.log_alpha_bars = torch.cat([zero, torch.cumsum(torch.log1p(-b), dim=0)])
        self.alpha_bars = torch.exp(self.log_alpha_bars)
        _check_strictly_decreasing("betas", self.alpha_bars[1:])
        self.betas = torch.cat([zero, b])
        self.alphas = 1.0 - self.betas
        self.path = DiscreteVP(self.log_alpha_bars)
        # The VP formulas live in the path; entry 0 (t = 0, infinite SNR) is never returned.
        steps = self.path.grid().flip(0)
        self._log_snrs = self.path.log_snr(steps)
        self._snrs = torch.exp(self._log_snrs)
        self._noise_stds = self.path.s(steps)

    @classmethod
    def from_alpha_bars(cls, alpha_bars: torch.Tensor) -> NoiseSchedule:
        """Build a schedule from ``(alpha_bar_1, ..., alpha_bar_T)`` rather than from betas.

        The values must lie strictly inside (0, 1) and decrease strictly; then
        ``beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}`` lies in (0, 1). Use it to tabulate
        a learned or continuous-time schedule at T steps.

        Book: eq. (eq-alpha-bar), Chapter on VDMs.
        """
        a = _as_float64_vector("alpha_bars", alpha_bars)
        if not ((a > 0) & (a < 1)).all():
            raise ValueError(
                "alpha_bars must lie strictly inside (0, 1), got values in "
                f"[{a.min().item():.6g}, {a.max().item():.6g}]"
            )
        _check_strictly_decreasing("alpha_bars", a)
        previous = torch.cat([torch.ones(1, dtype=torch.float64), a[:-1]])
        return cls(1.0 - a / previous)

    @property
    def T(self) -> int:
        """The number of noising steps."""
        return self.betas.shape[0] - 1

    def __repr__(self) -> str:
        return f"NoiseSchedule(T={self.T}, alpha_bar_T={self.alpha_bars[-1].item():.3g})"

    def _lookup(
        self, table: torch.Tensor, t: int | torch.Tensor, first: int, dtype: torch.dtype
    ) -> torch.Tensor:
        """Return ``table[t]`` cast to ``dtype`` after checking t's type, shape and range."""
        check_floating_dtype("dtype", dtype)
        if isinstance(t, torch.Tensor):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"t must have an integer dtype, got {t.dtype}")
            check_tensor("t", t, shape=(None,), floating=False)
            device = t.device
            index = t.to("cpu", torch.long)
        elif isinstance(t, numbers.Integral) and not isinstance(t, bool):
            device = torch.device("cpu")
            index = torch.tensor(int(t))
        else:
            raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
        if index.numel() and ((index < first) | (index > self.T)).any():
            raise ValueError(
                f"t must lie in {first}..T = {first}..{self.T}, got values in "
                f"[{index.min().item()}, {index.max().item()}]"
            )
        return table[index].to(device=device, dtype=dtype)

    def alpha(self, t: int | torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """alpha_t = 1 - beta_t, the signal variance kept by step t; t in 1..T.

        Book: eq. (eq-forward-step), Chapter on VDMs.
        """
        return self._lookup(self.alphas, t, 1, dtype)

    def alpha_bar(
        self, t: int | torch.Tensor, *, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """alpha_bar_t = alpha_1 * ... * alpha_t, the signal variance left in x_t; t in 0..T.

        ``alpha_bar(0) = 1``.

        Book: eq. (eq-alpha-bar), Chapter on VDMs.
        """
        return self._lookup(self.alpha_bars, t, 0, dtype)

    def noise_std(
        self, t: int | torch.Tensor, *, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """sqrt(1 - alpha_bar_t), the noise standard deviation in x_t given x_0; t in 0..T.

        (Not EDM's sigma, which is sqrt((1 - alpha_bar_t) / alpha_bar_t): ``path.sigma``.)

        Book: eq. (eq-alpha-bar), Chapter on VDMs.
        """
        return self._lookup(self._noise_stds, t, 0, dtype)

    def snr(self, t: int | torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t); t in 1..T.

        Book: eq. (eq-snr), Chapter on VDMs.
        """
        return self._lookup(self._snrs, t, 1, dtype)

    def log_snr(self, t: int | torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """log SNR(t) = log(alpha_bar_t) - log(1 - alpha_bar_t), computed in float64; t in 1..T.

        Book: eq. (eq-snr), Chapter on VDMs.
        """
        return self._lookup(self._log_snrs, t, 1, dtype)


def linear_schedule(
    T: int,
    beta_start: float | None = None,
    beta_end: float | None = None,
) -> NoiseSchedule:
    """DDPM's linear schedule: beta_t evenly spaced from ``beta_start`` to ``beta_end``.

    The defaults follow improved-diffusion: with ``scale = 1000 / T``,
    ``beta_start = scale * 1e-4`` and ``beta_end = scale * 0.02``, so any T adds about
    as much total noise as DDPM's T = 1000 schedule (alpha_bar_T near 4e-5). For
    T <= 20 that puts ``beta_end`` at 1 or above: pass both endpoints explicitly for
    short schedules. Explicit endpoints must lie strictly inside (0, 1).

    Book: eq. (eq-forward-step), Chapter on VDMs.
    """
    check_int_at_least("T", T, 1)
    scale = 1000.0 / T
    beta_start = scale * 1e-4 if beta_start is None else check_real("beta_start", beta_start)
    beta_end = scale * 0.02 if beta_end is None else check_real("beta_end", beta_end)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"{name} must lie strictly inside (0, 1), got {value:.6g} (with T = {T}; the "
                "default endpoints scale with 1000 / T, so pass them explicitly when T <= 20)"
            )
    return NoiseSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


def cosine_schedule(
    T: int,
    s: float = 0.008,
    max_beta: float = 0.999,
) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine schedule, alpha_bar_t proportional to cos^2 of t / T.

    With ``f(t) = cos(((t / T + s) / (1 + s)) * pi / 2) ** 2``, the target is
    ``alpha_bar_t = f(t) / f(0)``; the schedule is built from
    ``beta_t = min(1 - alpha_bar_t / alpha_bar_{t-1}, max_beta)``. The offset ``s``
    keeps beta_1 from being vanishingly small.

    Book: eq. (eq-alpha-bar), Chapter on VDMs.
    """
    check_int_at_least("T", T, 1)
    check_positive("s", check_real("s", s))
    if not 0.0 < check_real("max_beta", max_beta) < 1.0:
        raise ValueError(f"max_beta must lie strictly inside (0, 1), got {max_beta}")
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((steps / T + s) / (1.0 + s) * (math.pi / 2.0)) ** 2
    alpha_bars = f / f[0]
    # f(T) = cos(pi / 2)**2 = 0, so the last unclipped beta is 1: alpha_bar_T would be 0,
    # SNR(T) = 0 and log SNR(T) = -inf, and undoing that step divides by sqrt(alpha_T) = 0.
    # Clipping at max_beta < 1 keeps every step invertible (improved-diffusion clips at 0.999).
    betas = torch.clamp(1.0 - alpha_bars[1:] / alpha_bars[:-1], max=max_beta)
    return NoiseSchedule(betas)
