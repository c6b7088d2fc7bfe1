"""Five equivalent things a diffusion network can predict, and one denoiser interface.

On a path x_t = a x_0 + s eps (:mod:`udm.paths`; a, s and their time derivatives a', s'
at the time t), any one of these quantities fixes the others once x_t is known:

- ``"x0"``: the clean data x_0;
- ``"eps"``: the noise eps (DDPM's choice);
- ``"score"``: the score of the noised data, -eps / s (score_sde's networks);
- ``"v"``: v = a eps - s x_0 (Salimans and Ho's velocity);
- ``"velocity"``: u = a' x_0 + s' eps, the flow-matching velocity dx_t / dt.

Each is a linear combination ``alpha x_0 + beta eps`` with (alpha, beta) = (1, 0), (0, 1),
(0, -1/s), (-s, a) and (a', s') (:func:`prediction_weights`). With x_t = a x_0 + s eps that
makes a 2x2 linear system, and *every* conversion in the book is its solution,
:func:`_pair_weights`:

    x_0 = (beta x_t - s y) / det,    eps = (a y - alpha x_t) / det,    det = a beta - s alpha.

For a trained network "x_0" and "eps" mean their expectations given x_t, and the score is
then the score of the noised marginal (Tweedie's formula).

:class:`Denoiser` wraps a network of any kind as the book's one model interface:
``denoiser(x_t, t)`` is the prediction of x_0, E[x_0 | x_t], at time t of its path, for a
float t (one time for the batch, as samplers call it) or a tensor of shape (B,) (one per
example, as training does). With ``data_std`` it adds EDM's preconditioning.
:func:`prediction_loss` is the one training loss. The functions taking ``alpha_bar``
(``predict_x0_from_eps`` and friends) are the VP forms a = sqrt(alpha_bar),
s = sqrt(1 - alpha_bar) that the chapter on parameterizations derives, computed by the same
solve.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from udm.paths import DiscreteVP, Path, PathCoefficients, as_time, check_path
from udm.schedules import NoiseSchedule, check_schedule
from udm.toy import GaussianMixture
from udm.validate import (
    check_batch_vector,
    check_finite,
    check_positive,
    check_same_dtype,
    check_same_shape,
    check_tensor,
    per_example,
)

#: What a network predicts.
Prediction = Literal["x0", "eps", "score", "v", "velocity"]

#: The accepted values of :data:`Prediction`, in the book's order.
PREDICTIONS: tuple[str, ...] = ("x0", "eps", "score", "v", "velocity")

#: The one translation to diffusers' ``prediction_type`` (it has no score or velocity type).
DIFFUSERS_PREDICTION_TYPES: dict[str, str] = {"x0": "sample", "eps": "epsilon", "v": "v_prediction"}

#: A flat network ``net(x_flat (B, D), t (B,)) -> (B, D)``, e.g. udm.nets.TimeConditionedMLP.
FlatNet = Callable[[Tensor, Tensor], Tensor]

_WEIGHTINGS = ("simple", "elbo")

Number = float | Tensor


def check_prediction(prediction: object) -> str:
    """Return ``prediction`` if it is one of :data:`PREDICTIONS`; name diffusers' if given."""
    if prediction not in PREDICTIONS:
        hint = {v: k for k, v in DIFFUSERS_PREDICTION_TYPES.items()}.get(prediction)
        extra = f" (diffusers' {prediction!r} is {hint!r} here)" if hint else ""
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}{extra}")
    return prediction


# ------------------------------------------------------------- the one conversion
def prediction_weights(
    prediction: Prediction, a: Number, s: Number, da: Number | None = None, ds: Number | None = None
) -> tuple[Number, Number]:
    """(alpha, beta) with prediction = alpha x_0 + beta eps, at path coefficients a, s, a', s'.

    Works on Python floats and on tensors alike. ``da`` and ``ds`` are needed only for
    ``"velocity"``.

    Book: eqs. (eq-x0-from-eps), (eq-score-eps), (eq-v-param), Chapter on the three
    parameterizations.
    """
    if prediction == "x0":
        return 1.0, 0.0
    if prediction == "eps":
        return 0.0, 1.0
    if prediction == "score":
        return 0.0, -1.0 / s
    if prediction == "v":
        return -s, a
    if prediction == "velocity":
        if da is None or ds is None:
            raise ValueError("the velocity a' x_0 + s' eps needs the path's derivatives da, ds")
        return da, ds
    return check_prediction(prediction)  # raises


def _pair_weights(
    prediction: Prediction, a: Number, s: Number, da: Number | None = None, ds: Number | None = None
) -> tuple[tuple[Number, Number], tuple[Number, Number]]:
    """((p, q), (p', q')) with x_0 = p x_t + q y and eps = p' x_t + q' y for y of kind prediction.

    The solution of x_t = a x_0 + s eps, y = alpha x_0 + beta eps (det = a beta - s alpha).

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-v-param), Chapter on the three
    parameterizations.
    """
    alpha, beta = prediction_weights(prediction, a, s, da, ds)
    det = a * beta - s * alpha
    inverse = 1.0 / det if isinstance(det, Tensor) or det != 0 else math.inf  # inf: no solution
    return (beta * inverse, -s * inverse), (-alpha * inverse, a * inverse)


def _mix(p: Number, x: Tensor, q: Number, y: Tensor) -> Tensor:
    """p x + q y for floats, per-example tensors (B,) or columns (B, 1, ...) (an exact zero
    float term is skipped)."""
    if isinstance(p, float) and p == 0.0:
        return y if isinstance(q, float) and q == 1.0 else _column(q, y) * y
    if isinstance(q, float) and q == 0.0:
        return x if isinstance(p, float) and p == 1.0 else _column(p, x) * x
    if isinstance(p, Tensor) or isinstance(q, Tensor):
        return _column(p, x) * x + _column(q, y) * y
    return torch.add(y * q, x, alpha=p)


def _combine(p: Number, x: Number, q: Number, y: Number) -> Number:
    """p x + q y, leaving out a term whose weight is the float 0 (no tensor operation)."""
    if isinstance(p, float) and p == 0.0:
        return q * y
    if isinstance(q, float) and q == 0.0:
        return p * x
    return p * x + q * y


def _column(c: Number, like: Tensor) -> Tensor | float:
    """A coefficient shaped to broadcast over ``like`` (B, ...): as given if already a column
    or a number."""
    if not isinstance(c, Tensor):
        return c
    if c.ndim == like.ndim:
        return c
    return per_example(_vector(c, like), like)


def _vector(c: Number, like: Tensor) -> Tensor:
    """A coefficient as a per-example vector (B,): a tensor (B,) or 0-d, or a number."""
    if isinstance(c, Tensor):
        return c.to(like.device).expand(like.shape[0]) if c.ndim == 0 else c.to(like.device)
    return torch.full((like.shape[0],), float(c), dtype=torch.float64, device=like.device)


def convert(
    output: Tensor,
    x_t: Tensor,
    t: float | Tensor,
    path: Path,
    source: Prediction,
    target: Prediction,
) -> Tensor:
    """Turn a prediction of kind ``source`` at time ``t`` of ``path`` into one of kind ``target``.

    ``t`` is a float or a tensor of shape (B,) in (0, t_max]. Through the pair (x_0, eps), so
    any of the five kinds converts to any other.

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-score-eps), (eq-v-param), Chapter on the
    three parameterizations.
    """
    check_path(path)
    check_prediction(source)
    check_prediction(target)
    _check_pair("x_t", x_t, "output", output)
    c = path.coefficients(check_time(path, t, x_t.shape[0])[1])
    (p, q), (pe, qe) = _pair_weights(source, c.a, c.s, c.da, c.ds)
    x0, eps = _mix(p, x_t, q, output), _mix(pe, x_t, qe, output)
    alpha, beta = prediction_weights(target, c.a, c.s, c.da, c.ds)
    return _mix(alpha, x0, beta, eps)


def prediction_target(
    x0: Tensor, noise: Tensor, prediction: Prediction, path: Path, t: float | Tensor
) -> Tensor:
    """What a network of kind ``prediction`` regresses on for x_t = path.q_sample(x0, t, noise).

    alpha x_0 + beta noise with (alpha, beta) = :func:`prediction_weights`. For the score this
    is the score of q(x_t | x_0), -noise / s, whose regression onto x_t is the marginal score.

    Book: eqs. (eq-score-eps), (eq-v-param), Chapter on the three parameterizations.
    """
    check_path(path)
    check_prediction(prediction)
    _check_pair("x0", x0, "noise", noise)
    times = path._batch_time(t, x0.shape[0])
    c = path.coefficients(times)
    alpha, beta = prediction_weights(prediction, c.a, c.s, c.da, c.ds)
    return _mix(alpha, x0, beta, noise)


# ------------------------------------------------------------------- VP forms
def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Two data tensors of shape (B, ...): floating, batch first, the same shape, finite.

    The conversions are public entry points, so NaN and inf are refused here, by name
    (the book's policy, :func:`udm.validate.check_finite`).
    """
    check_tensor(name_a, a, min_ndim=2)
    check_tensor(name_b, b, min_ndim=2)
    check_same_shape(name_a, a, name_b, b)
    check_finite(name_a, a)
    check_finite(name_b, b)


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


def _vp(alpha_bar: float | Tensor, like: Tensor, *, include_one: bool) -> tuple[Tensor, Tensor]:
    """The VP path's a = sqrt(alpha_bar) and s = sqrt(1 - alpha_bar), float64 (B,)."""
    ab = _alpha_bar(alpha_bar, like, include_one=include_one)
    return ab.sqrt(), (1.0 - ab).sqrt()


def _vp_x0_eps(output: Tensor, x_t: Tensor, alpha_bar: float | Tensor, source: str, include_one):
    a, s = _vp(alpha_bar, x_t, include_one=include_one)
    (p, q), (pe, qe) = _pair_weights(source, a, s)
    return (p, q, pe, qe), a, s


def predict_x0_from_eps(x_t: Tensor, eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar): the data behind a noise guess.

    An error in ``eps`` reaches x_0 multiplied by sqrt((1 - alpha_bar) / alpha_bar) =
    1 / sqrt(SNR), large at high noise. ``alpha_bar`` in (0, 1].

    Book: eq. (eq-x0-from-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "eps", eps)
    (p, q, _, _), _, _ = _vp_x0_eps(eps, x_t, alpha_bar, "eps", True)
    return _mix(p, x_t, q, eps)


def predict_eps_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = (x_t - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar): the noise behind a data guess.

    An error in ``x0`` reaches eps multiplied by sqrt(SNR), large at low noise.
    ``alpha_bar`` in (0, 1).

    Book: eq. (eq-x0-from-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "x0", x0)
    (_, _, pe, qe), _, _ = _vp_x0_eps(x0, x_t, alpha_bar, "x0", False)
    return _mix(pe, x_t, qe, x0)


def score_from_eps(eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """score = -eps / sqrt(1 - alpha_bar); ``alpha_bar`` in (0, 1).

    Exact for the conditional score grad log q(x_t | x_0) with the eps that made x_t; for
    a prediction of E[eps | x_t] it gives the marginal score grad log q_t(x_t).

    Book: eq. (eq-score-eps), Chapter on the three parameterizations.
    """
    check_tensor("eps", eps, min_ndim=2)
    check_finite("eps", eps)
    a, s = _vp(alpha_bar, eps, include_one=False)
    _, beta = prediction_weights("score", a, s)
    return per_example(beta, eps) * eps


def eps_from_score(score: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = -sqrt(1 - alpha_bar) score, the inverse of :func:`score_from_eps`.

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-score-eps), Chapter on the three parameterizations.
    """
    check_tensor("score", score, min_ndim=2)
    check_finite("score", score)
    (_, _, _, qe), _, _ = _vp_x0_eps(score, score, alpha_bar, "score", True)
    return per_example(qe, score) * score


def predict_x0_from_score(x_t: Tensor, score: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """Tweedie's formula: E[x_0 | x_t] = (x_t + (1 - alpha_bar) score) / sqrt(alpha_bar).

    With the exact score of the noised marginal this is the exact posterior mean of x_0.
    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-tweedie), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "score", score)
    a, s = _vp(alpha_bar, x_t, include_one=True)
    # At alpha_bar = 1 (s = 0) the score's weight -1/s is infinite; Tweedie's limit is x_t.
    p, q = 1.0 / a, s.square() / a
    return _mix(p, x_t, q, score)


def score_from_x0(x_t: Tensor, x0: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """score = (sqrt(alpha_bar) x_0 - x_t) / (1 - alpha_bar), Tweedie's formula solved for it.

    An error in ``x0`` reaches the score multiplied by sqrt(alpha_bar) / (1 - alpha_bar).
    ``alpha_bar`` in (0, 1).

    Book: eq. (eq-tweedie), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "x0", x0)
    (_, _, pe, qe), a, s = _vp_x0_eps(x0, x_t, alpha_bar, "x0", False)
    _, beta = prediction_weights("score", a, s)
    return _mix(beta * pe, x_t, beta * qe, x0)


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans and Ho's velocity).

    With x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, the pair (x_t, v) is (x_0, eps)
    rotated by the angle whose cosine is sqrt(alpha_bar). ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x0", x0, "eps", eps)
    a, s = _vp(alpha_bar, x0, include_one=True)
    alpha, beta = prediction_weights("v", a, s)
    return _mix(alpha, x0, beta, eps)


def predict_x0_from_v(x_t: Tensor, v: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v; errors in v shrink by sqrt(1 - alpha_bar).

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "v", v)
    (p, q, _, _), _, _ = _vp_x0_eps(v, x_t, alpha_bar, "v", True)
    return _mix(p, x_t, q, v)


def predict_eps_from_v(x_t: Tensor, v: Tensor, alpha_bar: float | Tensor) -> Tensor:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v; errors in v shrink by sqrt(alpha_bar).

    ``alpha_bar`` in (0, 1].

    Book: eq. (eq-v-param), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "v", v)
    (_, _, pe, qe), _, _ = _vp_x0_eps(v, x_t, alpha_bar, "v", True)
    return _mix(pe, x_t, qe, v)


def x0_and_eps(
    output: Tensor, x_t: Tensor, alpha_bar: float | Tensor, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    """Turn a VP network ``output`` of kind ``prediction`` into the pair (x0_hat, eps_hat).

    ``prediction`` is one of "x0", "eps", "score", "v" (the velocity needs a path: use
    :func:`convert`). Each is computed straight from the output, so the quantity the network
    predicts comes back unchanged. ``alpha_bar`` in (0, 1).

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-score-eps), (eq-v-param), Chapter on the
    three parameterizations.
    """
    check_prediction(prediction)
    if prediction == "velocity":
        raise ValueError("prediction 'velocity' needs a path's derivatives: use convert(...)")
    _check_pair("x_t", x_t, "output", output)
    (p, q, pe, qe), _, _ = _vp_x0_eps(output, x_t, alpha_bar, prediction, False)
    x0 = output if prediction == "x0" else _mix(p, x_t, q, output)
    eps = output if prediction == "eps" else _mix(pe, x_t, qe, output)
    return x0, eps


# -------------------------------------------- Chapter 7's discrete-step forms
def _posterior_coefficients(schedule: NoiseSchedule, t: Tensor, like: Tensor) -> tuple:
    """alpha_t and alpha_bar_t (float64, shape (B,)) for t in 1..T, after checking t."""
    check_schedule(schedule)
    check_batch_vector("t", t, like.shape[0])
    alpha = schedule.alpha(t, dtype=torch.float64).to(like.device)  # checks t: int, 1..T
    alpha_bar = schedule.alpha_bar(t, dtype=torch.float64).to(like.device)
    return alpha, alpha_bar, 1.0 - alpha_bar


def posterior_mean_from_eps(schedule: NoiseSchedule, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """mu_q = (x_t - (1 - alpha_t) / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t), t in 1..T.

    The forward posterior's mean, eq. (eq-posterior-mean), with x_0 written through the
    noise. ``t`` is an integer tensor of steps of shape (B,).

    Book: eq. (eq-mean-eps), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "eps", eps)
    alpha, _, one_minus = _posterior_coefficients(schedule, t, x_t)
    return (
        per_example(1.0 / alpha.sqrt(), x_t) * x_t
        - per_example((1.0 - alpha) / (one_minus.sqrt() * alpha.sqrt()), x_t) * eps
    )


def posterior_mean_from_score(
    schedule: NoiseSchedule, x_t: Tensor, score: Tensor, t: Tensor
) -> Tensor:
    """(x_t + (1 - alpha_t) score) / sqrt(alpha_t), the reverse step's mean, t in 1..T.

    With the score of q(x_t | x_0), -eps / sqrt(1 - alpha_bar_t), this is the forward
    posterior's mean mu_q(x_t, x_0) of eq. (eq-posterior-mean); with the score of the noised
    marginal q_t it is E[x_{t-1} | x_t], the mean of the true reverse step (Tweedie's formula
    for one step). ``t`` is an integer tensor of steps of shape (B,).

    Book: eq. (eq-mean-score), Chapter on the three parameterizations.
    """
    _check_pair("x_t", x_t, "score", score)
    alpha, _, _ = _posterior_coefficients(schedule, t, x_t)
    return per_example(1.0 / alpha.sqrt(), x_t) * (x_t + per_example(1.0 - alpha, x_t) * score)


def elbo_weight(schedule: NoiseSchedule, t: Tensor, prediction: Prediction) -> Tensor:
    """The ELBO's weight on the squared error of a ``prediction`` at steps t, float64 (B,).

    The ELBO's term at step t is ``w * ||output - target||^2`` with ``w = w_x0 * q^2``, where
    w_x0 = :func:`udm.diffusion.x0_loss_weight` (the decoder's weight at t = 1) and q is the
    factor that takes an output error to x_0's units (x_0 = p x_t + q output): q^2 = 1 for
    ``"x0"``, 1 / SNR(t) for ``"eps"``, (1 - alpha_bar_t)^2 / alpha_bar_t for ``"score"``,
    1 - alpha_bar_t for ``"v"``.

    Book: eq. (eq-param-weights), Chapter on the three parameterizations.
    """
    check_prediction(prediction)
    check_schedule(schedule)
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
    check_tensor("t", t, shape=(None,), floating=False)
    weight = schedule.path.x0_weights()[_steps_in_range(schedule, t)]
    c = schedule.path.coefficients(t.to(torch.float64).cpu() / schedule.T)
    (_, q), _ = _pair_weights(prediction, c.a, c.s, c.da, c.ds)
    return weight * (q * q if isinstance(q, Tensor) else torch.full_like(weight, q * q))


def _steps_in_range(schedule: NoiseSchedule, t: Tensor) -> Tensor:
    schedule.alpha(t)  # checks the dtype and 1..T, naming t
    return t.cpu().long()


# ----------------------------------------------------------------- the denoiser
def check_time(path: Path, t: object, batch: int) -> tuple[float | None, Tensor]:
    """A denoiser's time: (t as a float or None, t as a float64 tensor), 0 < t <= t_max.

    A float (or 0-d tensor) is one time for the batch; a tensor of shape (B,) one per example.
    """
    times = as_time("t", t)
    if times.ndim == 1 and times.shape != (batch,):
        raise ValueError(
            f"t must be a number or have shape ({batch},) to match the batch, "
            f"got {tuple(times.shape)}"
        )
    if not bool(((times > 0) & (times <= path.t_max)).all()):  # NaN fails too
        if bool((times <= 0).any()):
            raise ValueError(
                "t must be above 0 (t = 0 is the data itself: nothing to denoise), got "
                f"{times.min().item():.6g}"
            )
        path._time(times)  # raises, naming the range
    return (None if times.ndim == 1 else float(times)), times


class _Plan(NamedTuple):
    """A denoiser's numbers at one time, as Python floats.

    The network sees c_in x_t and outputs F; x0_hat = p x_t + q F and eps_hat = pe x_t + qe F.
    ``time`` is a one-element float64 tensor holding t, expanded to the batch at each call.
    """

    coefficients: PathCoefficients
    c_in: float = 1.0
    p: float = 0.0
    q: float = 1.0
    pe: float = 0.0
    qe: float = 0.0
    time: Tensor | None = None


class PathDenoiser(nn.Module):
    """The interface every sampler uses: ``denoiser(x_t, t)`` returns E[x_0 | x_t] on ``path``.

    Subclasses implement :meth:`forward`. ``t`` is a float in (0, t_max] (one time for the
    batch) or a tensor of shape (B,) (one per example). Samplers call :meth:`prepare` with
    their grid first, so that a call at a grid time costs the network and a few tensor
    operations, no schedule lookups. The other four predictions follow from x0_hat by the
    one conversion (:meth:`predict`, :meth:`eps`, :meth:`score`).

    Book: eq. (eq-tweedie), Chapter on the three parameterizations.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = check_path(path)
        self._plans: dict[float, _Plan] = {}

    def _plans_at(self, times: Tensor, like: Tensor | None) -> list[_Plan]:
        """One plan per time (float64 (n,)); subclasses add their own numbers."""
        c = self.path.coefficients(times)
        rows = zip(c.a.tolist(), c.s.tolist(), c.da.tolist(), c.ds.tolist(), strict=True)
        return [_Plan(PathCoefficients(*row)) for row in rows]

    def prepare(self, times: Tensor, like: Tensor | None = None) -> None:
        """Tabulate this denoiser's numbers at ``times`` (those > 0), once per sampler call.

        ``like`` (the sampler's state) fixes the dtype and device of the network's time
        input. Calls at other times still work: they compute their numbers on the spot.
        """
        times = as_time("times", times).reshape(-1)
        times = times[times > 0]
        with torch.no_grad():
            plans = self._plans_at(times, like) if times.numel() else []
        self._plans = dict(zip(times.tolist(), plans, strict=True))

    def _plan(self, t: float) -> _Plan:
        plan = self._plans.get(t)
        if plan is None:
            with torch.no_grad():
                (plan,) = self._plans_at(torch.tensor([t], dtype=torch.float64), None)
        return plan

    def _coefficients(self, t: float | Tensor, batch: int) -> PathCoefficients:
        """Path coefficients at t: floats for one time, tensors (B,) for one per example."""
        scalar, times = check_time(self.path, t, batch)
        if scalar is not None:
            return self._plan(scalar).coefficients
        return self.path.coefficients(times)

    def x0_and_eps(self, x_t: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat), with eps_hat = (x_t - a x0_hat) / s."""
        x0 = self(x_t, t)
        c = self._coefficients(t, x_t.shape[0])
        return x0, _mix(1.0 / c.s, x_t, -c.a / c.s, x0)

    def predict(self, x_t: Tensor, t: float | Tensor, prediction: Prediction) -> Tensor:
        """Any of the five predictions at (x_t, t), from one evaluation of the denoiser."""
        check_prediction(prediction)
        x0, eps = self.x0_and_eps(x_t, t)
        c = self._coefficients(t, x_t.shape[0])
        alpha, beta = prediction_weights(prediction, c.a, c.s, c.da, c.ds)
        return _mix(alpha, x0, beta, eps)

    def eps(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The noise prediction E[eps | x_t]."""
        return self.x0_and_eps(x_t, t)[1]

    def score(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The score of the noised marginal, (a x0_hat - x_t) / s^2 (Tweedie's formula)."""
        return self.predict(x_t, t, "score")

    def v(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The v prediction a eps_hat - s x0_hat."""
        return self.predict(x_t, t, "v")

    def velocity(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The probability-flow velocity a' x0_hat + s' eps_hat = dx_t/dt along the flow."""
        return self.predict(x_t, t, "velocity")


class Denoiser(PathDenoiser):
    """A network of any of the five kinds as one denoiser on a path: ``denoiser(x_t, t)`` = x0_hat.

    ``net`` is a flat network ``net(x_flat (B, D), t (B,)) -> (B, D)`` (such as
    :class:`udm.nets.TimeConditionedMLP`) trained to output ``prediction`` at times of
    ``path``. It is called with the continuous time t, exactly, as a float64 vector (B,) (on
    a discrete path, a network built with ``time_scale=T`` sees the step number). Inputs of
    any shape (B, ...) are flattened for the network and its output reshaped back.

    With ``data_std`` the denoiser adds EDM's preconditioning: the network sees c_in x_t,
    scaled to unit variance, and predicts only the residual F of its target y after the best
    linear guess for Gaussian data of standard deviation ``data_std`` (sigma_d):

        y = c_skip x_t + c_out F,      c_in = 1 / sqrt(a^2 sigma_d^2 + s^2),
        c_skip = (alpha a sigma_d^2 + beta s) c_in^2,   c_out = sigma_d |a beta - s alpha| c_in,

    for y = alpha x_0 + beta eps. For ``"x0"`` these are Karras et al.'s c_skip and c_out
    (x0_hat = c_skip x_t + c_out F); for every kind F = 0 is the Wiener filter and F's target
    has unit variance at every t, so ``prediction_loss(weighting="simple")`` is EDM's loss.

    Book: eqs. (eq-x0-from-eps), (eq-tweedie), (eq-score-eps), (eq-v-param), Chapter on the
    three parameterizations.
    """

    def __init__(
        self,
        net: FlatNet,
        path: Path,
        prediction: Prediction,
        *,
        data_std: float | None = None,
    ) -> None:
        super().__init__(path)
        if not callable(net):
            raise TypeError(f"net must be callable as net(x_flat, t), got {type(net).__name__}")
        self.net = net
        self.prediction = check_prediction(prediction)
        if data_std is not None:
            if isinstance(data_std, bool) or not isinstance(data_std, numbers.Real):
                raise TypeError(f"data_std must be a positive number, got {data_std!r}")
            check_positive("data_std", data_std)
            data_std = float(data_std)
        self.data_std = data_std

    def extra_repr(self) -> str:
        pre = f", data_std={self.data_std:g}" if self.data_std is not None else ""
        return f"prediction={self.prediction!r}, path={self.path!r}{pre}"

    # ------------------------------------------------------------- coefficients
    def _preconditioning(self, c: PathCoefficients, alpha: Number, beta: Number) -> tuple:
        """(c_in, c_skip, c_out) for the target alpha x_0 + beta eps (floats or tensors)."""
        var = self.data_std**2
        variance_x = c.a * c.a * var + c.s * c.s
        c_in = 1.0 / variance_x**0.5
        c_skip = _combine(alpha, c.a * var, beta, c.s) / variance_x
        c_out = self.data_std * abs(_combine(beta, c.a, -alpha, c.s)) * c_in
        return c_in, c_skip, c_out

    def _numbers(self, c: PathCoefficients) -> tuple:
        """(c_in, p, q, pe, qe, c_skip, c_out) at the path coefficients c (floats or tensors)."""
        (p, q), (pe, qe) = _pair_weights(self.prediction, c.a, c.s, c.da, c.ds)
        if self.data_std is None:
            return 1.0, p, q, pe, qe, 0.0, 1.0
        alpha, beta = prediction_weights(self.prediction, c.a, c.s, c.da, c.ds)
        c_in, c_skip, c_out = self._preconditioning(c, alpha, beta)
        return c_in, p + q * c_skip, q * c_out, pe + qe * c_skip, qe * c_out, c_skip, c_out

    def _plans_at(self, times: Tensor, like: Tensor | None) -> list[_Plan]:
        device = like.device if like is not None else None
        rows = times.to(device=device, dtype=torch.float64)[:, None].unbind(0)
        plans = []
        for plan, t, row in zip(super()._plans_at(times, like), times.tolist(), rows, strict=True):
            c_in, p, q, pe, qe, _, _ = self._numbers(plan.coefficients)
            if not all(math.isfinite(v) for v in (c_in, p, q, pe, qe)):
                c = plan.coefficients
                raise ValueError(
                    f"a network that predicts {self.prediction!r} cannot give x_0 at t = {t:.6g} "
                    f"on {self.path!r} (a = {c.a:.3g}, s = {c.s:.3g}): use times where it can"
                )
            plans.append(_Plan(plan.coefficients, c_in, p, q, pe, qe, row))
        return plans

    def _per_example(self, times: Tensor, like: Tensor) -> tuple[tuple, PathCoefficients]:
        """The numbers at per-example times (B,), each shaped (B, 1, ..., 1) in like's dtype."""
        c = self.path.coefficients(times)
        return tuple(per_example(_vector(v, like), like) for v in self._numbers(c)), c

    # -------------------------------------------------------------- evaluation
    def _net(self, x_in: Tensor, time: Tensor) -> Tensor:
        flat = x_in.flatten(1)
        out = self.net(flat, time)
        if not isinstance(out, Tensor) or out.shape != flat.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"net must map (B, D) = {tuple(flat.shape)} to the same shape, got {got}"
            )
        return out.view_as(x_in)

    def _run(self, x_t: Tensor, plan: _Plan, t: float) -> Tensor:
        """The network's output F at one time for the whole batch (the samplers' path)."""
        time = plan.time
        if time is None or time.device != x_t.device:
            time = torch.full((1,), t, dtype=torch.float64, device=x_t.device)
        x_in = x_t if plan.c_in == 1.0 else x_t * plan.c_in
        return self._net(x_in, time.expand(x_t.shape[0]))

    def output(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The network's raw output F, in its own units (the residual, with ``data_std``)."""
        check_tensor("x_t", x_t, min_ndim=2)
        scalar, times = check_time(self.path, t, x_t.shape[0])
        if scalar is not None:
            return self._run(x_t, self._plan(scalar), scalar)
        (c_in, *_), _ = self._per_example(times, x_t)
        return self._net(c_in * x_t, times.to(device=x_t.device))

    def forward(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """x0_hat(x_t, t) = p x_t + q F, shaped like ``x_t``."""
        plan = self._plans.get(t) if isinstance(t, float) else None
        if plan is not None and isinstance(x_t, Tensor) and x_t.ndim >= 2:  # samplers' path
            return _mix(plan.p, x_t, plan.q, self._run(x_t, plan, t))
        return self.x0_and_eps(x_t, t)[0]

    def x0_and_eps(self, x_t: Tensor, t: float | Tensor) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) from one evaluation of the network."""
        check_tensor("x_t", x_t, min_ndim=2)
        scalar, times = check_time(self.path, t, x_t.shape[0])
        if scalar is not None:
            plan = self._plan(scalar)
            out = self._run(x_t, plan, scalar)
            return _mix(plan.p, x_t, plan.q, out), _mix(plan.pe, x_t, plan.qe, out)
        (c_in, p, q, pe, qe, _, _), _ = self._per_example(times, x_t)
        out = self._net(c_in * x_t, times.to(device=x_t.device))
        return p * x_t + q * out, pe * x_t + qe * out

    def predict(self, x_t: Tensor, t: float | Tensor, prediction: Prediction) -> Tensor:
        """Any of the five predictions; the network's own kind comes back unconverted."""
        check_prediction(prediction)
        if prediction == self.prediction and self.data_std is None:
            return self.output(x_t, t)
        return super().predict(x_t, t, prediction)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the network's raw output regresses on, for x_t = path.q_sample(x0, t, noise).

        The prediction target y (:func:`prediction_target`), or with ``data_std`` the
        residual (y - c_skip x_t) / c_out. ``t`` is a float or has shape (B,).

        Book: eq. (eq-param-weights), Chapter on the three parameterizations.
        """
        _check_pair("x0", x0, "noise", noise)
        _, times = check_time(self.path, t, x0.shape[0])
        times = times.expand(x0.shape[0]) if times.ndim == 0 else times
        return self._training_terms(x0, noise, times)[1]

    def _training_numbers(self, c: PathCoefficients) -> tuple:
        """The step's numbers: network input = u x_0 + v eps, its target = w x_0 + z eps.

        (u, v, w, z, q, s): x_t = a x_0 + s eps scaled by c_in; the target y = alpha x_0 +
        beta eps, or with preconditioning (y - c_skip x_t) / c_out; q takes an output error
        to x_0's units (the ELBO weights), s is the noise scale.
        """
        alpha, beta = prediction_weights(self.prediction, c.a, c.s, c.da, c.ds)
        q = self._numbers(c)[2]
        if self.data_std is None:
            return c.a, c.s, alpha, beta, q, c.s
        c_in, c_skip, c_out = self._preconditioning(c, alpha, beta)
        return (
            c_in * c.a,
            c_in * c.s,
            (alpha - c_skip * c.a) / c_out,
            (beta - c_skip * c.s) / c_out,
            q,
            c.s,
        )

    def _steps_table(self, like: Tensor) -> tuple | None:
        """:meth:`_training_numbers` at every step of a fixed discrete path, in like's dtype.

        Computed once per path, prediction, data_std, dtype and device (like the samplers'
        ``prepare``) and kept with the path, so that denoisers built afresh for every batch
        (:func:`udm.guidance.cfg_training_loss`) share it: a training step then gathers its
        numbers instead of recomputing them. Numbers that are the same at every step stay
        Python floats. None for any other path.
        """
        path = self.path
        if not isinstance(path, DiscreteVP) or path._on_grid is None:
            return None
        key = (self.prediction, self.data_std, like.dtype, like.device)
        tables = path._training_tables
        if key not in tables:
            with torch.no_grad():
                numbers = self._training_numbers(path._on_grid)
            tables[key] = tuple(
                v.to(device=like.device, dtype=like.dtype) if torch.is_tensor(v) else v
                for v in numbers
            )
        return tables[key]

    def _training_terms(
        self, x0: Tensor, noise: Tensor, times: Tensor, *, with_q: bool = False
    ) -> tuple[Tensor, Tensor, Number, Tensor]:
        """(the network's input, its target, q, s) at per-example times (B,), columns (B, 1, ...).

        One evaluation of the path for the whole training step, in the data's dtype; on a
        fixed discrete path's grid, a gather from tables computed once, of what the step uses.
        """
        shape = (-1,) + (1,) * (x0.ndim - 1)
        table = self._steps_table(x0)
        index = self.path._grid_index(times) if table is not None else None
        if index is not None:
            index = index.to(x0.device)
            needed = (True, True, True, True, with_q, self.prediction == "score")
            u, v, w, z, q, s = (
                value[index].reshape(shape) if torch.is_tensor(value) and use else value
                for value, use in zip(table, needed, strict=True)
            )
        else:
            c = PathCoefficients(
                *(
                    value.reshape(shape).to(device=x0.device, dtype=x0.dtype)
                    for value in self.path._coefficients(times)
                )
            )
            u, v, w, z, q, s = self._training_numbers(c)
        return _mix(u, x0, v, noise), _mix(w, x0, z, noise), q, s


def check_denoiser_path(denoiser: object, path: Path) -> None:
    """Raise unless ``denoiser`` is callable and, if it has a path, that path is ``path``."""
    if not callable(denoiser):
        raise TypeError(
            f"denoiser must be callable as denoiser(x_t, t), got {type(denoiser).__name__}"
        )
    own = getattr(denoiser, "path", None)
    if own is not None and own is not path and own != path:
        raise ValueError(
            f"denoiser was built on {own!r} but is used with {path!r}: build it on the same path"
        )


# ------------------------------------------------------------- exact mixtures
class MixtureDenoiser(PathDenoiser):
    """The exact E[x_0 | x_t] of a Gaussian mixture on any path: the Bayes-optimal denoiser.

    On the path x_t = a x_0 + s eps the noised mixture has components
    N(a mu_k, a^2 Sigma_k + s^2 I) (:meth:`udm.toy.GaussianMixture.posterior_mean`). It plugs
    into every sampler, and through :func:`convert` it gives the exact target of any of the
    five kinds (an "oracle network").

    Book: eq. (eq-optimal-denoiser), Chapter on the three parameterizations.
    """

    def __init__(self, mixture: GaussianMixture, path: Path) -> None:
        super().__init__(path)
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(
                f"mixture must be a udm.toy.GaussianMixture, got {type(mixture).__name__}"
            )
        self.mixture = mixture

    def extra_repr(self) -> str:
        return f"{self.mixture!r}, path={self.path!r}"

    def forward(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """E[x_0 | x_t] at time ``t`` (a float or a tensor of shape (B,)), shape (B, D)."""
        check_tensor("x_t", x_t, min_ndim=2)
        scalar, times = check_time(self.path, t, x_t.shape[0])
        if scalar is not None:
            c = self._plan(scalar).coefficients
            return self.mixture.posterior_mean(x_t, c.a, c.s)
        c = self.path.coefficients(times)
        return self.mixture.posterior_mean(x_t, c.a, c.s)


# ----------------------------------------------------------------- the loss
def _check_denoiser(denoiser: object) -> Denoiser:
    if not isinstance(denoiser, Denoiser):
        raise TypeError(
            "denoiser must be a udm.parameterizations.Denoiser (a network, its path and its "
            f"prediction), got {type(denoiser).__name__}"
        )
    return denoiser


def prediction_loss(
    denoiser: Denoiser,
    x0: Tensor,
    *,
    weighting: str | Callable[[Tensor], Tensor] = "simple",
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of a :class:`Denoiser`'s network, a scalar tensor.

    Draws times from the path (``path.sample_t``: the grid of a discrete path, uniform on
    [t_min, t_max] otherwise) and noise from N(0, I) (from ``generator``) unless given,
    forms x_t = path.q_sample(x0, t, noise), and compares the network's raw output F with
    its target F* in its own units (:meth:`Denoiser.target`):

    - ``"simple"``: the mean squared error per coordinate, every t alike (DDPM's L_simple for
      ``"eps"``, EDM's loss with ``data_std``). A raw score network (no ``data_std``) is
      weighted by s(t)^2, Song and Ermon's lambda(t), which puts its error in the noise's units.
    - ``"elbo"``: ``path.elbo_weight(t)`` times ||x0_hat - x_0||^2 = q(t)^2 ||F - F*||^2 (q:
      how an output error reaches x_0), summed over coordinates and averaged over the batch.
      On a discrete grid the weight is Chapter 6's T (SNR(t-1) - SNR(t)) / 2; on a continuous
      path -1/2 dSNR/dt times (t_max - t_min). An unbiased estimate of the part of the
      negative ELBO that the network controls.
    - a callable ``weighting(t) -> w`` (shape (B,)): the mean of w(t) (F - F*)^2.

    Every positive weighting has the same minimiser, E[x_0 | x_t] at every t; they differ
    in how a finite network and a noisy gradient share their effort across t.

    Book: eq. (eq-x0-loss-snr) and eq. (eq-param-weights), Chapters on VDMs and on the
    three parameterizations.
    """
    denoiser = _check_denoiser(denoiser)
    path = denoiser.path
    check_tensor("x0", x0, min_ndim=2)
    if not (callable(weighting) or weighting in _WEIGHTINGS):
        raise ValueError(f"weighting must be one of {_WEIGHTINGS} or a callable, got {weighting!r}")
    batch = x0.shape[0]
    if t is None:
        t = path.sample_t(batch, generator=generator)
    _, times = check_time(path, t, batch)
    times = times.expand(batch) if times.ndim == 0 else times
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    else:
        check_tensor("noise", noise)
        check_same_shape("x0", x0, "noise", noise)
        check_same_dtype("x0", x0, "noise", noise)
        check_finite("noise", noise)
    check_finite("x0", x0)
    network_input, target, q, s = denoiser._training_terms(
        x0, noise, times, with_q=weighting == "elbo"
    )
    output = denoiser._net(network_input, times.to(device=x0.device))
    squared_error = (output - target).square()
    if weighting == "simple":
        if denoiser.prediction == "score" and denoiser.data_std is None:
            squared_error = s.square() * squared_error  # (B, 1, ...) columns
        return squared_error.mean()
    if weighting == "elbo":
        weight = path.elbo_weight(times).to(x0.device)
        per_example_sum = (q * q * squared_error).reshape(batch, -1).sum(dim=1)
        return (weight.to(x0.dtype) * per_example_sum).mean()
    weight = weighting(times)
    if not isinstance(weight, Tensor) or weight.shape != (batch,):
        raise ValueError(f"weighting(t) must return a tensor of shape ({batch},)")
    return (per_example(weight.to(x0.device), x0) * squared_error).mean()
