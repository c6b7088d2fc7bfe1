"""A deterministic autoencoder x -> z -> x_hat, and its squared-error training loss.

The encoder f maps a data point to a short code z = f(x); the decoder g maps the code
back, x_hat = g(z). Both are :class:`udm.nets.MLP` networks, or single linear layers
when ``depth=0`` (a *linear* autoencoder, which learns the PCA subspace). The model
works on batches of any trailing shape fixed at construction: ``data_shape=64`` for
flattened points of shape ``(B, 64)``, ``data_shape=(1, 8, 8)`` for digit images of
shape ``(B, 1, 8, 8)``, which are flattened on the way in and unflattened on the way out.

Book: Chapter 1, eq. (eq-autoencoder-objective).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from udm.nets import MLP
from udm.validate import check_int_at_least, check_tensor


def _as_shape(data_shape: int | Sequence[int]) -> tuple[int, ...]:
    """Turn ``data_shape`` (an int D or a sequence of sizes) into a tuple of positive sizes."""
    shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
    if not shape:
        raise ValueError("data_shape must be an int or a non-empty sequence of sizes, got ()")
    for size in shape:
        check_int_at_least("data_shape", size, 1)
    return shape


class Autoencoder(nn.Module):
    """An encoder ``f: x -> z`` and a decoder ``g: z -> x_hat`` trained to give ``x_hat = x``.

    Args:
        data_shape: the shape of one example, without the batch axis: an int ``D`` for
            flat data ``(B, D)``, or a tuple such as ``(1, 8, 8)`` for images.
        latent_dim: the size ``d`` of the code ``z``.
        hidden: the width of every hidden layer of the encoder and of the decoder.
        depth: the number of hidden layers in each of them; ``0`` makes both single
            linear maps (no activation), the linear autoencoder of Chapter 1.
        activation: the nonlinearity after each hidden layer (unused when ``depth=0``).

    Book: eq. (eq-autoencoder), Chapter 1.
    """

    def __init__(
        self,
        data_shape: int | Sequence[int],
        latent_dim: int,
        hidden: int = 128,
        depth: int = 2,
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        self.data_shape = _as_shape(data_shape)
        self.data_dim = math.prod(self.data_shape)
        self.latent_dim = check_int_at_least("latent_dim", latent_dim, 1)
        check_int_at_least("depth", depth, 0)
        if depth == 0:
            self.encoder: nn.Module = nn.Linear(self.data_dim, latent_dim)
            self.decoder: nn.Module = nn.Linear(latent_dim, self.data_dim)
        else:
            self.encoder = MLP(self.data_dim, latent_dim, hidden, depth, activation)
            self.decoder = MLP(latent_dim, self.data_dim, hidden, depth, activation)

    def encode(self, x: Tensor) -> Tensor:
        """The codes ``z = f(x)``, shape ``(B, latent_dim)``, of a batch ``x``.

        ``x`` must have shape ``(B, *data_shape)``; images are flattened to
        ``(B, data_dim)`` before the encoder network sees them.

        Book: eq. (eq-autoencoder), Chapter 1.
        """
        check_tensor("x", x, shape=(None, *self.data_shape))
        return self.encoder(x.reshape(x.shape[0], self.data_dim))

    def decode(self, z: Tensor) -> Tensor:
        """The decodes ``x_hat = g(z)``, shape ``(B, *data_shape)``, of a batch of codes ``z``.

        ``z`` must have shape ``(B, latent_dim)``; the decoder network's flat output is
        unflattened to ``data_shape``.

        Book: eq. (eq-autoencoder), Chapter 1.
        """
        check_tensor("z", z, shape=(None, self.latent_dim))
        return self.decoder(z).reshape(z.shape[0], *self.data_shape)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``g(f(x))`` of a batch ``x``, with the same shape as ``x``."""
        return self.decode(self.encode(x))


def reconstruction_loss(model: Autoencoder, batch: tuple[Tensor, ...]) -> Tensor:
    """Mean squared reconstruction error per coordinate, ``mean((x - g(f(x)))**2)``.

    ``batch`` is a tuple whose first entry is the data ``x`` (any further entries, such
    as labels, are ignored), so the function serves directly as the ``loss_fn`` of
    :func:`udm.train.train`. The mean runs over the batch and over all ``D`` coordinates
    of each example: the objective of eq. (eq-autoencoder-objective) divided by ``D``,
    which is the "MSE per pixel" that Chapter 1 reports.

    Book: eq. (eq-autoencoder-objective), Chapter 1.
    """
    if not isinstance(batch, tuple) or not batch:
        raise TypeError(f"batch must be a non-empty tuple of tensors, got {type(batch).__name__}")
    x = batch[0]
    return torch.mean((model(x) - x) ** 2)
