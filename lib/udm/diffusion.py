"""The variational diffusion model's discrete chain: forward steps, posterior, ELBO terms.

Notation follows the book (Luo's tutorial): ``x_0`` is the data, the forward step is
``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, (1 - alpha_t) I)`` with integer steps
t = 1..T of a :class:`udm.schedules.NoiseSchedule`, whose numbers are looked up in float64
and cast once to the data's dtype. This module is Chapter 6's subject and keeps its integer
steps; everything here is exact for the T-step model.

The model is a **denoiser** on the schedule's path (``schedule.path``, step t at time
t / T): a callable ``denoiser(x_t, time) -> x0_hat`` such as a
:class:`udm.parameterizations.Denoiser` or the exact
:class:`udm.parameterizations.MixtureDenoiser`. Its reverse step is

    p_theta(x_{t-1} | x_t) = q(x_{t-1} | x_t, x_0 = x0_hat(x_t, t))     for t = 2..T,
    p_theta(x_0 | x_1)     = N(x_0; x0_hat(x_1, 1), decoder_variance * I),

the forward posterior with the prediction plugged in for the unknown ``x_0``, and a
Gaussian decoder at the last step. :func:`udm.samplers.ancestral` on ``schedule.path.grid()``
samples exactly this model; :func:`udm.parameterizations.prediction_loss` trains it.

Every function works for any trailing shape, ``(B, 2)`` points and ``(B, C, H, W)`` images
alike; per-example coefficients are broadcast with :func:`udm.validate.per_example`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from udm.gaussian import diag_gaussian_log_prob, kl_diag_gaussians, kl_to_standard_normal
from udm.parameterizations import check_denoiser_path
from udm.schedules import NoiseSchedule, check_schedule
from udm.validate import (
    check_finite,
    check_same_device,
    check_same_dtype,
    check_same_shape,
    check_tensor,
    per_example,
)

#: The model interface: ``denoiser(x_t, time) -> x0_hat`` with ``x0_hat`` shaped like ``x_t``;
#: ``time`` = t / T is a float or a float64 tensor of shape (B,).
DenoiserFn = Callable[[Tensor, float | Tensor], Tensor]


# ----------------------------------------------------------------------------- checks
def _steps(t: int | Tensor, like: Tensor) -> Tensor:
    """Return the steps as an int64 tensor of shape (B,) on the CPU.

    An int (Python or NumPy) means "this step for every example". The range is checked by
    the schedule's lookups, which name ``t`` in their errors.
    """
    batch = like.shape[0]
    if isinstance(t, Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"t must have an integer dtype (steps 0..T), got {t.dtype}")
        if t.shape != (batch,):
            raise ValueError(
                f"t must have shape ({batch},) to match the batch, got {tuple(t.shape)}"
            )
        return t.to(device="cpu", dtype=torch.long)
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
    return torch.full((batch,), int(t), dtype=torch.long)


def _check_data(name: str, x: Tensor) -> Tensor:
    check_tensor(name, x, min_ndim=2)
    return check_finite(name, x)


def _check_noise(name: str, x: Tensor, noise_name: str, noise: Tensor) -> None:
    check_tensor(noise_name, noise)
    check_same_shape(name, x, noise_name, noise)
    check_same_dtype(name, x, noise_name, noise)
    check_same_device(name, x, noise_name, noise)
    check_finite(noise_name, noise)


def _coef(values: Tensor, like: Tensor) -> Tensor:
    """Cast float64 per-example values (B,) once and shape them (B, 1, ..., 1) for ``like``."""
    return per_example(values.to(device=like.device), like)


def _predict(denoiser: DenoiserFn, schedule: NoiseSchedule, x_t: Tensor, steps: Tensor) -> Tensor:
    """Call the denoiser at the times steps / T and check its output's shape."""
    x0_hat = denoiser(x_t, steps.to(torch.float64) / schedule.T)
    if not isinstance(x0_hat, Tensor) or x0_hat.shape != x_t.shape:
        got = tuple(x0_hat.shape) if isinstance(x0_hat, Tensor) else type(x0_hat).__name__
        raise ValueError(
            f"denoiser must return a prediction of x_0 shaped like x_t {tuple(x_t.shape)}, "
            f"got {got}"
        )
    return x0_hat


# ---------------------------------------------------------------------- forward process
def q_step(schedule: NoiseSchedule, x_prev: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """One forward step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) noise, t in 1..T.

    ``noise`` is a standard Gaussian draw shaped like ``x_prev`` (same dtype and device).

    Book: eq. (eq-forward-step), Chapter on VDMs.
    """
    check_schedule(schedule)
    _check_data("x_prev", x_prev)
    _check_noise("x_prev", x_prev, "noise", noise)
    alpha = schedule.alpha(_steps(t, x_prev), dtype=torch.float64)
    return _coef(alpha.sqrt(), x_prev) * x_prev + _coef((1.0 - alpha).sqrt(), x_prev) * noise


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """Draw x_t ~ q(x_t | x_0) in one shot: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise.

    ``t`` is an int or an integer tensor of shape (B,) with values in 0..T (t = 0 returns
    ``x0``); ``noise`` is a standard Gaussian draw shaped like ``x0``. This is
    ``schedule.path.q_sample`` at the time t / T.

    Book: eq. (eq-forward-marginal), Chapter on VDMs.
    """
    check_schedule(schedule)
    check_tensor("x0", x0, min_ndim=2)
    steps = _steps(t, x0)
    schedule.alpha_bar(steps)  # checks t in 0..T, naming t
    return schedule.path.q_sample(x0, steps.to(torch.float64) / schedule.T, noise)


def posterior_mean_variance(
    schedule: NoiseSchedule, x_t: Tensor, x0: Tensor, t: int | Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0), t in 1..T.

    mean = (sqrt(alpha_t) (1 - alpha_bar_{t-1}) x_t + sqrt(alpha_bar_{t-1}) (1 - alpha_t) x_0)
           / (1 - alpha_bar_t),
    variance = (1 - alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),

    computed by the path's :meth:`~udm.paths.Path.posterior_coefficients` (the ancestral
    sampler's numbers). Returns the mean, shaped like ``x_t``, and the variance, one number
    per example of shape (B,). At t = 1 the posterior is the point mass at ``x0``.

    Book: eq. (eq-posterior-mean) and eq. (eq-posterior-variance), Chapter on VDMs.
    """
    check_schedule(schedule)
    check_tensor("x_t", x_t, min_ndim=2)
    check_tensor("x0", x0, min_ndim=2)
    check_same_shape("x_t", x_t, "x0", x0)
    steps = _steps(t, x_t)
    schedule.alpha(steps)  # checks t in 1..T, naming t
    time, time_prev = (
        steps.to(torch.float64) / schedule.T,
        (steps - 1).to(torch.float64) / schedule.T,
    )
    c_x, c_0, variance = schedule.path.posterior_coefficients(time, time_prev)
    mean = _coef(c_x, x_t) * x_t + _coef(c_0, x_t) * x0
    return mean, variance.to(device=x_t.device, dtype=x_t.dtype)


# ------------------------------------------------------------------------ reverse model
def decoder_variance(schedule: NoiseSchedule) -> float:
    """The variance of the Gaussian decoder p(x_0 | x_1): (1 - alpha_1) / alpha_1 = 1 / SNR(1).

    It is the variance of q(x_0 | x_1) when the data density is flat on the scale of the
    first step's noise: x_0 = (x_1 - sqrt(1 - alpha_1) eps) / sqrt(alpha_1) read backwards.

    Book: the reconstruction term, Chapter on VDMs.
    """
    check_schedule(schedule)
    alpha_1 = schedule.alphas[1].item()
    return (1.0 - alpha_1) / alpha_1


# ------------------------------------------------------------------------- ELBO terms
def prior_matching_term(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """KL(q(x_T | x_0) || N(0, I)) in nats, one value per example, shape (B,).

    No parameters: it measures how close the last latent is to the prior.

    Book: eq. (eq-elbo-denoising), the prior matching term, Chapter on VDMs.
    """
    check_schedule(schedule)
    _check_data("x0", x0)
    alpha_bar_T = schedule.alpha_bars[-1].item()
    mean = math.sqrt(alpha_bar_T) * x0
    log_var = torch.full_like(x0, math.log1p(-alpha_bar_T))
    return kl_to_standard_normal(mean, log_var)


def reconstruction_term(
    denoiser: DenoiserFn, schedule: NoiseSchedule, x0: Tensor, noise: Tensor
) -> Tensor:
    """One-sample estimate of E_{q(x_1 | x_0)} log p_theta(x_0 | x_1) in nats, shape (B,).

    ``x_1 = q_sample(schedule, x0, 1, noise)``; the decoder is N(denoiser(x_1, 1 / T),
    decoder_variance(schedule) I), a density, so the term can exceed zero.

    Book: eq. (eq-elbo-denoising), the reconstruction term, Chapter on VDMs.
    """
    check_schedule(schedule)
    check_denoiser_path(denoiser, schedule.path)
    x1 = q_sample(schedule, x0, 1, noise)
    x0_hat = _predict(denoiser, schedule, x1, _steps(1, x1))
    log_var = torch.full_like(x0, math.log(decoder_variance(schedule)))
    return diag_gaussian_log_prob(x0, x0_hat, log_var)


def denoising_matching_term(
    denoiser: DenoiserFn, schedule: NoiseSchedule, x0: Tensor, t: int | Tensor, noise: Tensor
) -> Tensor:
    """KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) at x_t = q_sample(x0, t, noise).

    One value per example, shape (B,), for t in 2..T (t = 1 is the reconstruction term).
    Both Gaussians have covariance sigma_q^2(t) I, so the KL is the squared distance of
    their means divided by 2 sigma_q^2(t), which equals
    x0_loss_weight(t) * ||x0_hat - x_0||^2.

    Book: eq. (eq-elbo-denoising) and eq. (eq-kl-equal-variance), Chapter on VDMs.
    """
    check_schedule(schedule)
    check_denoiser_path(denoiser, schedule.path)
    _check_data("x0", x0)
    steps = _steps(t, x0)
    if steps.numel() and (steps < 2).any():
        raise ValueError(
            f"t must lie in 2..T = 2..{schedule.T} (t = 1 is the reconstruction term), "
            f"got values from {steps.min().item()}"
        )
    x_t = q_sample(schedule, x0, steps, noise)
    mean_q, variance = posterior_mean_variance(schedule, x_t, x0, steps)
    mean_p, _ = posterior_mean_variance(
        schedule, x_t, _predict(denoiser, schedule, x_t, steps), steps
    )
    log_var = per_example(variance.log(), x0).expand_as(x0)
    return kl_diag_gaussians(mean_q, log_var, mean_p, log_var)


def x0_loss_weight(schedule: NoiseSchedule, t: int | Tensor) -> Tensor:
    """The ELBO's weight on ||x0_hat - x_0||^2 at step t, float64 of shape (B,) or ().

    For t >= 2 it is 1/2 (SNR(t-1) - SNR(t)), computed in the expm1 form
    SNR(t) expm1(log SNR(t-1) - log SNR(t)) / 2 so that no two large numbers are
    subtracted (``schedule.path.x0_weights``). For t = 1 it is the decoder's
    1 / (2 decoder_variance) = SNR(1) / 2.

    Book: eq. (eq-x0-loss-snr), Chapter on VDMs.
    """
    check_schedule(schedule)
    scalar = not isinstance(t, Tensor)
    steps = torch.tensor([t]) if scalar else t
    schedule.alpha(steps)  # checks t: type, shape, 1..T
    weight = schedule.path.x0_weights()[steps.cpu().long()]
    return weight[0] if scalar else weight


@dataclass(frozen=True)
class ELBOTerms:
    """The terms of the VDM's ELBO for a batch of data, each in nats.

    Attributes:
        reconstruction: E log p_theta(x_0 | x_1), one-sample estimate, shape (B,).
        prior: KL(q(x_T | x_0) || N(0, I)), exact, shape (B,).
        denoising: KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for t = 2..T
            (column t - 2), one-sample estimate per t, shape (B, T - 1).
        dim: the number of coordinates of one example (2 for points, 64 for 8x8 images).
    """

    reconstruction: Tensor
    prior: Tensor
    denoising: Tensor
    dim: int

    @property
    def elbo(self) -> Tensor:
        """reconstruction - prior - sum_t denoising, shape (B,): a lower bound on log p(x_0)."""
        return self.reconstruction - self.prior - self.denoising.sum(dim=1)

    @property
    def bits_per_dim(self) -> Tensor:
        """The negative ELBO in bits per coordinate, -elbo / (dim ln 2), shape (B,).

        For continuous data this is a bound on a differential entropy and may be negative.
        """
        return -self.elbo / (self.dim * math.log(2.0))


def elbo_terms(
    denoiser: DenoiserFn,
    schedule: NoiseSchedule,
    x0: Tensor,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    """Every term of the ELBO for each example of ``x0``; sums up to the bound.

    Draws one x_t ~ q(x_t | x_0) per example and step (noise from ``generator``) and
    evaluates the denoiser T times on the whole batch. Runs without gradients.

    Book: eq. (eq-elbo-denoising), Chapter on VDMs.
    """
    check_schedule(schedule)
    check_denoiser_path(denoiser, schedule.path)
    _check_data("x0", x0)

    def noise() -> Tensor:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)

    with torch.no_grad():
        reconstruction = reconstruction_term(denoiser, schedule, x0, noise())
        denoising = [
            denoising_matching_term(denoiser, schedule, x0, t, noise())
            for t in range(2, schedule.T + 1)
        ]
        denoising = torch.stack(denoising, dim=1) if denoising else x0.new_zeros(len(x0), 0)
        prior = prior_matching_term(schedule, x0)
    return ELBOTerms(reconstruction, prior, denoising, dim=x0[0].numel())
