"""Data with exact ground truth: Gaussian mixtures, 2-D shapes, and the 8x8 digits.

A Gaussian mixture is the one non-trivial distribution whose density, score,
noised marginals and optimal denoiser all have closed forms, so the book measures
every trained model against :class:`GaussianMixture`. The 2-D shapes
(:func:`two_moons`, :func:`swiss_roll`, :func:`checkerboard`) have no handy density
and serve as harder pictures; :func:`load_digits_data` is the book's image data
set, bundled with scikit-learn so that nothing downloads.

Every 2-D data set here lives in roughly the square [-3, 3]^2, so that one plot
range and one network initialisation serve all of them.

All mixture computations run in float64; results come back in the dtype of the
input (float32 data in, float32 answers out).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.datasets import load_digits, make_moons, make_swiss_roll
from sklearn.model_selection import train_test_split

from udm import seeds
from udm.validate import (
    check_batch_vector,
    check_finite,
    check_int_at_least,
    check_positive,
    check_same_device,
    check_tensor,
)

_WEIGHT_TOLERANCE = 1e-6  # how far the weights' sum may stray from 1


def _as_float64(name: str, value: torch.Tensor | Sequence, ndim: int) -> torch.Tensor:
    """Return ``value`` as a float64 CPU tensor after checking its number of axes.

    Lists of NumPy arrays go through one ``np.asarray`` first (torch is slow on them).
    """
    if not isinstance(value, torch.Tensor):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be an array of numbers: {err}") from err
    tensor = torch.as_tensor(value, dtype=torch.float64, device="cpu")
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} must be finite")
    return tensor


class GaussianMixture:
    r"""A mixture of K full-covariance Gaussians in D dimensions.

    p(x) = sum_k w_k N(x; mu_k, Sigma_k). The parameters are stored in float64.
    Internally each covariance is kept as its eigendecomposition
    Sigma_k = U_k diag(lambda_k) U_k^T, because the noised covariance
    a^2 Sigma_k + s^2 I of x_t = a x_0 + s eps (any path of :mod:`udm.paths`) has the same
    eigenvectors and eigenvalues a^2 lambda_k + s^2: one decomposition serves every noise
    level, including a different noise level for every row of a batch.

    Args:
        means: component means mu_k, shape (K, D).
        covariances: component covariances Sigma_k, shape (K, D, D), symmetric
            positive definite.
        weights: mixture weights w_k, shape (K,), positive, summing to 1 (within
            1e-6; they are then renormalised exactly).
    """

    def __init__(
        self,
        means: torch.Tensor | Sequence,
        covariances: torch.Tensor | Sequence,
        weights: torch.Tensor | Sequence,
    ) -> None:
        means = _as_float64("means", means, ndim=2)
        covariances = _as_float64("covariances", covariances, ndim=3)
        weights = _as_float64("weights", weights, ndim=1)
        n_components, dim = means.shape
        if n_components == 0 or dim == 0:
            raise ValueError(
                f"means must have shape (K, D) with K, D >= 1, got {(n_components, dim)}"
            )
        check_tensor("covariances", covariances, shape=(n_components, dim, dim))
        check_tensor("weights", weights, shape=(n_components,))
        if not (weights > 0).all():
            raise ValueError(f"weights must all be positive, got {weights.tolist()}")
        total = weights.sum().item()
        if abs(total - 1.0) > _WEIGHT_TOLERANCE:
            raise ValueError(f"weights must sum to 1, got sum {total}")
        if not torch.allclose(covariances, covariances.mT, rtol=1e-8, atol=1e-12):
            raise ValueError("covariances must be symmetric matrices")
        # Exact symmetrisation so that eigh sees a symmetric matrix bit for bit.
        covariances = 0.5 * (covariances + covariances.mT)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariances)
        if not (eigenvalues > 0).all():
            raise ValueError(
                "covariances must be positive definite, got smallest eigenvalue "
                f"{eigenvalues.min().item():.3g}"
            )
        self.means = means
        self.covariances = covariances
        self.weights = weights / weights.sum()
        self._eigenvalues = eigenvalues  # (K, D)
        self._eigenvectors = eigenvectors  # (K, D, D), columns are eigenvectors

    @property
    def n_components(self) -> int:
        """Number of mixture components K."""
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        """Dimension D of the data."""
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(n_components={self.n_components}, dim={self.dim})"

    # ------------------------------------------------------------------ helpers
    def _check_points(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Check a batch of points of shape (B, D) and return it in float64."""
        check_tensor(name, x, shape=(None, self.dim))
        check_same_device(name, x, "the mixture's parameters (CPU)", self.means)
        check_finite(name, x)
        return x.to(torch.float64)

    def _check_alpha_bar(self, alpha_bar: float | torch.Tensor, batch_size: int) -> torch.Tensor:
        """Return alpha_bar as a float64 tensor of shape (B, 1, 1) after checking its range."""
        if isinstance(alpha_bar, torch.Tensor):
            check_tensor("alpha_bar", alpha_bar)
            check_batch_vector("alpha_bar", alpha_bar, batch_size)
            values = alpha_bar.to(device="cpu", dtype=torch.float64)
        else:
            values = torch.full((batch_size,), float(alpha_bar), dtype=torch.float64)
        # (0, 1] excludes nan as well: comparisons with nan are False.
        if not ((values > 0) & (values <= 1)).all():
            raise ValueError(
                f"alpha_bar must lie in (0, 1], got values from {values.min().item()} "
                f"to {values.max().item()}"
            )
        return values[:, None, None]

    def _check_scale(self, name: str, value: float | torch.Tensor, batch_size: int) -> torch.Tensor:
        """A path coefficient (a or s) as float64 of shape (B, 1, 1), checked finite and >= 0."""
        if isinstance(value, torch.Tensor):
            check_tensor(name, value)
            values = value.detach().to(device="cpu", dtype=torch.float64)
            if values.ndim == 0:
                values = values.expand(batch_size)
            check_batch_vector(name, values, batch_size)
        else:
            values = torch.full((batch_size,), float(value), dtype=torch.float64)
        if not ((values >= 0) & (values < float("inf"))).all():  # NaN fails too
            raise ValueError(f"{name} must be finite and >= 0, got {values.min().item():.6g}..")
        return values[:, None, None]

    def _noised_terms(
        self, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-component quantities of the noised mixture at the points ``x``.

        The noised component k is N(a mu_k, U_k diag(v_k) U_k^T) with
        v_k = a^2 lambda_k + s^2. Returns ``log_joint`` (B, K) = log w_k + log N_k(x), the
        eigenbasis coordinates ``y`` (B, K, D) = U_k^T (x - a mu_k), and the variances ``v``
        (B, K, D). ``a`` and ``s`` have shape (B, 1, 1); a = 1, s = 0 is the clean mixture.
        """
        diff = x[:, None, :] - a * self.means[None]  # (B, K, D)
        y = torch.einsum("kde,bkd->bke", self._eigenvectors, diff)
        v = a.square() * self._eigenvalues[None] + s.square()  # (B, K, D)
        log_density = -0.5 * (
            (y**2 / v).sum(-1) + v.log().sum(-1) + self.dim * math.log(2 * math.pi)
        )
        return self.weights.log()[None] + log_density, y, v

    def _clean_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_noised_terms` for the clean mixture (alpha_bar = 1) at the points ``x``."""
        x = self._check_points("x", x)
        ones = torch.ones(x.shape[0], 1, 1, dtype=torch.float64)
        return self._noised_terms(x, ones, torch.zeros_like(ones))

    # ---------------------------------------------------------------- densities
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density log p(x) of each row of ``x`` (B, D); returns shape (B,).

        Computed as logsumexp_k (log w_k + log N(x; mu_k, Sigma_k)), which never
        exponentiates a large negative number on its own.
        """
        log_joint, _, _ = self._clean_terms(x)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities p(k | x) for each row of ``x``; shape (B, K)."""
        log_joint, _, _ = self._clean_terms(x)
        return torch.softmax(log_joint, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        r"""The score grad_x log p(x) in closed form, shape (B, D).

        grad_x log p(x) = sum_k p(k | x) (-Sigma_k^{-1} (x - mu_k)): each component
        pulls x towards its mean, weighted by its responsibility for x. No autograd.

        Book: eq. (eq-mixture-score), Chapter on score-based models.
        """
        log_joint, y, v = self._clean_terms(x)
        responsibilities = torch.softmax(log_joint, dim=1)  # (B, K)
        # Sigma_k^{-1} (x - mu_k) = U_k diag(1 / lambda_k) U_k^T (x - mu_k)
        pulls = -torch.einsum("kde,bke->bkd", self._eigenvectors, y / v)
        return torch.einsum("bk,bkd->bd", responsibilities, pulls).to(x.dtype)

    # ----------------------------------------------------------------- sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        return_labels: bool = False,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` exact samples, shape (n, D), in ``dtype`` (float32 by default).

        First a component k ~ Categorical(w), then x = mu_k + U_k diag(sqrt(lambda_k)) z
        with z ~ N(0, I). With ``return_labels`` also returns the components k as an
        int64 tensor of shape (n,).
        """
        check_int_at_least("n", n, 1)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        scaled = z * self._eigenvalues[labels].sqrt()
        x = self.means[labels] + torch.einsum("nde,ne->nd", self._eigenvectors[labels], scaled)
        x = x.to(dtype)
        return (x, labels) if return_labels else x

    # ----------------------------------------------------------- noise and denoising
    def marginal(self, a: float, s: float) -> GaussianMixture:
        r"""The exact law of x_t = a x_0 + s eps for x_0 from this mixture, eps ~ N(0, I).

        Again a Gaussian mixture: the same weights, means a mu_k, covariances
        a^2 Sigma_k + s^2 I. ``a`` and ``s`` are numbers >= 0, not both 0.

        Book: eq. (eq-noised-mixture), Chapter on the three parameterizations.
        """
        a, s = check_real_nonnegative("a", a), check_real_nonnegative("s", s)
        identity = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(
            means=a * self.means,
            covariances=a**2 * self.covariances + s**2 * identity,
            weights=self.weights,
        )

    def noised(self, alpha_bar: float) -> GaussianMixture:
        r"""The exact marginal q(x_t) of x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps.

        :meth:`marginal` with a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar): the same
        weights, means sqrt(alpha_bar) mu_k and covariances alpha_bar Sigma_k + (1 - alpha_bar) I.

        Book: eq. (eq-noised-mixture), Chapter on the three parameterizations.
        """
        if isinstance(alpha_bar, torch.Tensor):
            raise TypeError("alpha_bar must be a float here; noised() builds one mixture")
        alpha_bar = float(alpha_bar)
        if not 0 < alpha_bar <= 1:
            raise ValueError(f"alpha_bar must lie in (0, 1], got {alpha_bar}")
        return self.marginal(math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar))

    def posterior_mean(
        self, x_t: torch.Tensor, a: float | torch.Tensor, s: float | torch.Tensor
    ) -> torch.Tensor:
        r"""The Bayes-optimal denoiser E[x_0 | x_t] for x_t = a x_0 + s eps, shape (B, D).

        Condition each component jointly Gaussian in (x_0, x_t): with
        C_k = a^2 Sigma_k + s^2 I,

            E[x_0 | x_t, k] = mu_k + a Sigma_k C_k^{-1} (x_t - a mu_k),

        and average over k with the responsibilities p(k | x_t) of the noised mixture
        (:meth:`marginal`). ``a`` and ``s`` are numbers or tensors of shape (B,) (one noise
        level per row), >= 0 and not both 0; a = 1, s = 0 returns x_t. Works on every path of
        :mod:`udm.paths`.

        Book: eq. (eq-optimal-denoiser), Chapter on the three parameterizations.
        """
        x = self._check_points("x_t", x_t)
        a = self._check_scale("a", a, x.shape[0])
        s = self._check_scale("s", s, x.shape[0])
        if not bool((a.square() + s.square() > 0).all()):
            raise ValueError("a and s must not both be 0")
        log_joint, y, v = self._noised_terms(x, a, s)
        responsibilities = torch.softmax(log_joint, dim=1)  # (B, K)
        # Sigma_k C_k^{-1} = U_k diag(lambda_k / v_k) U_k^T in the shared eigenbasis.
        shrunk = self._eigenvalues[None] / v * y  # (B, K, D)
        conditional_means = self.means[None] + a * torch.einsum(
            "kde,bke->bkd", self._eigenvectors, shrunk
        )
        return torch.einsum("bk,bkd->bd", responsibilities, conditional_means).to(x_t.dtype)

    def denoiser(self, x_t: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
        r"""E[x_0 | x_t] for x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps, shape (B, D).

        :meth:`posterior_mean` on the VP path. ``alpha_bar`` is a float in (0, 1] or a
        tensor of shape (B,) giving each row its own noise level; alpha_bar = 1 returns x_t.

        Book: eq. (eq-optimal-denoiser), Chapter on the three parameterizations.
        """
        x = self._check_points("x_t", x_t)
        alpha_bar = self._check_alpha_bar(alpha_bar, x.shape[0])[:, 0, 0]
        return self.posterior_mean(x_t, alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt())

    def component(self, k: int) -> GaussianMixture:
        """Component ``k`` alone, as a one-component mixture with weight 1.

        Gives the exact class-conditional distribution p(x | k).
        """
        check_int_at_least("k", k, 0)
        if k >= self.n_components:
            raise ValueError(f"k must be below n_components = {self.n_components}, got {k}")
        return GaussianMixture(
            self.means[k : k + 1], self.covariances[k : k + 1], torch.ones(1, dtype=torch.float64)
        )


# -------------------------------------------------------------- ready-made mixtures
def check_real_nonnegative(name: str, value: object) -> float:
    """A finite number >= 0, as a float (bools and tensors are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def _rotated_covariance(std_major: float, std_minor: float, angle_degrees: float) -> np.ndarray:
    """A 2x2 covariance with standard deviations along axes rotated by ``angle_degrees``."""
    angle = math.radians(angle_degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return rotation @ np.diag([std_major**2, std_minor**2]) @ rotation.T


def ring_mixture(n_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Equal-weight isotropic Gaussians (standard deviation ``std``) on a circle of ``radius``.

    Mode k sits at angle 2 pi k / n_modes; the default is the "8 Gaussians" ring.
    """
    check_int_at_least("n_modes", n_modes, 1)
    check_positive("radius", radius)
    check_positive("std", std)
    angles = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    covariances = (std**2) * torch.eye(2, dtype=torch.float64).expand(n_modes, 2, 2)
    weights = torch.full((n_modes,), 1.0 / n_modes, dtype=torch.float64)
    return GaussianMixture(means, covariances, weights)


def two_mode_mixture(
    weights: tuple[float, float] = (0.2, 0.8), separation: float = 4.0, std: float = 0.5
) -> GaussianMixture:
    """Two isotropic Gaussians at (-separation/2, 0) and (+separation/2, 0).

    With the defaults the modes are 8 standard deviations apart: a Langevin chain
    almost never crosses between them, so it cannot learn their unequal weights.
    """
    check_positive("separation", separation)
    check_positive("std", std)
    means = torch.tensor([[-separation / 2, 0.0], [separation / 2, 0.0]], dtype=torch.float64)
    covariances = (std**2) * torch.eye(2, dtype=torch.float64).expand(2, 2, 2)
    return GaussianMixture(means, covariances, weights)


def default_mixture() -> GaussianMixture:
    """The book's standard test case: four anisotropic 2-D Gaussians of unequal weight.

    The components differ in weight (0.4, 0.25, 0.2, 0.15), size and orientation,
    so a model that gets only the overall shape right is still visibly wrong;
    nearly all mass lies in [-3, 3]^2.
    """
    means = [[-1.4, -1.0], [1.4, -1.2], [0.0, 1.3], [1.8, 1.5]]
    covariances = np.stack(
        [
            _rotated_covariance(0.6, 0.2, 30.0),
            _rotated_covariance(0.5, 0.15, -45.0),
            _rotated_covariance(0.7, 0.25, 0.0),
            _rotated_covariance(0.25, 0.12, 60.0),
        ]
    )
    return GaussianMixture(means, covariances, [0.4, 0.25, 0.2, 0.15])


# -------------------------------------------------------------- 2-D shape samplers
def _check_noise(noise: float) -> None:
    if not 0 <= noise < float("inf"):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")


def two_moons(n: int, noise: float = 0.05, seed: int = 0) -> torch.Tensor:
    """``n`` points on two interleaved half circles, float32 of shape (n, 2).

    ``seed`` is a book seed number (:func:`udm.seeds.seed`), like every seed below.

    scikit-learn's ``make_moons`` (``noise`` is the standard deviation it adds, in
    its own units) mapped by the fixed affine map 2 (x - (0.5, 0.25)), which sends
    the moons' box [-1, 2] x [-0.5, 1] to [-3, 3] x [-1.5, 1.5].
    """
    check_int_at_least("n", n, 1)
    _check_noise(noise)
    points, _ = make_moons(n_samples=n, noise=noise, random_state=seeds.seed(seed))
    return torch.from_numpy(2.0 * (points - np.array([0.5, 0.25]))).float()


def swiss_roll(n: int, noise: float = 0.5, seed: int = 0) -> torch.Tensor:
    """``n`` points on a 2-D spiral, float32 of shape (n, 2).

    The first and third coordinates of scikit-learn's ``make_swiss_roll`` (``noise``
    is the standard deviation it adds, in its own units), mapped by the fixed
    affine map (x - (1.5, 1.5)) / 4.2 into roughly [-3, 3]^2.
    """
    check_int_at_least("n", n, 1)
    _check_noise(noise)
    points, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=seeds.seed(seed))
    return torch.from_numpy((points[:, [0, 2]] - 1.5) / 4.2).float()


def checkerboard(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` points uniform on the dark squares of a 4x4 checkerboard over [-3, 3]^2.

    The squares have side 1.5; square (i, j) (column i, row j, counted from the
    bottom-left corner) is dark when i + j is even. Returns float32 of shape (n, 2).
    """
    check_int_at_least("n", n, 1)
    rng = seeds.numpy_rng(seed)
    column = rng.integers(0, 4, size=n)
    # Pick one of the two dark rows of the same parity as the column: i + j even.
    row = 2 * rng.integers(0, 2, size=n) + column % 2
    cell = np.stack([column, row], axis=1) + rng.random((n, 2))
    return torch.from_numpy(1.5 * cell - 3.0).float()


# -------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=4)
def _digits_split(random_state: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The stratified 80/20 split of scikit-learn's 8x8 digits for one seed (cached)."""
    digits = load_digits()
    images = (digits.images / 8.0 - 1.0).astype(np.float32)  # 0..16 -> -1..1
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=random_state
    )
    return {"train": (train_x, train_y), "test": (test_x, test_y)}


def load_digits_data(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 handwritten digits: images (N, 1, 8, 8) float32 in [-1, 1], labels (N,) int64.

    scikit-learn's bundled copy of the UCI digits (1,797 images, grey levels 0..16,
    mapped linearly to [-1, 1]), split once and for all by ``train_test_split``
    with test_size=0.2, stratified by label, random_state=:func:`udm.seeds.seed` ``(0)``
    (0 in the book's default run; ``UDM_SEED`` draws another split): 1,437 training and
    360 test images. ``split`` is "train" or "test". Each call returns fresh
    tensors, so editing them in place cannot change later calls.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images, labels = _digits_split(seeds.seed(0))[split]
    return torch.tensor(images[:, None]), torch.tensor(labels, dtype=torch.int64)
