"""Guidance: steering a diffusion model towards a class label y.

Both kinds of guidance change only the score the sampler follows. At step t, with
s(x_t) = grad log p_t(x_t) the unconditional score and grad log p_t(y | x_t) the gradient of
a classifier that sees noisy inputs,

- **classifier guidance** follows  s(x_t) + gamma * grad log p_t(y | x_t);
- **classifier-free guidance** follows  (1 - w) s(x_t) + w s(x_t | y),

and the two agree when w = gamma and the classifier is exact. Each guided model here is an
x_0-predictor ``model(x_t, t) -> x0_hat`` (:data:`udm.diffusion.X0Predictor`), with
``eps`` and ``score`` methods like :class:`udm.parameterizations.Denoiser`, so the book's
samplers (``udm.diffusion.sample``) run it unchanged.

The module also holds what guidance is trained with (:class:`NoisyClassifier`,
:func:`classifier_loss`, :func:`cfg_training_loss`) and the exact ingredients for a Gaussian
mixture whose components are the classes (:class:`MixtureClassifier`,
:class:`MixtureConditionalDenoiser`), against which the chapter measures the trained ones.

Timesteps ``t`` are int64 tensors of shape (B,) with values in 1..T of a
:class:`udm.schedules.NoiseSchedule`; data have shape (B, ...) and networks see them
flattened to (B, D).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm.diffusion import X0Predictor, q_sample
from udm.nets import MLP, SinusoidalTimeEmbedding
from udm.parameterizations import (
    PREDICTIONS,
    Prediction,
    eps_from_score,
    prediction_loss,
    score_from_eps,
    score_from_x0,
    x0_and_eps,
)
from udm.schedules import NoiseSchedule
from udm.toy import GaussianMixture
from udm.validate import (
    check_batch_vector,
    check_int_at_least,
    check_positive,
    check_tensor,
    per_example,
)

#: A classifier of noisy data: ``classifier(x_t, t) -> logits`` of shape (B, n_classes).
NoisyClassifierFn = Callable[[Tensor, Tensor], Tensor]

#: A label-conditional flat network ``net(x_flat (B, D), t (B,), y (B,)) -> (B, D)``.
ConditionalNet = Callable[[Tensor, Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------- checks
def _check_schedule(schedule: object) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(
            f"schedule must be a udm.schedules.NoiseSchedule, got {type(schedule).__name__}"
        )
    return schedule


def _check_scale(name: str, value: object) -> float:
    """A guidance scale: a finite real number (negative scales push away from the class)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (a guidance scale), got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _check_n_classes(name: str, n_classes: object) -> int:
    return check_int_at_least(name, n_classes, 1)


def _check_label(y: object, n_classes: int | None, *, allow_null: bool = False) -> int | Tensor:
    """A class label: an int, or an int64 vector, with values in 0..n_classes-1 when known.

    With ``allow_null`` the null label ``n_classes`` ("no label") is accepted too.
    """
    if isinstance(y, Tensor):
        if y.dtype != torch.int64:
            raise TypeError(f"y must be an int or an int64 tensor of labels, got dtype {y.dtype}")
        check_tensor("y", y, shape=(None,), floating=False)
        low, high = (y.min().item(), y.max().item()) if y.numel() else (0, 0)
    elif isinstance(y, numbers.Integral) and not isinstance(y, bool):
        y = int(y)
        low = high = y
    else:
        raise TypeError(f"y must be an int or an int64 tensor of labels, got {type(y).__name__}")
    top = None if n_classes is None else n_classes + (1 if allow_null else 0)
    if low < 0 or (top is not None and high >= top):
        allowed = "0 or more" if top is None else f"in 0..{top - 1}"
        null = "" if n_classes is None or allow_null else f" ({n_classes} is the null label)"
        raise ValueError(f"y must hold class labels {allowed}{null}, got values {low}..{high}")
    return y


def _label_vector(y: int | Tensor, like: Tensor) -> Tensor:
    """The label(s) ``y`` as an int64 vector (B,) on ``like``'s device."""
    if isinstance(y, Tensor):
        check_batch_vector("y", y, like.shape[0])
        return y.to(like.device)
    return torch.full((like.shape[0],), y, dtype=torch.int64, device=like.device)


def _alpha_bar(schedule: NoiseSchedule, x_t: Tensor, t: object) -> Tensor:
    """alpha_bar_t (float64, shape (B,), on x_t's device) after checking x_t and t in 1..T."""
    check_tensor("x_t", x_t, min_ndim=2)
    if not isinstance(t, Tensor):
        raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
    check_batch_vector("t", t, x_t.shape[0])
    alpha_bar = schedule.alpha_bar(t, dtype=torch.float64)  # checks the dtype and 0..T
    if t.numel() and (t < 1).any():
        raise ValueError(
            f"t must lie in 1..T = 1..{schedule.T} (t = 0 has no noise), "
            f"got values from {t.min().item()}"
        )
    return alpha_bar.to(x_t.device)


def _check_logits(logits: object, like: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != like.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"classifier must return logits of shape (B, n_classes), got {got}")
    return logits


# ------------------------------------------------------------------ noisy classifier
class NoisyClassifier(nn.Module):
    """A classifier of noisy data: logits of p_phi(y | x_t, t), shape (B, n_classes).

    The step t is embedded as in :class:`udm.nets.TimeConditionedMLP` (sinusoidal features
    of ``t * time_scale``, then a small MLP), concatenated with the flattened ``x_t`` and
    fed to an :class:`udm.nets.MLP` of ``depth`` hidden SiLU layers of width ``hidden``.
    Trained with :func:`classifier_loss`, it estimates the noised classifier
    p_t(y | x_t) = E[p(y | x_0) | x_t] at every step at once.

    Book: eq. (eq-noisy-classifier), Chapter on guidance.
    """

    def __init__(
        self,
        data_dim: int,
        n_classes: int,
        hidden: int = 128,
        depth: int = 3,
        time_dim: int = 32,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_int_at_least("data_dim", data_dim, 1)
        check_int_at_least("n_classes", n_classes, 2)
        check_positive("time_scale", time_scale)
        self.data_dim = data_dim
        self.n_classes = n_classes
        self.time_scale = float(time_scale)
        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        self.net = MLP(data_dim + time_dim, n_classes, hidden=hidden, depth=depth)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Logits (B, n_classes) for noisy inputs ``x_t`` (B, ...) at steps ``t`` (B,)."""
        check_tensor("x_t", x_t, min_ndim=2)
        flat = x_t.flatten(1)
        if flat.shape[1] != self.data_dim:
            raise ValueError(
                f"x_t must have {self.data_dim} values per example, got shape {tuple(x_t.shape)}"
            )
        check_tensor("t", t, shape=(x_t.shape[0],), floating=False)
        return self.net(torch.cat([flat, self.time_embed(t * self.time_scale)], dim=1))


def classifier_loss(
    classifier: NoisyClassifierFn,
    schedule: NoiseSchedule,
    x0: Tensor,
    y: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cross-entropy of a noisy classifier on noised data, a scalar tensor.

    Draws t uniformly from 1..T and noise from N(0, I) (from ``generator``) unless given,
    forms x_t = q_sample(x0, t, noise) and returns the batch mean of
    -log softmax(classifier(x_t, t))[y]. Its minimizer over all functions is the noised
    classifier p_t(y | x_t) at every t (cross-entropy is a proper scoring rule).

    Book: eq. (eq-classifier-loss), Chapter on guidance.
    """
    _check_schedule(schedule)
    check_tensor("x0", x0, min_ndim=2)
    batch = x0.shape[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be an int64 tensor of labels, got {type(y).__name__}")
    check_batch_vector("y", y, batch)
    _check_label(y, getattr(classifier, "n_classes", None))
    if t is None:
        t = torch.randint(1, schedule.T + 1, (batch,), generator=generator).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    _alpha_bar(schedule, x0, t)  # t in 1..T
    x_t = q_sample(schedule, x0, t, noise)
    logits = _check_logits(classifier(x_t, t), x0)
    _check_label(y, logits.shape[1])
    return F.cross_entropy(logits, y.to(logits.device))


# ---------------------------------------------------------------- classifier guidance
class ClassifierGuidance(nn.Module):
    """Classifier guidance as an x_0-predictor: the score plus gamma grad log p(y | x_t).

    ``denoiser(x_t, t) -> x0_hat`` is an unconditional x_0-predictor (any
    :data:`udm.diffusion.X0Predictor`, e.g. a :class:`udm.parameterizations.Denoiser`);
    ``classifier(x_t, t)`` returns logits of p(y | x_t) at step t; ``y`` is a label (an int
    for the whole batch, or an int64 vector (B,)) and ``gamma`` the guidance scale. The
    guided score is s(x_t) + gamma grad_x log p(y | x_t), with the gradient by autograd;
    through Tweedie's formula that is

        x0_guided = x0_hat + gamma (1 - alpha_bar_t) / sqrt(alpha_bar_t) grad_x log p(y | x_t).

    gamma = 0 returns the denoiser's prediction unchanged. The classifier must treat the
    rows of a batch independently (no batch normalization): the gradient is taken of the
    sum over the batch.

    Book: eq. (eq-classifier-guidance) and eq. (eq-guided-x0), Chapter on guidance.
    """

    def __init__(
        self,
        denoiser: X0Predictor,
        classifier: NoisyClassifierFn,
        schedule: NoiseSchedule,
        y: int | Tensor,
        gamma: float,
    ) -> None:
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable as denoiser(x_t, t), got {denoiser!r}")
        if not callable(classifier):
            raise TypeError(
                f"classifier must be callable as classifier(x_t, t), got {classifier!r}"
            )
        self.denoiser = denoiser
        self.classifier = classifier
        self.schedule = _check_schedule(schedule)
        self.y = _check_label(y, getattr(classifier, "n_classes", None))
        self.gamma = _check_scale("gamma", gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, T={self.schedule.T}"

    def classifier_gradient(self, x_t: Tensor, t: Tensor) -> Tensor:
        """grad_x log p(y | x_t) from the classifier's logits, shaped like ``x_t``.

        Computed with gradients enabled even inside ``torch.no_grad()`` (samplers run there),
        on a detached copy of ``x_t``: nothing flows back into the caller's graph.

        Book: eq. (eq-classifier-guidance), Chapter on guidance.
        """
        _alpha_bar(self.schedule, x_t, t)
        labels = _label_vector(self.y, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logits = _check_logits(self.classifier(x, t), x_t)
            _check_label(labels, logits.shape[1])
            log_likelihood = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
            (gradient,) = torch.autograd.grad(log_likelihood, x)
        return gradient

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided x_0 prediction, shaped like ``x_t``."""
        alpha_bar = _alpha_bar(self.schedule, x_t, t)
        x0_hat = self.denoiser(x_t, t)
        check_tensor("denoiser(x_t, t)", x0_hat, shape=tuple(x_t.shape))
        coef = self.gamma * (1.0 - alpha_bar) / alpha_bar.sqrt()
        return x0_hat + per_example(coef, x_t) * self.classifier_gradient(x_t, t)

    def score(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided score s(x_t) + gamma grad log p(y | x_t), shaped like ``x_t``."""
        alpha_bar = _alpha_bar(self.schedule, x_t, t)
        base = score_from_x0(x_t, self.denoiser(x_t, t), alpha_bar)
        return base + self.gamma * self.classifier_gradient(x_t, t)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided noise prediction -sqrt(1 - alpha_bar_t) times the guided score."""
        return eps_from_score(self.score(x_t, t), _alpha_bar(self.schedule, x_t, t))


# ------------------------------------------------------------- classifier-free guidance
class ClassifierFreeGuidance(nn.Module):
    """Classifier-free guidance as an x_0-predictor: (1 - w) unconditional + w conditional.

    ``net(x_flat, t, y)`` is one label-conditional network (such as
    :class:`udm.nets.TimeConditionedMLP` built with ``n_classes``) trained by
    :func:`cfg_training_loss` to output ``prediction`` (one of
    :data:`udm.parameterizations.PREDICTIONS`); the label ``null_label`` (default
    ``net.n_classes``) asks it for the unconditional prediction. With ``y`` a label (an int,
    or an int64 vector (B,)) and ``w`` the guidance weight, the guided output is

        out_w = (1 - w) net(x_t, t, null) + w net(x_t, t, y),

    read as a prediction of kind ``prediction``. The weights sum to 1 and every conversion
    between x_0, eps, score and v is affine in the output, so combining any of the four gives
    the same guided score (1 - w) s(x_t) + w s(x_t | y). w = 0 is the unconditional model,
    w = 1 the conditional one, and both reproduce them exactly.

    Book: eq. (eq-cfg), Chapter on guidance.
    """

    def __init__(
        self,
        net: ConditionalNet,
        schedule: NoiseSchedule,
        prediction: Prediction,
        y: int | Tensor,
        w: float,
        *,
        null_label: int | None = None,
    ) -> None:
        super().__init__()
        if not callable(net):
            raise TypeError(f"net must be callable as net(x_flat, t, y), got {net!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if null_label is None:
            null_label = getattr(net, "n_classes", None)
            if null_label is None:
                raise ValueError(
                    "null_label must be given when net has no n_classes attribute "
                    "(it is the label that means 'no label')"
                )
        self.null_label = _check_n_classes("null_label", null_label)
        self.net = net
        self.schedule = _check_schedule(schedule)
        self.prediction = prediction
        self.y = _check_label(y, self.null_label)
        self.w = _check_scale("w", w)

    def extra_repr(self) -> str:
        return f"w={self.w}, prediction={self.prediction!r}, T={self.schedule.T}"

    def _net(self, flat: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        out = self.net(flat, t, labels)
        if not isinstance(out, Tensor) or out.shape != flat.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"net must map (B, D) = {tuple(flat.shape)} to the same shape, got {got}"
            )
        return out

    def output(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided network output (1 - w) out(null) + w out(y), shaped like ``x_t``.

        Book: eq. (eq-cfg), Chapter on guidance.
        """
        _alpha_bar(self.schedule, x_t, t)
        flat = x_t.flatten(1)
        labels = _label_vector(self.y, x_t)
        null = torch.full_like(labels, self.null_label)
        unconditional = self._net(flat, t, null)
        conditional = self._net(flat, t, labels)
        return ((1.0 - self.w) * unconditional + self.w * conditional).view_as(x_t)

    def x0_and_eps(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """The guided predictions (x0_hat, eps_hat) from one pair of network evaluations."""
        alpha_bar = _alpha_bar(self.schedule, x_t, t)
        return x0_and_eps(self.output(x_t, t), x_t, alpha_bar, self.prediction)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided x_0 prediction, shaped like ``x_t``."""
        return self.x0_and_eps(x_t, t)[0]

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided noise prediction, shaped like ``x_t``."""
        return self.x0_and_eps(x_t, t)[1]

    def score(self, x_t: Tensor, t: Tensor) -> Tensor:
        """The guided score (1 - w) s(x_t) + w s(x_t | y), shaped like ``x_t``.

        Book: eq. (eq-cfg), Chapter on guidance.
        """
        if self.prediction == "score":
            return self.output(x_t, t)
        return score_from_eps(self.eps(x_t, t), _alpha_bar(self.schedule, x_t, t))


def cfg_training_loss(
    net: ConditionalNet,
    schedule: NoiseSchedule,
    x0: Tensor,
    y: Tensor,
    *,
    prediction: Prediction = "eps",
    p_uncond: float = 0.2,
    null_label: int | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of a classifier-free guidance network, a scalar tensor.

    Each label of ``y`` (int64, shape (B,)) is replaced by ``null_label`` (default
    ``net.n_classes``) with probability ``p_uncond``, independently (the coin flips come from
    ``generator``); then the loss is
    :func:`udm.parameterizations.prediction_loss` of the network ``net(x, t, y_dropped)``
    with the given ``prediction``, ``t``, ``noise`` and ``generator``. One network so learns
    the conditional predictions and, on the dropped examples, the unconditional one.

    Book: eq. (eq-cfg-loss), Chapter on guidance.
    """
    if not callable(net):
        raise TypeError(f"net must be callable as net(x_flat, t, y), got {net!r}")
    check_tensor("x0", x0, min_ndim=2)
    if null_label is None:
        null_label = getattr(net, "n_classes", None)
        if null_label is None:
            raise ValueError("null_label must be given when net has no n_classes attribute")
    null_label = _check_n_classes("null_label", null_label)
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be an int64 tensor of labels, got {type(y).__name__}")
    check_batch_vector("y", y, x0.shape[0])
    _check_label(y, null_label)
    if isinstance(p_uncond, bool) or not isinstance(p_uncond, numbers.Real):
        raise TypeError(f"p_uncond must be a probability (a float), got {p_uncond!r}")
    if not 0.0 <= p_uncond <= 1.0:  # NaN fails too
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    drop = (torch.rand(y.shape[0], generator=generator) < p_uncond).to(y.device)
    y_dropped = torch.where(drop, torch.full_like(y, null_label), y)
    return prediction_loss(
        lambda x, steps: net(x, steps, y_dropped),
        schedule,
        x0,
        prediction=prediction,
        t=t,
        noise=noise,
        generator=generator,
    )


# ------------------------------------------------ exact ingredients for a Gaussian mixture
def _check_mixture(mixture: object) -> GaussianMixture:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a udm.toy.GaussianMixture, got {type(mixture).__name__}")
    return mixture


class MixtureClassifier:
    """The exact noisy classifier of a Gaussian mixture whose components are the classes.

    For x_0 from ``mixture`` with label y = its component, the noised classifier is
    p_t(y | x_t) = w_y N_y,t(x_t) / sum_k w_k N_k,t(x_t), with N_k,t the density of
    N(sqrt(alpha_bar_t) mu_k, alpha_bar_t Sigma_k + (1 - alpha_bar_t) I). Calling it returns
    the logits log w_k + log N_k,t(x_t), shape (B, K), in x_t's dtype (computed in float64 and
    differentiable in x_t), so it plugs into :class:`ClassifierGuidance` in place of a trained
    :class:`NoisyClassifier`. ``t`` may be 0 (the clean classifier).

    Book: eq. (eq-noisy-classifier), Chapter on guidance.
    """

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule) -> None:
        self.mixture = _check_mixture(mixture)
        self.schedule = _check_schedule(schedule)
        self.n_classes = mixture.n_components

    def __repr__(self) -> str:
        return f"MixtureClassifier({self.mixture}, T={self.schedule.T})"

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Logits log w_k + log N_k,t(x_t) of shape (B, K)."""
        check_tensor("x_t", x_t, shape=(None, self.mixture.dim))
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
        check_batch_vector("t", t, x_t.shape[0])
        alpha_bar = self.schedule.alpha_bar(t.cpu(), dtype=torch.float64)[:, None, None]
        eye = torch.eye(self.mixture.dim, dtype=torch.float64)
        loc = alpha_bar.sqrt() * self.mixture.means[None]  # (B, K, D)
        cov = (
            alpha_bar[..., None] * self.mixture.covariances[None] + (1 - alpha_bar[..., None]) * eye
        )
        noised = torch.distributions.MultivariateNormal(loc, cov, validate_args=False)
        x = x_t.to(device="cpu", dtype=torch.float64)
        logits = self.mixture.weights.log()[None] + noised.log_prob(x[:, None, :])
        return logits.to(device=x_t.device, dtype=x_t.dtype)


class MixtureConditionalDenoiser:
    """The exact label-conditional x_0-predictor of a mixture whose components are the classes.

    ``net(x_t, t, y)`` returns E[x_0 | x_t, y] (the optimal denoiser of component y,
    :meth:`udm.toy.GaussianMixture.denoiser` of ``mixture.component(y)``), and for the null
    label y = K = ``n_classes`` (or ``y=None``) the unconditional E[x_0 | x_t] of the whole
    mixture: the network a classifier-free guidance model would learn with unlimited
    capacity and data. Its ``prediction`` is ``"x0"``, for :class:`ClassifierFreeGuidance`.

    Book: eq. (eq-cfg), Chapter on guidance (exact ingredients).
    """

    prediction = "x0"

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule) -> None:
        self.mixture = _check_mixture(mixture)
        self.schedule = _check_schedule(schedule)
        self.n_classes = mixture.n_components
        self.components = [mixture.component(k) for k in range(self.n_classes)]

    def __repr__(self) -> str:
        return f"MixtureConditionalDenoiser({self.mixture}, T={self.schedule.T})"

    def __call__(self, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """E[x_0 | x_t, y] for each row, shape (B, D); null label (or None): E[x_0 | x_t]."""
        check_tensor("x_t", x_t, shape=(None, self.mixture.dim))
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be an integer tensor of shape (B,), got {type(t).__name__}")
        check_batch_vector("t", t, x_t.shape[0])
        alpha_bar = self.schedule.alpha_bar(t.cpu(), dtype=torch.float64)
        if y is None:
            y = torch.full((x_t.shape[0],), self.n_classes, dtype=torch.int64)
        check_batch_vector("y", y, x_t.shape[0])
        _check_label(y, self.n_classes, allow_null=True)
        y = y.cpu()
        x = x_t.to(device="cpu", dtype=torch.float64)
        out = torch.empty_like(x)
        for label in y.unique().tolist():
            rows = y == label
            model = self.mixture if label == self.n_classes else self.components[label]
            out[rows] = model.denoiser(x[rows], alpha_bar[rows])
        return out.to(device=x_t.device, dtype=x_t.dtype)
