"""Samplers: from noise to data along a path, each a short loop over a grid of times.

Every sampler takes the same arguments (k-diffusion's design: the grid is data):

- ``denoiser(x_t, t) -> x0_hat``, E[x_0 | x_t] at time t: a
  :class:`udm.parameterizations.Denoiser` of any prediction kind, a guided denoiser
  (:mod:`udm.guidance`), the exact :class:`udm.parameterizations.MixtureDenoiser`, or any
  callable with that signature;
- ``path``, the noising path x_t = a(t) x_0 + s(t) eps (:mod:`udm.paths`);
- ``grid``, the times to visit: a strictly decreasing float64 tensor that ends at 0, the
  data (:func:`uniform_grid`, :func:`log_snr_grid`, :func:`karras_grid`, or
  ``path.grid()`` for a discrete schedule's own steps);
- ``x_init``, the state at ``grid[0]``, shape (B, ...) (``path.sample_prior``);
- ``generator``, the source of fresh noise, for the stochastic samplers.

Each step is written with x0_hat and eps_hat = (x_t - a x0_hat) / s: DDIM, ancestral
sampling and EDM's churn in the variables (sigma, x / a), as x_next = a' x0_hat + s' eps_hat,
the probability-flow solvers (Euler, Heun) in t with the velocity a'(t) x0_hat + s'(t)
eps_hat, the reverse SDE in t with its drift and diffusion. None divides by a, so a grid
may start where a = 0 (the straight line's t = 1). Every sampler's last step, to t = 0,
returns x0_hat (Tweedie's denoising step).

Arguments are checked once per call; the path's coefficients are tabulated for the whole
grid before the loop (and the denoiser's, through its ``prepare``), so a step costs the
network and a few tensor operations. The final state is checked: if it is not finite, the
error names the first step that produced a non-finite state.

=====================================  ===============  ======================================
sampler                                NFE, n steps     order (measured in tests/test_samplers)
=====================================  ===============  ======================================
:func:`ancestral` (DDPM)               n                weak 1
:func:`ddim` (eta), in (sigma, x/a)    n                1 (eta = 0); weak 1
:func:`euler` (probability flow, t)    n                1
:func:`heun` (probability flow, t)     2n - 1           2
:func:`euler_maruyama` (reverse SDE)   n                strong 1 (additive noise), weak 1
:func:`predictor_corrector`            2n - 1           weak 1 while the corrector's bias
                                                        (~ snr^2, fixed) is smaller
:func:`edm_stochastic` (churn)         2n - 1           2 (churn = 0 is :func:`heun`)
:func:`dpm_solver` (ell = log a/s)     n or 2n - 1      1 (order=1, = DDIM) or 2 (order=2)
:func:`dpm_solver_2m` (multistep)      n                2 (tests/test_fast_samplers)
=====================================  ===============  ======================================

Book: Chapter on score-based models (the reverse SDE, the probability-flow ODE, DDIM);
Chapter on fast sampling (the exponential integrators).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from udm.parameterizations import check_denoiser_path
from udm.paths import Path, check_path
from udm.validate import check_finite, check_int_at_least, check_positive, check_real, check_tensor

#: The model interface of every sampler: ``denoiser(x_t, t) -> x0_hat`` for a float t.
DenoiserFn = Callable[[Tensor, float], Tensor]


# ---------------------------------------------------------------------- grids
def _ends(path: Path, t_max: float | None, t_min: float | None) -> tuple[float, float]:
    t_max = path.t_max if t_max is None else check_real("t_max", t_max)
    t_min = path.t_min if t_min is None else check_real("t_min", t_min)
    if not 0.0 < t_min < t_max <= path.t_max:
        raise ValueError(
            f"the grid's ends must satisfy 0 < t_min < t_max <= {path.t_max:g} on {path!r}, "
            f"got t_min = {t_min}, t_max = {t_max}"
        )
    return t_max, t_min


def _finish_grid(path: Path, times: Tensor, t_max: float, t_min: float) -> Tensor:
    times[-1] = t_min  # exact ends, whatever the conversions rounded (one step: just t_max)
    times[0] = t_max
    return torch.cat([times, torch.zeros(1, dtype=torch.float64)])


def uniform_grid(
    path: Path, n_steps: int, *, t_max: float | None = None, t_min: float | None = None
) -> Tensor:
    """``n_steps + 1`` times: ``n_steps`` evenly spaced from t_max down to t_min, then 0.

    On a T-step discrete path with n_steps = T this is the schedule's own grid.
    """
    check_path(path)
    check_int_at_least("n_steps", n_steps, 1)
    t_max, t_min = _ends(path, t_max, t_min)
    times = torch.linspace(t_max, t_min, n_steps, dtype=torch.float64)
    return _finish_grid(path, times, t_max, t_min)


def log_snr_grid(
    path: Path, n_steps: int, *, t_max: float | None = None, t_min: float | None = None
) -> Tensor:
    """``n_steps`` times evenly spaced in log-SNR from t_max to t_min, then 0.

    Needs a finite log-SNR at t_max (not the straight line's t = 1).
    """
    check_path(path)
    check_int_at_least("n_steps", n_steps, 1)
    t_max, t_min = _ends(path, t_max, t_min)
    low, high = path.log_snr(t_max).item(), path.log_snr(t_min).item()
    if not math.isfinite(low):
        raise ValueError(f"log_snr(t_max) is infinite on {path!r}: pass a t_max below {t_max:g}")
    times = path.t_from_log_snr(torch.linspace(low, high, n_steps, dtype=torch.float64))
    return _finish_grid(path, times, t_max, t_min)


def karras_grid(
    path: Path,
    n_steps: int,
    *,
    rho: float = 7.0,
    t_max: float | None = None,
    t_min: float | None = None,
) -> Tensor:
    """Karras et al.'s grid: sigma_i^(1/rho) evenly spaced from sigma(t_max) to sigma(t_min).

    ``n_steps`` times, then 0. rho = 7 (EDM's choice) crowds the steps at small sigma; rho =
    1 is uniform in sigma. Needs a finite sigma at t_max.
    """
    check_path(path)
    check_int_at_least("n_steps", n_steps, 1)
    check_positive("rho", rho)
    t_max, t_min = _ends(path, t_max, t_min)
    high, low = path.sigma(t_max).item(), path.sigma(t_min).item()
    if not math.isfinite(high):
        raise ValueError(f"sigma(t_max) is infinite on {path!r}: pass a t_max below {t_max:g}")
    ramp = torch.linspace(0.0, 1.0, n_steps, dtype=torch.float64)
    sigmas = (high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho
    return _finish_grid(path, path.t_from_sigma(sigmas), t_max, t_min)


def check_grid(grid: object, path: Path) -> Tensor:
    """A sampler's grid: a strictly decreasing float64 vector in [0, t_max] ending at 0."""
    check_tensor("grid", grid, shape=(None,))
    times = grid.detach().to("cpu", torch.float64)
    if times.numel() < 2:
        raise ValueError("grid must hold at least two times (a start and 0)")
    if times[-1] != 0:
        raise ValueError(f"grid must end at 0 (the data), got {times[-1].item():.6g}")
    if not bool((times[1:] < times[:-1]).all()):  # NaN fails too
        raise ValueError("grid must decrease strictly, from the noisiest time to 0")
    if times[0] > path.t_max:
        raise ValueError(f"grid must start at most at t_max = {path.t_max:g}, got {times[0]:.6g}")
    return times


# ------------------------------------------------------------- the common frame
class _Run:
    """What every sampler does around its loop: checks, tables and the final check."""

    def __init__(
        self,
        denoiser: DenoiserFn,
        path: Path,
        grid: Tensor,
        x_init: Tensor,
        generator: torch.Generator | None,
        return_trajectory: bool,
        extra_times: Tensor | None = None,
    ) -> None:
        check_path(path)
        check_denoiser_path(denoiser, path)
        self.grid = check_grid(grid, path)
        check_tensor("x_init", x_init, min_ndim=2)
        check_finite("x_init", x_init)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        c = path.coefficients(self.grid)
        self.t = self.grid.tolist()
        self.a, self.s = c.a.tolist(), c.s.tolist()
        self.sigma = (c.s / c.a).tolist()  # inf where a = 0
        self.n = len(self.t) - 1
        prepare = getattr(denoiser, "prepare", None)
        if callable(prepare):
            times = self.grid if extra_times is None else torch.cat([self.grid, extra_times])
            prepare(times, x_init)
        self.generator = generator
        self.states = [x_init] if return_trajectory else None
        self.sums: list[Tensor] = []

    def noise(self, like: Tensor) -> Tensor:
        """Fresh N(0, I) noise shaped like ``like``, from the generator."""
        z = torch.randn(like.shape, generator=self.generator, dtype=like.dtype)
        return z if like.device.type == "cpu" else z.to(like.device)

    def record(self, x: Tensor) -> None:
        self.sums.append(x.sum())  # one cheap reduction a step; read only if the end is bad
        if self.states is not None:
            self.states.append(x)

    def finish(self, x: Tensor) -> Tensor:
        if not bool(torch.isfinite(x).all()):
            bad = torch.nonzero(~torch.isfinite(torch.stack(self.sums)))
            i = int(bad[0]) if len(bad) else self.n - 1
            raise FloatingPointError(
                f"the sampler's state became non-finite at step {i} (t = {self.t[i]:.6g} -> "
                f"{self.t[i + 1]:.6g}): the denoiser returned NaN or inf there, or the grid's "
                "step is too large for this sampler"
            )
        return torch.stack(self.states) if self.states is not None else x


# ------------------------------------------------------------------- samplers
@torch.no_grad()
def ancestral(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    generator: torch.Generator | None = None,
    *,
    return_trajectory: bool = False,
) -> Tensor:
    """Ancestral sampling (DDPM): x_s ~ q(x_s | x_t, x_0 = x0_hat) for each step t -> s.

    The path's forward posterior (``path.posterior_coefficients``), r = sigma_s^2 / sigma_t^2:

        q(x_s | x_t, x_0) = N(c_x x_t + c_0 x_0, var I),
        c_x = a_t s_s^2 / (a_s s_t^2),   c_0 = a_s (1 - r),   var = s_s^2 (1 - r).

    On a discrete path's own grid these are eqs. (eq-posterior-mean) and
    (eq-posterior-variance); the last step (s = 0: r = 0, c_0 = 1) returns x0_hat. One
    network evaluation a step; weak order 1. With ``return_trajectory`` returns every state,
    shape (len(grid), B, ...), entry i at grid[i].

    Book: eq. (eq-posterior-mean) and eq. (eq-posterior-variance), Chapter on VDMs.
    """
    run = _Run(denoiser, path, grid, x_init, generator, return_trajectory)
    c_x, c_0, var = path.posterior_coefficients(run.grid[:-1], run.grid[1:])
    steps = zip(c_x.tolist(), c_0.tolist(), var.sqrt().tolist(), strict=True)
    x = x_init
    for i, (coef_x, coef_0, std) in enumerate(steps):
        x0 = denoiser(x, run.t[i])
        x = torch.add(x0 * coef_0, x, alpha=coef_x)
        if std > 0:
            x = torch.add(x, run.noise(x), alpha=std)
        run.record(x)
    return run.finish(x)


@torch.no_grad()
def ddim(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    generator: torch.Generator | None = None,
    *,
    eta: float = 0.0,
    return_trajectory: bool = False,
) -> Tensor:
    """DDIM on any grid: x_s = a_s x0_hat + sqrt(s_s^2 - c^2) eps_hat + c z, c = eta * std.

    std^2 = s_s^2 (1 - sigma_s^2 / sigma_t^2) is the ancestral step's variance: eta = 1
    draws from the same Gaussian as :func:`ancestral`, eta = 0 re-noises x0_hat with the
    noise it came from and is Euler's method for the probability-flow ODE in the variables
    (sigma, y = x/a), where it reads dy/dsigma = eps_hat (:func:`euler` is Euler's method in
    t): first order and deterministic. One evaluation a step. ``eta`` in [0, 1].

    Book: eq. (eq-ddim), Chapter on score-based models.
    """
    eta = check_real("eta", eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    run = _Run(denoiser, path, grid, x_init, generator, return_trajectory)
    a, s = run.a, run.s
    _, _, var = path.posterior_coefficients(run.grid[:-1], run.grid[1:])
    steps = []  # x_s = k x_t + (a_s - k a_t) x0_hat + c z, with k = sqrt(s_s^2 - c^2) / s_t
    for i, v in enumerate(var.tolist()):
        c = eta * math.sqrt(v)
        k = math.sqrt(max(s[i + 1] ** 2 - c**2, 0.0)) / s[i]
        steps.append((k, a[i + 1] - k * a[i], c))
    x = x_init
    for i, (coef_x, coef_0, c) in enumerate(steps):
        x0 = denoiser(x, run.t[i])
        x = torch.add(x0 * coef_0, x, alpha=coef_x)
        if c > 0:
            x = torch.add(x, run.noise(x), alpha=c)
        run.record(x)
    return run.finish(x)


def _velocity_coefficients(
    run: _Run, path: Path, *, ends: bool = False
) -> list[tuple[float, float]]:
    """(k_x, k_0) with the probability-flow velocity dx/dt = k_x x + k_0 x0_hat at each time.

    dx/dt = a' x0_hat + s' eps_hat with eps_hat = (x - a x0_hat) / s, so k_x = s'/s and
    k_0 = a' - s' a / s. The grid's last time (t = 0) has none: the final step is x0_hat.
    At the steps' starts (``ends=False``: t_0..t_{n-1}) the rates are the path's own, which
    on a discrete path are those of the interval below t; at their ends (``ends=True``:
    t_1..t_{n-1}, Heun's corrector) they are taken from above, so that both slopes of a
    step belong to the interval it crosses.
    """
    if ends:
        c = path._coefficients_from_above(run.grid[1:-1])
    else:
        c = path.coefficients(run.grid[:-1])
    pairs = zip(c.a.tolist(), c.s.tolist(), c.da.tolist(), c.ds.tolist(), strict=True)
    return [(ds / s, da - ds * a / s) for a, s, da, ds in pairs]


@torch.no_grad()
def euler(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    *,
    return_trajectory: bool = False,
) -> Tensor:
    """Euler's method for the probability-flow ODE dx/dt = a'(t) x0_hat + s'(t) eps_hat.

    The right-hand side is the flow-matching velocity E[a' x_0 + s' eps | x_t] (Song et al.'s
    f x - g^2 score / 2 in other words). A step of h = t_next - t < 0 is x + h dx/dt, taken
    at the step's start; the last step, into t = 0 where the velocity is unbounded for VP
    paths, returns x0_hat. First order, one evaluation a step, deterministic. (DDIM with
    eta = 0 is the first-order step in (sigma, x/a) instead; on the straight line, where a and
    s are linear in t, the two coincide.)

    Book: eq. (eq-pf-ode), Chapter on score-based models.
    """
    run = _Run(denoiser, path, grid, x_init, None, return_trajectory)
    velocity = _velocity_coefficients(run, path)
    x = x_init
    for i, (k_x, k_0) in enumerate(velocity):
        x0 = denoiser(x, run.t[i])
        if i == run.n - 1:
            x = x0
        else:
            h = run.t[i + 1] - run.t[i]
            x = torch.add(x0 * (h * k_0), x, alpha=1.0 + h * k_x)
        run.record(x)
    return run.finish(x)


@torch.no_grad()
def heun(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    *,
    return_trajectory: bool = False,
) -> Tensor:
    """Heun's method for the probability-flow ODE dx/dt = a' x0_hat + s' eps_hat: EDM's
    Algorithm 1 for any path (its d_i is this velocity).

    Each step takes an Euler predictor x_e = x + h v(x, t) and averages the slopes at both
    ends, x + h (v(x, t) + v(x_e, t_next)) / 2 (trapezoid corrector): second order, two
    evaluations a step, deterministic. The last step, into t = 0, is the first-order step
    (as in EDM): it returns x0_hat. 2n - 1 evaluations for n steps. On a discrete path the
    velocity has a kink at every step k / T (a', s' are constant on each step and jump
    between steps); Heun takes both slopes of a step with the rates of the interval it
    crosses, so it is second order on grids that contain every k / T and first order on
    grids that straddle them.

    Book: eq. (eq-pf-ode), Chapter on score-based models.
    """
    run = _Run(denoiser, path, grid, x_init, None, return_trajectory)
    velocity = _velocity_coefficients(run, path)
    at_ends = _velocity_coefficients(run, path, ends=True)
    x = x_init
    for i, (k_x, k_0) in enumerate(velocity):
        x0 = denoiser(x, run.t[i])
        if i == run.n - 1:
            x = x0
        else:
            h = run.t[i + 1] - run.t[i]
            slope = torch.add(x0 * k_0, x, alpha=k_x)
            x_euler = torch.add(x, slope, alpha=h)
            k_x2, k_02 = at_ends[i]
            x0_next = denoiser(x_euler, run.t[i + 1])
            slope_next = torch.add(x0_next * k_02, x_euler, alpha=k_x2)
            x = torch.add(x, slope + slope_next, alpha=0.5 * h)
        run.record(x)
    return run.finish(x)


def _heun_step_in_sigma(
    denoiser: DenoiserFn, run: _Run, x: Tensor, x0: Tensor, a: float, s: float, i: int
) -> Tensor:
    """One Heun step in (sigma, y = x / a) from (x, sigma = s / a) to grid time i + 1.

    Euler predictor x_e = a' x0 + s' eps_1 (the DDIM step), corrector
    x_e + (s' - a' sigma)(eps_2 - eps_1) / 2, which averages the slopes dy/dsigma at both
    ends. Euler alone where the next time is 0 or sigma is infinite.
    """
    a_next, s_next = run.a[i + 1], run.s[i + 1]
    eps1 = torch.add(x / s, x0, alpha=-a / s)
    x_euler = torch.add(x0 * a_next, eps1, alpha=s_next)
    sigma = s / a if a > 0 else math.inf
    if s_next == 0 or math.isinf(sigma):
        return x_euler
    x0_next = denoiser(x_euler, run.t[i + 1])
    eps2 = torch.add(x_euler / s_next, x0_next, alpha=-a_next / s_next)
    return torch.add(x_euler, eps2 - eps1, alpha=0.5 * (s_next - a_next * sigma))


def _sde_steps(run: _Run, path: Path) -> list[tuple[float, float, float]]:
    """Euler-Maruyama coefficients (c_x, c_0, std) for every step but the last."""
    grid = run.grid[:-1]
    f, g2 = path.drift(grid).tolist(), path.diffusion_squared(grid).tolist()
    steps = []
    for i in range(run.n - 1):
        h, a, s = run.t[i] - run.t[i + 1], run.a[i], run.s[i]
        coefficients = (1 - h * f[i] - h * g2[i] / s**2, h * g2[i] * a / s**2, math.sqrt(h * g2[i]))
        if not all(math.isfinite(c) for c in coefficients):
            raise ValueError(
                f"the reverse SDE's coefficients are not finite at t = {run.t[i]:.6g} on "
                f"{path!r} (f = {f[i]:.3g}, g^2 = {g2[i]:.3g}): start the grid below it"
            )
        steps.append(coefficients)
    return steps


@torch.no_grad()
def euler_maruyama(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    generator: torch.Generator | None = None,
    *,
    return_trajectory: bool = False,
) -> Tensor:
    """Euler-Maruyama for the reverse-time SDE dx = [f x - g^2 score] dt + g dw_bar.

    f = a'/a and g^2 = d(s^2)/dt - 2 f s^2 are the path's (``path.drift``,
    ``path.diffusion_squared``), the score is (a x0_hat - x) / s^2 (Tweedie), and a step of
    h = t - s > 0 (taken at its start) is x_s = x - h (f x - g^2 score) + sqrt(g^2 h) z. The
    noise is additive (g does not depend on x), so the method has strong order 1, not 1/2,
    and weak order 1. The last step, to t = 0, returns x0_hat. One evaluation a step. The
    coefficients must be finite at every step's start (the straight line's t = 1 is not).

    Book: eq. (eq-reverse-sde), Chapter on score-based models.
    """
    run = _Run(denoiser, path, grid, x_init, generator, return_trajectory)
    steps = _sde_steps(run, path)
    x = x_init
    for i, (c_x, c_0, std) in enumerate(steps):
        x0 = denoiser(x, run.t[i])
        x = torch.add(torch.add(x0 * c_0, x, alpha=c_x), run.noise(x), alpha=std)
        run.record(x)
    x = denoiser(x, run.t[-2])
    run.record(x)
    return run.finish(x)


@torch.no_grad()
def predictor_corrector(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    generator: torch.Generator | None = None,
    *,
    snr: float = 0.1,
    corrector_steps: int = 1,
    return_trajectory: bool = False,
) -> Tensor:
    """Song et al.'s predictor-corrector sampler: an Euler-Maruyama step, then Langevin.

    After each predictor step (as in :func:`euler_maruyama`) to a time s > 0, ``corrector_steps``
    Langevin steps at s, x <- x + eps score + sqrt(2 eps) z, with the step eps =
    2 (snr ||z|| / ||score||)^2 set by the target signal-to-noise ratio ``snr`` (norms averaged
    over the batch, as in score_sde). The corrector pulls the state towards the marginal at s,
    but it is an unadjusted Langevin step of fixed relative size: its own bias, about
    snr^2 times the marginal's variance, does not shrink with the grid's step. With a small
    ``snr`` the sampler has its predictor's weak order 1; with a large one it stalls at that
    bias. The last step, to t = 0, returns x0_hat. (1 + corrector_steps) evaluations a step
    but the last.

    Book: eq. (eq-langevin) and eq. (eq-reverse-sde), Chapter on score-based models.
    """
    check_positive("snr", check_real("snr", snr))
    check_int_at_least("corrector_steps", corrector_steps, 0)
    run = _Run(denoiser, path, grid, x_init, generator, return_trajectory)
    steps = _sde_steps(run, path)
    x = x_init
    for i, (c_x, c_0, std) in enumerate(steps):
        x0 = denoiser(x, run.t[i])
        x = torch.add(torch.add(x0 * c_0, x, alpha=c_x), run.noise(x), alpha=std)
        a, s = run.a[i + 1], run.s[i + 1]
        for _ in range(corrector_steps):
            score = torch.add(denoiser(x, run.t[i + 1]) * (a / s**2), x, alpha=-1 / s**2)
            z = run.noise(x)
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean()
            step = 2 * (snr * ratio) ** 2
            x = x + step * score + (2 * step).sqrt() * z
        run.record(x)
    x = denoiser(x, run.t[-2])
    run.record(x)
    return run.finish(x)


@torch.no_grad()
def edm_stochastic(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    generator: torch.Generator | None = None,
    *,
    churn: float = 10.0,
    churn_min: float = 0.0,
    churn_max: float = math.inf,
    noise_scale: float = 1.0,
    return_trajectory: bool = False,
) -> Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2) on any path, via (sigma, x/a).

    At each step from sigma_i with churn_min <= sigma_i <= churn_max, raise the noise level to
    sigma_hat = (1 + gamma) sigma_i, gamma = min(churn / n, sqrt(2) - 1) (never past the path's
    sigma(t_max)), by adding noise: y_hat = y + sqrt(sigma_hat^2 - sigma_i^2) noise_scale z in
    y = x / a. Then a Heun step in (sigma, y) from sigma_hat to sigma_{i+1}, the DDIM step as
    predictor (on EDM's path, a = 1 and t = sigma, this is :func:`heun`, and churn = 0 is
    exactly it). 2n - 1 evaluations for n steps. The noise each step adds shrinks like
    churn / n, and the weak error falls like Heun's (second order, measured once
    churn / n < sqrt(2) - 1).

    Book: eq. (eq-pf-ode) and eq. (eq-reverse-sde), Chapter on score-based models.
    """
    churn = check_real("churn", churn)
    if churn < 0:
        raise ValueError(f"churn must be >= 0, got {churn}")
    churn_min, churn_max = check_real("churn_min", churn_min), check_real("churn_max", churn_max)
    check_positive("noise_scale", check_real("noise_scale", noise_scale))
    check_path(path)
    times = check_grid(grid, path)
    sigmas = path.sigma(times)
    n = len(times) - 1
    gamma = min(churn / n, math.sqrt(2.0) - 1.0)
    raise_noise = (sigmas >= churn_min) & (sigmas <= churn_max) & torch.isfinite(sigmas)
    raise_noise[-1] = False
    sigma_top = path.sigma(path.t_max).item()
    sigma_hat = torch.where(raise_noise, (sigmas * (1 + gamma)).clamp(max=sigma_top), sigmas)
    t_hat = torch.where(raise_noise, path.t_from_sigma(sigma_hat.clamp(max=sigma_top)), times)
    c_hat = path.coefficients(t_hat)
    run = _Run(denoiser, path, grid, x_init, generator, return_trajectory, extra_times=t_hat)
    extra = (sigma_hat.square() - sigmas.square()).clamp(min=0).sqrt().nan_to_num(0.0)
    hats = zip(t_hat.tolist(), c_hat.a.tolist(), c_hat.s.tolist(), extra.tolist(), strict=True)
    x = x_init
    for i, (t, a, s, noise_std) in enumerate(list(hats)[:-1]):
        if t > run.t[i]:  # raise the noise level from sigma_i to sigma_hat
            x = torch.add(x * (a / run.a[i]), run.noise(x), alpha=a * noise_std * noise_scale)
        x0 = denoiser(x, t)
        x = _heun_step_in_sigma(denoiser, run, x, x0, a, s, i)
        run.record(x)
    return run.finish(x)


# --------------------------------------------------- exponential integrators
def _half_log_snrs(run: _Run) -> list[float]:
    """ell_i = log(a_i / s_i) at every grid time: -inf where a = 0, +inf at t = 0."""
    return [
        (math.log(a) if a > 0 else -math.inf) - (math.log(s) if s > 0 else -math.inf)
        for a, s in zip(run.a, run.s, strict=True)
    ]


def _exponential_step(
    run: _Run, i: int, x: Tensor, x0: Tensor, a_next: float, s_next: float, h: float
) -> Tensor:
    """x_next = (s_next / s_i) x + a_next (1 - e^(-h)) x0: the exact flow for a constant x0."""
    return torch.add(x0 * (a_next * -math.expm1(-h)), x, alpha=s_next / run.s[i])


@torch.no_grad()
def dpm_solver(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    *,
    order: int = 2,
    return_trajectory: bool = False,
) -> Tensor:
    """The exponential integrator of the probability-flow ODE in ell = log(a/s), one step at
    a time (DPM-Solver++ in its data-prediction form, "2S" for order 2).

    In ell (half the log-SNR; DPM-Solver's lambda) the flow is d(x / s) / d ell = e^ell x0_hat:
    its linear part is solved exactly, and only x0_hat is approximated over a step of
    h = ell_next - ell > 0:

        x_next = (s_next / s) x + a_next (1 - e^(-h)) D.

    ``order=1`` takes D = x0_hat(x, t): exactly DDIM's step (:func:`ddim`, eta = 0), one
    evaluation a step. ``order=2`` takes D = x0_hat at the midpoint ell + h / 2, reached by
    a first-order half step: second order, two evaluations a step. A step from a = 0
    (ell = -inf, the straight line's t = 1) is first order; the last step, into t = 0,
    returns x0_hat. NFE for n steps: n (order 1), 2n - 1 (order 2). Half of ``path.log_snr``
    is this ell.

    Book: eq. (eq-exp-integrator) and eq. (eq-dpm-solver-2), Chapter on fast sampling.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    check_path(path)
    times = check_grid(grid, path)
    c = path.coefficients(times)
    lam = (c.a.log() - c.s.log()).tolist()
    mids = [
        (lam[i] + lam[i + 1]) if math.isfinite(lam[i]) else math.nan for i in range(len(lam) - 2)
    ]
    finite = [m for m in mids if math.isfinite(m)] if order == 2 else []
    mid_times = path.t_from_log_snr(torch.tensor(finite, dtype=torch.float64))
    run = _Run(denoiser, path, grid, x_init, None, return_trajectory, extra_times=mid_times)
    mid_coefficients = path.coefficients(mid_times)
    mid_table = iter(
        zip(
            mid_times.tolist(),
            mid_coefficients.a.tolist(),
            mid_coefficients.s.tolist(),
            strict=True,
        )
    )
    x = x_init
    for i in range(run.n):
        x0 = denoiser(x, run.t[i])
        if i == run.n - 1:
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            if order == 2 and math.isfinite(lam[i]):
                t_mid, a_mid, s_mid = next(mid_table)
                x_mid = _exponential_step(run, i, x, x0, a_mid, s_mid, h / 2)
                x0 = denoiser(x_mid, t_mid)
            x = _exponential_step(run, i, x, x0, run.a[i + 1], run.s[i + 1], h)
        run.record(x)
    return run.finish(x)


@torch.no_grad()
def dpm_solver_2m(
    denoiser: DenoiserFn,
    path: Path,
    grid: Tensor,
    x_init: Tensor,
    *,
    return_trajectory: bool = False,
) -> Tensor:
    """The second-order multistep exponential integrator (DPM-Solver++(2M)): one evaluation
    a step.

    The step of :func:`dpm_solver`, x_next = (s_next / s) x + a_next (1 - e^(-h)) D, with D
    extrapolated linearly in ell from this step's x0_hat and the previous step's:

        D = (1 + 1 / (2 r)) x0_hat_i - 1 / (2 r) x0_hat_(i-1),    r = h_(i-1) / h_i.

    The first step (no previous value) and a step after an infinite one are first order
    (DDIM); the last step, into t = 0, returns x0_hat. Second order, NFE = n for n steps.

    Book: eq. (eq-dpm-solver-2m), Chapter on fast sampling.
    """
    run = _Run(denoiser, path, grid, x_init, None, return_trajectory)
    lam = _half_log_snrs(run)
    x, previous, h_previous = x_init, None, math.inf
    for i in range(run.n):
        x0 = denoiser(x, run.t[i])
        if i == run.n - 1:
            x = x0
        else:
            h = lam[i + 1] - lam[i]
            d = x0
            if previous is not None and math.isfinite(h_previous) and math.isfinite(h):
                w = 0.5 * h / h_previous  # 1 / (2 r)
                d = torch.add(x0 * (1.0 + w), previous, alpha=-w)
            x = _exponential_step(run, i, x, d, run.a[i + 1], run.s[i + 1], h)
            previous, h_previous = x0, h
        run.record(x)
    return run.finish(x)
