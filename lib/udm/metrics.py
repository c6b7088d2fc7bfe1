"""Sample-quality metrics: Wasserstein distances, mode coverage, the Fréchet distance.

The first two compare a generated point cloud with data whose truth is known (see
:mod:`udm.toy`), so a chapter can print one number next to the exact answer
instead of asking the reader to judge a scatter plot. The Fréchet distance compares
Gaussians fitted to features of images (FID's recipe), where no exact truth exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ot
import scipy.linalg
import torch

from udm.validate import check_finite, check_int_at_least, check_positive, check_tensor


def _wasserstein2_squared_1d(x_sorted: torch.Tensor, y_sorted: torch.Tensor) -> torch.Tensor:
    """Exact squared 2-Wasserstein distance between 1-D empirical measures, row by row.

    ``x_sorted`` (P, N) and ``y_sorted`` (P, M) hold P pairs of sorted samples. In
    1-D, W_2^2 = int_0^1 (F^{-1}(u) - G^{-1}(u))^2 du with F^{-1}, G^{-1} the
    empirical quantile functions; both are constant between consecutive levels of
    {i / N} and {j / M}, so the integral is a finite sum over the merged levels.
    With N = M it reduces to the mean squared difference of the sorted samples.
    """
    n, m = x_sorted.shape[1], y_sorted.shape[1]
    dtype, device = x_sorted.dtype, x_sorted.device
    levels = (
        torch.cat(
            [
                torch.arange(1, n + 1, dtype=dtype, device=device) / n,
                torch.arange(1, m + 1, dtype=dtype, device=device) / m,
            ]
        )
        .sort()
        .values
    )
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    midpoints = levels - widths / 2
    # Level u falls on sample floor(u N) (0-based). A level in both grids gives a
    # zero-width interval whose midpoint may be u = 1: clamp keeps its index in range.
    index_x = (midpoints * n).floor().long().clamp(max=n - 1)
    index_y = (midpoints * m).floor().long().clamp(max=m - 1)
    gaps = x_sorted[:, index_x] - y_sorted[:, index_y]
    return (widths * gaps**2).sum(dim=1)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    r"""Sliced 2-Wasserstein distance between the point sets ``x`` (N, D) and ``y`` (M, D).

    SW_2(x, y) = ( E_theta [ W_2^2(theta^T x, theta^T y) ] )^{1/2} with theta
    uniform on the unit sphere, estimated with ``n_projections`` random directions
    (drawn from ``generator``, so the result is deterministic given one). Each
    1-D W_2 is exact for the two empirical measures; N and M may differ (their
    quantile functions are compared). Computed in float64.

    For two Gaussians that differ by a translation m, every slice is a translation
    by theta^T m, so SW_2 = |m| sqrt(E[(theta_1)^2]) = |m| / sqrt(D).
    """
    check_tensor("x", x, shape=(None, None))
    check_tensor("y", y, shape=(None, None))
    check_finite("x", x)
    check_finite("y", y)
    if y.shape[1] != x.shape[1]:
        raise ValueError(
            f"y must have the same dimension as x ({x.shape[1]}), got shape {tuple(y.shape)}"
        )
    check_int_at_least("x.shape[0]", x.shape[0], 1)
    check_int_at_least("y.shape[0]", y.shape[0], 1)
    check_int_at_least("n_projections", n_projections, 1)
    directions = torch.randn(n_projections, x.shape[1], generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=1, keepdim=True)
    x_sorted = (directions @ x.to(torch.float64).T).sort(dim=1).values
    y_sorted = (directions @ y.to(torch.float64).T).sort(dim=1).values
    return math.sqrt(_wasserstein2_squared_1d(x_sorted, y_sorted).mean().item())


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between the empirical measures of ``x`` (N, D) and ``y`` (M, D).

    W_2(x, y) = ( min over couplings pi of sum_ij pi_ij ||x_i - y_j||^2 )^{1/2}, each point
    carrying mass 1/N (resp. 1/M), solved exactly as a linear program by POT's network-simplex
    solver (``ot.emd2``) in float64. Cost grows about as N^2 to N^3: a few thousand points take
    seconds. Even between two samples of the same distribution it is not zero: compare a
    model's value with that two-true-sets floor at the same sample sizes.

    Book: the sample distance of the chapters on flow matching and fast sampling.
    """
    check_tensor("x", x, shape=(None, None))
    check_tensor("y", y, shape=(None, None))
    if y.shape[1] != x.shape[1]:
        raise ValueError(
            f"y must have the same dimension as x ({x.shape[1]}), got shape {tuple(y.shape)}"
        )
    check_int_at_least("x.shape[0]", x.shape[0], 1)
    check_int_at_least("y.shape[0]", y.shape[0], 1)
    check_finite("x", x)
    check_finite("y", y)
    a = x.detach().to("cpu", torch.float64).numpy()
    b = y.detach().to("cpu", torch.float64).numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    weights_a = ot.unif(a.shape[0], type_as=cost)
    weights_b = ot.unif(b.shape[0], type_as=cost)
    squared = float(ot.emd2(weights_a, weights_b, cost, numItermax=10_000_000))
    return math.sqrt(max(squared, 0.0))


@dataclass(frozen=True)
class ModeCoverage:
    """What :func:`mode_coverage` measured.

    Attributes:
        modes_covered: number of modes with at least ``min_count`` high-quality samples.
        high_quality_fraction: share of all samples that are high quality.
        counts: high-quality samples per mode, int64 tensor of shape (K,).
    """

    modes_covered: int
    high_quality_fraction: float
    counts: torch.Tensor

    @property
    def n_modes(self) -> int:
        """Number of modes K that could have been covered."""
        return self.counts.numel()


def mode_coverage(
    samples: torch.Tensor,
    means: torch.Tensor,
    std: float,
    radius_in_stds: float = 3.0,
    min_count: int = 1,
) -> ModeCoverage:
    """How many modes of an isotropic mixture a sampler reaches, and how cleanly.

    Each sample is assigned to its nearest mean; it is *high quality* if it lies
    within ``radius_in_stds * std`` (Euclidean distance) of that mean. A mode is
    *covered* if at least ``min_count`` high-quality samples were assigned to it.
    For exact samples from an isotropic 2-D component the chance of being high
    quality is P(chi^2_2 <= r^2) = 1 - exp(-r^2 / 2), 0.989 for r = 3.

    Args:
        samples: generated points, shape (N, D).
        means: the modes, shape (K, D), for example ``ring_mixture().means``.
        std: the components' standard deviation (one number: isotropic modes).
        radius_in_stds: the high-quality radius in units of ``std``.
        min_count: high-quality samples a mode needs to count as covered.
    """
    check_tensor("samples", samples, shape=(None, None))
    check_tensor("means", means, shape=(None, samples.shape[1]))
    check_finite("samples", samples)
    check_int_at_least("samples.shape[0]", samples.shape[0], 1)
    check_positive("std", std)
    check_positive("radius_in_stds", radius_in_stds)
    check_int_at_least("min_count", min_count, 1)
    distances = torch.cdist(samples.to(torch.float64), means.to(torch.float64))  # (N, K)
    nearest_distance, nearest_mode = distances.min(dim=1)
    high_quality = nearest_distance <= radius_in_stds * std
    counts = torch.bincount(nearest_mode[high_quality], minlength=means.shape[0])
    return ModeCoverage(
        modes_covered=int((counts >= min_count).sum().item()),
        high_quality_fraction=high_quality.double().mean().item(),
        counts=counts,
    )


def gaussian_frechet_distance(
    mean_1: np.ndarray | torch.Tensor,
    cov_1: np.ndarray | torch.Tensor,
    mean_2: np.ndarray | torch.Tensor,
    cov_2: np.ndarray | torch.Tensor,
) -> float:
    r"""The squared Fréchet (2-Wasserstein) distance between N(mean_1, cov_1) and N(mean_2, cov_2).

        d^2 = |mean_1 - mean_2|^2 + tr(cov_1 + cov_2 - 2 (cov_1^{1/2} cov_2 cov_1^{1/2})^{1/2}),

    computed in float64 with ``scipy.linalg.sqrtm`` (the trace term equals
    tr((cov_1 cov_2)^{1/2}), whose square root has real eigenvalues). Means are vectors (D,),
    covariances symmetric positive semi-definite (D, D). This is the number FID reports (FID is
    it for Inception features; it is a *squared* distance). Tiny negative values from round-off
    are returned as 0.

    Book: eq. (eq-frechet-gaussians), Chapter on latent diffusion and images.
    """
    m1, m2 = (_as_float64_array(n, v, 1) for n, v in (("mean_1", mean_1), ("mean_2", mean_2)))
    c1, c2 = (_as_float64_array(n, v, 2) for n, v in (("cov_1", cov_1), ("cov_2", cov_2)))
    dim = m1.shape[0]
    for name, matrix in (("cov_1", c1), ("cov_2", c2)):
        if matrix.shape != (dim, dim):
            raise ValueError(
                f"{name} must have shape ({dim}, {dim}) to match mean_1, got {matrix.shape}"
            )
        if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-10):
            raise ValueError(f"{name} must be symmetric")
    if m2.shape != (dim,):
        raise ValueError(f"mean_2 must have shape ({dim},) to match mean_1, got {m2.shape}")
    root_1 = scipy.linalg.sqrtm(c1)
    cross = scipy.linalg.sqrtm(root_1 @ c2 @ root_1)
    trace = np.trace(c1) + np.trace(c2) - 2.0 * np.trace(cross).real
    return max(float(np.sum((m1 - m2) ** 2) + trace), 0.0)


def _as_float64_array(name: str, value: object, ndim: int) -> np.ndarray:
    """``value`` (a tensor or an array) as a finite float64 NumPy array with ``ndim`` axes."""
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a torch.Tensor or a NumPy array, got {type(value).__name__}"
        )
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {value.shape}")
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return value


def feature_gaussian(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of the rows of ``features`` (N, D), float64.

    The covariance divides by N - 1 (``np.cov``'s default, as FID implementations do); N must
    be at least 2.
    """
    check_tensor("features", features, shape=(None, None))
    check_int_at_least("features.shape[0]", features.shape[0], 2)
    check_finite("features", features)
    array = features.detach().to("cpu", torch.float64).numpy()
    return array.mean(axis=0), np.atleast_2d(np.cov(array, rowvar=False))


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """The squared Fréchet distance between Gaussians fitted to two feature sets (N1, D), (N2, D).

    :func:`gaussian_frechet_distance` of the two :func:`feature_gaussian` fits: FID's
    recipe with any feature map. It is biased upwards, more for fewer samples: two samples
    of the *same* distribution give about tr(2 cov) / N for the mean term alone, so
    compare a model's value only with the real-vs-real floor at the same sample counts.

    Book: eq. (eq-frechet-gaussians), Chapter on latent diffusion and images.
    """
    check_tensor("features_1", features_1, shape=(None, None))
    check_tensor("features_2", features_2, shape=(None, None))
    if features_2.shape[1] != features_1.shape[1]:
        raise ValueError(
            f"features_2 must have {features_1.shape[1]} columns like features_1, "
            f"got shape {tuple(features_2.shape)}"
        )
    return gaussian_frechet_distance(*feature_gaussian(features_1), *feature_gaussian(features_2))
