"""Gaussian noising paths: x_t = a(t) x_0 + s(t) eps on one continuous time axis.

Every forward process in the book is a *path*: a time t running from 0 (the data) to
``t_max`` (almost pure noise), a **signal scale** a(t) and a **noise standard deviation**
s(t), with

    x_t = a(t) x_0 + s(t) eps,      eps ~ N(0, I),      a(0) = 1, s(0) = 0.

Three numbers say equally well how noisy x_t is, and every path converts between them
exactly (float64, closed forms):

- the time t itself;
- the log signal-to-noise ratio lambda = log(a^2 / s^2) = 2 log(a / s) (``log_snr``);
- EDM's noise level sigma = s / a, the noise in x_t / a = x_0 + sigma eps (``sigma``).

The derivatives a'(t), s'(t) give the forward SDE dx = f(t) x dt + g(t) dw with these
marginals (score_sde's drift and diffusion): f = a'/a and g^2 = d(s^2)/dt - 2 f s^2.

==========================  =====================================================
:class:`DiscreteVP`         the book's T-step schedules on the grid t_k = k / T
:class:`ContinuousVP`       Song et al.'s VP SDE, beta(t) linear from 0.1 to 20
:class:`VE`                 variance exploding: a = 1, s geometric in t
:class:`EDM`                a = 1, s = t (Karras et al.: the time *is* sigma)
:class:`StraightLine`       a = 1 - t, s = t (flow matching's path)
==========================  =====================================================

Times are Python floats, 0-d or 1-D floating tensors; every method returns float64
tensors of the shape of its argument (integer tensors are refused: step k of a T-step
schedule is the time k / T). A time outside [0, t_max] is an error that names it.

Book: eq. (eq-forward-marginal) on a continuous time axis, Chapters on VDMs and
score-based models.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor

from udm.validate import (
    check_finite,
    check_floating_dtype,
    check_int_at_least,
    check_positive,
    check_same_device,
    check_same_dtype,
    check_same_shape,
    check_tensor,
    per_example,
)

F64 = torch.float64


class PathCoefficients(NamedTuple):
    """a(t), s(t) and their time derivatives a'(t), s'(t), each a float64 tensor."""

    a: Tensor
    s: Tensor
    da: Tensor
    ds: Tensor


def as_time(name: str, t: object) -> Tensor:
    """``t`` as a float64 tensor: a real number becomes 0-d, a floating tensor keeps its shape.

    Integer and boolean tensors are refused with a hint: a time is a float, and step k of a
    T-step schedule is the time k / T.
    """
    if isinstance(t, Tensor):
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point time, got a tensor of dtype {t.dtype} "
                "(step k of a T-step schedule is the time k / T)"
            )
        if t.ndim > 1:
            raise ValueError(f"{name} must be a number or a 1-D tensor, got shape {tuple(t.shape)}")
        return t.detach().to(F64)
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(
            f"{name} must be a real number or a floating tensor, got {type(t).__name__}"
        )
    return torch.tensor(float(t), dtype=F64)


class Path:
    """A Gaussian noising path x_t = a(t) x_0 + s(t) eps for t in [0, t_max].

    Subclasses give a(t), s(t), their derivatives and the inverse of the log-SNR; this
    class derives everything else from them. ``t_min`` is the smallest time a training
    loss draws and the last time a sampling grid visits before the final step to t = 0.

    Book: eq. (eq-forward-marginal), Chapter on VDMs; eq. (eq-vp-sde), Chapter on
    score-based models.
    """

    t_max: float
    t_min: float

    # ------------------------------------------------------------ for subclasses
    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _da_ds(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _time(self, t: object, name: str = "t") -> Tensor:
        times = as_time(name, t)
        if not bool(((times >= 0) & (times <= self.t_max)).all()):  # NaN fails too
            raise ValueError(
                f"{name} must lie in [0, t_max] = [0, {self.t_max:g}] for {self!r}, got values "
                f"from {times.min().item():.6g} to {times.max().item():.6g}"
            )
        return times

    def _check_ends(self, t_min: float, t_max: float) -> None:
        if not 0.0 < t_min < t_max:
            raise ValueError(f"t_min must lie in (0, t_max = {t_max:g}), got {t_min}")

    # ------------------------------------------------------- the path itself
    def coefficients(self, t: object) -> PathCoefficients:
        """a(t), s(t), a'(t) and s'(t) in one evaluation (what samplers tabulate once)."""
        return self._coefficients(self._time(t))

    def _coefficients(self, times: Tensor) -> PathCoefficients:
        """:meth:`coefficients` at times already checked (a float64 tensor)."""
        a, s = self._a_s(times)
        da, ds = self._da_ds(times)
        return PathCoefficients(a, s, da, ds)

    def _coefficients_from_above(self, times: Tensor) -> PathCoefficients:
        """:meth:`_coefficients` with the derivatives taken from above (t -> t+).

        The same for a smooth path; a path whose rates jump (:class:`DiscreteVP`) gives the
        rate of the interval just above t: what a sampler stepping *down to* t integrates.
        """
        return self._coefficients(times)

    def a(self, t: object) -> Tensor:
        """The signal scale a(t) in x_t = a(t) x_0 + s(t) eps; a(0) = 1."""
        return self._a_s(self._time(t))[0]

    def s(self, t: object) -> Tensor:
        """The noise standard deviation s(t) in x_t = a(t) x_0 + s(t) eps; s(0) = 0."""
        return self._a_s(self._time(t))[1]

    def da(self, t: object) -> Tensor:
        """da/dt."""
        return self._da_ds(self._time(t))[0]

    def ds(self, t: object) -> Tensor:
        """ds/dt."""
        return self._da_ds(self._time(t))[1]

    def alpha_bar(self, t: object) -> Tensor:
        """a(t)^2, the signal variance left in x_t (the book's alpha_bar for VP paths)."""
        return self.a(t).square()

    def sigma(self, t: object) -> Tensor:
        """EDM's noise level sigma(t) = s(t) / a(t): x_t / a = x_0 + sigma eps.

        Book: eq. (eq-crosswalk-edm), Appendix "Notation crosswalk".
        """
        a, s = self._a_s(self._time(t))
        return s / a

    def log_snr(self, t: object) -> Tensor:
        """lambda(t) = log(a^2 / s^2) = 2 (log a - log s); +inf at t = 0.

        Book: eq. (eq-snr), Chapter on VDMs.
        """
        a, s = self._a_s(self._time(t))
        return 2.0 * (a.log() - s.log())

    def d_log_snr(self, t: object) -> Tensor:
        """d lambda / dt = 2 (a'/a - s'/s), negative: the SNR falls with t."""
        c = self.coefficients(t)
        return 2.0 * (c.da / c.a - c.ds / c.s)

    def t_from_log_snr(self, log_snr: object) -> Tensor:
        """The time at which the log-SNR equals ``log_snr`` (the inverse of :meth:`log_snr`).

        ``log_snr`` must lie in [log_snr(t_max), +inf]; +inf gives t = 0.
        """
        lam = as_time("log_snr", log_snr)
        lowest = self.log_snr(self.t_max).item()
        if not bool((lam >= lowest - 1e-12 * max(1.0, abs(lowest))).all()):  # NaN fails too
            raise ValueError(
                f"log_snr must be at least log_snr(t_max) = {lowest:.6g} on {self!r}, got values "
                f"from {lam.min().item():.6g}"
            )
        return self._t_from_log_snr(lam).clamp(0.0, self.t_max)

    def t_from_sigma(self, sigma: object) -> Tensor:
        """The time at which sigma(t) = s / a equals ``sigma``; sigma = 0 gives t = 0."""
        sig = as_time("sigma", sigma)
        if not bool((sig >= 0).all()):  # NaN fails too
            raise ValueError(f"sigma must be >= 0, got values from {sig.min().item():.6g}")
        return self.t_from_log_snr(-2.0 * sig.log())

    def drift(self, t: object) -> Tensor:
        """f(t) = a'(t) / a(t), the drift coefficient of the forward SDE dx = f x dt + g dw.

        Book: eq. (eq-vp-sde), Chapter on score-based models.
        """
        c = self.coefficients(t)
        return c.da / c.a

    def diffusion_squared(self, t: object) -> Tensor:
        """g(t)^2 = d(s^2)/dt - 2 f s^2, the squared diffusion coefficient of the forward SDE.

        Book: eq. (eq-vp-sde), Chapter on score-based models.
        """
        c = self.coefficients(t)
        return 2.0 * c.s * c.ds - 2.0 * (c.da / c.a) * c.s.square()

    def elbo_weight(self, t: object) -> Tensor:
        """The negative ELBO's weight on ||x0_hat - x_0||^2 at ``t``, for t drawn by sample_t.

        In continuous time the network's part of the negative ELBO is
        E_t[-1/2 dSNR/dt ||x0_hat - x_0||^2] over t in [t_min, t_max] (Kingma et al.'s
        continuous-time VDM); for t uniform there the weight is (t_max - t_min) times
        -1/2 dSNR/dt = -1/2 exp(lambda) dlambda/dt.

        Book: eq. (eq-x0-loss-snr) as T -> infinity, Chapter on VDMs.
        """
        c = self.coefficients(t)
        d_log_snr = 2.0 * (c.da / c.a - c.ds / c.s)
        return -0.5 * (self.t_max - self.t_min) * (c.a / c.s).square() * d_log_snr

    def posterior_coefficients(self, t: object, t_prev: object) -> tuple[Tensor, Tensor, Tensor]:
        """(c_x, c_0, var) of the forward posterior q(x_s | x_t, x_0) for s = t_prev < t.

        q(x_s | x_t, x_0) = N(c_x x_t + c_0 x_0, var I) with r = sigma_s^2 / sigma_t^2:

            c_x = a_t s_s^2 / (a_s s_t^2),   c_0 = a_s (1 - r),   var = s_s^2 (1 - r),

        and 1 - r = -expm1(lambda_t - lambda_s) computed without cancellation for close
        times. On a discrete path's grid (t = k / T, s = (k - 1) / T) these are
        eqs. (eq-posterior-mean) and (eq-posterior-variance); at s = 0, c_0 = 1 and var = 0.

        Book: eq. (eq-posterior-mean) and eq. (eq-posterior-variance), Chapter on VDMs.
        """
        t, t_prev = self._time(t, "t"), self._time(t_prev, "t_prev")
        if not bool((t_prev < t).all()):
            raise ValueError("t_prev must be earlier than t (the posterior steps back in time)")
        a_t, s_t = self._a_s(t)
        a_s, s_s = self._a_s(t_prev)
        one_minus_r = -torch.expm1(self.log_snr(t) - self.log_snr(t_prev))
        return (
            a_t * s_s.square() / (a_s * s_t.square()),
            a_s * one_minus_r,
            s_s.square() * one_minus_r,
        )

    # ------------------------------------------------------- data on the path
    def q_sample(self, x0: Tensor, t: object, noise: Tensor) -> Tensor:
        """x_t = a(t) x_0 + s(t) noise, for ``x0`` of shape (B, ...) and ``noise`` alike.

        ``t`` is one time for the batch (a float) or one per example (a tensor of shape
        (B,)); t = 0 returns ``x0``. Coefficients are computed in float64 and cast once to
        the data's dtype; ``x0`` and ``noise`` must share shape, dtype and device and be
        finite.

        Book: eq. (eq-forward-marginal), Chapter on VDMs.
        """
        check_tensor("x0", x0, min_ndim=2)
        check_tensor("noise", noise)
        check_same_shape("x0", x0, "noise", noise)
        check_same_dtype("x0", x0, "noise", noise)
        check_same_device("x0", x0, "noise", noise)
        check_finite("x0", x0)
        check_finite("noise", noise)
        a, s = self._a_s(self._batch_time(t, x0.shape[0]))
        return per_example(a.to(x0.device), x0) * x0 + per_example(s.to(x0.device), x0) * noise

    def _batch_time(self, t: object, batch: int) -> Tensor:
        """A per-example time vector (B,) from a float or a (B,) tensor, range-checked."""
        times = self._time(t)
        if times.ndim == 0:
            return times.expand(batch)
        if times.shape != (batch,):
            raise ValueError(
                f"t must be a number or have shape ({batch},) to match the batch, "
                f"got {tuple(times.shape)}"
            )
        return times

    def sample_t(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training times, float64: uniform on [t_min, t_max] (discrete paths: the grid)."""
        check_int_at_least("n", n, 1)
        u = torch.rand(n, generator=generator, dtype=F64)
        return self.t_min + (self.t_max - self.t_min) * u

    def prior_std(self, t: object | None = None) -> float:
        """sqrt(a^2 + s^2) at ``t`` (default t_max): the std of x_t for unit-variance data.

        It is 1 for variance-preserving paths, whose prior is N(0, I).
        """
        a, s = self._a_s(self._time(self.t_max if t is None else t))
        return math.sqrt(float(a.square() + s.square()))

    def sample_prior(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        t: float | None = None,
    ) -> Tensor:
        """Noise to start a sampler at ``t`` (default t_max): N(0, prior_std(t)^2 I).

        Drawn from ``generator`` on the CPU, in ``dtype``.
        """
        check_floating_dtype("dtype", dtype)
        if not (isinstance(shape, tuple) and shape and all(isinstance(n, int) for n in shape)):
            raise TypeError(f"shape must be a tuple of ints such as (n, 2), got {shape!r}")
        noise = torch.randn(shape, generator=generator, dtype=dtype)
        return noise * self.prior_std(t)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def _key(self) -> tuple:
        return (self.t_min, self.t_max)


def check_path(path: object) -> Path:
    """Raise a ``TypeError`` naming ``path`` unless it is a :class:`Path`."""
    if not isinstance(path, Path):
        hint = (
            " (a NoiseSchedule gives one as schedule.path)" if hasattr(path, "alpha_bars") else ""
        )
        raise TypeError(f"path must be a udm.paths.Path, got {type(path).__name__}{hint}")
    return path


# ----------------------------------------------------------------------- VP paths
def vp_sigma(log_alpha_bar: Tensor) -> Tensor:
    """EDM's sigma = sqrt((1 - alpha_bar) / alpha_bar) = sqrt(expm1(-log alpha_bar)).

    Book: eq. (eq-crosswalk-edm), Appendix "Notation crosswalk".
    """
    return torch.expm1(-log_alpha_bar).sqrt()


def vp_log_snr(log_alpha_bar: Tensor) -> Tensor:
    """log SNR = log alpha_bar - log(1 - alpha_bar), written as L - log(-expm1(L)).

    Book: eq. (eq-snr), Chapter on VDMs.
    """
    return log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))


def vp_log_alpha_bar(log_snr: Tensor) -> Tensor:
    """The inverse of :func:`vp_log_snr`: log alpha_bar = -log(1 + exp(-log SNR)).

    Book: eq. (eq-snr), Chapter on VDMs.
    """
    return -torch.nn.functional.softplus(-log_snr)


class VPPath(Path):
    """A variance-preserving path, given by L(t) = log alpha_bar(t) = log a(t)^2.

    a = exp(L / 2), s = sqrt(1 - exp(L)) and a^2 + s^2 = 1 at every t. The conversions are
    written in L so that nothing is subtracted from 1 in a way that loses digits:
    s^2 = -expm1(L), sigma^2 = expm1(-L), lambda = L - log(-expm1(L)), and back
    L = -log(1 + exp(-lambda)). The SDE has f = L'/2 and g^2 = -L' = beta(t).

    Book: eq. (eq-vp-alpha-bar), Chapter on score-based models.
    """

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _d_log_alpha_bar(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def _t_from_log_alpha_bar(self, log_alpha_bar: Tensor) -> Tensor:
        raise NotImplementedError

    def _log_alpha_bar_and_rate(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """L(t) and L'(t) together (a subclass may share work between them)."""
        return self._log_alpha_bar(t), self._d_log_alpha_bar(t)

    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        L = self._log_alpha_bar(t)
        return (0.5 * L).exp(), (-torch.expm1(L)).sqrt()

    def _da_ds(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self._coefficients(t)[2:]

    def _coefficients(self, times: Tensor) -> PathCoefficients:
        """a, s, a', s' from one evaluation of L(t) and L'(t)."""
        L, dL = self._log_alpha_bar_and_rate(times)
        a, s = (0.5 * L).exp(), (-torch.expm1(L)).sqrt()
        return PathCoefficients(a, s, 0.5 * a * dL, -0.5 * L.exp() * dL / s)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return self._t_from_log_alpha_bar(vp_log_alpha_bar(log_snr))

    def alpha_bar(self, t: object) -> Tensor:
        """alpha_bar(t) = exp(L(t)), the signal variance left in x_t.

        Book: eq. (eq-vp-alpha-bar), Chapter on score-based models.
        """
        return self._log_alpha_bar(self._time(t)).exp()

    def sigma(self, t: object) -> Tensor:
        """sigma(t) = sqrt((1 - alpha_bar) / alpha_bar) = sqrt(expm1(-L(t)))."""
        return vp_sigma(self._log_alpha_bar(self._time(t)))

    def log_snr(self, t: object) -> Tensor:
        """lambda(t) = L - log(1 - exp(L)), with L = log alpha_bar(t)."""
        return vp_log_snr(self._log_alpha_bar(self._time(t)))

    def beta(self, t: object) -> Tensor:
        """The rate beta(t) = -dL/dt = g(t)^2 of dx = -beta x / 2 dt + sqrt(beta) dw.

        Book: eq. (eq-vp-sde), Chapter on score-based models.
        """
        return -self._d_log_alpha_bar(self._time(t))


class ContinuousVP(VPPath):
    """Song et al.'s VP SDE: beta(t) = beta_min + t (beta_max - beta_min) on t in [0, 1].

    L(t) = -(beta_min t + (beta_max - beta_min) t^2 / 2), so alpha_bar(1) = exp(-10.05) with
    the defaults (DDPM's linear schedule as T -> infinity). ``t_min`` (default 1e-3) is where
    training and sampling grids stop before the final step to the data.

    Book: eq. (eq-vp-sde) and eq. (eq-vp-alpha-bar), Chapter on score-based models.
    """

    t_max = 1.0

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        for name, value in (("beta_min", beta_min), ("beta_max", beta_max), ("t_min", t_min)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        check_positive("beta_min", beta_min)
        check_positive("beta_max", beta_max)
        if not beta_min < beta_max:
            raise ValueError(f"beta_min must be below beta_max, got {beta_min} and {beta_max}")
        self._check_ends(t_min, 1.0)
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def __repr__(self) -> str:
        return f"ContinuousVP(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"

    def _key(self) -> tuple:
        return (self.beta_min, self.beta_max, self.t_min)

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t.square())

    def _d_log_alpha_bar(self, t: Tensor) -> Tensor:
        return -(self.beta_min + (self.beta_max - self.beta_min) * t)

    def _t_from_log_alpha_bar(self, log_alpha_bar: Tensor) -> Tensor:
        # Solve b0 t + (b1 - b0) t^2 / 2 = B; this form of the root has no cancellation.
        B = -log_alpha_bar
        slope = self.beta_max - self.beta_min
        return 2.0 * B / (self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * slope * B))


class DiscreteVP(VPPath):
    """A T-step VP schedule on the time axis: step k at t_k = k / T, k = 0..T.

    Built from the table ``log_alpha_bars`` = (log alpha_bar_0 = 0, ..., log alpha_bar_T),
    strictly decreasing (:attr:`udm.schedules.NoiseSchedule.path` makes one). At the grid
    the path *is* the table: alpha_bar(k / T) = exp(log_alpha_bars[k]), exactly. Between
    grid points log alpha_bar is linear in t, that is, alpha_bar is geometric:

        alpha_bar(t) = alpha_bar_{k-1} alpha_k^((T t - (k - 1)))    for t in ((k-1)/T, k/T].

    Why this interpolation: it is the VP SDE with a constant rate beta = -T log alpha_k on
    each interval, and that SDE run from t_{k-1} to t_k is *exactly* the discrete step
    q(x_k | x_{k-1}) = N(sqrt(alpha_k) x_{k-1}, (1 - alpha_k) I). So the discrete chain is
    this continuous path observed on its grid, its drift and diffusion are defined
    everywhere, and t, log-SNR and sigma invert in closed form on each interval. The rate
    at a grid time t_k is step k's (intervals are closed on the right), the step a sampler
    undoes when it leaves t_k. Networks trained on integer steps see T t, the step number,
    through ``TimeConditionedMLP(..., time_scale=T)``.

    Book: eq. (eq-alpha-bar), Chapter on VDMs.
    """

    t_max = 1.0

    def __init__(self, log_alpha_bars: Tensor) -> None:
        check_tensor("log_alpha_bars", log_alpha_bars, shape=(None,))
        if log_alpha_bars.shape[0] < 2:
            raise ValueError("log_alpha_bars must hold log alpha_bar_0 = 0 and at least one step")
        self._table = log_alpha_bars.detach().to("cpu", F64)
        check_finite("log_alpha_bars", self._table)
        if self._table[0] != 0 or not bool((self._table[1:] < self._table[:-1]).all()):
            raise ValueError(
                "log_alpha_bars must start at log alpha_bar_0 = 0 and decrease strictly"
            )
        self.T = self._table.shape[0] - 1
        self.t_min = 1.0 / self.T
        self._on_grid: PathCoefficients | None = None
        self._on_grid = VPPath._coefficients(self, torch.arange(self.T + 1, dtype=F64) / self.T)
        self._training_tables: dict[tuple, tuple] = {}  # udm.parameterizations.Denoiser's

    def __repr__(self) -> str:
        return f"DiscreteVP(T={self.T}, alpha_bar_T={math.exp(self.table()[-1].item()):.3g})"

    def _key(self) -> tuple:
        return (self.T, tuple(self._table.tolist()))

    def table(self) -> Tensor:
        """log alpha_bar_k for k = 0..T (a subclass may compute it, e.g. from a network)."""
        return self._table

    def grid(self) -> Tensor:
        """The times of the T steps and the data, largest first: T/T, (T-1)/T, ..., 0."""
        return torch.arange(self.T, -1, -1, dtype=F64) / self.T

    def sample_t(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training times k / T with the step k uniform on 1..T, float64."""
        check_int_at_least("n", n, 1)
        return torch.randint(1, self.T + 1, (n,), generator=generator).to(F64) / self.T

    def log_snr_table(self) -> Tensor:
        """lambda_k = log SNR(k) for k = 0..T (entry 0 is +inf: the data)."""
        return vp_log_snr(self.table())

    def x0_weights(self) -> Tensor:
        """The ELBO's weights w_k on ||x0_hat - x_0||^2 at step k = 0..T (w_0 = 0, unused).

        w_1 = SNR(1) / 2 (the decoder's precision) and, for k >= 2,
        w_k = (SNR(k-1) - SNR(k)) / 2 = SNR(k) expm1(lambda_{k-1} - lambda_k) / 2, the
        expm1 form, which subtracts no two large numbers.

        Book: eq. (eq-x0-loss-snr), Chapter on VDMs.
        """
        lam = self.log_snr_table()
        first = 0.5 * lam[1:2].exp()
        rest = 0.5 * lam[2:].exp() * torch.expm1(lam[1:-1] - lam[2:])
        return torch.cat([torch.zeros_like(first), first, rest])

    def elbo_weight(self, t: object) -> Tensor:
        """T w_k at the grid time t = k / T: the ELBO's weight for k uniform on 1..T.

        Book: eq. (eq-x0-loss-snr), Chapter on VDMs.
        """
        k, _ = self._interval(self._time(t))
        return self.T * self.x0_weights()[k.to(self.table().device)]

    def _interval(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """For u = T t: the step k with u in (k - 1, k] (k = 1 at u = 0) and u - k in (-1, 0]."""
        u = self.T * t
        nearest = u.round()
        u = torch.where((u - nearest).abs() < 1e-9, nearest, u)  # grid times hit the table
        k = u.ceil().clamp(1, self.T).long()
        return k, u - k

    def _coefficients(self, times: Tensor) -> PathCoefficients:
        """At grid times (training draws them) the coefficients are looked up, not interpolated.

        The lookup table is this same computation done once at k / T, so both agree.
        """
        index = self._grid_index(times)
        if index is None:
            return super()._coefficients(times)
        return PathCoefficients(*(values[index] for values in self._on_grid))

    def _coefficients_from_above(self, times: Tensor) -> PathCoefficients:
        """At a grid time k / T the rate of step k + 1 (the interval above), else as usual."""
        c = self._coefficients(times)
        table = self.table()
        k, offset = self._interval(times.to(table.device))
        k = torch.where(offset == 0, k + 1, k).clamp(max=self.T)
        dL = (self.T * (table[k] - table[k - 1])).to(c.a.dtype)
        return PathCoefficients(c.a, c.s, 0.5 * c.a * dL, -0.5 * c.a.square() * dL / c.s)

    def _grid_index(self, times: Tensor) -> Tensor | None:
        """The steps k of times that all lie on the grid (t = k / T), else None.

        Also None for a table that changes (a learned schedule): nothing is cached for it.
        """
        if self._on_grid is None:
            return None
        u = self.T * times
        k = u.round()
        return k.long() if bool(((u - k).abs() < 1e-9).all()) else None

    def _log_alpha_bar_and_rate(self, t: Tensor) -> tuple[Tensor, Tensor]:
        table = self.table()
        k, offset = self._interval(t.to(table.device))
        step = table[k] - table[k - 1]  # log alpha_k < 0
        # table[k] + 0 * step is table[k] exactly: the path agrees with the table at the grid.
        return table[k] + offset.to(table.dtype) * step, self.T * step

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        return self._log_alpha_bar_and_rate(t)[0]

    def _d_log_alpha_bar(self, t: Tensor) -> Tensor:
        return self._log_alpha_bar_and_rate(t)[1]

    def _t_from_log_alpha_bar(self, log_alpha_bar: Tensor) -> Tensor:
        table = self.table().detach().to(F64)
        target = log_alpha_bar.to(table.device)
        k = torch.searchsorted(-table, -target.contiguous()).clamp(1, self.T)
        step = table[k] - table[k - 1]
        u = k + (target - table[k]) / step
        return (u / self.T).clamp(min=0.0)


# ------------------------------------------------------------------- a = 1 paths
class VE(Path):
    """Variance exploding: a = 1, s(t) = sigma_min (sigma_max / sigma_min)^t for t in (0, 1].

    Song et al.'s VE SDE (defaults 0.01 and 50). s jumps from sigma_min to 0 at t = 0: the
    path reaches the data only in the samplers' final denoising step, which is how the VE
    SDE is sampled in practice.

    Book: eq. (eq-ncsn-loss) in continuous time, Chapter on score-based models.
    """

    t_max = 1.0

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-3
    ) -> None:
        check_positive("sigma_min", sigma_min)
        check_positive("sigma_max", sigma_max)
        if not sigma_min < sigma_max:
            raise ValueError(f"sigma_min must be below sigma_max, got {sigma_min} and {sigma_max}")
        self._check_ends(t_min, 1.0)
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), t_min
        self._log_ratio = math.log(sigma_max / sigma_min)

    def __repr__(self) -> str:
        return f"VE(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"

    def _key(self) -> tuple:
        return (self.sigma_min, self.sigma_max, self.t_min)

    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self.sigma_min * torch.exp(self._log_ratio * t)
        return torch.ones_like(t), torch.where(t > 0, s, torch.zeros_like(t))

    def _da_ds(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), self._log_ratio * self.sigma_min * torch.exp(
            self._log_ratio * t
        )

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        sigma = torch.exp(-0.5 * log_snr)
        if not bool(((sigma >= self.sigma_min * (1 - 1e-12)) | (sigma == 0)).all()):
            raise ValueError(
                f"sigma must be 0 or at least sigma_min = {self.sigma_min:g} on {self!r} (the "
                f"path jumps from sigma_min to 0 at t = 0), got {sigma.min().item():.6g}"
            )
        t = torch.log(sigma / self.sigma_min) / self._log_ratio
        return torch.where(sigma == 0, torch.zeros_like(t), t.clamp(min=0.0))


class EDM(Path):
    """Karras et al.'s path: a = 1 and s = t, so the time is the noise level, t = sigma.

    t runs from 0 to ``sigma_max`` (default 80); ``t_min`` defaults to EDM's sigma_min 0.002.

    Book: Appendix "Notation crosswalk" (EDM's sigma).
    """

    def __init__(self, sigma_max: float = 80.0, t_min: float = 0.002) -> None:
        check_positive("sigma_max", sigma_max)
        self._check_ends(t_min, sigma_max)
        self.t_max, self.t_min = float(sigma_max), float(t_min)

    def __repr__(self) -> str:
        return f"EDM(sigma_max={self.t_max:g})"

    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.ones_like(t), t.clone()

    def _da_ds(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(t), torch.ones_like(t)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.exp(-0.5 * log_snr)


class StraightLine(Path):
    """The straight line from data to noise: a = 1 - t, s = t on t in [0, 1] (flow matching).

    At t = 1 it is pure noise (a = 0: sigma and the SDE's drift are infinite there, so the
    reverse SDE must start below 1; the DDIM, Euler, Heun and ancestral samplers start at 1).
    The conditional velocity a' x_0 + s' eps = eps - x_0 is the flow-matching target.

    Book: the flow-matching path, Part V.
    """

    t_max = 1.0

    def __init__(self, t_min: float = 1e-3) -> None:
        self._check_ends(t_min, 1.0)
        self.t_min = float(t_min)

    def __repr__(self) -> str:
        return "StraightLine()"

    def _a_s(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - t, t.clone()

    def _da_ds(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return -torch.ones_like(t), torch.ones_like(t)

    def _t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.sigmoid(-0.5 * log_snr)  # (1 - t) / t = exp(lambda / 2)
