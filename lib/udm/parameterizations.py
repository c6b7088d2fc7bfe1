"""Four equivalent things a diffusion network can predict: x_0, the noise, the score, or v.

A noised example is ``x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps`` with
``eps ~ N(0, I)`` (``alpha_bar = alpha_bar_t``). Given ``x_t``, any one of these four
quantities fixes the other three, so a network may be trained to output any of them:

- ``"x0"``: the clean data x_0 (diffusers' ``prediction_type="sample"``);
- ``"eps"``: the noise eps (diffusers' ``"epsilon"``, DDPM's choice);
- ``"score"``: the score of the noised data, -eps / sqrt(1 - alpha_bar) (score_sde's
  networks; diffusers has no such type);
- ``"v"``: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (diffusers' ``"v_prediction"``).

For a trained network the score means its expectation given x_t: the network that best
predicts -eps / sqrt(1 - alpha_bar) outputs -E[eps | x_t] / sqrt(1 - alpha_bar), which is
the score of the noised marginal by Tweedie's formula.

The conversion functions take ``alpha_bar`` either as a float (one noise level for the
whole batch) or as a floating tensor of shape ``(B,)`` (one per example). Coefficients are
computed in float64 and cast once to the data's dtype. Every function works for any
trailing shape, ``(B, 2)`` points and ``(B, C, H, W)`` images alike.

:class:`Denoiser` wraps a network of any of the four kinds as one interface: calling it
returns the x_0 prediction, so it is a :data:`udm.diffusion.X0Predictor` that every
sampler in the book accepts; its methods ``eps``, ``score`` and ``v`` give the other three
from the same network output.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from udm.diffusion import q_sample, x0_loss_weight
from udm.schedules import NoiseSchedule
from udm.validate import check_batch_vector, check_same_shape, check_tensor, per_example

#: What a network predicts: the clean data, the noise, the score of the noised data, or v.
Prediction = Literal["x0", "eps", "score", "v"]

#: The accepted values of :data:`Prediction`, in the book's order.
PREDICTIONS: tuple[str, ...] = ("x0", "eps", "score", "v")

#: diffusers' ``prediction_type`` for each prediction (diffusers has no score networks).
DIFFUSERS_PREDICTION_TYPES: dict[str, str] = {
    "x0": "sample",
    "eps": "epsilon",
    "v": "v_prediction",
}

#: A flat network: ``net(x_flat (B, D), t (B,)) -> (B, D)``, e.g. udm.nets.TimeConditionedMLP.
FlatNet = Callable[[Tensor, Tensor], Tensor]

_WEIGHTINGS = ("simple", "elbo")


# ----------------------------------------------------------------------------- checks
def _check_prediction(prediction: object) -> str:
    if prediction not in PREDICTIONS:
        hint = {v: k for k, v in DIFFUSERS_PREDICTION_TYPES.items()}.get(prediction)
        extra = f" (diffusers' {prediction!r} is {hint!r} here)" if hint else ""
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}{extra}")
    return prediction


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Two data tensors of shape (B, ...): floating, batch first, the same shape."""
    check_tensor(name_a, a, min_ndim=2)
    check_tensor(name_b, b, min_ndim=2)
    check_same_shape(name_a, a, name_b, b)


def _alpha_bar(alpha_bar: float | Tensor, like: Tensor, *, include_one: bool) -> Tensor:
    """Check alpha_bar and return it as a float64 vector of shape (B,) on ``like``'s device.

    The valid range is (0, 1] where the formula only divides by sqrt(alpha_bar), and (0, 1)
    where it also divides by sqrt(1 - alpha_bar) (``include_one=False``): at alpha_bar = 1
    there is no noise, so the noise and the score are undefined.
    """
    batch = like.shape[0]
    if isinstance(alpha_bar, Tensor):
        check_tensor("alpha_bar", alpha_bar)
        check_batch_vector("alpha_bar", alpha_bar, batch)
        values = alpha_bar.detach().to(device=like.device, dtype=torch.float64)
    elif isinstance(alpha_bar, numbers.Real) and not isinstance(alpha_bar, bool):
        values = torch.full((batch,), float(alpha_bar), dtype=torch.float64, device=like.device)
    else:
        raise TypeError(
            f"alpha_bar must be a float or a tensor of shape ({batch},), "
            f"got {type(alpha_bar).__name__}"
        )
    upper_ok = values <= 1 if include_one else values < 1
    if not ((values > 0) & upper_ok).all():  # NaN fails both comparisons, so it is caught too
        interval = "(0, 1]" if include_one else "(0, 1) (alpha_bar = 1 means no noise)"
        raise ValueError(
            f"alpha_bar must lie in {interval}, got values from {values.min().item():.6g} "
            f"to {values.max().item():.6g}"
        )
    return values


def _coef(values: Tensor, like: Tensor) -> Tensor:
    """Per-example float64 values (B,), cast once and shaped (B, 1, ..., 1) for ``like``."""
    return per_example(values, like)


# ------------------------------------------------------------------------- x_0 and eps
def predict_x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar): the data behind a noise guess.

    An error in ``eps`` reaches x_0 multiplied by sqrt((1 - alpha_bar) / alpha_bar) =
    1 / sqrt(SNR), large at high noise. ``alpha_bar`` in (0, 1].

    Book: eq. (eq-x0-from-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "eps", eps)
    a = _alpha_bar(alpha_bar, x_t, include_one=True)
    return _coef(1.0 / a.sqrt(), x_t) * x_t - _coef(((1.0 - a) / a).sqrt(), x_t) * eps


def predict_eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = (x_t - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar): the noise behind a data guess.

    An error in ``x0`` reaches eps multiplied by sqrt(SNR), large at low noise.
    ``alpha_bar`` in (0, 1).

    Book: eq. (eq-x0-from-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "x0", x0)
    a = _alpha_bar(alpha_bar, x_t, include_one=False)
    sigma = (1.0 - a).sqrt()
    return _coef(1.0 / sigma, x_t) * x_t - _coef(a.sqrt() / sigma, x_t) * x0


# ----------------------------------------------------------------------- score and eps
def score_from_eps(eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """score = -eps / sqrt(1 - alpha_bar); ``alpha_bar`` in (0, 1).

    Exact for the conditional score grad log q(x_t | x_0) with the eps that made x_t; for
    a prediction of E[eps | x_t] it gives the marginal score grad log q_t(x_t).

    Book: eq. (eq-score-eps), Chapter on the three parameterizations.
    """
    check_tensor("eps", eps, min_ndim=2)
    a = _alpha_bar(alpha_bar, eps, include_one=False)
    return _coef(-1.0 / (1.0 - a).sqrt(), eps) * eps


def eps_from_score(score: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = -sqrt(1 - alpha_bar) score, the inverse of :func:`score_from_eps`.

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-score-eps), Chapter on the three parameterizations.
    """
    check_tensor("score", score, min_ndim=2)
    a = _alpha_bar(alpha_bar, score, include_one=True)
    return _coef(-(1.0 - a).sqrt(), score) * score


# --------------------------------------------------------------------- score and x_0
def predict_x0_from_score(x_t: Tensor, score: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """Tweedie's formula: E[x_0 | x_t] = (x_t + (1 - alpha_bar) score) / sqrt(alpha_bar).

    With the exact score of the noised marginal this is the exact posterior mean of x_0.
    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-tweedie), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "score", score)
    a = _alpha_bar(alpha_bar, x_t, include_one=True)
    return _coef(1.0 / a.sqrt(), x_t) * x_t + _coef((1.0 - a) / a.sqrt(), x_t) * score


def score_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """score = (sqrt(alpha_bar) x_0 - x_t) / (1 - alpha_bar), Tweedie's formula solved for it.

    An error in ``x0`` reaches the score multiplied by sqrt(alpha_bar) / (1 - alpha_bar).
    ``alpha_bar`` in (0, 1).

    Book: eq. (eq-tweedie), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "x0", x0)
    a = _alpha_bar(alpha_bar, x_t, include_one=False)
    return _coef(a.sqrt() / (1.0 - a), x_t) * x0 - _coef(1.0 / (1.0 - a), x_t) * x_t


# -------------------------------------------------------------------------------- v
def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans and Ho's velocity).

    With x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, the pair (x_t, v) is (x_0, eps)
    rotated by the angle whose cosine is sqrt(alpha_bar). ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x0", x0, "eps", eps)
    a = _alpha_bar(alpha_bar, x0, include_one=True)
    return _coef(a.sqrt(), x0) * eps - _coef((1.0 - a).sqrt(), x0) * x0


def predict_x0_from_v(x_t: Tensor, v: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v; errors in v shrink by sqrt(1 - alpha_bar).

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "v", v)
    a = _alpha_bar(alpha_bar, x_t, include_one=True)
    return _coef(a.sqrt(), x_t) * x_t - _coef((1.0 - a).sqrt(), x_t) * v


def predict_eps_from_v(x_t: Tensor, v: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v; errors in v shrink by sqrt(alpha_bar).

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "v", v)
    a = _alpha_bar(alpha_bar, x_t, include_one=True)
    return _coef((1.0 - a).sqrt(), x_t) * x_t + _coef(a.sqrt(), x_t) * v


# ------------------------------------------------------------------- any prediction
def x0_and_eps(
    output: Tensor, x_t: Tensor, alpha_bar: float | Tensor, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    """Turn a network ``output`` of kind ``prediction`` into the pair (x0_hat, eps_hat).

    Each is computed straight from the output (never one through the other), so the
    quantity the network predicts comes back unchanged: for ``"eps"`` the returned eps_hat
    is ``output`` itself. ``alpha_bar`` in (0, 1).

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-score-eps), (eq-v-param), Chapter on the
    three parameterizations.
    """
    _check_prediction(prediction)
    _check_pair("x_t", x_t, "output", output)
    _alpha_bar(alpha_bar, x_t, include_one=False)
    if prediction == "x0":
        return output, predict_eps_from_x0(x_t, output, alpha_bar)
    if prediction == "eps":
        return predict_x0_from_eps(x_t, output, alpha_bar), output
    if prediction == "score":
        return predict_x0_from_score(x_t, output, alpha_bar), eps_from_score(output, alpha_bar)
    return predict_x0_from_v(x_t, output, alpha_bar), predict_eps_from_v(x_t, output, alpha_bar)


def prediction_target(
    x0: Tensor, noise: Tensor, alpha_bar: float | Tensor, prediction: Prediction
) -> Tensor:
    """What a network of kind ``prediction`` is trained to output for x_t = q_sample(x0, noise).

    ``"x0"``: x0; ``"eps"``: noise; ``"score"``: -noise / sqrt(1 - alpha_bar), the score of
    q(x_t | x_0) (its regression onto x_t gives the marginal score); ``"v"``:
    sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x0. ``alpha_bar`` in (0, 1).

    Book: eqs. (eq-score-eps), (eq-v-param), Chapter on the three parameterizations.
    """
    _check_prediction(prediction)
    _check_pair("x0", x0, "noise", noise)
    _alpha_bar(alpha_bar, x0, include_one=False)
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return noise
    if prediction == "score":
        return score_from_eps(noise, alpha_bar)
    return v_from_x0_eps(x0, noise, alpha_bar)


# -------------------------------------------------------------- posterior mean and weights
def _posterior_coefficients(
    schedule: NoiseSchedule, t: Tensor, like: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """alpha_t and alpha_bar_t (float64, shape (B,)) for t in 1..T, after checking t."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    check_batch_vector("t", t, like.shape[0])
    alpha = schedule.alpha(t, dtype=torch.float64).to(like.device)  # checks t: int, 1..T
    alpha_bar = schedule.alpha_bar(t, dtype=torch.float64).to(like.device)
    return alpha, alpha_bar, 1.0 - alpha_bar


def posterior_mean_from_eps(schedule: NoiseSchedule, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """mu_q = (x_t - (1 - alpha_t) / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t), t in 1..T.

    The forward posterior's mean, eq. (eq-posterior-mean), with x_0 written through the
    noise. ``t`` is an int64 tensor of shape (B,).

    Book: eq. (eq-mean-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "eps", eps)
    alpha, _, one_minus = _posterior_coefficients(schedule, t, x_t)
    return (
        _coef(1.0 / alpha.sqrt(), x_t) * x_t
        - _coef((1.0 - alpha) / (one_minus.sqrt() * alpha.sqrt()), x_t) * eps
    )


def posterior_mean_from_score(
    schedule: NoiseSchedule, x_t: Tensor, score: Tensor, t: Tensor
) -> Tensor:
    """(x_t + (1 - alpha_t) score) / sqrt(alpha_t), the reverse step's mean, t in 1..T.

    With the score of q(x_t | x_0), -eps / sqrt(1 - alpha_bar_t), this is the forward
    posterior's mean mu_q(x_t, x_0) of eq. (eq-posterior-mean); with the score of the noised
    marginal q_t it is E[x_{t-1} | x_t], the mean of the true reverse step (Tweedie's formula
    for one step). ``t`` is an int64 tensor of shape (B,).

    Book: eq. (eq-mean-score), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "score", score)
    alpha, _, _ = _posterior_coefficients(schedule, t, x_t)
    return _coef(1.0 / alpha.sqrt(), x_t) * (x_t + _coef(1.0 - alpha, x_t) * score)


def elbo_weight(schedule: NoiseSchedule, t: Tensor, prediction: Prediction) -> Tensor:
    """The ELBO's weight on the squared error of a ``prediction``, float64 of shape (B,).

    The denoising matching term at step t is ``w * ||output - target||^2`` with
    ``w = w_x0 * c``, where w_x0 = :func:`udm.diffusion.x0_loss_weight` (including the
    decoder's weight at t = 1) and c converts the error to x_0's units:
    c = 1 for ``"x0"``, (1 - alpha_bar_t) / alpha_bar_t = 1 / SNR(t) for ``"eps"``,
    (1 - alpha_bar_t)^2 / alpha_bar_t for ``"score"`` and 1 - alpha_bar_t for ``"v"``.

    Book: eq. (eq-param-weights), Chapter on the three parameterizations.
    """
    _check_prediction(prediction)
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
    check_tensor("t", t, shape=(None,), floating=False)
    weight = x0_loss_weight(schedule, t)  # checks the schedule and t in 1..T
    alpha_bar = schedule.alpha_bar(t, dtype=torch.float64).to(weight.device)
    one_minus = 1.0 - alpha_bar
    to_x0_units = {
        "x0": torch.ones_like(alpha_bar),
        "eps": one_minus / alpha_bar,
        "score": one_minus**2 / alpha_bar,
        "v": one_minus,
    }[prediction]
    return weight * to_x0_units


# ------------------------------------------------------------------------------ loss
def _apply_flat(net: FlatNet, x: Tensor, t: Tensor) -> Tensor:
    """Call a flat network on ``x`` (B, ...) flattened to (B, D); reshape its output back."""
    if not callable(net):
        raise TypeError(f"net must be callable as net(x_flat, t), got {type(net).__name__}")
    flat = x.flatten(1)
    out = net(flat, t)
    if not isinstance(out, Tensor) or out.shape != flat.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"net must map (B, D) = {tuple(flat.shape)} to the same shape, got {got}")
    return out.view_as(x)


def prediction_loss(
    net: FlatNet,
    schedule: NoiseSchedule,
    x0: Tensor,
    *,
    prediction: Prediction,
    weighting: str = "simple",
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of a network that predicts ``prediction``, a scalar tensor.

    Draws t uniformly from 1..T and noise from N(0, I) (from ``generator``) unless given,
    forms x_t = q_sample(x0, t, noise), and compares ``net(x_t, t)`` (flattened to (B, D)
    for the network and reshaped back) with :func:`prediction_target`:

    - ``weighting="simple"``: each parameterization's usual regression. The mean squared
      error per coordinate, every t alike, for ``"x0"``, ``"eps"`` (DDPM's L_simple) and
      ``"v"``; for ``"score"``, denoising score matching with lambda(t) = 1 - alpha_bar_t
      (Song and Ermon's choice), i.e. the mean of (1 - alpha_bar_t) (s - target)^2, which
      measures the error in the noise's units. In x_0's units these weight step t by
      1, SNR(t), SNR(t) and 1 + SNR(t) respectively.
    - ``weighting="elbo"``: T * elbo_weight(t) * ||output - target||^2 averaged over the
      batch, the same unbiased estimate of the network's part of the negative ELBO for every
      prediction (it equals udm.diffusion.x0_prediction_loss with weighting="elbo" for the
      :class:`Denoiser` of this network).

    Book: eq. (eq-param-weights), Chapter on the three parameterizations.
    """
    _check_prediction(prediction)
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    check_tensor("x0", x0, min_ndim=2)
    if weighting not in _WEIGHTINGS:
        raise ValueError(f"weighting must be one of {_WEIGHTINGS}, got {weighting!r}")
    batch = x0.shape[0]
    if t is None:
        t = torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(x0.device)
    check_batch_vector("t", t, batch)
    alpha_bar = schedule.alpha_bar(t, dtype=torch.float64)  # checks t's dtype and 0..T
    if (t < 1).any():
        raise ValueError(f"t must lie in 1..T = 1..{schedule.T}, got values from {t.min().item()}")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    check_same_shape("x0", x0, "noise", noise)
    x_t = q_sample(schedule, x0, t, noise)
    target = prediction_target(x0, noise, alpha_bar, prediction)
    squared_error = (_apply_flat(net, x_t, t) - target).square()
    if weighting == "simple":
        if prediction == "score":
            squared_error = _coef(1.0 - alpha_bar.to(x0.device), x0) * squared_error
        return squared_error.mean()
    weight = schedule.T * elbo_weight(schedule, t, prediction)
    per_example_sum = squared_error.reshape(batch, -1).sum(dim=1)
    return (weight.to(device=x0.device, dtype=x0.dtype) * per_example_sum).mean()


# -------------------------------------------------------------------------- denoiser
class Denoiser(nn.Module):
    """One interface for a network of any parameterization: calling it predicts x_0.

    ``net`` is a flat network ``net(x_flat, t) -> (B, D)`` (such as
    :class:`udm.nets.TimeConditionedMLP`) trained to output ``prediction`` (one of
    :data:`PREDICTIONS`) at the steps of ``schedule``. Inputs of any shape (B, ...) are
    flattened for the network and its output reshaped back.

    ``denoiser(x_t, t)`` returns the x_0 prediction, so a Denoiser is an
    :data:`udm.diffusion.X0Predictor`: :func:`udm.diffusion.sample` and the book's other
    samplers run any trained parameterization. The methods :meth:`eps`, :meth:`score` and
    :meth:`v` return the other predictions, all from the same network output. ``t`` is
    an int64 tensor of shape (B,) with values in 1..T.

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-score-eps), (eq-v-param), Chapter on
    the three parameterizations.
    """

    def __init__(self, net: FlatNet, schedule: NoiseSchedule, prediction: Prediction) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be callable as net(x_flat, t), got {type(net).__name__}")
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(
                f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
            )
        self.net = net
        self.schedule = schedule
        self.prediction = _check_prediction(prediction)

    def extra_repr(self) -> str:
        return f"prediction={self.prediction!r}, T={self.schedule.T}"

    def _alpha_bar(self, x_t: Tensor, t: Tensor) -> Tensor:
        check_tensor("x_t", x_t, min_ndim=2)
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
        check_batch_vector("t", t, x_t.shape[0])
        alpha_bar = self.schedule.alpha_bar(t, dtype=torch.float64)  # checks dtype and 0..T
        if t.numel() and (t < 1).any():
            raise ValueError(
                f"t must lie in 1..T = 1..{self.schedule.T} (t = 0 has no noise), "
                f"got values from {t.min().item()}"
            )
        return alpha_bar

    def output(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The network's raw output, in the units of ``self.prediction``, shaped like x_t."""
        self._alpha_bar(x_t, t)
        return _apply_flat(self.net, x_t, t)

    def x0_and_eps(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The predictions (x0_hat, eps_hat) from one evaluation of the network."""
        alpha_bar = self._alpha_bar(x_t, t)
        return x0_and_eps(_apply_flat(self.net, x_t, t), x_t, alpha_bar, self.prediction)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The x_0 prediction x0_hat(x_t, t), shaped like ``x_t``."""
        return self.x0_and_eps(x_t, t)[0]

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The noise prediction eps_hat(x_t, t), shaped like ``x_t``."""
        return self.x0_and_eps(x_t, t)[1]

    def score(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The score prediction -eps_hat / sqrt(1 - alpha_bar_t) of the noised marginal at t."""
        alpha_bar = self._alpha_bar(x_t, t)
        out = _apply_flat(self.net, x_t, t)
        if self.prediction == "score":
            return out
        _, eps_hat = x0_and_eps(out, x_t, alpha_bar, self.prediction)
        return score_from_eps(eps_hat, alpha_bar)

    def v(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The v prediction sqrt(alpha_bar_t) eps_hat - sqrt(1 - alpha_bar_t) x0_hat."""
        alpha_bar = self._alpha_bar(x_t, t)
        out = _apply_flat(self.net, x_t, t)
        if self.prediction == "v":
            return out
        x0_hat, eps_hat = x0_and_eps(out, x_t, alpha_bar, self.prediction)
        return v_from_x0_eps(x0_hat, eps_hat, alpha_bar)
