"""Chapter 1's two codes: a deterministic autoencoder, and probabilistic PCA.

:class:`Autoencoder`: the encoder f maps a data point to a short code z = f(x); the
decoder g maps the code back, x_hat = g(z). Both are :class:`udm.nets.MLP` networks, or
single linear layers when ``depth=0`` (a *linear* autoencoder, which learns the PCA
subspace). The model works on batches of any trailing shape fixed at construction:
``data_shape=64`` for flattened points of shape ``(B, 64)``, ``data_shape=(1, 8, 8)``
for digit images of shape ``(B, 1, 8, 8)``, which are flattened on the way in and
unflattened on the way out.

:class:`PPCA` and :func:`fit_ppca`: probabilistic PCA (Tipping and Bishop, 1999), the
latent-variable model z ~ N(0, I_k), x | z ~ N(W z + mean, noise_var I_D), and its
maximum-likelihood fit in closed form. It works on NumPy float64 arrays of shape
``(N, D)``, like Chapter 1's linear algebra.

Book: Chapter 1, eqs. (eq-autoencoder-objective) and (eq-ppca-ml).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


def _check_rows(name: str, x: object, dim: int | None = None) -> np.ndarray:
    """Check that ``x`` is a finite float array of shape ``(N, D)`` (``D == dim`` if given)."""
    if not isinstance(x, np.ndarray) or x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a 2-D NumPy float array (N, D), got {type(x).__name__}"
            + (f" of shape {x.shape}" if isinstance(x, np.ndarray) else "")
        )
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must hold finite values only")
    return x


@dataclass(frozen=True)
class PPCA:
    """Probabilistic PCA: z ~ N(0, I_k), x | z ~ N(weight @ z + mean, noise_var * I_D).

    ``mean`` has shape ``(D,)``, ``weight`` (the matrix W) ``(D, k)``, and ``noise_var``
    is the noise **variance** sigma^2 > 0. The marginal density of x is
    N(mean, W W^T + sigma^2 I) (:meth:`covariance`) and the posterior of z given x is
    Gaussian with mean M^-1 W^T (x - mean) and covariance sigma^2 M^-1, where
    M = W^T W + sigma^2 I_k (:meth:`posterior`).

    Book: eqs. (eq-ppca-model), (eq-ppca-marginal) and (eq-ppca-posterior), Chapter 1.
    """

    mean: np.ndarray
    weight: np.ndarray
    noise_var: float

    def __post_init__(self) -> None:
        mean, weight = np.asarray(self.mean), np.asarray(self.weight)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (D,), got {mean.shape}")
        if weight.ndim != 2 or weight.shape[0] != mean.shape[0]:
            raise ValueError(f"weight must have shape ({mean.shape[0]}, k), got {weight.shape}")
        if not (
            isinstance(self.noise_var, int | float)
            and math.isfinite(self.noise_var)
            and self.noise_var > 0
        ):
            raise ValueError(
                f"noise_var must be a positive number (a variance), got {self.noise_var}"
            )

    @property
    def data_dim(self) -> int:
        """D, the dimension of x."""
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        """k, the dimension of z."""
        return self.weight.shape[1]

    def covariance(self) -> np.ndarray:
        """The marginal covariance W W^T + sigma^2 I of x, shape ``(D, D)``.

        Book: eq. (eq-ppca-marginal), Chapter 1.
        """
        return self.weight @ self.weight.T + self.noise_var * np.eye(self.data_dim)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log N(x; mean, W W^T + sigma^2 I) for each row of ``x`` (N, D), shape ``(N,)``, in nats.

        Book: eq. (eq-ppca-marginal), Chapter 1.
        """
        x = _check_rows("x", x, self.data_dim)
        chol = np.linalg.cholesky(self.covariance())
        white = np.linalg.solve(chol, (x - self.mean).T)  # L^-1 (x - mean), column per row
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        return -0.5 * (self.data_dim * math.log(2 * math.pi) + log_det + (white**2).sum(axis=0))

    def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(N, k)`` and covariance ``(k, k)`` of p(z | x) for each row of ``x``.

        The covariance sigma^2 M^-1 is the same for every x; the mean is M^-1 W^T (x - mean).

        Book: eq. (eq-ppca-posterior), Chapter 1.
        """
        x = _check_rows("x", x, self.data_dim)
        m_inv = np.linalg.inv(
            self.weight.T @ self.weight + self.noise_var * np.eye(self.latent_dim)
        )
        return (x - self.mean) @ self.weight @ m_inv, self.noise_var * m_inv

    def sample(self, n: int, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
        """Draw ``n`` examples, shape ``(n, D)``: z ~ N(0, I), then W z + mean (+ noise).

        With ``noise=False`` returns the decoded means W z + mean, without the
        N(0, sigma^2 I) noise. ``rng`` is a NumPy ``Generator`` (``udm.seeds.numpy_rng``).
        """
        check_int_at_least("n", n, 1)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        x = rng.standard_normal((n, self.latent_dim)) @ self.weight.T + self.mean
        if noise:
            x = x + math.sqrt(self.noise_var) * rng.standard_normal(x.shape)
        return x


def fit_ppca(x: np.ndarray, k: int) -> PPCA:
    """The maximum-likelihood PPCA with ``k`` latents for the rows of ``x`` (N, D), in closed form.

    With lambda_1 >= ... >= lambda_D the eigenvalues of the sample covariance S (divided
    by N) and u_j its eigenvectors: mean = the sample mean, sigma^2 = the average of the
    D - k discarded eigenvalues, W = U_k (Lambda_k - sigma^2 I)^(1/2) (Tipping and Bishop,
    1999; W is unique up to a rotation of z, and this is the choice whose columns are
    orthogonal). Needs 1 <= k < D, and a positive sigma^2 (not every discarded
    eigenvalue zero).

    Book: eq. (eq-ppca-ml), Chapter 1.
    """
    x = _check_rows("x", x)
    n, dim = x.shape
    check_int_at_least("k", k, 1)
    if k >= dim:
        raise ValueError(f"k must be below the data dimension {dim}, got {k}")
    if n < 2:
        raise ValueError(f"x must hold at least 2 rows, got {n}")
    mean = x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # largest first
    noise_var = float(eigenvalues[k:].mean())
    if noise_var <= 0:
        raise ValueError(f"the {dim - k} discarded eigenvalues are all zero: use a smaller k")
    scales = np.sqrt(np.maximum(eigenvalues[:k] - noise_var, 0.0))
    return PPCA(mean, eigenvectors[:, :k] * scales, noise_var)
