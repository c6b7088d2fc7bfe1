"""The generative adversarial network: a generator, a discriminator, their losses, their game.

A GAN is two networks playing against each other. The generator G maps latent noise
z ~ N(0, I) to a point G(z) in data space; the discriminator D reads a point and outputs
a *logit* l(x), whose sigmoid D(x) = sigmoid(l(x)) is its probability that x is real.
Training alternates: a step of D on a batch of real and generated points (a logistic
regression, real = 1, fake = 0), then a step of G through D's judgement of fresh fakes.

Everything here works on logits, never on probabilities: ``log D = -softplus(-l)`` and
``log(1 - D) = -softplus(l)`` are exact and finite for every logit, where
``log(sigmoid(l))`` would underflow to ``log 0`` once D is confident.

The GAN has no likelihood and no bound on one: the only way to judge it is to look at
its samples and measure them (:mod:`udm.metrics`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from udm import seeds
from udm.nets import MLP
from udm.train import check_finite, default_device, minibatch_indices, progress, seed_everything
from udm.validate import check_int_at_least, check_positive, check_tensor


class Generator(nn.Module):
    """The generator G: latent noise ``z`` of shape ``(B, latent_dim)`` to points ``(B, data_dim)``.

    An :class:`udm.nets.MLP` of ``depth`` hidden layers of width ``hidden``. The model's
    distribution p_g is that of G(z) with z ~ N(0, I); it has no density we can evaluate.

    Book: eq. (eq-gan-value), Chapter 4.
    """

    def __init__(self, latent_dim: int = 2, data_dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.latent_dim = check_int_at_least("latent_dim", latent_dim, 1)
        self.data_dim = check_int_at_least("data_dim", data_dim, 1)
        self.net = MLP(latent_dim, data_dim, hidden=hidden, depth=depth)

    def forward(self, z: Tensor) -> Tensor:
        """Map latents ``z`` of shape ``(B, latent_dim)`` to points of shape ``(B, data_dim)``."""
        check_tensor("z", z, shape=(None, self.latent_dim))
        return self.net(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` points G(z), z ~ N(0, I) from ``generator`` (on the CPU); no gradients."""
        check_int_at_least("n", n, 1)
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self(z)


class Discriminator(nn.Module):
    """The discriminator: points ``(B, data_dim)`` to logits ``(B,)``; D(x) = sigmoid(logit).

    An :class:`udm.nets.MLP` of ``depth`` hidden layers of width ``hidden`` with one output.
    The logit is what the losses use; :meth:`probability` gives D(x) itself.

    Book: eq. (eq-gan-value), Chapter 4.
    """

    def __init__(self, data_dim: int = 2, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.data_dim = check_int_at_least("data_dim", data_dim, 1)
        self.net = MLP(data_dim, 1, hidden=hidden, depth=depth)

    def forward(self, x: Tensor) -> Tensor:
        """The logit l(x) for each row of ``x`` (shape ``(B, data_dim)``); returns ``(B,)``."""
        check_tensor("x", x, shape=(None, self.data_dim))
        return self.net(x).squeeze(1)

    def probability(self, x: Tensor) -> Tensor:
        """D(x) = sigmoid(l(x)), the probability that each row of ``x`` is real; shape ``(B,)``."""
        return torch.sigmoid(self(x))


def _check_logits(name: str, logits: Tensor) -> Tensor:
    check_tensor(name, logits, shape=(None,))
    check_int_at_least(f"{name}.shape[0]", logits.shape[0], 1)
    return logits


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """The discriminator's loss, -mean log D(x_real) - mean log(1 - D(x_fake)), a scalar.

    Minus the value function V(D, G) estimated on a batch: the binary cross-entropy of
    a logistic regression with labels 1 for real and 0 for fake, computed from the
    logits as ``softplus(-real).mean() + softplus(fake).mean()``. At the game's
    equilibrium (D = 1/2 everywhere) it equals 2 log 2.

    Book: eq. (eq-gan-value), Chapter 4.
    """
    _check_logits("real_logits", real_logits)
    _check_logits("fake_logits", fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, *, saturating: bool = False) -> Tensor:
    """The generator's loss on the logits of generated points, a scalar.

    Non-saturating (the default): -mean log D(G(z)) = ``softplus(-logit).mean()``; its
    gradient with respect to a logit tends to -1 when D confidently rejects the fake.
    Saturating (``saturating=True``): mean log(1 - D(G(z))) = ``-softplus(logit).mean()``,
    the generator's side of the minimax game, whose gradient vanishes exactly there.
    At D = 1/2 the non-saturating loss equals log 2.

    Book: eq. (eq-gan-nonsaturating), Chapter 4.
    """
    _check_logits("fake_logits", fake_logits)
    if saturating:
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


@dataclass
class GANHistory:
    """What :func:`train_gan` leaves behind: both players' losses per step, and more.

    Attributes:
        generator_losses: the generator's loss at every step.
        discriminator_losses: the discriminator's loss at every step (the mean over its
            ``d_steps`` updates in that step).
        real_scores: the mean of D(x) over the real batch at every step.
        fake_scores: the mean of D(G(z)) over the fake batch at every step.
        seconds: wall-clock time of the training loop.
        snapshots: generator samples, ``(n_snapshot, data_dim)`` on the CPU, keyed by the
            number of steps taken when they were drawn (0: before training). Every
            snapshot maps the same fixed latents, so they show how G moved.
    """

    generator_losses: list[float]
    discriminator_losses: list[float]
    real_scores: list[float]
    fake_scores: list[float]
    seconds: float
    snapshots: dict[int, Tensor] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """The number of generator updates taken."""
        return len(self.generator_losses)


# train_gan() has an argument named `progress` that shadows the function.
_progress_bar = progress


def _named_check_finite(player: str, loss: Tensor, step: int) -> None:
    """:func:`udm.train.check_finite`, with the player named in the error."""
    try:
        check_finite(loss, step)
    except FloatingPointError as err:
        raise FloatingPointError(f"{player} {err}") from None


def train_gan(
    generator: Generator,
    discriminator: Discriminator,
    data: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr_g: float = 2e-4,
    lr_d: float = 2e-4,
    seed: int = 0,
    d_steps: int = 1,
    betas: tuple[float, float] = (0.5, 0.999),
    snapshot_steps: Sequence[int] = (),
    n_snapshot: int = 1000,
    device: torch.device | str | None = None,
    desc: str = "GAN",
    progress: bool = True,
) -> GANHistory:
    """Train a GAN by alternating updates of the two players; return both loss histories.

    Each step takes ``d_steps`` Adam steps (learning rate ``lr_d``) on
    :func:`discriminator_loss`, each with a fresh real batch from ``data`` (shape
    ``(N, data_dim)``, shuffled epochs as in :func:`udm.train.train`) and a fresh fake
    batch G(z) with G held fixed; then one Adam step (learning rate ``lr_g``) of the
    generator on the non-saturating :func:`generator_loss` of a new fake batch, with D
    held fixed. Adam uses ``betas`` for both players, (0.5, 0.999) by default as is
    usual for GANs.

    ``seed`` seeds every random number generator first (:func:`udm.train.seed_everything`),
    so the same seed and the same initial networks give the same run. The initial
    weights are the caller's business. ``snapshot_steps`` lists step counts (0..steps)
    at which to record the generator's image of ``n_snapshot`` fixed latents. A NaN or
    infinite loss raises ``FloatingPointError`` naming the player and the step.

    Book: the alternating algorithm of Chapter 4 (eqs. (eq-gan-value), (eq-gan-nonsaturating)).
    """
    if not isinstance(generator, Generator):
        raise TypeError(f"generator must be a udm.gan.Generator, got {type(generator).__name__}")
    if not isinstance(discriminator, Discriminator):
        raise TypeError(
            f"discriminator must be a udm.gan.Discriminator, got {type(discriminator).__name__}"
        )
    if discriminator.data_dim != generator.data_dim:
        raise ValueError(
            f"discriminator.data_dim ({discriminator.data_dim}) must equal "
            f"generator.data_dim ({generator.data_dim})"
        )
    check_tensor("data", data, shape=(None, generator.data_dim))
    check_int_at_least("steps", steps, 1)
    check_int_at_least("batch_size", batch_size, 1)
    check_int_at_least("d_steps", d_steps, 1)
    check_int_at_least("n_snapshot", n_snapshot, 1)
    check_positive("lr_g", lr_g)
    check_positive("lr_d", lr_d)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
    snapshot_at = sorted(set(snapshot_steps))
    for s in snapshot_at:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= steps:
            raise ValueError(f"snapshot_steps must hold ints in 0..steps = 0..{steps}, got {s!r}")
    n = data.shape[0]
    if batch_size > n:
        raise ValueError(
            f"batch_size must be at most the number of examples ({n}), got {batch_size}"
        )

    device = torch.device(device) if device is not None else default_device()
    generator.to(device).train()
    discriminator.to(device).train()
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    shuffle = seed_everything(seed)
    # The snapshot latents come from their own generator: recording snapshots does not
    # change the training run.
    fixed_z = torch.randn(n_snapshot, generator.latent_dim, generator=seeds.generator(seed)).to(
        device
    )

    def latents() -> Tensor:
        return torch.randn(batch_size, generator.latent_dim, device=device)

    def snapshot() -> Tensor:
        with torch.no_grad():
            return generator(fixed_z).cpu()

    history = GANHistory([], [], [], [], seconds=0.0)
    if 0 in snapshot_at:
        history.snapshots[0] = snapshot()
    batches = minibatch_indices(n, batch_size, steps * d_steps, shuffle)
    start = time.perf_counter()
    with _progress_bar(steps, desc, enabled=progress) as bar:
        for step in bar:
            # --- the discriminator's turn: G fixed (its output detached)
            d_losses = []
            for _ in range(d_steps):
                real = data[next(batches).to(data.device)].to(device)
                with torch.no_grad():
                    fake = generator(latents())
                real_logits, fake_logits = discriminator(real), discriminator(fake)
                loss_d = discriminator_loss(real_logits, fake_logits)
                _named_check_finite("discriminator", loss_d, step)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                d_losses.append(loss_d.item())
            # --- the generator's turn: D fixed (no gradients for its weights at all)
            discriminator.requires_grad_(False)
            loss_g = generator_loss(discriminator(generator(latents())))
            discriminator.requires_grad_(True)
            _named_check_finite("generator", loss_g, step)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()

            history.discriminator_losses.append(math.fsum(d_losses) / d_steps)
            history.generator_losses.append(loss_g.item())
            history.real_scores.append(torch.sigmoid(real_logits).mean().item())
            history.fake_scores.append(torch.sigmoid(fake_logits).mean().item())
            if step + 1 in snapshot_at:
                history.snapshots[step + 1] = snapshot()
            bar.set_postfix(d=f"{d_losses[-1]:.3g}", g=f"{loss_g.item():.3g}", refresh=False)
    history.seconds = time.perf_counter() - start
    return history
