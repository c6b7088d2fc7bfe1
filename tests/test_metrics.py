"""Tests for udm.metrics against closed forms and brute-force computations."""

import math

import pytest
import torch

from udm import metrics
from udm.metrics import mode_coverage, sliced_wasserstein
from udm.toy import default_mixture, ring_mixture

F64 = torch.float64


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _brute_force_w2_1d(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 1-D W_2 by repeating each sample so both sets have lcm(N, M) points."""
    n, m = x.numel(), y.numel()
    size = math.lcm(n, m)
    xs = x.sort().values.repeat_interleave(size // n)
    ys = y.sort().values.repeat_interleave(size // m)
    return ((xs - ys) ** 2).mean().sqrt().item()


@pytest.mark.parametrize(("n", "m"), [(7, 7), (6, 4), (5, 3), (1, 9)])
def test_one_dimensional_case_is_the_exact_w2(n, m):
    # In 1-D every direction is +1 or -1, and W_2 is unchanged by a sign flip.
    x = torch.randn(n, 1, generator=_generator(n), dtype=F64)
    y = 2 * torch.randn(m, 1, generator=_generator(100 + m), dtype=F64) + 1
    expected = _brute_force_w2_1d(x[:, 0], y[:, 0])
    assert sliced_wasserstein(x, y, n_projections=3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_translated_gaussians_match_closed_form(dim):
    # X ~ N(0, I), Y ~ N(m, I): the slice along theta is a shift by theta.m, so
    # SW_2^2 = E[(theta.m)^2] = |m|^2 / D and SW_2 = |m| / sqrt(D).
    # Standard errors: projections (1000 of them) ~1.1 %, sample means (3000 points)
    # ~1 %; tolerance 5 %.
    shift = torch.tensor([1.5, -2.0, 0.5][:dim], dtype=F64)
    g = _generator(dim)
    x = torch.randn(3000, dim, generator=g, dtype=F64)
    y = torch.randn(3000, dim, generator=g, dtype=F64) + shift
    value = sliced_wasserstein(x, y, n_projections=1000, generator=_generator(0))
    assert value == pytest.approx(shift.norm().item() / math.sqrt(dim), rel=0.05)


def test_same_distribution_is_small_and_shrinks_with_n():
    mixture = default_mixture()

    def average_distance(n: int) -> float:
        values = [
            sliced_wasserstein(
                mixture.sample(n, _generator(seed)),
                mixture.sample(n, _generator(seed + 1000)),
                generator=_generator(seed),
            )
            for seed in range(3)
        ]
        return sum(values) / len(values)

    small, large = average_distance(250), average_distance(10_000)
    # Roughly 1 / sqrt(n): 40 times the samples should cut it about 6-fold.
    assert large < small / 3
    assert large < 0.08  # the mixture's modes are about 2 apart


def test_deterministic_given_a_generator_and_symmetric():
    x = torch.randn(100, 2, generator=_generator(1))
    y = torch.randn(80, 2, generator=_generator(2))
    first = sliced_wasserstein(x, y, generator=_generator(5))
    assert first == sliced_wasserstein(x, y, generator=_generator(5))
    assert first == pytest.approx(sliced_wasserstein(y, x, generator=_generator(5)), rel=1e-12)
    assert sliced_wasserstein(x, x, generator=_generator(5)) == 0.0


def test_sliced_wasserstein_bad_input_is_named():
    x = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="y"):
        sliced_wasserstein(x, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="x"):
        sliced_wasserstein(torch.zeros(10), x)
    with pytest.raises(ValueError, match="x.shape"):
        sliced_wasserstein(torch.zeros(0, 2), x)
    with pytest.raises(ValueError, match="y.shape"):
        sliced_wasserstein(x, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)


def test_mode_coverage_on_exact_ring_samples():
    ring = ring_mixture()
    n = 4000
    result = mode_coverage(ring.sample(n, _generator(0)), ring.means, std=0.1)
    assert result.modes_covered == 8 and result.n_modes == 8
    # P(|z| <= 3) for z ~ N(0, I_2) is P(chi^2_2 <= 9) = 1 - exp(-4.5) = 0.98889;
    # binomial standard error with n = 4000 is 0.0017: allow 4 SE.
    expected = 1 - math.exp(-4.5)
    assert abs(result.high_quality_fraction - expected) < 4 * math.sqrt(
        expected * (1 - expected) / n
    )
    assert result.counts.sum().item() == round(result.high_quality_fraction * n)
    # Each mode gets ~n/8 * 0.989 = 494 (binomial SE ~21).
    assert ((result.counts - 494).abs() < 100).all()


def test_mode_coverage_on_one_component():
    ring = ring_mixture()
    samples = ring.component(3).sample(500, _generator(1))
    result = mode_coverage(samples, ring.means, std=0.1)
    assert result.modes_covered == 1
    assert result.counts.nonzero().flatten().tolist() == [3]
    # min_count is inclusive: exactly that many high-quality samples still cover.
    count = int(result.counts[3])
    assert mode_coverage(samples, ring.means, std=0.1, min_count=count).modes_covered == 1
    assert mode_coverage(samples, ring.means, std=0.1, min_count=count + 1).modes_covered == 0


def test_mode_coverage_radius_is_in_standard_deviations():
    means = torch.zeros(1, 2)
    samples = torch.tensor([[0.29, 0.0], [0.0, -0.31]])
    result = mode_coverage(samples, means, std=0.1, radius_in_stds=3.0)
    assert result.high_quality_fraction == 0.5
    assert result.counts.tolist() == [1]


def test_mode_coverage_bad_input_is_named():
    samples, means = torch.zeros(5, 2), torch.zeros(3, 2)
    with pytest.raises(ValueError, match="means"):
        mode_coverage(samples, torch.zeros(3, 3), std=0.1)
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(torch.zeros(5), means, std=0.1)
    with pytest.raises(ValueError, match="samples.shape"):
        mode_coverage(torch.zeros(0, 2), means, std=0.1)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(samples, means, std=0.0)
    with pytest.raises(ValueError, match="radius_in_stds"):
        mode_coverage(samples, means, std=0.1, radius_in_stds=-1.0)
    with pytest.raises(ValueError, match="min_count"):
        mode_coverage(samples, means, std=0.1, min_count=0)


def test_wasserstein2_matches_brute_force_assignment() -> None:
    # With N = M and uniform weights the optimal coupling is a permutation (Birkhoff):
    # compare POT's linear program with an independent assignment solver.
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 0.5
    cost = torch.cdist(x.double(), y.double()).square().numpy()
    rows, cols = linear_sum_assignment(cost)
    expected = math.sqrt(cost[rows, cols].mean())
    assert metrics.wasserstein2(x, y) == pytest.approx(expected, rel=1e-9)


def test_wasserstein2_of_a_translation_and_unequal_sizes() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    shift = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    assert metrics.wasserstein2(x, x + shift) == pytest.approx(shift.norm().item(), rel=1e-9)
    # Each of 3 points carries 1/3 and each of 6 points 1/6: pairing duplicates costs nothing.
    y = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    assert metrics.wasserstein2(y, torch.cat([y, y])) == pytest.approx(0.0, abs=1e-12)
    assert metrics.wasserstein2(y, y) == 0.0


def test_wasserstein2_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="y must have the same dimension as x"):
        metrics.wasserstein2(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x must be finite"):
        metrics.wasserstein2(torch.full((3, 2), math.nan), torch.zeros(3, 2))


def test_non_finite_points_are_named():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="y must be finite"):
        sliced_wasserstein(x, torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="x must be finite"):
        sliced_wasserstein(x * float("inf"), x)
    with pytest.raises(ValueError, match="samples must be finite"):
        mode_coverage(torch.full((3, 2), float("nan")), torch.zeros(2, 2), 0.1)


# ------------------------------------------------------------------ Fréchet distance
def _random_spd(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, generator=_generator(seed), dtype=F64)
    return a @ a.T + 0.1 * torch.eye(dim, dtype=F64)


def test_frechet_distance_of_one_dimensional_gaussians_is_the_quantile_formula():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    d2 = metrics.gaussian_frechet_distance(
        torch.tensor([0.3], dtype=F64),
        torch.tensor([[4.0]], dtype=F64),
        torch.tensor([-1.2], dtype=F64),
        torch.tensor([[0.25]], dtype=F64),
    )
    assert d2 == pytest.approx(1.5**2 + (2.0 - 0.5) ** 2, rel=1e-12)


def test_frechet_distance_with_diagonal_covariances():
    a, b = torch.tensor([1.0, 4.0, 9.0], dtype=F64), torch.tensor([0.25, 4.0, 1.0], dtype=F64)
    m1, m2 = torch.tensor([1.0, 2.0, 3.0], dtype=F64), torch.tensor([0.0, 2.0, 5.0], dtype=F64)
    expected = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = metrics.gaussian_frechet_distance(m1, torch.diag(a), m2, torch.diag(b))
    assert got == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_of_non_commuting_2x2_covariances(seed):
    # For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = C1^{1/2} C2 C1^{1/2},
    # tr M = tr(C1 C2) and det M = det C1 det C2, so no matrix square root is needed.
    c1, c2 = _random_spd(2, seed), _random_spd(2, seed + 10)
    trace_root = math.sqrt(
        torch.trace(c1 @ c2).item() + 2 * math.sqrt(torch.det(c1).item() * torch.det(c2).item())
    )
    expected = torch.trace(c1).item() + torch.trace(c2).item() - 2 * trace_root
    zeros = torch.zeros(2, dtype=F64)
    got = metrics.gaussian_frechet_distance(zeros, c1, zeros, c2)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got == pytest.approx(metrics.gaussian_frechet_distance(zeros, c2, zeros, c1), rel=1e-9)


def test_frechet_distance_is_zero_for_identical_gaussians_and_positive_otherwise():
    c = _random_spd(5, 3)
    m = torch.randn(5, generator=_generator(4), dtype=F64)
    assert metrics.gaussian_frechet_distance(m, c, m, c) == pytest.approx(0.0, abs=1e-9)
    assert metrics.gaussian_frechet_distance(m, c, m, 2 * c) > 0.1


def test_frechet_distance_of_samples_approaches_the_closed_form_with_its_bias():
    # Two samples of N(0, I_d) and N(m, I_d): the population value is |m|^2; the plug-in
    # estimate's mean term alone is biased up by tr(I)(1/N1 + 1/N2) = d (1/N1 + 1/N2).
    d, n1, n2 = 4, 20_000, 40_000
    g = _generator(5)
    shift = torch.tensor([1.0, -0.5, 0.0, 2.0], dtype=F64)
    x = torch.randn(n1, d, generator=g, dtype=F64)
    y = torch.randn(n2, d, generator=g, dtype=F64) + shift
    got = metrics.frechet_distance(x, y)
    expected = shift.square().sum().item() + d * (1 / n1 + 1 / n2)
    assert got == pytest.approx(expected, abs=0.01)


def test_frechet_distance_floor_shrinks_like_one_over_n():
    d = 3
    g = _generator(6)
    floors = {}
    for n in (50, 400):
        values = [
            metrics.frechet_distance(
                torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64)
            )
            for _ in range(200)
        ]
        floors[n] = sum(values) / len(values)
    # Mean term 2d/n (exact) plus, to leading order, a covariance term (1/4) E||S1 - S2||_F^2
    # = d(d + 1)/(2n) (Wishart: Var S_ij = (1 + [i = j]) / n): in all d(d + 5)/(2n).
    assert 6 < floors[50] / floors[400] < 10
    assert floors[400] == pytest.approx(d * (d + 5) / (2 * 400), rel=0.15)


def test_frechet_distance_rejects_bad_input():
    eye, zero = torch.eye(2, dtype=F64), torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="cov_2"):
        metrics.gaussian_frechet_distance(zero, eye, zero, torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="symmetric"):
        metrics.gaussian_frechet_distance(zero, eye, zero, torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="mean_1"):
        metrics.gaussian_frechet_distance(eye, eye, zero, eye)
    with pytest.raises(TypeError, match="mean_2"):
        metrics.gaussian_frechet_distance(zero, eye, [0.0, 0.0], eye)
    with pytest.raises(ValueError, match="features_2"):
        metrics.frechet_distance(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(ValueError, match="features"):
        metrics.frechet_distance(torch.randn(1, 3), torch.randn(10, 3))
    with pytest.raises(ValueError, match="finite"):
        metrics.gaussian_frechet_distance(zero, eye, torch.tensor([float("nan"), 0.0]), eye)
