"""Guidance: steering a diffusion model towards a class label y.

Both kinds of guidance change only the score the sampler follows. At time t, with
s(x_t) = grad log p_t(x_t) the unconditional score and grad log p_t(y | x_t) the gradient of
a classifier that sees noisy inputs,

- **classifier guidance** follows  s(x_t) + gamma * grad log p_t(y | x_t);
- **classifier-free guidance** follows  (1 - w) s(x_t) + w s(x_t | y),

and the two agree when w = gamma and the classifier is exact. Each guided model here is a
denoiser on a path (``model(x_t, t) -> x0_hat``, :class:`udm.parameterizations.PathDenoiser`),
so every sampler of :mod:`udm.samplers` runs it unchanged, and its ``eps`` and ``score``
methods give the guided noise and score.

The module also holds what guidance is trained with (:class:`NoisyClassifier`,
:func:`classifier_loss`, :func:`cfg_training_loss`) and the exact ingredients for a Gaussian
mixture whose components are the classes (:class:`MixtureClassifier`,
:class:`MixtureConditionalDenoiser`), against which the chapter measures the trained ones.

Times ``t`` are the path's continuous times: a float for the whole batch or a tensor of
shape (B,); data have shape (B, ...) and networks see them flattened to (B, D).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm.nets import MLP, SinusoidalTimeEmbedding
from udm.parameterizations import (
    Denoiser,
    PathDenoiser,
    Prediction,
    check_prediction,
    check_time,
    prediction_loss,
)
from udm.paths import Path, check_path
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


def _time_vector(t: float | Tensor, like: Tensor) -> Tensor:
    """Times for a network, as the Denoiser passes them: a float64 vector (B,)."""
    if isinstance(t, Tensor) and t.ndim == 1:
        return t.to(device=like.device, dtype=torch.float64)
    return torch.full((like.shape[0],), float(t), dtype=torch.float64, device=like.device)


def _check_logits(logits: object, like: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != like.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"classifier must return logits of shape (B, n_classes), got {got}")
    return logits


# ------------------------------------------------------------------ noisy classifier
class NoisyClassifier(nn.Module):
    """A classifier of noisy data: logits of p_phi(y | x_t, t), shape (B, n_classes).

    The time t is embedded as in :class:`udm.nets.TimeConditionedMLP` (sinusoidal features
    of ``t * time_scale``, then a small MLP; on a T-step discrete path ``time_scale=T`` gives
    the step number), concatenated with the flattened ``x_t`` and fed to an
    :class:`udm.nets.MLP` of ``depth`` hidden SiLU layers of width ``hidden``. Trained with
    :func:`classifier_loss`, it estimates the noised classifier
    p_t(y | x_t) = E[p(y | x_0) | x_t] at every time at once.

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
        """Logits (B, n_classes) for noisy inputs ``x_t`` (B, ...) at times ``t`` (B,)."""
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
    path: Path,
    x0: Tensor,
    y: Tensor,
    *,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cross-entropy of a noisy classifier on noised data, a scalar tensor.

    Draws times from the path (``path.sample_t``: the grid of a discrete path) and noise
    from N(0, I) (from ``generator``) unless given, forms x_t = path.q_sample(x0, t, noise)
    and returns the batch mean of -log softmax(classifier(x_t, t))[y]. Its minimizer over
    all functions is the noised classifier p_t(y | x_t) at every t (cross-entropy is a
    proper scoring rule).

    Book: eq. (eq-classifier-loss), Chapter on guidance.
    """
    check_path(path)
    check_tensor("x0", x0, min_ndim=2)
    batch = x0.shape[0]
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be an int64 tensor of labels, got {type(y).__name__}")
    check_batch_vector("y", y, batch)
    _check_label(y, getattr(classifier, "n_classes", None))
    if t is None:
        t = path.sample_t(batch, generator=generator)
    _, times = check_time(path, t, batch)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = path.q_sample(x0, times, noise)
    logits = _check_logits(classifier(x_t, _time_vector(times, x0)), x0)
    _check_label(y, logits.shape[1])
    return F.cross_entropy(logits, y.to(logits.device))


# ---------------------------------------------------------------- classifier guidance
class ClassifierGuidance(PathDenoiser):
    """Classifier guidance as a denoiser: the score plus gamma grad log p(y | x_t).

    ``denoiser(x_t, t) -> x0_hat`` is an unconditional denoiser on a path (a
    :class:`udm.parameterizations.Denoiser`, or any :class:`~udm.parameterizations.PathDenoiser`);
    ``classifier(x_t, t)`` returns logits of p(y | x_t) at time t (t a tensor of shape (B,));
    ``y`` is a label (an int for the whole batch, or an int64 vector (B,)) and ``gamma`` the
    guidance scale. The guided score is s(x_t) + gamma grad_x log p(y | x_t), with the
    gradient by autograd; through Tweedie's formula (x0 = (x_t + s^2 score) / a) that is

        x0_guided = x0_hat + gamma s(t)^2 / a(t) grad_x log p(y | x_t).

    gamma = 0 returns the denoiser's prediction unchanged. The classifier must treat the
    rows of a batch independently (no batch normalization): the gradient is taken of the
    sum over the batch.

    Book: eq. (eq-classifier-guidance) and eq. (eq-guided-x0), Chapter on guidance.
    """

    def __init__(
        self,
        denoiser: PathDenoiser,
        classifier: NoisyClassifierFn,
        y: int | Tensor,
        gamma: float,
    ) -> None:
        if not isinstance(getattr(denoiser, "path", None), Path) or not callable(denoiser):
            raise TypeError(
                "denoiser must be a denoiser on a path (udm.parameterizations.Denoiser), "
                f"got {type(denoiser).__name__}"
            )
        super().__init__(denoiser.path)
        if not callable(classifier):
            raise TypeError(
                f"classifier must be callable as classifier(x_t, t), got {classifier!r}"
            )
        self.denoiser = denoiser
        self.classifier = classifier
        self.y = _check_label(y, getattr(classifier, "n_classes", None))
        self.gamma = _check_scale("gamma", gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, path={self.path!r}"

    def prepare(self, times: Tensor, like: Tensor | None = None) -> None:
        """Tabulate the path's numbers, and the unconditional denoiser's, at ``times``."""
        super().prepare(times, like)
        inner = getattr(self.denoiser, "prepare", None)
        if callable(inner):
            inner(times, like)

    def classifier_gradient(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """grad_x log p(y | x_t) from the classifier's logits, shaped like ``x_t``.

        Computed with gradients enabled even inside ``torch.no_grad()`` (samplers run there),
        on a detached copy of ``x_t``: nothing flows back into the caller's graph.

        Book: eq. (eq-classifier-guidance), Chapter on guidance.
        """
        check_tensor("x_t", x_t, min_ndim=2)
        labels = _label_vector(self.y, x_t)
        times = _time_vector(t, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logits = _check_logits(self.classifier(x, times), x_t)
            _check_label(labels, logits.shape[1])
            log_likelihood = torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
            (gradient,) = torch.autograd.grad(log_likelihood, x)
        return gradient

    def forward(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """The guided x_0 prediction, shaped like ``x_t``."""
        c = self._coefficients(t, x_t.shape[0])
        x0_hat = self.denoiser(x_t, t)
        check_tensor("denoiser(x_t, t)", x0_hat, shape=tuple(x_t.shape))
        if self.gamma == 0:
            return x0_hat
        coef = self.gamma * c.s * c.s / c.a
        gradient = self.classifier_gradient(x_t, t)
        if isinstance(coef, Tensor):
            return x0_hat + per_example(coef.to(x_t.device), x_t) * gradient
        return torch.add(x0_hat, gradient, alpha=coef)


# ------------------------------------------------------------- classifier-free guidance
class _GuidedNet(nn.Module):
    """(1 - w) net(x, t, null) + w net(x, t, y): one flat network for the Denoiser."""

    def __init__(self, net: ConditionalNet, y: int | Tensor, w: float, null_label: int) -> None:
        super().__init__()
        self.net, self.y, self.w, self.null_label = net, y, w, null_label
        self._labels: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _call(self, flat: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        out = self.net(flat, t, labels)
        if not isinstance(out, Tensor) or out.shape != flat.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"net must map (B, D) = {tuple(flat.shape)} to the same shape, got {got}"
            )
        return out

    def forward(self, flat: Tensor, t: Tensor) -> Tensor:
        key = (flat.shape[0], flat.device)
        if key not in self._labels:  # built once per batch size, not once per step
            labels = _label_vector(self.y, flat)
            self._labels[key] = (labels, torch.full_like(labels, self.null_label))
        labels, null = self._labels[key]
        if self.w == 0:
            return self._call(flat, t, null)
        if self.w == 1:
            return self._call(flat, t, labels)
        return torch.add(
            self._call(flat, t, null) * (1.0 - self.w), self._call(flat, t, labels), alpha=self.w
        )


class ClassifierFreeGuidance(Denoiser):
    """Classifier-free guidance as a denoiser: (1 - w) unconditional + w conditional.

    ``net(x_flat, t, y)`` is one label-conditional network (such as
    :class:`udm.nets.TimeConditionedMLP` built with ``n_classes``) trained by
    :func:`cfg_training_loss` to output ``prediction`` (one of
    :data:`udm.parameterizations.PREDICTIONS`) on ``path``; the label ``null_label`` (default
    ``net.n_classes``) asks it for the unconditional prediction. With ``y`` a label (an int,
    or an int64 vector (B,)) and ``w`` the guidance weight, the guided output is

        out_w = (1 - w) net(x_t, t, null) + w net(x_t, t, y),

    read as a prediction of kind ``prediction`` by a :class:`udm.parameterizations.Denoiser`
    (with ``data_std``, the preconditioned residuals are combined). The weights sum to 1
    and every conversion between the five kinds is affine in the output, so combining any of
    them gives the same guided score (1 - w) s(x_t) + w s(x_t | y). w = 0 is the
    unconditional model, w = 1 the conditional one, and both reproduce them exactly.

    Book: eq. (eq-cfg), Chapter on guidance.
    """

    def __init__(
        self,
        net: ConditionalNet,
        path: Path,
        prediction: Prediction,
        y: int | Tensor,
        w: float,
        *,
        null_label: int | None = None,
        data_std: float | None = None,
    ) -> None:
        if not callable(net):
            raise TypeError(f"net must be callable as net(x_flat, t, y), got {net!r}")
        check_prediction(prediction)
        if null_label is None:
            null_label = getattr(net, "n_classes", None)
            if null_label is None:
                raise ValueError(
                    "null_label must be given when net has no n_classes attribute "
                    "(it is the label that means 'no label')"
                )
        null_label = _check_n_classes("null_label", null_label)
        y = _check_label(y, null_label)
        w = _check_scale("w", w)
        super().__init__(_GuidedNet(net, y, w, null_label), path, prediction, data_std=data_std)
        self.null_label, self.y, self.w = null_label, y, w

    def extra_repr(self) -> str:
        return f"w={self.w}, " + super().extra_repr()


def cfg_training_loss(
    net: ConditionalNet,
    path: Path,
    x0: Tensor,
    y: Tensor,
    *,
    prediction: Prediction = "eps",
    p_uncond: float = 0.2,
    null_label: int | None = None,
    data_std: float | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of a classifier-free guidance network, a scalar tensor.

    Each label of ``y`` (int64, shape (B,)) is replaced by ``null_label`` (default
    ``net.n_classes``) with probability ``p_uncond``, independently (the coin flips come from
    ``generator``); then the loss is :func:`udm.parameterizations.prediction_loss` of the
    :class:`~udm.parameterizations.Denoiser` of ``net(x, t, y_dropped)`` on ``path`` with the
    given ``prediction`` and ``data_std``, ``t``, ``noise`` and ``generator``. One network
    so learns the conditional predictions and, on the dropped examples, the unconditional one.

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
    denoiser = Denoiser(
        lambda x, times: net(x, times, y_dropped), path, prediction, data_std=data_std
    )
    return prediction_loss(denoiser, x0, t=t, noise=noise, generator=generator)


# ------------------------------------------------ exact ingredients for a Gaussian mixture
def _check_mixture(mixture: object) -> GaussianMixture:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a udm.toy.GaussianMixture, got {type(mixture).__name__}")
    return mixture


def _path_scales(path: Path, t: float | Tensor, batch: int) -> tuple[Tensor, Tensor]:
    """a(t), s(t) as float64 vectors (B,) for a float t or a tensor of shape (B,)."""
    if isinstance(t, Tensor) and t.ndim == 1:
        times = path._batch_time(t, batch)
    else:
        times = path._time(t).expand(batch)
    c = path.coefficients(times)
    return c.a, c.s


class MixtureClassifier:
    """The exact noisy classifier of a Gaussian mixture whose components are the classes.

    For x_0 from ``mixture`` with label y = its component, the noised classifier on ``path``
    is p_t(y | x_t) = w_y N_y,t(x_t) / sum_k w_k N_k,t(x_t), with N_k,t the density of
    N(a(t) mu_k, a(t)^2 Sigma_k + s(t)^2 I). Calling it returns the logits
    log w_k + log N_k,t(x_t), shape (B, K), in x_t's dtype (computed in float64 and
    differentiable in x_t), so it plugs into :class:`ClassifierGuidance` in place of a trained
    :class:`NoisyClassifier`. ``t`` (a float or a tensor (B,)) may be 0: the clean classifier.

    Book: eq. (eq-noisy-classifier), Chapter on guidance.
    """

    def __init__(self, mixture: GaussianMixture, path: Path) -> None:
        self.mixture = _check_mixture(mixture)
        self.path = check_path(path)
        self.n_classes = mixture.n_components

    def __repr__(self) -> str:
        return f"MixtureClassifier({self.mixture}, path={self.path!r})"

    def __call__(self, x_t: Tensor, t: float | Tensor) -> Tensor:
        """Logits log w_k + log N_k,t(x_t) of shape (B, K)."""
        check_tensor("x_t", x_t, shape=(None, self.mixture.dim))
        a, s = _path_scales(self.path, t, x_t.shape[0])
        x = self.mixture._check_points("x_t", x_t)
        logits, _, _ = self.mixture._noised_terms(x, a[:, None, None], s[:, None, None])
        return logits.to(device=x_t.device, dtype=x_t.dtype)


class MixtureConditionalDenoiser:
    """The exact label-conditional x_0-predictor of a mixture whose components are the classes.

    ``net(x_t, t, y)`` returns E[x_0 | x_t, y] on ``path`` (the optimal denoiser of component
    y, :meth:`udm.toy.GaussianMixture.posterior_mean` of ``mixture.component(y)``), and for
    the null label y = K = ``n_classes`` (or ``y=None``) the unconditional E[x_0 | x_t] of
    the whole mixture: the network a classifier-free guidance model would learn with
    unlimited capacity and data. Its ``prediction`` is ``"x0"``, for
    :class:`ClassifierFreeGuidance`. ``t`` is a float or a tensor of shape (B,).

    Book: eq. (eq-cfg), Chapter on guidance (exact ingredients).
    """

    prediction = "x0"

    def __init__(self, mixture: GaussianMixture, path: Path) -> None:
        self.mixture = _check_mixture(mixture)
        self.path = check_path(path)
        self.n_classes = mixture.n_components
        self.components = [mixture.component(k) for k in range(self.n_classes)]

    def __repr__(self) -> str:
        return f"MixtureConditionalDenoiser({self.mixture}, path={self.path!r})"

    def __call__(self, x_t: Tensor, t: float | Tensor, y: Tensor | None = None) -> Tensor:
        """E[x_0 | x_t, y] for each row, shape (B, D); null label (or None): E[x_0 | x_t]."""
        check_tensor("x_t", x_t, shape=(None, self.mixture.dim))
        a, s = _path_scales(self.path, t, x_t.shape[0])
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
            out[rows] = model.posterior_mean(x[rows], a[rows], s[rows])
        return out.to(device=x_t.device, dtype=x_t.dtype)
