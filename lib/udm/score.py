"""Score-based generative modelling: score networks, denoising score matching, and samplers.

A *score function* is the gradient of a log-density, ``s(x) = grad_x log p(x)``. This module
holds what the chapter on score-based models builds on it:

- **Langevin samplers** driven by a score: :func:`langevin` for one density and
  :func:`annealed_langevin` for a sequence of ever less noisy densities (Song and Ermon's NCSN).
- **Denoising score matching** (:func:`dsm_loss`) with the sigma^2 weighting, and two score
  networks trained with it: :class:`NoiseConditionalScoreNet` for variance-exploding noise
  ``x + sigma z`` and :class:`VPScoreModel` for the variance-preserving SDE.
- **The continuous-time view**: :class:`VPSDE` (the forward SDE
  ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw``) and three fixed-step solvers that run it
  backwards from t = 1 to a small ``t_min``: :func:`reverse_sde_sample` (Euler-Maruyama),
  :func:`probability_flow_sample` (Heun, second order) and :func:`ddim_sample` (DDIM with
  eta = 0, first order). :func:`ancestral_model` lets ``udm.diffusion.sample`` run on the
  same score.

Interfaces. A noise-conditional score is a callable ``score_fn(x, c) -> (B, ...)`` with ``x``
of shape ``(B, ...)`` and a per-example condition ``c`` of shape ``(B,)``: the noise level
sigma for the Langevin samplers, the time t in (0, 1] for the SDE/ODE samplers; the samplers
pass it in float64, whatever the dtype of ``x``. A score of
one fixed density (for :func:`langevin`) is ``score_fn(x)``. Every function works for any
trailing shape; per-example coefficients are broadcast with :func:`udm.validate.per_example`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from udm.conventions import vp_sde_alpha_bar, vp_sde_beta
from udm.parameterizations import (
    eps_from_score,
    predict_x0_from_eps,
    predict_x0_from_score,
    score_from_eps,
)
from udm.schedules import NoiseSchedule
from udm.toy import GaussianMixture
from udm.validate import (
    check_int_at_least,
    check_positive,
    check_same_shape,
    check_tensor,
    per_example,
)

#: A noise-conditional score ``score_fn(x, c)``: ``c`` (shape (B,)) is sigma or the time t.
ScoreFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------- checks
def _check_x(name: str, x: object) -> Tensor:
    return check_tensor(name, x, min_ndim=2)


def _call(score_fn: Callable[..., Tensor], x: Tensor, *condition: Tensor) -> Tensor:
    """Evaluate the score and check that it is a tensor shaped like ``x``."""
    score = score_fn(x, *condition)
    if not isinstance(score, Tensor) or score.shape != x.shape:
        got = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
        raise ValueError(f"score_fn must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return score


def _check_callable(score_fn: object) -> None:
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable, got {type(score_fn).__name__}")


def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gaussian noise shaped like ``like``, drawn on the CPU from ``generator``."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def _full(value: float, like: Tensor) -> Tensor:
    """The float64 per-example vector (B,) holding ``value`` for every row of ``like``.

    Float64 even for float32 data: a noise level such as sigma(1) = 0.99998 must not round
    past the end of its range.
    """
    return torch.full((like.shape[0],), float(value), dtype=torch.float64, device=like.device)


# -------------------------------------------------------------------- Langevin samplers
@torch.no_grad()
def langevin(
    score_fn: Callable[[Tensor], Tensor],
    x_init: Tensor,
    step_size: float,
    n_steps: int,
    generator: torch.Generator | None = None,
    *,
    return_chain: bool = False,
) -> Tensor:
    """Unadjusted Langevin dynamics: x <- x + eta score(x) + sqrt(2 eta) z, ``n_steps`` times.

    ``score_fn(x)`` is the score of the target density, ``x_init`` (B, ...) the starting
    points and ``step_size`` the step eta > 0; z ~ N(0, I) comes from ``generator``. The
    chain's stationary law approaches the target as eta -> 0 (for finite eta it is
    slightly too wide; for a Gaussian of variance v its variance is v / (1 - eta / (2 v))).
    Returns the last state, or with ``return_chain`` all states, shape (n_steps + 1, B, ...).

    Book: eq. (eq-langevin), Chapter on score-based models.
    """
    _check_callable(score_fn)
    _check_x("x_init", x_init)
    check_positive("step_size", step_size)
    check_int_at_least("n_steps", n_steps, 1)
    noise_scale = math.sqrt(2.0 * step_size)
    x = x_init.clone()
    chain = [x]
    for _ in range(n_steps):
        x = x + step_size * _call(score_fn, x) + noise_scale * _noise(x, generator)
        if return_chain:
            chain.append(x)
    return torch.stack(chain) if return_chain else x


def geometric_sigmas(sigma_max: float, sigma_min: float, n_levels: int) -> Tensor:
    """``n_levels`` noise levels falling geometrically from ``sigma_max`` to ``sigma_min``.

    sigma_i = sigma_max (sigma_min / sigma_max)^((i - 1) / (n_levels - 1)), i = 1..n_levels:
    consecutive levels have the same ratio. Float64, strictly decreasing.

    Book: eq. (eq-annealed-langevin), Chapter on score-based models.
    """
    check_positive("sigma_max", sigma_max)
    check_positive("sigma_min", sigma_min)
    check_int_at_least("n_levels", n_levels, 1)
    if n_levels < 2 or not sigma_min < sigma_max:
        raise ValueError(
            "n_levels must be at least 2 and sigma_min below sigma_max, got "
            f"n_levels={n_levels}, sigma_max={sigma_max}, sigma_min={sigma_min}"
        )
    return torch.logspace(
        math.log10(sigma_max), math.log10(sigma_min), n_levels, dtype=torch.float64
    )


def _check_sigmas(sigmas: object) -> Tensor:
    check_tensor("sigmas", sigmas, shape=(None,))
    if sigmas.numel() == 0 or not bool((sigmas > 0).all()):
        raise ValueError("sigmas must be a non-empty vector of positive noise levels")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError("sigmas must decrease strictly (from the noisiest level to the cleanest)")
    return sigmas.detach().to("cpu", torch.float64)


@torch.no_grad()
def annealed_langevin(
    score_fn: ScoreFn,
    sigmas: Tensor,
    x_init: Tensor,
    step_size: float,
    steps_per_level: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Annealed Langevin dynamics (Song and Ermon): Langevin at each noise level in turn.

    For each level sigma_i of ``sigmas`` (strictly decreasing), run ``steps_per_level``
    Langevin steps on the noised density p_{sigma_i} with the step size
    eta_i = step_size * sigma_i^2 / sigma_L^2 (sigma_L = the last, smallest level), each
    starting where the previous level stopped. ``score_fn(x, sigma)`` gets the level as a
    (B,) tensor. ``step_size`` is the step at the last level; it must be below
    2 sigma_L^2, or the first steps overshoot (a Langevin step on a Gaussian of variance
    v diverges when eta > 2 v, and p_{sigma_i} has variance at least sigma_i^2). Returns
    the final state.

    Book: eq. (eq-annealed-langevin), Chapter on score-based models.
    """
    _check_callable(score_fn)
    levels = _check_sigmas(sigmas)
    _check_x("x_init", x_init)
    check_positive("step_size", step_size)
    check_int_at_least("steps_per_level", steps_per_level, 1)
    sigma_last = levels[-1].item()
    if step_size >= 2.0 * sigma_last**2:
        raise ValueError(
            f"step_size must be below 2 sigma_L^2 = {2.0 * sigma_last**2:.3g} (sigma_L = "
            f"{sigma_last:.3g}, the smallest level), got {step_size}"
        )
    x = x_init.clone()
    for sigma in levels.tolist():
        eta = step_size * (sigma / sigma_last) ** 2
        level = _full(sigma, x)
        for _ in range(steps_per_level):
            x = x + eta * _call(score_fn, x, level) + math.sqrt(2.0 * eta) * _noise(x, generator)
    return x


def ve_noised(mixture: GaussianMixture, sigma: float) -> GaussianMixture:
    """The exact law of x + sigma z (variance-exploding noise) for x from ``mixture``.

    Adding independent N(0, sigma^2 I) noise convolves each component with it: same weights
    and means, covariances Sigma_k + sigma^2 I. Its ``score`` is the exact noised score that
    annealed Langevin needs at level sigma.

    Book: eq. (eq-mixture-score) and eq. (eq-ncsn-loss), Chapter on score-based models.
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a udm.toy.GaussianMixture, got {type(mixture).__name__}")
    check_positive("sigma", sigma)
    identity = torch.eye(mixture.dim, dtype=torch.float64)
    return GaussianMixture(
        mixture.means, mixture.covariances + float(sigma) ** 2 * identity, mixture.weights
    )


# ----------------------------------------------------------------- score matching loss
def dsm_loss(
    score_fn: ScoreFn,
    x0: Tensor,
    sigma: Tensor,
    *,
    scale: Tensor | None = None,
    condition: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The denoising score matching loss with the sigma^2 weighting, a scalar tensor.

    Each example is perturbed as x_noisy = scale * x0 + sigma * z with z ~ N(0, I), whose
    conditional score is grad log q(x_noisy | x0) = -z / sigma. The loss is the batch mean of

        lambda(sigma) / 2 * || s(x_noisy, c) + z / sigma ||^2   with lambda(sigma) = sigma^2,
        = 1/2 || sigma s(x_noisy, c) + z ||^2,

    the weighting that makes every level's target sigma * (-z / sigma) = -z of the same size.
    ``sigma`` and ``scale`` are per-example vectors (B,); ``scale`` defaults to 1 (the
    variance-exploding perturbation x0 + sigma z) and is sqrt(alpha_bar) for the VP process.
    ``condition`` (default ``sigma``) is what ``score_fn`` receives besides x_noisy, such as
    the time t. ``noise`` (default: drawn from ``generator``) is z, shaped like ``x0``.

    Book: eq. (eq-dsm) and eq. (eq-ncsn-loss), Chapter on score-based models.
    """
    _check_callable(score_fn)
    _check_x("x0", x0)
    check_tensor("sigma", sigma, shape=(x0.shape[0],))
    if not bool((sigma > 0).all()):
        raise ValueError("sigma must be positive for every example")
    if scale is not None:
        check_tensor("scale", scale, shape=(x0.shape[0],))
    if noise is None:
        noise = _noise(x0, generator)
    check_same_shape("x0", x0, "noise", noise)
    signal = x0 if scale is None else per_example(scale, x0) * x0
    x_noisy = signal + per_example(sigma, x0) * noise
    score = _call(score_fn, x_noisy, sigma if condition is None else condition)
    residual = per_example(sigma, x0) * score + noise
    return 0.5 * residual.reshape(x0.shape[0], -1).square().sum(dim=1).mean()


# -------------------------------------------------------------------------- score nets
class NoiseConditionalScoreNet(nn.Module):
    """A noise-conditional score network s_theta(x, sigma) for variance-exploding noise.

    s_theta(x, sigma) = -net(c_in x, log sigma) / sigma with c_in = 1 / sqrt(sigma^2 + data_std^2):
    the network sees inputs of unit scale at every level and predicts the noise z, so that
    sigma * s_theta, the quantity :func:`dsm_loss` compares with -z, is of unit size too
    (Song and Ermon's observation that ||sigma s|| is about constant across levels). ``net``
    maps ``(x (B, D), log sigma (B,))`` to (B, D), e.g. a
    :class:`udm.nets.TimeConditionedMLP` with ``time_scale`` about 100.

    Book: eq. (eq-ncsn-loss), Chapter on score-based models.
    """

    def __init__(self, net: nn.Module, data_std: float) -> None:
        super().__init__()
        check_positive("data_std", data_std)
        self.net = net
        self.data_std = float(data_std)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The score at noise level ``sigma`` (shape (B,)) of the points ``x`` (B, D)."""
        _check_x("x", x)
        check_tensor("sigma", sigma, shape=(x.shape[0],))
        c_in = per_example((sigma.square() + self.data_std**2).rsqrt(), x)
        eps_hat = self.net(c_in * x, sigma.log().to(x.dtype))
        return -eps_hat / per_example(sigma, x)


class VPSDE:
    """The variance-preserving SDE dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw on t in [0, 1].

    beta(t) = beta_min + t (beta_max - beta_min) is linear (Song et al.'s defaults 0.1 and 20,
    DDPM's schedule as T -> infinity). Then x(t) | x(0) ~ N(sqrt(alpha_bar(t)) x(0),
    (1 - alpha_bar(t)) I) with alpha_bar(t) = exp(-int_0^t beta). Times are float tensors;
    every method returns float64 values of the shape of ``t``.

    Book: eq. (eq-vp-sde) and eq. (eq-vp-alpha-bar), Chapter on score-based models.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        check_positive("beta_min", beta_min)
        check_positive("beta_max", beta_max)
        if not beta_min < beta_max:
            raise ValueError(f"beta_min must be below beta_max, got {beta_min} and {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max})"

    def beta(self, t: Tensor) -> Tensor:
        """The rate beta(t)."""
        return vp_sde_beta(t.double(), self.beta_min, self.beta_max)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar(t) = exp(-int_0^t beta(u) du), the signal variance left at time t."""
        return vp_sde_alpha_bar(t.double(), self.beta_min, self.beta_max)

    def sigma(self, t: Tensor) -> Tensor:
        """sqrt(1 - alpha_bar(t)), the noise standard deviation at time t."""
        return (-torch.expm1(torch.log(self.alpha_bar(t)))).sqrt()

    def t_from_sigma(self, sigma: Tensor) -> Tensor:
        """The time t at which sqrt(1 - alpha_bar(t)) = sigma, for sigma in (0, sigma(1)].

        Solves beta_min t + (beta_max - beta_min) t^2 / 2 = -log(1 - sigma^2) for t >= 0.
        """
        check_tensor("sigma", sigma)
        sigma = sigma.double()
        if not bool(((sigma > 0) & (sigma < 1)).all()):
            raise ValueError("sigma must lie in (0, 1) for the VP SDE")
        integral = -torch.log1p(-sigma.square())
        slope = self.beta_max - self.beta_min
        t = (torch.sqrt(self.beta_min**2 + 2.0 * slope * integral) - self.beta_min) / slope
        if not bool((t <= 1.0 + 1e-9).all()):
            raise ValueError("sigma must not exceed the SDE's largest noise level sigma(1)")
        return t.clamp(max=1.0)  # rounding only: checked above


def _check_sde(sde: object) -> VPSDE:
    if not isinstance(sde, VPSDE):
        raise TypeError(f"sde must be a udm.score.VPSDE, got {type(sde).__name__}")
    return sde


class VPScoreModel(nn.Module):
    """A noise-prediction network on the VP SDE, read as a score and as an x_0-prediction.

    ``net(x_t, t)`` predicts the noise eps in x_t = sqrt(alpha_bar(t)) x_0 + sigma(t) eps for
    a continuous time t in (0, 1] (e.g. a :class:`udm.nets.TimeConditionedMLP` with
    ``time_scale=1000``). The chapter on the three parameterizations turns it into

        score(x_t, t) = -eps_hat / sigma(t),
        x0_hat(x_t, t) = (x_t - sigma(t) eps_hat) / sqrt(alpha_bar(t)),

    with :func:`udm.parameterizations.score_from_eps` and
    :func:`~udm.parameterizations.predict_x0_from_eps`. Trained with :func:`dsm_loss`
    (sigma = sigma(t), scale = sqrt(alpha_bar(t)), condition = t) the loss is
    1/2 ||eps_hat - eps||^2, DDPM's noise-prediction loss. Calling the module returns the
    score. (:class:`udm.parameterizations.Denoiser` is the same idea for integer steps; the
    SDE and ODE solvers need a continuous time.)

    Book: eq. (eq-score-eps), Chapter on the three parameterizations.
    """

    def __init__(self, net: nn.Module, sde: VPSDE) -> None:
        super().__init__()
        self.net = net
        self.sde = _check_sde(sde)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The predicted noise eps_hat(x_t, t), shaped like ``x_t``; ``t`` has shape (B,)."""
        _check_x("x_t", x_t)
        check_tensor("t", t, shape=(x_t.shape[0],))
        return self.net(x_t, t.to(x_t.dtype))

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The score grad log p_t(x_t) = -eps_hat / sigma(t)."""
        return score_from_eps(self.eps(x_t, t), self.sde.alpha_bar(t))

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The x_0-prediction (x_t - sigma(t) eps_hat) / sqrt(alpha_bar(t))."""
        return predict_x0_from_eps(x_t, self.eps(x_t, t), self.sde.alpha_bar(t))


# ---------------------------------------------------------------- SDE and ODE samplers
def time_grid(n_steps: int, t_min: float = 1e-3) -> Tensor:
    """The solvers' times 1 = t_0 > t_1 > ... > t_n = t_min, evenly spaced, float64.

    The integration stops at ``t_min`` > 0 because the score of the data itself (t = 0) is
    unbounded for concentrated data; at t_min = 1e-3 the linear VP SDE leaves noise of
    standard deviation about 0.01.
    """
    check_int_at_least("n_steps", n_steps, 1)
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must lie strictly between 0 and 1, got {t_min}")
    return torch.linspace(1.0, t_min, n_steps + 1, dtype=torch.float64)


def _start(sde: VPSDE, x_init: Tensor, score_fn: object) -> None:
    _check_callable(score_fn)
    _check_sde(sde)
    _check_x("x_init", x_init)


@torch.no_grad()
def reverse_sde_sample(
    score_fn: ScoreFn,
    sde: VPSDE,
    x_init: Tensor,
    n_steps: int,
    generator: torch.Generator | None = None,
    t_min: float = 1e-3,
) -> Tensor:
    """Integrate the reverse-time VP SDE from t = 1 to t_min with Euler-Maruyama.

    dx = [-beta x / 2 - beta score(x, t)] dt + sqrt(beta) dw_bar, run with dt = -h < 0: each
    step is x <- x + h beta(t) (x / 2 + score(x, t)) + sqrt(beta(t) h) z, evaluated at the
    step's start (strong order 1/2, weak order 1). One score evaluation per step.
    ``x_init`` are draws from the prior N(0, I); ``score_fn(x, t)`` takes t of shape (B,).

    Book: eq. (eq-reverse-sde), Chapter on score-based models.
    """
    _start(sde, x_init, score_fn)
    times = time_grid(n_steps, t_min)
    x = x_init.clone()
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist(), strict=True):
        h = t - t_next
        t_vec = _full(t, x)
        beta = sde.beta(torch.tensor(t)).item()
        drift = 0.5 * x + _call(score_fn, x, t_vec)
        x = x + h * beta * drift + math.sqrt(beta * h) * _noise(x, generator)
    return x


def _pf_velocity(score_fn: ScoreFn, sde: VPSDE, x: Tensor, t: float) -> Tensor:
    """dx/dt of the probability-flow ODE: -beta(t) / 2 (x + score(x, t))."""
    beta = sde.beta(torch.tensor(t)).item()
    return -0.5 * beta * (x + _call(score_fn, x, _full(t, x)))


@torch.no_grad()
def probability_flow_sample(
    score_fn: ScoreFn,
    sde: VPSDE,
    x_init: Tensor,
    n_steps: int,
    t_min: float = 1e-3,
) -> Tensor:
    """Integrate the probability-flow ODE from t = 1 to t_min with Heun's method (order 2).

    dx/dt = -beta(t) / 2 (x + score(x, t)). Each step takes an Euler predictor to the next
    time and averages the slopes at both ends (the trapezoid corrector): two score
    evaluations per step, global error O(h^2). Deterministic: the same ``x_init`` always
    gives the same samples.

    Book: eq. (eq-pf-ode), Chapter on score-based models.
    """
    _start(sde, x_init, score_fn)
    times = time_grid(n_steps, t_min)
    x = x_init.clone()
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist(), strict=True):
        dt = t_next - t  # negative: the ODE runs backwards in time
        slope = _pf_velocity(score_fn, sde, x, t)
        predictor = x + dt * slope
        x = x + 0.5 * dt * (slope + _pf_velocity(score_fn, sde, predictor, t_next))
    return x


@torch.no_grad()
def ddim_sample(
    score_fn: ScoreFn,
    sde: VPSDE,
    x_init: Tensor,
    n_steps: int,
    t_min: float = 1e-3,
) -> Tensor:
    """Deterministic DDIM (eta = 0) from t = 1 to t_min: first order, one evaluation a step.

    At each time t with a = alpha_bar(t), the score gives eps_hat = -sqrt(1 - a) score and
    x0_hat = (x + (1 - a) score) / sqrt(a); the step to the next time s re-noises the
    prediction with the *same* noise: x <- sqrt(alpha_bar(s)) x0_hat + sqrt(1 - alpha_bar(s))
    eps_hat. This is Euler's method for the probability-flow ODE written in the variables
    y = x / sqrt(a) and sigma = sqrt((1 - a) / a), where dy / dsigma = eps_hat.

    Book: eq. (eq-ddim), Chapter on score-based models.
    """
    _start(sde, x_init, score_fn)
    times = time_grid(n_steps, t_min)
    alpha_bars = sde.alpha_bar(times).tolist()
    x = x_init.clone()
    for i, t in enumerate(times[:-1].tolist()):
        a, a_next = alpha_bars[i], alpha_bars[i + 1]
        score = _call(score_fn, x, _full(t, x))
        eps_hat = eps_from_score(score, a)
        x0_hat = predict_x0_from_score(x, score, a)
        x = math.sqrt(a_next) * x0_hat + math.sqrt(1.0 - a_next) * eps_hat
    return x


def ancestral_model(
    score_fn: ScoreFn, sde: VPSDE, n_steps: int, t_min: float = 1e-3
) -> tuple[Callable[[Tensor, Tensor], Tensor], NoiseSchedule]:
    """The score as an x_0-predictor and a discrete schedule, for ``udm.diffusion.sample``.

    The schedule has T = ``n_steps`` steps whose alpha_bar_k equals the SDE's alpha_bar at the
    times t_k evenly spaced from t_min (k = 1) to 1 (k = T); the x_0-predictor answers at
    step k with Tweedie's formula x0_hat = (x + (1 - a) score(x, t_k)) / sqrt(a), a =
    alpha_bar(t_k). Ancestral sampling then takes T steps, one score evaluation each.

    Book: eq. (eq-score-eps), Chapter on score-based models.
    """
    _check_callable(score_fn)
    _check_sde(sde)
    check_int_at_least("n_steps", n_steps, 1)
    times = time_grid(n_steps - 1, t_min).flip(0) if n_steps > 1 else time_grid(1, t_min)[1:]
    alpha_bars = sde.alpha_bar(times.double())
    schedule = NoiseSchedule.from_alpha_bars(alpha_bars)
    padded_times = torch.cat([torch.zeros(1, dtype=torch.float64), times])
    padded_alpha_bars = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars])

    def x0_predictor(x_t: Tensor, t: Tensor) -> Tensor:
        time = padded_times[t.cpu()].to(device=x_t.device, dtype=x_t.dtype)
        score = _call(score_fn, x_t, time)
        return predict_x0_from_score(x_t, score, padded_alpha_bars[t.cpu()].to(x_t.device))

    return x0_predictor, schedule
