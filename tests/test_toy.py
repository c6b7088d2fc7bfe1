"""Tests for udm.toy: every closed form is checked against an independent computation.

Tolerances: float64 closed forms are compared at 1e-9 or tighter; Monte-Carlo checks
use tolerances of several standard errors, computed or stated next to each test.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp
from sklearn.datasets import load_digits

from udm.toy import (
    GaussianMixture,
    checkerboard,
    default_mixture,
    load_digits_data,
    ring_mixture,
    swiss_roll,
    two_mode_mixture,
    two_moons,
)

F64 = torch.float64


def random_mixture(seed: int, n_components: int, dim: int) -> GaussianMixture:
    """A random mixture with well-conditioned full covariances."""
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(n_components, dim, generator=g, dtype=F64)
    factors = 0.7 * torch.randn(n_components, dim, dim, generator=g, dtype=F64)
    covariances = factors @ factors.mT + 0.1 * torch.eye(dim, dtype=F64)
    weights = torch.rand(n_components, generator=g, dtype=F64) + 0.2
    return GaussianMixture(means, covariances, weights / weights.sum())


def scipy_component_log_densities(mixture: GaussianMixture, x: torch.Tensor) -> np.ndarray:
    """log w_k + log N(x; mu_k, Sigma_k) from scipy, shape (B, K)."""
    return np.stack(
        [
            math.log(w) + stats.multivariate_normal(m.numpy(), c.numpy()).logpdf(x.numpy())
            for w, m, c in zip(
                mixture.weights.tolist(), mixture.means, mixture.covariances, strict=True
            )
        ],
        axis=-1,
    ).reshape(x.shape[0], mixture.n_components)


def mixture_moments(mixture: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and covariance of a mixture (law of total covariance)."""
    w, mu = mixture.weights, mixture.means
    mean = w @ mu
    second = torch.einsum("k,kde->de", w, mixture.covariances + mu[:, :, None] * mu[:, None, :])
    return mean, second - torch.outer(mean, mean)


# ------------------------------------------------------------------ densities
@pytest.mark.parametrize(
    "mixture",
    [default_mixture(), random_mixture(1, 3, 3), random_mixture(2, 1, 1)],
    ids=["default", "random-3d", "single-1d"],
)
def test_log_prob_and_responsibilities_match_scipy(mixture):
    x = 2.5 * torch.randn(50, mixture.dim, generator=torch.Generator().manual_seed(0), dtype=F64)
    joint = scipy_component_log_densities(mixture, x)
    expected = logsumexp(joint, axis=1)
    np.testing.assert_allclose(mixture.log_prob(x).numpy(), expected, rtol=1e-10, atol=1e-10)
    expected_resp = np.exp(joint - expected[:, None])
    np.testing.assert_allclose(mixture.responsibilities(x).numpy(), expected_resp, atol=1e-10)


def test_log_prob_is_stable_far_from_every_mode():
    # Every component density underflows in float64 at x = 60 sigma; logsumexp must not.
    mixture = ring_mixture()
    x = torch.tensor([[8.0, 0.0]], dtype=F64)
    expected = logsumexp(scipy_component_log_densities(mixture, x), axis=1)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(mixture.log_prob(x).numpy(), expected, rtol=1e-12)
    assert torch.isfinite(mixture.score(x)).all()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_components=st.integers(1, 4),
    dim=st.integers(1, 3),
)
def test_score_matches_autograd_of_log_prob(seed, n_components, dim):
    mixture = random_mixture(seed, n_components, dim)
    g = torch.Generator().manual_seed(seed + 1)
    x = (3.0 * torch.randn(16, dim, generator=g, dtype=F64)).requires_grad_()
    (autograd_score,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach()), autograd_score, rtol=1e-8, atol=1e-8)


def test_float32_in_float32_out():
    mixture = default_mixture()
    x64 = mixture.sample(20, torch.Generator().manual_seed(0), dtype=F64)
    x32 = x64.float()
    for method in (mixture.log_prob, mixture.score, mixture.responsibilities):
        out = method(x32)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, method(x64).float(), rtol=1e-4, atol=1e-4)
    assert mixture.denoiser(x32, 0.5).dtype == torch.float32
    assert mixture.sample(3).dtype == torch.float32


# ------------------------------------------------------------------ sampling
def test_sample_moments_labels_and_determinism():
    mixture = default_mixture()
    n = 200_000
    x, labels = mixture.sample(n, torch.Generator().manual_seed(0), return_labels=True, dtype=F64)
    assert x.shape == (n, 2) and labels.shape == (n,) and labels.dtype == torch.int64
    # Label frequencies: binomial standard error sqrt(w (1 - w) / n) <= 0.0012; allow 5 SE.
    freq = torch.bincount(labels, minlength=mixture.n_components).double() / n
    se = (mixture.weights * (1 - mixture.weights) / n).sqrt()
    assert ((freq - mixture.weights).abs() < 5 * se).all()
    # Per-component mean and covariance (>= 30,000 draws each): atol 0.02.
    for k in range(mixture.n_components):
        xk = x[labels == k]
        torch.testing.assert_close(xk.mean(0), mixture.means[k], rtol=0, atol=0.02)
        torch.testing.assert_close(xk.T.cov(), mixture.covariances[k], rtol=0, atol=0.02)
    # Overall moments against the law of total covariance.
    mean, cov = mixture_moments(mixture)
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.02)
    torch.testing.assert_close(x.T.cov(), cov, rtol=0, atol=0.03)
    again = mixture.sample(n, torch.Generator().manual_seed(0), dtype=F64)
    assert torch.equal(x, again)


# ------------------------------------------------------------------ noising
ALPHA_BARS = [0.05, 0.5, 0.9]


@pytest.mark.parametrize("alpha_bar", ALPHA_BARS)
def test_noised_mixture_matches_noised_samples(alpha_bar):
    mixture = default_mixture()
    noised = mixture.noised(alpha_bar)
    g = torch.Generator().manual_seed(3)
    n = 100_000
    x0 = mixture.sample(n, g, dtype=F64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(
        n, 2, generator=g, dtype=F64
    )
    # Moments: all variances are below 3, so the standard error of each mean is
    # below 0.006 and of each covariance entry below 0.02; atol 0.03 / 0.06.
    mean, cov = mixture_moments(noised)
    torch.testing.assert_close(x_t.mean(0), mean, rtol=0, atol=0.03)
    torch.testing.assert_close(x_t.T.cov(), cov, rtol=0, atol=0.06)
    # Whole distribution of 1-D projections: a projected Gaussian mixture is a 1-D
    # mixture with means u.mu_k and variances u^T C_k u. KS test on 20,000 points.
    for angle in (0.3, 1.4, 2.5):
        u = torch.tensor([math.cos(angle), math.sin(angle)], dtype=F64)
        loc = (noised.means @ u).numpy()
        scale = torch.einsum("d,kde,e->k", u, noised.covariances, u).sqrt().numpy()
        w = noised.weights.numpy()

        def cdf(z, loc=loc, scale=scale, w=w):
            return (w * stats.norm.cdf((np.asarray(z)[:, None] - loc) / scale)).sum(axis=1)

        assert stats.kstest((x_t[:20_000] @ u).numpy(), cdf).pvalue > 1e-3


def test_noised_at_alpha_bar_one_is_the_mixture():
    mixture = default_mixture()
    noised = mixture.noised(1.0)
    torch.testing.assert_close(noised.means, mixture.means, rtol=0, atol=0)
    torch.testing.assert_close(noised.covariances, mixture.covariances, rtol=0, atol=0)


# ------------------------------------------------------------------ denoiser
@pytest.mark.parametrize("alpha_bar", [0.2, 0.6, 0.95])
def test_denoiser_matches_importance_sampling(alpha_bar):
    # E[x0 | x_t] = E_{x0 ~ p}[x0 N(x_t; s x0, (1 - a) I)] / E_{x0 ~ p}[N(...)]:
    # self-normalised importance sampling with the prior as proposal.
    mixture = default_mixture()
    g = torch.Generator().manual_seed(4)
    s, sigma = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    x_t = s * mixture.sample(6, g, dtype=F64) + sigma * torch.randn(6, 2, generator=g, dtype=F64)
    x0 = mixture.sample(400_000, g, dtype=F64)
    log_w = -((x_t[:, None, :] - s * x0[None]) ** 2).sum(-1) / (2 * sigma**2)  # (6, M)
    w = torch.softmax(log_w, dim=1)
    estimate = w @ x0  # (6, 2)
    # Delta-method standard error of a self-normalised estimate.
    se = (torch.einsum("bm,bmd->bd", w**2, (x0[None] - estimate[:, None]) ** 2)).sqrt()
    assert (se < 0.01).all(), "too few effective samples for a meaningful check"
    error = (mixture.denoiser(x_t, alpha_bar) - estimate).abs()
    assert (error < 5 * se + 1e-3).all(), (error, se)


@pytest.mark.parametrize("alpha_bar", [0.01, 0.3, 0.8, 0.999])
def test_denoiser_satisfies_tweedie(alpha_bar):
    # Tweedie: E[x0 | x_t] = (x_t + (1 - a) grad log q(x_t)) / sqrt(a), with the
    # score of the noised mixture: a different formula for the same quantity.
    mixture = random_mixture(7, 3, 2)
    x_t = 2 * torch.randn(40, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    tweedie = (x_t + (1 - alpha_bar) * mixture.noised(alpha_bar).score(x_t)) / math.sqrt(alpha_bar)
    torch.testing.assert_close(mixture.denoiser(x_t, alpha_bar), tweedie, rtol=1e-9, atol=1e-9)


def test_denoiser_limits():
    mixture = default_mixture()
    x_t = 3 * torch.randn(10, 2, generator=torch.Generator().manual_seed(6))
    # No noise: the clean point is known exactly.
    torch.testing.assert_close(mixture.denoiser(x_t, 1.0), x_t, rtol=0, atol=1e-6)
    # Pure noise: x_t carries no information, the best guess is the mixture mean.
    # To first order the answer is mean + sqrt(a) Cov x_t, below 1e-5 away here.
    mean, _ = mixture_moments(mixture)
    expected = mean.float().expand(10, 2)
    torch.testing.assert_close(mixture.denoiser(x_t, 1e-12), expected, rtol=0, atol=1e-4)


def test_denoiser_per_example_alpha_bar_matches_loop():
    mixture = default_mixture()
    alpha_bar = torch.tensor([0.01, 0.2, 0.5, 0.9, 1.0], dtype=F64)
    x_t = torch.randn(5, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    looped = torch.cat(
        [mixture.denoiser(x_t[i : i + 1], a) for i, a in enumerate(alpha_bar.tolist())]
    )
    torch.testing.assert_close(mixture.denoiser(x_t, alpha_bar), looped, rtol=1e-12, atol=1e-12)
    assert mixture.denoiser(x_t.float(), alpha_bar.float()).dtype == torch.float32


def test_component_is_a_single_gaussian():
    mixture = default_mixture()
    part = mixture.component(2)
    assert part.n_components == 1 and part.dim == 2
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
    expected = stats.multivariate_normal(
        mixture.means[2].numpy(), mixture.covariances[2].numpy()
    ).logpdf(x.numpy())
    np.testing.assert_allclose(part.log_prob(x).numpy(), expected, rtol=1e-10)


# ------------------------------------------------------------------ ready-made data
def test_ring_mixture_geometry():
    ring = ring_mixture(n_modes=6, radius=1.5, std=0.2)
    angles = torch.atan2(ring.means[:, 1], ring.means[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(6, dtype=F64) * math.pi / 3)
    torch.testing.assert_close(ring.means.norm(dim=1), torch.full((6,), 1.5, dtype=F64))
    torch.testing.assert_close(ring.covariances, 0.04 * torch.eye(2, dtype=F64).expand(6, 2, 2))
    torch.testing.assert_close(ring.weights, torch.full((6,), 1 / 6, dtype=F64))


def test_two_mode_mixture_geometry():
    mixture = two_mode_mixture(weights=(0.3, 0.7), separation=5.0, std=0.4)
    torch.testing.assert_close(mixture.means, torch.tensor([[-2.5, 0.0], [2.5, 0.0]], dtype=F64))
    torch.testing.assert_close(mixture.weights, torch.tensor([0.3, 0.7], dtype=F64))
    torch.testing.assert_close(mixture.covariances, 0.16 * torch.eye(2, dtype=F64).expand(2, 2, 2))


def test_default_mixture_is_asymmetric_and_in_the_box():
    mixture = default_mixture()
    assert 3 <= mixture.n_components <= 4
    assert len(set(mixture.weights.tolist())) == mixture.n_components
    eigenvalues = torch.linalg.eigvalsh(mixture.covariances)
    assert (eigenvalues[:, 1] / eigenvalues[:, 0] > 2).all()  # every component anisotropic
    x = mixture.sample(50_000, torch.Generator().manual_seed(10))
    assert (x.abs() <= 3).all(dim=1).double().mean() > 0.995


@pytest.mark.parametrize("sampler", [two_moons, swiss_roll, checkerboard])
def test_shape_samplers_basic(sampler):
    x = sampler(2000)
    assert x.shape == (2000, 2) and x.dtype == torch.float32
    assert torch.equal(x, sampler(2000, seed=0))
    assert not torch.equal(x, sampler(2000, seed=1))
    assert (x.abs() <= 3.5).all()


def test_two_moons_lie_on_the_documented_circles():
    # 2 (x - (0.5, 0.25)) sends the unit half circles centred at (0, 0) and (1, 0.5)
    # to circles of radius 2 centred at (-1, -0.5) and (1, 0.5).
    x = two_moons(500, noise=0.0).double()
    centres = torch.tensor([[-1.0, -0.5], [1.0, 0.5]], dtype=F64)
    distance_to_circle = ((torch.cdist(x, centres) - 2.0).abs()).min(dim=1).values
    assert (distance_to_circle < 1e-5).all()


def test_swiss_roll_lies_on_the_documented_spiral():
    # Undo (x - 1.5) / 4.2: the raw point is t (cos t, sin t) with t in [1.5 pi, 4.5 pi].
    raw = 4.2 * swiss_roll(500, noise=0.0).double() + 1.5
    t = raw.norm(dim=1)
    assert (t >= 1.5 * math.pi - 1e-4).all() and (t <= 4.5 * math.pi + 1e-4).all()
    torch.testing.assert_close(
        raw, t[:, None] * torch.stack([t.cos(), t.sin()], 1), atol=1e-4, rtol=0
    )


def test_checkerboard_is_uniform_on_dark_squares():
    x = checkerboard(8000, seed=3).double()
    cell = torch.floor((x + 3) / 1.5).long()
    assert ((cell >= 0) & (cell <= 3)).all()
    assert ((cell.sum(dim=1) % 2) == 0).all()
    counts = torch.bincount(4 * cell[:, 0] + cell[:, 1], minlength=16)
    dark = counts[counts > 0]
    assert dark.numel() == 8
    assert stats.chisquare(dark.numpy()).pvalue > 1e-3


# ------------------------------------------------------------------ digits
def test_digits_shapes_range_and_split():
    train_x, train_y = load_digits_data("train")
    test_x, test_y = load_digits_data("test")
    assert train_x.shape == (1437, 1, 8, 8) and test_x.shape == (360, 1, 8, 8)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert train_y.shape == (1437,) and test_y.shape == (360,)
    both = torch.cat([train_x, test_x])
    assert both.min().item() == -1.0 and both.max().item() == 1.0
    # Same images as scikit-learn's, mapped 0..16 -> -1..1, each exactly once.
    digits = load_digits()
    reference = torch.tensor(digits.images / 8.0 - 1.0, dtype=torch.float32).reshape(-1, 64)
    ours = both.reshape(-1, 64)
    assert torch.equal(torch.unique(ours, dim=0), torch.unique(reference, dim=0))
    # All 1,797 images are distinct, so no shared row means disjoint splits.
    assert torch.unique(ours, dim=0).shape[0] == 1797
    # Stratified: each class's test share is within one image of 20 %.
    class_sizes = np.bincount(digits.target)
    assert (np.abs(np.bincount(test_y.numpy()) - 0.2 * class_sizes) <= 1).all()
    # Labels travel with their images.
    index = {
        tuple(row.tolist()): label for row, label in zip(reference, digits.target, strict=True)
    }
    assert all(
        index[tuple(row.tolist())] == y
        for row, y in zip(ours, torch.cat([train_y, test_y]), strict=True)
    )


def test_digits_split_is_fixed_and_returns_fresh_tensors():
    first_x, first_y = load_digits_data("train")
    first_x.zero_()
    second_x, second_y = load_digits_data("train")
    assert torch.equal(first_y, second_y)
    assert second_x.min().item() == -1.0  # the in-place edit did not reach the cache


# ------------------------------------------------------------------ bad input
GOOD_MEANS = [[0.0, 0.0], [1.0, 1.0]]
GOOD_COVS = [np.eye(2).tolist(), np.eye(2).tolist()]


@pytest.mark.parametrize(
    ("means", "covariances", "weights", "match"),
    [
        (GOOD_MEANS, GOOD_COVS, [0.5, 0.4], "weights"),
        (GOOD_MEANS, GOOD_COVS, [1.2, -0.2], "weights"),
        (GOOD_MEANS, GOOD_COVS, [1.0], "weights"),
        (GOOD_MEANS, [[[1.0, 0.5], [0.0, 1.0]]] * 2, [0.5, 0.5], "covariances"),
        (GOOD_MEANS, [[[1.0, 2.0], [2.0, 1.0]]] * 2, [0.5, 0.5], "covariances"),
        (GOOD_MEANS, [np.eye(3).tolist()] * 2, [0.5, 0.5], "covariances"),
        (GOOD_MEANS, np.eye(2).tolist(), [0.5, 0.5], "covariances"),
        ([0.0, 0.0], GOOD_COVS, [0.5, 0.5], "means"),
        ([[0.0, float("nan")], [1.0, 1.0]], GOOD_COVS, [0.5, 0.5], "means"),
        (torch.zeros(0, 2), torch.zeros(0, 2, 2), torch.zeros(0), "means"),
    ],
)
def test_bad_parameters_are_named(means, covariances, weights, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(means, covariances, weights)


def test_bad_points_are_named():
    mixture = default_mixture()
    for method in (mixture.log_prob, mixture.score, mixture.responsibilities):
        with pytest.raises(ValueError, match="x"):
            method(torch.zeros(4, 3))
        with pytest.raises(TypeError, match="x"):
            method(torch.zeros(4, 2, dtype=torch.int64))
        with pytest.raises(ValueError, match="x"):
            method(torch.zeros(4, 2, device="meta"))
    with pytest.raises(ValueError, match="x_t"):
        mixture.denoiser(torch.zeros(4), 0.5)


@pytest.mark.parametrize("alpha_bar", [0.0, -0.1, 1.5, float("nan")])
def test_bad_alpha_bar_is_named(alpha_bar):
    mixture = default_mixture()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture.denoiser(x, alpha_bar)
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture.denoiser(x, torch.tensor([0.5, alpha_bar, 0.5]))
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture.noised(alpha_bar)


def test_bad_alpha_bar_tensor_is_named():
    mixture = default_mixture()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="alpha_bar"):
        mixture.denoiser(x, torch.full((2,), 0.5))
    with pytest.raises(TypeError, match="alpha_bar"):
        mixture.denoiser(x, torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="alpha_bar"):
        mixture.noised(torch.full((3,), 0.5))


def test_other_bad_arguments_are_named():
    mixture = default_mixture()
    with pytest.raises(ValueError, match="n"):
        mixture.sample(0)
    for k in (-1, mixture.n_components):
        with pytest.raises(ValueError, match="k"):
            mixture.component(k)
    with pytest.raises(ValueError, match="n_modes"):
        ring_mixture(n_modes=0)
    with pytest.raises(ValueError, match="radius"):
        ring_mixture(radius=-1.0)
    with pytest.raises(ValueError, match="std"):
        ring_mixture(std=0.0)
    with pytest.raises(ValueError, match="separation"):
        two_mode_mixture(separation=0.0)
    with pytest.raises(ValueError, match="std"):
        two_mode_mixture(std=-1.0)
    with pytest.raises(ValueError, match="weights"):
        two_mode_mixture(weights=(0.5, 0.6))
    for sampler in (two_moons, swiss_roll, checkerboard):
        with pytest.raises(ValueError, match="n"):
            sampler(0)
    for sampler in (two_moons, swiss_roll):
        with pytest.raises(ValueError, match="noise"):
            sampler(10, noise=-0.1)
    with pytest.raises(ValueError, match="split"):
        load_digits_data("validation")


# ---------------------------------------------------------- any path (a, s)
@pytest.mark.parametrize(("a", "s"), [(1.0, 0.3), (0.4, 1.2), (0.0, 1.0), (2.0, 0.5)])
def test_posterior_mean_on_any_path_matches_importance_sampling(a, s):
    """E[x0 | a x0 + s eps = x_t] by self-normalised importance sampling from the prior."""
    mixture = default_mixture()
    g = torch.Generator().manual_seed(40)
    x_t = a * mixture.sample(5, g, dtype=F64) + s * torch.randn(5, 2, generator=g, dtype=F64)
    x0 = mixture.sample(400_000, g, dtype=F64)
    w = torch.softmax(-((x_t[:, None, :] - a * x0[None]) ** 2).sum(-1) / (2 * s**2), dim=1)
    estimate = w @ x0
    se = (torch.einsum("bm,bmd->bd", w**2, (x0[None] - estimate[:, None]) ** 2)).sqrt()
    error = (mixture.posterior_mean(x_t, a, s) - estimate).abs()
    assert (error < 5 * se + 1e-3).all(), (error, se)
    if a > 0:  # the VP form is the special case a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)
        ab = a * a / (a * a + s * s)
        torch.testing.assert_close(
            mixture.denoiser(x_t * math.sqrt(ab) / a, ab), mixture.posterior_mean(x_t, a, s)
        )


def test_marginal_is_the_law_of_a_x0_plus_s_eps():
    mixture = default_mixture()
    g = torch.Generator().manual_seed(41)
    y = 0.7 * mixture.sample(200_000, g, dtype=F64) + 1.3 * torch.randn(
        200_000, 2, generator=g, dtype=F64
    )
    marginal = mixture.marginal(0.7, 1.3)
    mean, cov = mixture_moments(marginal)
    torch.testing.assert_close(y.mean(0), mean, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(y.T), cov, rtol=0, atol=0.03)
    torch.testing.assert_close(mixture.noised(0.36).means, mixture.marginal(0.6, 0.8).means)


def test_numpy_lists_and_non_finite_points():
    import warnings

    covariances = [np.eye(2) * 0.5, np.eye(2) * 0.2]  # a list of NumPy arrays
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "extremely slow" UserWarning would fail here
        mixture = GaussianMixture([np.zeros(2), np.ones(2)], covariances, [0.5, 0.5])
    assert mixture.covariances.shape == (2, 2, 2)
    for method in (mixture.log_prob, mixture.score, mixture.responsibilities):
        with pytest.raises(ValueError, match="x must be finite"):
            method(torch.tensor([[0.0, float("nan")]], dtype=F64))
    with pytest.raises(ValueError, match="x_t must be finite"):
        mixture.denoiser(torch.tensor([[float("inf"), 0.0]]), 0.5)
    with pytest.raises(ValueError, match="a and s must not both be 0"):
        mixture.posterior_mean(torch.zeros(1, 2), 0.0, 0.0)
    with pytest.raises(ValueError, match="s must be finite and >= 0"):
        mixture.posterior_mean(torch.zeros(1, 2), 1.0, -0.5)
    with pytest.raises(TypeError, match="means must be an array of numbers"):
        GaussianMixture([["a", "b"]], covariances[:1], [1.0])
