"""Score-based generative modelling: score networks, denoising score matching, and samplers.

A *score function* is the gradient of a log-density, ``s(x) = grad_x log p(x)``. This module
holds what the chapter on score-based models builds on it:

- **Langevin samplers** driven by a score: :func:`langevin` for one density and
  :func:`annealed_langevin` for a sequence of ever less noisy densities (Song and Ermon's NCSN).
- **Denoising score matching** (:func:`dsm_loss`) with the sigma^2 weighting, and the
  score network trained with it for variance-exploding noise ``x + sigma z``,
  :class:`NoiseConditionalScoreNet`.

The continuous-time view lives elsewhere: the VP and VE SDEs are paths
(:class:`udm.paths.ContinuousVP`, :class:`udm.paths.VE`), a network of any kind is read as a
score by :class:`udm.parameterizations.Denoiser` (``denoiser.score(x, t)``), and the
reverse-SDE, probability-flow and DDIM solvers are in :mod:`udm.samplers`.

Interfaces. A noise-conditional score is a callable ``score_fn(x, c) -> (B, ...)`` with ``x``
of shape ``(B, ...)`` and a per-example condition ``c`` of shape ``(B,)``, such as the noise
level sigma, passed in float64 whatever the dtype of ``x``. A score of one fixed density
(for :func:`langevin`) is ``score_fn(x)``. Every function works for any trailing shape;
per-example coefficients are broadcast with :func:`udm.validate.per_example`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from udm.toy import GaussianMixture
from udm.validate import (
    check_finite,
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
    check_finite("x_init", x_init)
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
    return mixture.marginal(1.0, float(sigma))


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
        """The score at noise level ``sigma`` (shape (B,), positive) of the points ``x`` (B, D)."""
        _check_x("x", x)
        check_tensor("sigma", sigma, shape=(x.shape[0],))
        if not bool(((sigma > 0) & (sigma < float("inf"))).all()):  # NaN fails too
            raise ValueError(
                f"sigma must be positive and finite (a noise level), got values from "
                f"{sigma.min().item():.6g} to {sigma.max().item():.6g}"
            )
        c_in = per_example((sigma.square() + self.data_std**2).rsqrt(), x)
        eps_hat = self.net(c_in * x, sigma.log().to(x.dtype))
        return -eps_hat / per_example(sigma, x)
