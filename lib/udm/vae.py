"""The variational autoencoder: a Gaussian encoder, a Gaussian or Bernoulli decoder, the ELBO.

A VAE is two networks that output *distributions*. The encoder maps a data point ``x``
to the mean and log-variance of q_phi(z | x) = N(z; mu_phi(x), diag(sigma^2_phi(x)));
the decoder maps a latent ``z`` to the parameters of p_theta(x | z). The prior is
p(z) = N(0, I). Training minimises the negative ELBO (:func:`negative_elbo`), the sum of
a reconstruction term and a KL term, each returned separately and per example in nats;
:func:`importance_weighted_log_likelihood` gives the tighter importance-weighted bound
that measures how far the ELBO sits below log p_theta(x).

Two decoders (the argument ``likelihood``):

* ``"gaussian"``: p(x | z) = N(x; m_theta(z), diag(exp(log_var))), where ``log_var`` is
  one learned number per data dimension (``decoder_log_var=None``) or a fixed number.
  It is a density on continuous data: the number to report in nats or bits per dimension.
* ``"bernoulli"``: each pixel is "on" with probability sigmoid(logit). The book's data
  live in [-1, 1], so the decoder maps them to Bernoulli targets ``(x + 1) / 2`` in
  [0, 1] itself and reports means back in [-1, 1]. For gray pixels (targets strictly
  between 0 and 1) the result is a cross-entropy, not a normalised log-density: train
  with it, but do not report it as a likelihood.

A two-level Markovian hierarchical VAE (:class:`MarkovianHVAE`) stacks a second latent
on the first: the encoder runs x -> z_1 -> z_2, the generative model z_2 -> z_1 -> x,
with p(z_2) = N(0, I) and Gaussian steps between the levels (:class:`GaussianTransition`).
Its loss, :func:`hvae_negative_elbo`, returns one term per level; only the top one is a
KL divergence in closed form.

Shapes: data are batch first with a fixed trailing ``data_shape`` (``(2,)`` for points,
``(1, 8, 8)`` for digits); latents have shape ``(B, latent_dim)``; per-example results
have shape ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm.gaussian import diag_gaussian_log_prob, kl_to_standard_normal, sample_diag_gaussian
from udm.nets import MLP
from udm.validate import check_batch_vector, check_int_at_least, check_tensor

LIKELIHOODS = ("gaussian", "bernoulli")
LABEL_ENCODINGS = ("one_hot", "embedding")


def _check_data_shape(data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Return ``data_shape`` as a tuple of positive ints, or raise naming it."""
    shape = tuple(data_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"data_shape must be a non-empty tuple of positive ints, got {data_shape}")
    return shape


def _check_cond(cond: Tensor | None, cond_dim: int, batch_size: int) -> None:
    """Check the conditioning input: ``None`` when ``cond_dim == 0``, else ``(B, cond_dim)``."""
    if cond_dim == 0:
        if cond is not None:
            raise ValueError("cond was given but this network was built with cond_dim=0")
        return
    if cond is None:
        raise ValueError(f"cond is required: this network was built with cond_dim={cond_dim}")
    check_tensor("cond", cond, shape=(batch_size, cond_dim))


def _with_cond(inputs: Tensor, cond: Tensor | None) -> Tensor:
    """Concatenate the flat inputs ``(B, n)`` with the conditioning vector, if any."""
    return inputs if cond is None else torch.cat([inputs, cond.to(inputs.dtype)], dim=1)


class Encoder(nn.Module):
    """The encoder q_phi(z | x) = N(z; mu_phi(x), diag(sigma^2_phi(x))) as a network.

    An :class:`udm.nets.MLP` reads the flattened ``x`` of shape ``(B, *data_shape)``
    (concatenated with a conditioning vector ``cond`` of shape ``(B, cond_dim)`` when
    ``cond_dim > 0``) and outputs ``2 * latent_dim`` numbers: the mean and the
    log-variance ``log sigma^2`` of each latent coordinate. A log-variance can be any
    real number, so no output needs clamping.

    Book: eq. (eq-vae-encoder), Chapter 3.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        hidden: int = 128,
        depth: int = 2,
        cond_dim: int = 0,
    ) -> None:
        super().__init__()
        self.data_shape = _check_data_shape(data_shape)
        self.latent_dim = check_int_at_least("latent_dim", latent_dim, 1)
        self.cond_dim = check_int_at_least("cond_dim", cond_dim, 0)
        self.net = MLP(math.prod(self.data_shape) + cond_dim, 2 * latent_dim, hidden, depth)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(mean, log_var)`` of q(z | x), each of shape ``(B, latent_dim)``."""
        check_tensor("x", x, shape=(None, *self.data_shape))
        _check_cond(cond, self.cond_dim, x.shape[0])
        out = self.net(_with_cond(x.reshape(x.shape[0], -1), cond))
        mean, log_var = out.chunk(2, dim=1)
        return mean, log_var


class Decoder(nn.Module):
    """The decoder p_theta(x | z): Gaussian with a learned or fixed variance, or Bernoulli.

    An :class:`udm.nets.MLP` maps ``z`` of shape ``(B, latent_dim)`` (with ``cond`` of
    shape ``(B, cond_dim)`` appended when ``cond_dim > 0``) to one number per data
    dimension, reshaped to ``(B, *data_shape)``: the mean for ``likelihood="gaussian"``,
    the logit of "pixel on" for ``likelihood="bernoulli"``.

    For the Gaussian decoder, ``log_var=None`` learns one log-variance per data
    dimension (a parameter, initialised to 0, shared by all ``z``); a float fixes it.
    With a fixed variance the reconstruction term is a scaled squared error plus a
    constant, and the variance sets the weight of reconstruction against the KL term.
    The Bernoulli decoder has no variance (``log_var`` must be ``None``); it maps data
    in [-1, 1] to targets ``(x + 1) / 2`` in [0, 1].

    Book: eqs. (eq-gaussian-nll) and (eq-bernoulli-nll), Chapter 3.
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        likelihood: str = "gaussian",
        hidden: int = 128,
        depth: int = 2,
        cond_dim: int = 0,
        log_var: float | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = check_int_at_least("latent_dim", latent_dim, 1)
        self.data_shape = _check_data_shape(data_shape)
        self.cond_dim = check_int_at_least("cond_dim", cond_dim, 0)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.likelihood = likelihood
        self.net = MLP(latent_dim + cond_dim, math.prod(self.data_shape), hidden, depth)
        if likelihood == "bernoulli":
            if log_var is not None:
                raise ValueError("log_var must be None for a Bernoulli decoder: it has no variance")
            self.log_var = None
        elif log_var is None:
            self.log_var = nn.Parameter(torch.zeros(self.data_shape))
        else:
            if not math.isfinite(log_var):
                raise ValueError(f"log_var must be a finite number or None, got {log_var}")
            self.register_buffer("log_var", torch.full(self.data_shape, float(log_var)))

    @property
    def learns_variance(self) -> bool:
        """Whether the Gaussian decoder's log-variance is a trained parameter."""
        return isinstance(self.log_var, nn.Parameter)

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """The raw output ``(B, *data_shape)``: Gaussian means, or Bernoulli logits."""
        check_tensor("z", z, shape=(None, self.latent_dim))
        _check_cond(cond, self.cond_dim, z.shape[0])
        return self.net(_with_cond(z, cond)).reshape(z.shape[0], *self.data_shape)

    def _check_x(self, x: Tensor, batch_size: int) -> None:
        check_tensor("x", x, shape=(batch_size, *self.data_shape))
        if self.likelihood == "bernoulli" and x.numel() and (x.min() < -1 or x.max() > 1):
            raise ValueError(
                "x must lie in [-1, 1] for a Bernoulli decoder (it uses targets (x + 1) / 2), "
                f"got values from {x.min().item():.3g} to {x.max().item():.3g}"
            )

    def log_prob(self, x: Tensor, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """log p_theta(x | z) summed over the data dimensions, shape ``(B,)``, in nats.

        Gaussian: ``diag_gaussian_log_prob(x, mean, log_var)``. Bernoulli: minus the
        binary cross-entropy between the logits and the targets ``(x + 1) / 2``.

        Book: eqs. (eq-gaussian-nll) and (eq-bernoulli-nll), Chapter 3.
        """
        out = self(z, cond)
        self._check_x(x, z.shape[0])
        if self.likelihood == "bernoulli":
            targets = (x + 1) / 2
            per_dim = -F.binary_cross_entropy_with_logits(out, targets, reduction="none")
            return per_dim.reshape(x.shape[0], -1).sum(dim=1)
        return diag_gaussian_log_prob(x, out, self.log_var.expand_as(out))

    def mean(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """E[x | z] in data units, shape ``(B, *data_shape)``.

        Gaussian: the mean itself. Bernoulli: ``2 * sigmoid(logit) - 1``, the expected
        pixel mapped back from [0, 1] to [-1, 1].
        """
        out = self(z, cond)
        return 2 * torch.sigmoid(out) - 1 if self.likelihood == "bernoulli" else out

    def sample(
        self, z: Tensor, cond: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw x ~ p_theta(x | z), shape ``(B, *data_shape)``.

        Gaussian: mean plus noise of the decoder's variance. Bernoulli: pixels in
        {-1, 1} (off or on).
        """
        out = self(z, cond)
        if self.likelihood == "bernoulli":
            on = torch.rand(out.shape, generator=generator, dtype=out.dtype, device=out.device)
            return torch.where(on < torch.sigmoid(out), 1.0, -1.0).to(out.dtype)
        return sample_diag_gaussian(out, self.log_var.expand_as(out), generator=generator)


class VAE(nn.Module):
    """A variational autoencoder with prior p(z) = N(0, I): encode, reparameterize, decode.

    ``data_shape`` is the shape of one example (``(2,)`` or ``(1, 8, 8)``). The encoder
    and decoder are MLPs of ``depth`` hidden layers of width ``hidden``.
    ``likelihood`` and ``decoder_log_var`` choose the decoder (see :class:`Decoder`).
    Methods take ``y`` only for the :class:`ConditionalVAE`; here it must be ``None``.

    Book: eqs. (eq-vae-encoder), (eq-reparameterization) and (eq-vae-objective), Chapter 3.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        *,
        hidden: int = 128,
        depth: int = 2,
        likelihood: str = "gaussian",
        decoder_log_var: float | None = None,
    ) -> None:
        super().__init__()
        cond_dim = self._cond_dim()
        self.encoder = Encoder(data_shape, latent_dim, hidden, depth, cond_dim)
        self.decoder = Decoder(
            latent_dim, data_shape, likelihood, hidden, depth, cond_dim, decoder_log_var
        )
        self.data_shape = self.encoder.data_shape
        self.latent_dim = latent_dim

    def _cond_dim(self) -> int:
        """Width of the conditioning vector the networks read (0: unconditional)."""
        return 0

    def condition(self, y: Tensor | None, batch_size: int) -> Tensor | None:
        """The conditioning vector for labels ``y``; ``None`` for an unconditional VAE."""
        if y is not None:
            raise ValueError("y was given but this VAE is unconditional; use ConditionalVAE")
        return None

    @property
    def likelihood(self) -> str:
        """The decoder's likelihood, ``"gaussian"`` or ``"bernoulli"``."""
        return self.decoder.likelihood

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q_phi(z | x[, y]), each ``(B, latent_dim)``."""
        check_tensor("x", x, shape=(None, *self.data_shape))
        return self.encoder(x, self.condition(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """E[x | z[, y]] in data units, shape ``(B, *data_shape)``."""
        check_tensor("z", z, shape=(None, self.latent_dim))
        return self.decoder.mean(z, self.condition(y, z.shape[0]))

    def forward(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode ``x``, draw one reparameterized ``z``; return ``(z, mean, log_var)``.

        ``z = mean + exp(log_var / 2) * eps`` with ``eps ~ N(0, I)`` drawn from
        ``generator``, so gradients reach the encoder through the sample.

        Book: eq. (eq-reparameterization), Chapter 3.
        """
        mean, log_var = self.encode(x, y)
        return sample_diag_gaussian(mean, log_var, generator=generator), mean, log_var

    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decode the encoder's mean: the VAE's deterministic reconstruction of ``x``."""
        mean, _ = self.encode(x, y)
        return self.decode(mean, y)

    def sample(
        self,
        n: int,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        decoder_noise: bool = False,
    ) -> Tensor:
        """Generate ``n`` examples: z ~ N(0, I), then E[x | z] (or x ~ p(x | z)).

        With ``decoder_noise=False`` (the default, as for pictures of digits) returns the
        decoder's mean; with ``True`` a draw from p_theta(x | z), which for a Gaussian
        decoder is the model's actual sample.
        """
        check_int_at_least("n", n, 1)
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        cond = self.condition(y, n)
        if decoder_noise:
            return self.decoder.sample(z, cond, generator=generator)
        return self.decoder.mean(z, cond)


class ConditionalVAE(VAE):
    """A label-conditioned VAE: q_phi(z | x, y), p_theta(x | z, y), prior p(z) = N(0, I).

    The label ``y`` (int64 of shape ``(B,)``, values ``0 .. n_classes - 1``) is turned
    into a vector, one-hot (``label_encoding="one_hot"``) or a learned ``nn.Embedding``
    of width ``embed_dim`` (``"embedding"``), and appended to the inputs of both the
    encoder and the decoder. Every method that takes ``y`` requires it.

    Book: eq. (eq-cvae-elbo), Chapter 3.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        n_classes: int,
        *,
        label_encoding: str = "one_hot",
        embed_dim: int = 16,
        hidden: int = 128,
        depth: int = 2,
        likelihood: str = "gaussian",
        decoder_log_var: float | None = None,
    ) -> None:
        self.n_classes = check_int_at_least("n_classes", n_classes, 2)
        if label_encoding not in LABEL_ENCODINGS:
            raise ValueError(
                f"label_encoding must be one of {LABEL_ENCODINGS}, got {label_encoding!r}"
            )
        self.label_encoding = label_encoding
        self.embed_dim = check_int_at_least("embed_dim", embed_dim, 1)
        super().__init__(
            data_shape,
            latent_dim,
            hidden=hidden,
            depth=depth,
            likelihood=likelihood,
            decoder_log_var=decoder_log_var,
        )
        self.label_embedding = (
            nn.Embedding(n_classes, embed_dim) if label_encoding == "embedding" else None
        )

    def _cond_dim(self) -> int:
        return self.n_classes if self.label_encoding == "one_hot" else self.embed_dim

    def condition(self, y: Tensor | None, batch_size: int) -> Tensor:
        """The label vector ``(B, cond_dim)`` for labels ``y`` of shape ``(B,)``."""
        if y is None:
            raise ValueError("y is required: a ConditionalVAE needs a label for every example")
        check_batch_vector("y", y, batch_size)
        if y.dtype != torch.int64:
            raise TypeError(f"y must have dtype torch.int64, got {y.dtype}")
        if y.numel() and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(
                f"y must hold labels in 0..{self.n_classes - 1}, "
                f"got values from {y.min().item()} to {y.max().item()}"
            )
        if self.label_embedding is not None:
            return self.label_embedding(y)
        return F.one_hot(y, self.n_classes).float()


class NegativeELBO(NamedTuple):
    """The negative ELBO of each example and its two terms, each of shape ``(B,)``, in nats."""

    reconstruction: Tensor
    """-log p_theta(x | z) at one reparameterized z ~ q_phi(z | x): unbiased for -E_q[...]."""
    kl: Tensor
    """KL(q_phi(z | x) || N(0, I)), exact (closed form)."""
    total: Tensor
    """reconstruction + kl: an unbiased estimate of -ELBO >= -log p_theta(x)."""


def _check_model(model: object) -> VAE:
    if not isinstance(model, VAE):
        raise TypeError(f"model must be a udm.vae.VAE, got {type(model).__name__}")
    return model


def negative_elbo(
    model: VAE, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
) -> NegativeELBO:
    """The VAE loss per example: reconstruction term, KL term and their sum, in nats.

    reconstruction = -log p_theta(x | z) with one z = mu + sigma * eps drawn from
    ``generator`` (the Monte Carlo estimate of -E_q[log p_theta(x | z)]); kl =
    KL(q_phi(z | x) || N(0, I)) = -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2), exact.
    For the Gaussian decoder the total is an estimate of -ELBO for the density of x;
    for the Bernoulli decoder the reconstruction is a binary cross-entropy on the
    targets (x + 1) / 2. Average ``.total`` over the batch for a training loss.

    Book: eqs. (eq-vae-objective) and (eq-kl-std-normal), Chapter 3.
    """
    model = _check_model(model)
    mean, log_var = model.encode(x, y)
    return negative_elbo_of_gaussian(model, x, mean, log_var, y, generator=generator)


def negative_elbo_of_gaussian(
    model: VAE,
    x: Tensor,
    mean: Tensor,
    log_var: Tensor,
    y: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> NegativeELBO:
    """The negative ELBO of ``x`` for a Gaussian q(z) given by its parameters, not by the encoder.

    q(z) = N(mean, diag(exp(log_var))) with ``mean`` and ``log_var`` of shape
    ``(B, latent_dim)``, one Gaussian per example; the decoder and the prior are the
    model's. The terms are those of :func:`negative_elbo` (one reparameterized z drawn
    from ``generator``, the KL term exact); with the encoder's output for ``mean`` and
    ``log_var`` the two functions agree draw for draw. Gradients reach ``mean`` and
    ``log_var``, which is how :func:`fit_gaussian_posterior` improves them.

    Book: eqs. (eq-vae-objective) and (eq-kl-std-normal), Chapter 3.
    """
    model = _check_model(model)
    check_tensor("x", x, shape=(None, *model.data_shape))
    batch = x.shape[0]
    check_tensor("mean", mean, shape=(batch, model.latent_dim))
    check_tensor("log_var", log_var, shape=(batch, model.latent_dim))
    z = sample_diag_gaussian(mean, log_var, generator=generator)
    reconstruction = -model.decoder.log_prob(x, z, model.condition(y, batch))
    kl = kl_to_standard_normal(mean, log_var)
    return NegativeELBO(reconstruction, kl, reconstruction + kl)


def fit_gaussian_posterior(
    model: VAE,
    x: Tensor,
    y: Tensor | None = None,
    *,
    steps: int = 300,
    n_samples: int = 16,
    lr: float = 0.05,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Fit one diagonal Gaussian q(z) per example by gradient ascent on its ELBO; model fixed.

    Starts from the encoder's ``(mean, log_var)`` for ``x`` and takes ``steps`` Adam
    steps on each example's ELBO, estimated with ``n_samples`` reparameterized draws
    from ``generator``; the learning rate falls linearly from ``lr`` to 0, so that the
    last steps average out the sampling noise instead of jittering around the optimum.
    Only the per-example parameters move: the model's weights and their gradients are
    left untouched. The result bounds the best ELBO a diagonal Gaussian reaches for each
    example from below (the optimum is not certified), so ELBO(fitted) - ELBO(encoder)
    estimates the *amortization gap* and log p(x) - ELBO(fitted) the *approximation gap*
    (Cremer, Li and Duvenaud, 2018).
    Returns ``(mean, log_var)``, each ``(B, latent_dim)``, detached.

    Book: the decomposition of the ELBO gap, Chapter 3.
    """
    model = _check_model(model)
    check_int_at_least("steps", steps, 1)
    check_int_at_least("n_samples", n_samples, 1)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr}")
    with torch.no_grad():
        start_mean, start_log_var = model.encode(x, y)
    mean = start_mean.clone().requires_grad_(True)
    log_var = start_log_var.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mean, log_var], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    x_m = _repeat(x, n_samples)
    y_m = None if y is None else _repeat(y, n_samples)
    for _ in range(steps):
        terms = negative_elbo_of_gaussian(
            model,
            x_m,
            _repeat(mean, n_samples),
            _repeat(log_var, n_samples),
            y_m,
            generator=generator,
        )
        # Sum over examples (each has its own parameters), average over the draws.
        loss = terms.total.sum() / n_samples
        mean.grad, log_var.grad = torch.autograd.grad(loss, [mean, log_var])
        optimizer.step()
        schedule.step()
    return mean.detach(), log_var.detach()


def importance_weighted_log_likelihood(
    model: VAE,
    x: Tensor,
    k: int,
    y: Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    max_batch: int = 32_768,
    proposal: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The importance-weighted bound L_k on log p_theta(x) per example, shape ``(B,)``, in nats.

    L_k = log (1/k) sum_i p_theta(x | z_i) p(z_i) / q_phi(z_i | x) with z_1..z_k drawn
    independently from q_phi(z | x) (Burda et al., 2016). L_1 is a one-sample estimate
    of the ELBO; E[L_k] never decreases as k grows and tends to log p_theta(x). The k
    log-weights are computed in chunks of at most ``max_batch`` decoder evaluations and
    combined with ``logsumexp``, so k = 1000 on hundreds of examples fits in memory.
    Gradients flow (L_k is also a training objective); wrap in ``torch.no_grad()`` to
    evaluate. ``proposal=(mean, log_var)``, each ``(B, latent_dim)``, draws the z_i from
    that diagonal Gaussian instead of the encoder's (for example the per-example fit of
    :func:`fit_gaussian_posterior`); every bound above still holds for it.

    Book: eq. (eq-iwae-bound), Chapter 3.
    """
    model = _check_model(model)
    check_int_at_least("k", k, 1)
    check_int_at_least("max_batch", max_batch, 1)
    batch = check_tensor("x", x, shape=(None, *model.data_shape)).shape[0]
    if proposal is None:
        mean, log_var = model.encode(x, y)
    else:
        if not isinstance(proposal, tuple) or len(proposal) != 2:
            raise TypeError("proposal must be a tuple (mean, log_var) or None")
        mean, log_var = proposal
        check_tensor("proposal mean", mean, shape=(batch, model.latent_dim))
        check_tensor("proposal log_var", log_var, shape=(batch, model.latent_dim))
    cond = model.condition(y, batch)

    def log_weights(m: int) -> Tensor:
        """log p(x | z) + log p(z) - log q(z | x) for m draws per example, shape (m * B,)."""
        mean_m, log_var_m = _repeat(mean, m), _repeat(log_var, m)
        z = sample_diag_gaussian(mean_m, log_var_m, generator=generator)
        zeros = torch.zeros_like(z)
        return (
            model.decoder.log_prob(_repeat(x, m), z, None if cond is None else _repeat(cond, m))
            + diag_gaussian_log_prob(z, zeros, zeros)
            - diag_gaussian_log_prob(z, mean_m, log_var_m)
        )

    return _log_mean_exp_over_draws(log_weights, batch, k, max_batch)


def _repeat(t: Tensor, m: int) -> Tensor:
    """(B, ...) -> (m * B, ...): m copies of the batch, sample-major."""
    return t.expand(m, *t.shape).reshape(m * t.shape[0], *t.shape[1:])


def _log_mean_exp_over_draws(
    log_weights: Callable[[int], Tensor], batch: int, k: int, max_batch: int
) -> Tensor:
    """log (1/k) sum_i exp(log w_i) per example, drawing the k log-weights in chunks.

    ``log_weights(m)`` returns the log-weights of m fresh draws for every example, shape
    ``(m * B,)`` in sample-major order; chunks hold at most ``max_batch`` evaluations.
    """
    per_chunk = max(1, max_batch // batch)
    chunks = []
    for start in range(0, k, per_chunk):
        m = min(per_chunk, k - start)
        chunks.append(log_weights(m).reshape(m, batch))
    return torch.logsumexp(torch.cat(chunks, dim=0), dim=0) - math.log(k)


def bits_per_dim(nats: Tensor | float, n_dims: int) -> Tensor | float:
    """Convert a negative log-likelihood in nats per example to bits per dimension.

    bits/dim = nats / (D ln 2) for data of D dimensions. It refers to whatever density
    the nats refer to: rescaling the data by a factor a adds log2(a) per dimension.

    Book: eq. (eq-dequantization-bound) and its exercises, Chapter 3.
    """
    check_int_at_least("n_dims", n_dims, 1)
    return nats / (n_dims * math.log(2.0))


# ----------------------------------------------------- a two-level Markovian hierarchical VAE


class GaussianTransition(nn.Module):
    """A Gaussian step between latent levels: N(out; mean(inp), diag exp(log_var(inp))).

    An :class:`udm.nets.MLP` maps the input level ``(B, in_dim)`` to ``2 * out_dim``
    numbers, the mean and the log-variance of the next level. :class:`MarkovianHVAE`
    uses one for the encoder step q_phi(z_2 | z_1) and one for the decoder step
    p_theta(z_1 | z_2).

    Book: eqs. (eq-hvae-markov-joint) and (eq-hvae-markov-posterior), Chapter 5.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.in_dim = check_int_at_least("in_dim", in_dim, 1)
        self.out_dim = check_int_at_least("out_dim", out_dim, 1)
        self.net = MLP(in_dim, 2 * out_dim, hidden, depth)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(mean, log_var)`` of the next level, each of shape ``(B, out_dim)``."""
        check_tensor("inputs", inputs, shape=(None, self.in_dim))
        mean, log_var = self.net(inputs).chunk(2, dim=1)
        return mean, log_var


class HVAELatents(NamedTuple):
    """One reparameterized pass up the encoder of a :class:`MarkovianHVAE`, all ``(B, d)``."""

    z1: Tensor
    """z_1 ~ q_phi(z_1 | x)."""
    z2: Tensor
    """z_2 ~ q_phi(z_2 | z_1), drawn at the z_1 above."""
    mean_1: Tensor
    log_var_1: Tensor
    """Mean and log-variance of q_phi(z_1 | x)."""
    mean_2: Tensor
    log_var_2: Tensor
    """Mean and log-variance of q_phi(z_2 | z_1) at the sampled z_1."""


class MarkovianHVAE(nn.Module):
    """A two-level Markovian hierarchical VAE with Gaussian latents.

    Generative model: p(z_2) = N(0, I), p_theta(z_1 | z_2) a :class:`GaussianTransition`,
    p_theta(x | z_1) a :class:`Decoder` (``likelihood`` and ``decoder_log_var`` as for
    :class:`VAE`). Encoder, bottom-up: q_phi(z_1 | x) an :class:`Encoder`, then
    q_phi(z_2 | z_1) a :class:`GaussianTransition`. The networks between ``x`` and
    ``z_1`` have ``depth`` hidden layers of width ``hidden`` (as in a :class:`VAE`);
    the two between the latent levels have ``transition_depth`` layers of width
    ``transition_hidden``. Attributes: ``encoder`` (x -> z_1), ``encoder_top``
    (z_1 -> z_2), ``decoder_top`` (z_2 -> z_1), ``decoder`` (z_1 -> x).

    Book: eqs. (eq-hvae-markov-joint) and (eq-hvae-markov-posterior), Chapter 5.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim_1: int,
        latent_dim_2: int,
        *,
        hidden: int = 128,
        depth: int = 2,
        transition_hidden: int = 64,
        transition_depth: int = 2,
        likelihood: str = "gaussian",
        decoder_log_var: float | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim_1 = check_int_at_least("latent_dim_1", latent_dim_1, 1)
        self.latent_dim_2 = check_int_at_least("latent_dim_2", latent_dim_2, 1)
        self.encoder = Encoder(data_shape, latent_dim_1, hidden, depth)
        self.encoder_top = GaussianTransition(
            latent_dim_1, latent_dim_2, transition_hidden, transition_depth
        )
        self.decoder_top = GaussianTransition(
            latent_dim_2, latent_dim_1, transition_hidden, transition_depth
        )
        self.decoder = Decoder(
            latent_dim_1, data_shape, likelihood, hidden, depth, log_var=decoder_log_var
        )
        self.data_shape = self.encoder.data_shape

    @property
    def likelihood(self) -> str:
        """The decoder's likelihood, ``"gaussian"`` or ``"bernoulli"``."""
        return self.decoder.likelihood

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q_phi(z_1 | x), each ``(B, latent_dim_1)``."""
        check_tensor("x", x, shape=(None, *self.data_shape))
        return self.encoder(x)

    def encode_top(self, z1: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q_phi(z_2 | z_1), each ``(B, latent_dim_2)``."""
        check_tensor("z1", z1, shape=(None, self.latent_dim_1))
        return self.encoder_top(z1)

    def decode_top(self, z2: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of p_theta(z_1 | z_2), each ``(B, latent_dim_1)``."""
        check_tensor("z2", z2, shape=(None, self.latent_dim_2))
        return self.decoder_top(z2)

    def decode(self, z1: Tensor) -> Tensor:
        """E[x | z_1] in data units, shape ``(B, *data_shape)``."""
        check_tensor("z1", z1, shape=(None, self.latent_dim_1))
        return self.decoder.mean(z1)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> HVAELatents:
        """Encode bottom-up: draw z_1 ~ q(z_1 | x), then z_2 ~ q(z_2 | z_1), reparameterized.

        Both draws come from ``generator``, z_1's noise first, then z_2's.

        Book: eqs. (eq-hvae-markov-posterior) and (eq-reparameterization).
        """
        mean_1, log_var_1 = self.encode(x)
        z1 = sample_diag_gaussian(mean_1, log_var_1, generator=generator)
        mean_2, log_var_2 = self.encode_top(z1)
        z2 = sample_diag_gaussian(mean_2, log_var_2, generator=generator)
        return HVAELatents(z1, z2, mean_1, log_var_1, mean_2, log_var_2)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the mean of q(z_1 | x): the deterministic reconstruction of ``x``."""
        mean_1, _ = self.encode(x)
        return self.decode(mean_1)

    def sample(
        self, n: int, generator: torch.Generator | None = None, decoder_noise: bool = False
    ) -> Tensor:
        """Generate ``n`` examples top-down: z_2 ~ N(0, I), z_1 ~ p(z_1 | z_2), then x.

        Returns the decoder mean E[x | z_1] (``decoder_noise=False``) or a draw from
        p_theta(x | z_1) (``True``). The step z_2 -> z_1 is always sampled: it is part of
        the model, and its mean alone would not be a sample.
        """
        check_int_at_least("n", n, 1)
        weight = next(self.parameters())  # draw z_2 with the model's dtype and device
        z2 = torch.randn(
            n, self.latent_dim_2, generator=generator, dtype=weight.dtype, device=weight.device
        )
        z1 = sample_diag_gaussian(*self.decode_top(z2), generator=generator)
        if decoder_noise:
            return self.decoder.sample(z1, generator=generator)
        return self.decoder.mean(z1)


class HVAENegativeELBO(NamedTuple):
    """The negative ELBO of a :class:`MarkovianHVAE`, term by term, each ``(B,)``, in nats."""

    reconstruction: Tensor
    """-log p_theta(x | z_1) at one z_1 ~ q_phi(z_1 | x)."""
    log_ratio_z1: Tensor
    """log q_phi(z_1 | x) - log p_theta(z_1 | z_2) at the sampled (z_1, z_2): a one-sample
    estimate of the level-1 term. Not a KL divergence: its expectation can be negative."""
    kl_z2: Tensor
    """KL(q_phi(z_2 | z_1) || N(0, I)) in closed form at the sampled z_1 (a genuine KL)."""
    total: Tensor
    """The sum of the three: an unbiased estimate of -ELBO >= -log p_theta(x)."""


def _check_hvae(model: object) -> MarkovianHVAE:
    if not isinstance(model, MarkovianHVAE):
        raise TypeError(f"model must be a udm.vae.MarkovianHVAE, got {type(model).__name__}")
    return model


def hvae_negative_elbo(
    model: MarkovianHVAE, x: Tensor, *, generator: torch.Generator | None = None
) -> HVAENegativeELBO:
    """The two-level HVAE loss per example, one term per level, in nats.

    With z_1 ~ q(z_1 | x) and z_2 ~ q(z_2 | z_1) drawn once (z_1's noise first, from
    ``generator``): reconstruction = -log p(x | z_1); log_ratio_z1 = log q(z_1 | x) -
    log p(z_1 | z_2); kl_z2 = KL(q(z_2 | z_1) || N(0, I)), exact given z_1. Their sum
    estimates -ELBO without bias. Only the top term is a KL: under q, z_2 is drawn
    *after* z_1, so z_1 given z_2 is not distributed as q(z_1 | x) and the level-1 term
    is a Monte Carlo log ratio. Average ``.total`` over the batch for a training loss.

    Book: eq. (eq-hvae-elbo-two-level), Chapter 5.
    """
    model = _check_hvae(model)
    latents = model(x, generator=generator)
    z1, z2 = latents.z1, latents.z2
    reconstruction = -model.decoder.log_prob(x, z1)
    prior_mean_1, prior_log_var_1 = model.decode_top(z2)
    log_ratio_z1 = diag_gaussian_log_prob(
        z1, latents.mean_1, latents.log_var_1
    ) - diag_gaussian_log_prob(z1, prior_mean_1, prior_log_var_1)
    kl_z2 = kl_to_standard_normal(latents.mean_2, latents.log_var_2)
    return HVAENegativeELBO(
        reconstruction, log_ratio_z1, kl_z2, reconstruction + log_ratio_z1 + kl_z2
    )


def hvae_importance_weighted_log_likelihood(
    model: MarkovianHVAE,
    x: Tensor,
    k: int,
    *,
    generator: torch.Generator | None = None,
    max_batch: int = 32_768,
) -> Tensor:
    """The importance-weighted bound L_k on log p_theta(x) for a two-level HVAE, shape ``(B,)``.

    As :func:`importance_weighted_log_likelihood`, with the weight of a bottom-up draw
    (z_1, z_2) ~ q(z_1 | x) q(z_2 | z_1) being
    w = p(x | z_1) p(z_1 | z_2) p(z_2) / (q(z_1 | x) q(z_2 | z_1)). In each chunk all
    z_1 noise is drawn before all z_2 noise.

    Book: eqs. (eq-iwae-bound), Chapter 3, and (eq-hvae-markov-joint), Chapter 5.
    """
    model = _check_hvae(model)
    check_int_at_least("k", k, 1)
    check_int_at_least("max_batch", max_batch, 1)
    mean_1, log_var_1 = model.encode(x)

    def log_weights(m: int) -> Tensor:
        """log p(x, z_1, z_2) - log q(z_1, z_2 | x) for m draws per example, shape (m * B,)."""
        mean_1m, log_var_1m = _repeat(mean_1, m), _repeat(log_var_1, m)
        z1 = sample_diag_gaussian(mean_1m, log_var_1m, generator=generator)
        mean_2, log_var_2 = model.encode_top(z1)
        z2 = sample_diag_gaussian(mean_2, log_var_2, generator=generator)
        prior_mean_1, prior_log_var_1 = model.decode_top(z2)
        zeros = torch.zeros_like(z2)
        return (
            model.decoder.log_prob(_repeat(x, m), z1)
            + diag_gaussian_log_prob(z1, prior_mean_1, prior_log_var_1)
            + diag_gaussian_log_prob(z2, zeros, zeros)
            - diag_gaussian_log_prob(z1, mean_1m, log_var_1m)
            - diag_gaussian_log_prob(z2, mean_2, log_var_2)
        )

    return _log_mean_exp_over_draws(log_weights, x.shape[0], k, max_batch)
