"""The variational diffusion model: forward noising, the forward posterior, ELBO terms, sampling.

Notation follows the book (Luo's tutorial): ``x_0`` is the data, the forward step is
``q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, (1 - alpha_t) I)``, and every schedule
number comes from a :class:`udm.schedules.NoiseSchedule`, looked up in float64 and cast
once to the data's dtype.

The model is an **x_0-predictor**: a callable ``model(x_t, t) -> x0_hat`` that takes noisy
data ``x_t`` of shape ``(B, ...)`` and the steps ``t`` (int64, shape ``(B,)``, values
1..T) and returns a prediction of ``x_0`` of the same shape as ``x_t``. Its reverse step is

    p_theta(x_{t-1} | x_t) = q(x_{t-1} | x_t, x_0 = x0_hat(x_t, t))     for t = 2..T,
    p_theta(x_0 | x_1)     = N(x_0; x0_hat(x_1, 1), decoder_variance * I),

the forward posterior with the prediction plugged in for the unknown ``x_0``, and a
Gaussian decoder at the last step. Networks from :mod:`udm.nets` take flat vectors; for
images wrap one, e.g. ``lambda x, t: net(x.flatten(1), t).view_as(x)``.

Every function works for any trailing shape, ``(B, 2)`` points and ``(B, C, H, W)``
images alike; per-example coefficients are broadcast with :func:`udm.validate.per_example`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from udm.gaussian import diag_gaussian_log_prob, kl_diag_gaussians, kl_to_standard_normal
from udm.schedules import NoiseSchedule
from udm.validate import check_int_at_least, check_same_shape, check_tensor, per_example

#: The model interface: ``model(x_t, t) -> x0_hat`` with ``x0_hat`` shaped like ``x_t``.
X0Predictor = Callable[[Tensor, Tensor], Tensor]

_WEIGHTINGS = ("simple", "elbo")


# ----------------------------------------------------------------------------- checks
def _check_schedule(schedule: object) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    return schedule


def _steps(t: int | Tensor, like: Tensor) -> Tensor:
    """Return the steps as an int64 tensor of shape (B,) on ``like``'s device.

    A Python int means "this step for every example". The range is checked by the
    schedule's lookups, which name ``t`` in their errors.
    """
    batch = like.shape[0]
    if isinstance(t, Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"t must have an integer dtype, got {t.dtype}")
        if t.shape != (batch,):
            raise ValueError(
                f"t must have shape ({batch},) to match the batch, got {tuple(t.shape)}"
            )
        return t.to(device=like.device, dtype=torch.long)
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
    return torch.full((batch,), t, dtype=torch.long, device=like.device)


def _check_data(name: str, x: Tensor) -> Tensor:
    return check_tensor(name, x, min_ndim=2)


def _coef(values: Tensor, like: Tensor) -> Tensor:
    """Cast float64 per-example values (B,) once and shape them (B, 1, ..., 1) for ``like``."""
    return per_example(values.to(device=like.device), like)


def _predict(model: X0Predictor, x_t: Tensor, t: Tensor) -> Tensor:
    """Call the x_0-predictor and check that it returned a tensor shaped like ``x_t``."""
    if not callable(model):
        raise TypeError(f"model must be callable as model(x_t, t), got {type(model).__name__}")
    x0_hat = model(x_t, t)
    if not isinstance(x0_hat, Tensor) or x0_hat.shape != x_t.shape:
        got = tuple(x0_hat.shape) if isinstance(x0_hat, Tensor) else type(x0_hat).__name__
        raise ValueError(
            f"model must return a prediction of x_0 shaped like x_t {tuple(x_t.shape)}, got {got}"
        )
    return x0_hat


def _per_example_sum(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).sum(dim=1)


# ---------------------------------------------------------------------- forward process
def q_step(schedule: NoiseSchedule, x_prev: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """One forward step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) noise, t in 1..T.

    ``noise`` is a standard Gaussian draw shaped like ``x_prev``.

    Book: eq. (eq-forward-step), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x_prev", x_prev)
    check_same_shape("x_prev", x_prev, "noise", noise)
    alpha = schedule.alpha(_steps(t, x_prev), dtype=torch.float64)
    return _coef(alpha.sqrt(), x_prev) * x_prev + _coef((1.0 - alpha).sqrt(), x_prev) * noise


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """Draw x_t ~ q(x_t | x_0) in one shot: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise.

    ``t`` is an int or an int64 tensor of shape (B,) with values in 0..T (t = 0 returns
    ``x0``); ``noise`` is a standard Gaussian draw shaped like ``x0``.

    Book: eq. (eq-forward-marginal), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x0", x0)
    check_same_shape("x0", x0, "noise", noise)
    steps = _steps(t, x0)
    signal = schedule.alpha_bar(steps, dtype=torch.float64).sqrt()
    sigma = schedule.sigma(steps, dtype=torch.float64)
    return _coef(signal, x0) * x0 + _coef(sigma, x0) * noise


def posterior_mean_variance(
    schedule: NoiseSchedule, x_t: Tensor, x0: Tensor, t: int | Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0), t in 1..T.

    mean = (sqrt(alpha_t) (1 - alpha_bar_{t-1}) x_t + sqrt(alpha_bar_{t-1}) (1 - alpha_t) x_0)
           / (1 - alpha_bar_t),
    variance = (1 - alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).

    Returns the mean, shaped like ``x_t``, and the variance, one number per example of
    shape (B,) (the covariance is ``variance * I``). At t = 1 the posterior is the point
    mass at ``x0``: the mean is ``x0`` and the variance 0.

    Book: eq. (eq-posterior-mean) and eq. (eq-posterior-variance), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x_t", x_t)
    check_same_shape("x_t", x_t, "x0", x0)
    steps = _steps(t, x_t)
    alpha = schedule.alpha(steps, dtype=torch.float64)  # also checks t in 1..T
    alpha_bar = schedule.alpha_bar(steps, dtype=torch.float64)
    alpha_bar_prev = schedule.alpha_bar(steps - 1, dtype=torch.float64)
    coef_xt = alpha.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    coef_x0 = alpha_bar_prev.sqrt() * (1.0 - alpha) / (1.0 - alpha_bar)
    variance = (1.0 - alpha) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    mean = _coef(coef_xt, x_t) * x_t + _coef(coef_x0, x_t) * x0
    return mean, variance.to(device=x_t.device, dtype=x_t.dtype)


# ------------------------------------------------------------------------ reverse model
def decoder_variance(schedule: NoiseSchedule) -> float:
    """The variance of the Gaussian decoder p(x_0 | x_1): (1 - alpha_1) / alpha_1 = 1 / SNR(1).

    It is the variance of q(x_0 | x_1) when the data density is flat on the scale of the
    first step's noise: x_0 = (x_1 - sqrt(1 - alpha_1) eps) / sqrt(alpha_1) read backwards.

    Book: the reconstruction term, Chapter on VDMs.
    """
    _check_schedule(schedule)
    alpha_1 = schedule.alphas[1].item()
    return (1.0 - alpha_1) / alpha_1


def reverse_mean_variance(
    model: X0Predictor, schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of the model's reverse step p_theta(x_{t-1} | x_t), t in 1..T.

    For t >= 2 the forward posterior with ``x0_hat = model(x_t, t)`` in place of x_0; for
    t = 1 the decoder N(x0_hat, decoder_variance). The variance has shape (B,).

    Book: eq. (eq-posterior-mean) with the x_0-prediction plugged in, Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x_t", x_t)
    steps = _steps(t, x_t)
    schedule.alpha(steps)  # checks t in 1..T before the model sees it
    # At t = 1 the posterior mean is exactly x0_hat (its x_t coefficient has the factor
    # 1 - alpha_bar_0 = 0); only the variance, 0 there, is replaced by the decoder's.
    mean, variance = posterior_mean_variance(schedule, x_t, _predict(model, x_t, steps), steps)
    decoder = torch.full_like(variance, decoder_variance(schedule))
    return mean, torch.where(steps == 1, decoder, variance)


# ------------------------------------------------------------------------- ELBO terms
def prior_matching_term(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """KL(q(x_T | x_0) || N(0, I)) in nats, one value per example, shape (B,).

    No parameters: it measures how close the last latent is to the prior.

    Book: eq. (eq-elbo-denoising), the prior matching term, Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x0", x0)
    alpha_bar_T = schedule.alpha_bars[-1].item()
    mean = math.sqrt(alpha_bar_T) * x0
    log_var = torch.full_like(x0, math.log1p(-alpha_bar_T))
    return kl_to_standard_normal(mean, log_var)


def reconstruction_term(
    model: X0Predictor, schedule: NoiseSchedule, x0: Tensor, noise: Tensor
) -> Tensor:
    """One-sample estimate of E_{q(x_1 | x_0)} log p_theta(x_0 | x_1) in nats, shape (B,).

    ``x_1 = q_sample(schedule, x0, 1, noise)``; the decoder is N(model(x_1, 1),
    decoder_variance(schedule) I), a density, so the term can exceed zero.

    Book: eq. (eq-elbo-denoising), the reconstruction term, Chapter on VDMs.
    """
    x1 = q_sample(schedule, x0, 1, noise)
    x0_hat = _predict(model, x1, _steps(1, x1))
    log_var = torch.full_like(x0, math.log(decoder_variance(schedule)))
    return diag_gaussian_log_prob(x0, x0_hat, log_var)


def denoising_matching_term(
    model: X0Predictor, schedule: NoiseSchedule, x0: Tensor, t: int | Tensor, noise: Tensor
) -> Tensor:
    """KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) at x_t = q_sample(x0, t, noise).

    One value per example, shape (B,), for t in 2..T (t = 1 is the reconstruction term).
    Both Gaussians have covariance sigma_q^2(t) I, so the KL is the squared distance of
    their means divided by 2 sigma_q^2(t), which equals
    x0_loss_weight(t) * ||x0_hat - x_0||^2.

    Book: eq. (eq-elbo-denoising) and eq. (eq-kl-equal-variance), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x0", x0)
    steps = _steps(t, x0)
    if steps.numel() and (steps < 2).any():
        raise ValueError(
            f"t must lie in 2..T = 2..{schedule.T} (t = 1 is the reconstruction term), "
            f"got values from {steps.min().item()}"
        )
    x_t = q_sample(schedule, x0, steps, noise)
    mean_q, variance = posterior_mean_variance(schedule, x_t, x0, steps)
    mean_p, _ = posterior_mean_variance(schedule, x_t, _predict(model, x_t, steps), steps)
    log_var = per_example(variance.log(), x0).expand_as(x0)
    return kl_diag_gaussians(mean_q, log_var, mean_p, log_var)


def x0_loss_weight(schedule: NoiseSchedule, t: int | Tensor) -> Tensor:
    """The ELBO's weight on ||x0_hat - x_0||^2 at step t, float64 of shape (B,) or ().

    For t >= 2 it is 1/2 (SNR(t-1) - SNR(t)), computed as
    (alpha_bar_{t-1} - alpha_bar_t) / (2 (1 - alpha_bar_{t-1}) (1 - alpha_bar_t)) so that
    no two large numbers are subtracted. For t = 1 it is the decoder's
    1 / (2 decoder_variance) = SNR(1) / 2.

    Book: eq. (eq-x0-loss-snr), Chapter on VDMs.
    """
    _check_schedule(schedule)
    scalar = not isinstance(t, Tensor)
    steps = torch.tensor([t]) if scalar else t
    alpha = schedule.alpha(steps, dtype=torch.float64)  # checks t: type, shape, 1..T
    alpha_bar = schedule.alpha_bar(steps, dtype=torch.float64)
    alpha_bar_prev = alpha_bar / alpha
    diffusion = (alpha_bar_prev - alpha_bar) / (2.0 * (1.0 - alpha_bar_prev) * (1.0 - alpha_bar))
    decoder = torch.full_like(alpha_bar, 0.5 / decoder_variance(schedule))
    # At t = 1, alpha_bar_prev = 1 and `diffusion` divides by zero; torch.where discards it.
    weight = torch.where(steps.to(alpha_bar.device) == 1, decoder, diffusion)
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
    model: X0Predictor,
    schedule: NoiseSchedule,
    x0: Tensor,
    generator: torch.Generator | None = None,
) -> ELBOTerms:
    """Every term of the ELBO for each example of ``x0``; sums up to the bound.

    Draws one x_t ~ q(x_t | x_0) per example and step (noise from ``generator``) and
    evaluates the model T times on the whole batch. Runs without gradients.

    Book: eq. (eq-elbo-denoising), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x0", x0)

    def noise() -> Tensor:
        return torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)

    with torch.no_grad():
        reconstruction = reconstruction_term(model, schedule, x0, noise())
        denoising = [
            denoising_matching_term(model, schedule, x0, t, noise())
            for t in range(2, schedule.T + 1)
        ]
        denoising = torch.stack(denoising, dim=1) if denoising else x0.new_zeros(len(x0), 0)
        prior = prior_matching_term(schedule, x0)
    return ELBOTerms(reconstruction, prior, denoising, dim=x0[0].numel())


class PreconditionedX0Predictor(nn.Module):
    """An x_0-predictor that adds a network's correction to the best linear denoiser.

    x0_hat(x_t, t) = c_skip(t) x_t + c_out(t) F(c_in(t) x_t, t), with the coefficients of
    the Bayes-optimal denoiser for Gaussian data of per-coordinate standard deviation
    ``data_std`` (s below; alpha_bar = alpha_bar_t):

        c_in = 1 / sqrt(alpha_bar s^2 + 1 - alpha_bar)     (x_t scaled to unit variance)
        c_skip = sqrt(alpha_bar) s^2 c_in^2                (E[x_0 | x_t] for Gaussian data)
        c_out = s sqrt(1 - alpha_bar) c_in                 (sd of x_0 given x_t, same data)

    With F = 0 this is the linear (Wiener) denoiser; F, a flat network such as
    :class:`udm.nets.TimeConditionedMLP` taking (B, D) and t, learns only the
    correction, at unit scale at every t. Without it a network must output x_t itself at
    small t, and its absolute errors there decide the samples. Inputs of any shape
    (B, ...) are flattened for F and reshaped back. (The idea is Karras et al.'s
    preconditioning; the output is still a prediction of x_0.)

    ``alpha_bar`` is the schedule: a :class:`~udm.schedules.NoiseSchedule`, or any callable
    mapping steps t (int64, shape (B,)) to alpha_bar_t (shape (B,)), such as a learned
    schedule whose gradients should flow through the coefficients.

    Book: eq. (eq-posterior-mean) uses its output as x0_hat, Chapter on VDMs.
    """

    def __init__(
        self,
        net: nn.Module,
        alpha_bar: NoiseSchedule | Callable[[Tensor], Tensor],
        data_std: float,
    ) -> None:
        super().__init__()
        if not (isinstance(alpha_bar, NoiseSchedule) or callable(alpha_bar)):
            raise TypeError(
                "alpha_bar must be a NoiseSchedule or a callable t -> alpha_bar_t, "
                f"got {type(alpha_bar).__name__}"
            )
        if not (data_std > 0 and math.isfinite(data_std)):
            raise ValueError(f"data_std must be a positive finite number, got {data_std}")
        self.net = net
        self.alpha_bar = alpha_bar
        self.data_std = float(data_std)

    def _alpha_bar(self, steps: Tensor) -> Tensor:
        if isinstance(self.alpha_bar, NoiseSchedule):
            return self.alpha_bar.alpha_bar(steps, dtype=torch.float64)
        return self.alpha_bar(steps)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c_in, c_skip, c_out) at the steps ``t`` (int64, shape (B,)), each of shape (B,)."""
        alpha_bar = self._alpha_bar(t)
        variance = self.data_std**2
        c_in = 1.0 / (alpha_bar * variance + 1.0 - alpha_bar).sqrt()
        c_skip = alpha_bar.sqrt() * variance * c_in**2
        c_out = self.data_std * (1.0 - alpha_bar).sqrt() * c_in
        return c_in, c_skip, c_out

    def loss_weight(self, t: Tensor) -> Tensor:
        """The weight 1 / c_out(t)^2 on ||x0_hat - x_0||^2, shape (B,): SNR(t) + 1 / data_std^2.

        With it, the x_0 loss is the plain squared error of the network F against its own
        target (x_0 - c_skip x_t) / c_out, which has about unit scale at every t: no step
        dominates the gradient noise (Karras et al.'s loss weighting). Pass it as
        ``x0_prediction_loss(..., weighting=model.loss_weight)``.

        Book: eq. (eq-x0-loss-snr) with another choice of weights, Chapter on VDMs.
        """
        _, _, c_out = self.coefficients(t)
        return 1.0 / c_out**2

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Predict x_0 from ``x_t`` (B, ...) at steps ``t`` (int64, shape (B,), 1..T)."""
        _check_data("x_t", x_t)
        steps = _steps(t, x_t)
        c_in, c_skip, c_out = self.coefficients(steps)
        correction = self.net((_coef(c_in, x_t) * x_t).flatten(1), steps).view_as(x_t)
        return _coef(c_skip, x_t) * x_t + _coef(c_out, x_t) * correction


# ------------------------------------------------------------------------------ losses
def x0_prediction_loss(
    model: X0Predictor,
    schedule: NoiseSchedule,
    x0: Tensor,
    *,
    weighting: str | Callable[[Tensor], Tensor] = "simple",
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The x_0-prediction loss for a batch, a scalar tensor.

    Draws t uniformly from 1..T and noise from N(0, I) (from ``generator``) unless given,
    forms x_t = q_sample(x0, t, noise) and compares model(x_t, t) with x_0:

    - ``weighting="simple"``: the mean squared error per coordinate, every t alike.
    - ``weighting="elbo"``: T * x0_loss_weight(t) * ||x0_hat - x_0||^2, averaged over the
      batch: an unbiased estimate of the part of the negative ELBO that the network
      controls (the denoising matching terms and the decoder's squared error).
    - a callable ``weighting(t) -> w`` (shape (B,)): the mean over batch and coordinates of
      w(t) (x0_hat - x_0)^2, for example :meth:`PreconditionedX0Predictor.loss_weight`.

    Every positive weighting has the same minimiser, E[x_0 | x_t] at every t; they differ
    in how a finite network and a noisy gradient share their effort across t.

    Book: eq. (eq-x0-loss-snr), Chapter on VDMs.
    """
    _check_schedule(schedule)
    _check_data("x0", x0)
    if not (callable(weighting) or weighting in _WEIGHTINGS):
        raise ValueError(f"weighting must be one of {_WEIGHTINGS} or a callable, got {weighting!r}")
    batch = x0.shape[0]
    if t is None:
        t = torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(x0.device)
    steps = _steps(t, x0)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(schedule, x0, steps, noise)
    squared_error = (_predict(model, x_t, steps) - x0).square()
    if weighting == "simple":
        return squared_error.mean()
    if weighting == "elbo":
        weight = schedule.T * x0_loss_weight(schedule, steps)
        return (weight.to(x0.dtype) * _per_example_sum(squared_error)).mean()
    weight = weighting(steps)
    if not isinstance(weight, Tensor) or weight.shape != steps.shape:
        raise ValueError(f"weighting(t) must return a tensor of shape {tuple(steps.shape)}")
    return (_coef(weight, x0) * squared_error).mean()


# ---------------------------------------------------------------------------- sampling
def _model_device(model: X0Predictor) -> torch.device:
    if isinstance(model, nn.Module):
        parameter = next(model.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


@torch.no_grad()
def sample(
    model: X0Predictor,
    schedule: NoiseSchedule,
    n: int,
    dim: int | tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    return_chain: bool = False,
) -> Tensor:
    """Ancestral sampling: x_T ~ N(0, I), then x_{t-1} ~ p_theta(x_{t-1} | x_t) down to x_0.

    ``dim`` is the shape of one example: an int D for vectors or a tuple such as
    (1, 8, 8). Steps t = T..2 draw from the forward posterior with x_0 replaced by the
    model's prediction; the last step returns the decoder's mean model(x_1, 1) without
    noise. Returns the samples x_0, shape (n, *dim), or with ``return_chain`` the whole
    chain, shape (T + 1, n, *dim), whose entry t is x_t (entry 0 is the samples). Noise
    comes from ``generator`` (on the CPU), then moves to the model's device.

    Book: eq. (eq-posterior-mean) and eq. (eq-posterior-variance), Chapter on VDMs.
    """
    _check_schedule(schedule)
    check_int_at_least("n", n, 1)
    shape = (dim,) if isinstance(dim, int) and not isinstance(dim, bool) else dim
    if not (
        isinstance(shape, tuple)
        and shape
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(f"dim must be a positive int or a tuple of positive ints, got {dim!r}")
    device = _model_device(model)

    def noise() -> Tensor:
        return torch.randn((n, *shape), generator=generator).to(device)

    x = noise()
    chain = [x]
    for t in range(schedule.T, 0, -1):
        mean, variance = reverse_mean_variance(model, schedule, x, t)
        x = mean if t == 1 else mean + per_example(variance.sqrt(), mean) * noise()
        chain.append(x)
    if return_chain:
        return torch.stack(chain[::-1])
    return x
