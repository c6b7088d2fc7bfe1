"""Tests for udm.gan: the losses against the game's theory, the networks, the training loop."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.integrate
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import norm

from udm.gan import Discriminator, Generator, discriminator_loss, generator_loss, train_gan
from udm.metrics import mode_coverage
from udm.toy import ring_mixture

F64 = torch.float64

# Two known 1-D densities: a two-mode "data" density and a single Gaussian "generator".
DATA_MEANS, DATA_STD = (-1.5, 1.5), 0.5
GEN_MEAN, GEN_STD = 0.3, 1.2


def log_p_data(x: np.ndarray) -> np.ndarray:
    return logsumexp([norm.logpdf(x, m, DATA_STD) for m in DATA_MEANS], axis=0) - math.log(2)


def log_p_gen(x: np.ndarray) -> np.ndarray:
    return norm.logpdf(x, GEN_MEAN, GEN_STD)


def quad(f) -> float:
    """Integral over the real line (the densities are negligible beyond |x| = 12)."""
    value, error = scipy.integrate.quad(f, -12, 12, points=[-1.5, 0.3, 1.5], limit=200)
    assert error < 1e-7
    return value


def value_of(logit) -> float:
    """V(D, G) = E_data log D(x) + E_gen log(1 - D(x)), D = sigmoid(logit), by quadrature."""

    def integrand(x: float) -> float:
        a = logit(x)
        log_d = -np.logaddexp(0.0, -a)  # log sigmoid(a)
        log_1md = -np.logaddexp(0.0, a)  # log(1 - sigmoid(a))
        return np.exp(log_p_data(x)) * log_d + np.exp(log_p_gen(x)) * log_1md

    return quad(integrand)


def optimal_logit(x):
    # D* = p_data / (p_data + p_gen), so its logit is log p_data - log p_gen.
    return log_p_data(x) - log_p_gen(x)


@functools.cache
def optimal_value() -> float:
    """V(D*, G) by quadrature (cached: several tests compare against it)."""
    return value_of(optimal_logit)


def jensen_shannon() -> float:
    """JSD(p_data || p_gen) = (KL(p_data || m) + KL(p_gen || m)) / 2 by quadrature."""

    def log_m(x):
        return np.logaddexp(log_p_data(x), log_p_gen(x)) - math.log(2)

    kl_data = quad(lambda x: np.exp(log_p_data(x)) * (log_p_data(x) - log_m(x)))
    kl_gen = quad(lambda x: np.exp(log_p_gen(x)) * (log_p_gen(x) - log_m(x)))
    return 0.5 * kl_data + 0.5 * kl_gen


# -------------------------------------------------------------------- the game's theory
def test_optimal_discriminator_value_is_shifted_jensen_shannon() -> None:
    jsd = jensen_shannon()
    assert 0.05 < jsd < math.log(2)  # a real gap, below the maximum log 2
    assert optimal_value() == pytest.approx(-math.log(4) + 2 * jsd, abs=1e-7)


@pytest.mark.parametrize(
    "perturbed",
    [
        lambda x: optimal_logit(x) + 0.3,
        lambda x: optimal_logit(x) - 0.3,
        lambda x: 0.8 * optimal_logit(x),
        lambda x: 0.0 * x,  # D = 1/2 everywhere: V = -log 4 exactly
    ],
    ids=["shift-up", "shift-down", "shrink", "coin-flip"],
)
def test_any_other_discriminator_scores_lower(perturbed) -> None:
    assert value_of(perturbed) < optimal_value() - 1e-3


def test_coin_flip_discriminator_scores_minus_log_4() -> None:
    assert value_of(lambda x: 0.0 * x) == pytest.approx(-math.log(4), abs=1e-7)


def test_discriminator_loss_is_minus_the_value_by_monte_carlo() -> None:
    # The library's loss, evaluated on samples at the exact optimal logits, estimates -V(D*, G).
    rng = np.random.default_rng(0)
    n = 200_000
    real = rng.choice(DATA_MEANS, size=n) + DATA_STD * rng.standard_normal(n)
    fake = GEN_MEAN + GEN_STD * rng.standard_normal(n)
    real_logits = torch.from_numpy(optimal_logit(real))
    fake_logits = torch.from_numpy(optimal_logit(fake))
    loss = discriminator_loss(real_logits, fake_logits).item()
    # Standard error of the two sample means, from the per-sample terms.
    terms_real = torch.nn.functional.softplus(-real_logits)
    terms_fake = torch.nn.functional.softplus(fake_logits)
    se = math.sqrt(terms_real.var().item() / n + terms_fake.var().item() / n)
    assert abs(-loss - optimal_value()) < 4 * se
    # A perturbed discriminator has a higher loss on the very same samples.
    worse = discriminator_loss(real_logits + 0.3, fake_logits + 0.3).item()
    assert worse > loss + 10 * se


# ----------------------------------------------------------------------------- the losses
# Within |logit| <= 15 the naive formulas on probabilities keep about 9 correct digits.
logits = st.lists(
    st.floats(min_value=-15, max_value=15, allow_nan=False), min_size=1, max_size=20
).map(lambda v: torch.tensor(v, dtype=F64))


@settings(max_examples=40, deadline=None)
@given(real=logits, fake=logits)
def test_losses_match_their_definitions_on_probabilities(real, fake) -> None:
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected_d = -(torch.log(d_real).mean() + torch.log1p(-d_fake).mean())
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(
        generator_loss(fake), -torch.log(d_fake).mean(), rtol=1e-8, atol=1e-12
    )
    torch.testing.assert_close(
        generator_loss(fake, saturating=True), torch.log1p(-d_fake).mean(), rtol=1e-9, atol=1e-12
    )


def test_generator_gradients_match_sympy() -> None:
    # d/dl of -log sigmoid(l) and of log(1 - sigmoid(l)), derived by SymPy.
    l_sym = sp.Symbol("l", real=True)
    d = 1 / (1 + sp.exp(-l_sym))
    grad_ns = sp.lambdify(l_sym, sp.diff(-sp.log(d), l_sym))
    grad_sat = sp.lambdify(l_sym, sp.diff(sp.log(1 - d), l_sym))
    values = [-20.0, -5.0, -0.5, 0.0, 2.0, 10.0]
    for saturating, exact in ((False, grad_ns), (True, grad_sat)):
        fake = torch.tensor(values, dtype=F64, requires_grad=True)
        generator_loss(fake, saturating=saturating).backward()
        expected = torch.tensor([exact(v) / len(values) for v in values], dtype=F64)
        torch.testing.assert_close(fake.grad, expected, rtol=1e-9, atol=1e-15)
    # When D confidently rejects a fake (l = -20) only the non-saturating loss still pulls.
    assert grad_ns(-20.0) == pytest.approx(-1.0, rel=1e-8)
    assert abs(grad_sat(-20.0)) < 1e-8


def test_losses_stay_finite_for_extreme_logits() -> None:
    extreme = torch.tensor([-1e4, 1e4])
    assert torch.isfinite(discriminator_loss(extreme, extreme))
    assert torch.isfinite(generator_loss(extreme))
    assert torch.isfinite(generator_loss(extreme, saturating=True))


def test_equilibrium_loss_values() -> None:
    half = torch.zeros(8)  # logit 0: D = 1/2
    assert discriminator_loss(half, half).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(half).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: discriminator_loss(torch.zeros(4, 1), torch.zeros(4)), "real_logits"),
        (lambda: discriminator_loss(torch.zeros(4), torch.zeros(0)), "fake_logits"),
        (lambda: generator_loss(torch.zeros(4, 1)), "fake_logits"),
    ],
)
def test_losses_reject_bad_logits(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call()


# ---------------------------------------------------------------------------- the networks
def test_network_shapes() -> None:
    torch.manual_seed(0)
    generator = Generator(latent_dim=3, data_dim=2, hidden=16, depth=2)
    discriminator = Discriminator(data_dim=2, hidden=16, depth=2)
    assert generator(torch.randn(5, 3)).shape == (5, 2)
    assert discriminator(torch.randn(5, 2)).shape == (5,)
    probability = discriminator.probability(torch.randn(5, 2))
    assert probability.shape == (5,) and ((probability > 0) & (probability < 1)).all()
    samples = generator.sample(7, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 2) and not samples.requires_grad


def test_networks_reject_wrong_dimensions() -> None:
    generator = Generator(latent_dim=3, data_dim=2, hidden=8, depth=1)
    discriminator = Discriminator(data_dim=2, hidden=8, depth=1)
    with pytest.raises(ValueError, match="z must have shape"):
        generator(torch.randn(5, 2))
    with pytest.raises(ValueError, match="x must have shape"):
        discriminator(torch.randn(5, 3))
    with pytest.raises(ValueError, match="latent_dim"):
        Generator(latent_dim=0)
    with pytest.raises(ValueError, match="data_dim"):
        Discriminator(data_dim=0)
    with pytest.raises(ValueError, match="n"):
        generator.sample(0)


def test_a_collapsed_generator_covers_one_mode() -> None:
    # A generator whose output layer ignores z puts every sample on mode 3 of the ring.
    ring = ring_mixture()
    generator = Generator(latent_dim=2, data_dim=2, hidden=8, depth=1)
    last = generator.net.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(ring.means[3].float())
    coverage = mode_coverage(generator.sample(500), ring.means, std=0.1)
    assert coverage.modes_covered == 1
    assert coverage.counts[3].item() == 500
    assert coverage.high_quality_fraction == 1.0


# ------------------------------------------------------------------------- training loop
def tiny_gan(seed: int = 0, data_dim: int = 2) -> tuple[Generator, Discriminator]:
    torch.manual_seed(seed)
    return Generator(2, data_dim, hidden=16, depth=2), Discriminator(data_dim, hidden=16, depth=2)


def ring_data(n: int = 512) -> torch.Tensor:
    return ring_mixture().sample(n, generator=torch.Generator().manual_seed(0))


def run(seed: int = 0, **kwargs):
    generator, discriminator = tiny_gan()
    options = dict(steps=15, batch_size=32, lr_g=1e-3, lr_d=1e-3, seed=seed, progress=False)
    options.update(kwargs)
    history = train_gan(generator, discriminator, ring_data(), device="cpu", **options)
    return history, generator, discriminator


def test_train_gan_is_deterministic_for_a_seed() -> None:
    first, g1, d1 = run(seed=3)
    second, g2, d2 = run(seed=3)
    assert first.generator_losses == second.generator_losses
    assert first.discriminator_losses == second.discriminator_losses
    for a, b in zip(
        list(g1.parameters()) + list(d1.parameters()),
        list(g2.parameters()) + list(d2.parameters()),
        strict=True,
    ):
        assert torch.equal(a, b)
    other, _, _ = run(seed=4)
    assert other.generator_losses != first.generator_losses


def test_history_lengths_and_scores() -> None:
    history, _, _ = run(steps=12, d_steps=3)
    assert history.steps == 12
    for series in (history.discriminator_losses, history.real_scores, history.fake_scores):
        assert len(series) == 12
    assert all(0 < s < 1 for s in history.real_scores + history.fake_scores)
    assert history.seconds > 0
    # The generator's turn minimises the non-saturating loss -mean log D(G(z)), which is
    # positive; the saturating mean log(1 - D(G(z))) would be negative.
    assert all(loss > 0 for loss in history.generator_losses + history.discriminator_losses)


def test_snapshots_map_fixed_latents_and_leave_the_run_unchanged() -> None:
    generator, _ = tiny_gan()
    fixed_z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = generator(fixed_z)
    history, trained, _ = run(snapshot_steps=[0, 5, 15], n_snapshot=50)
    assert sorted(history.snapshots) == [0, 5, 15]
    torch.testing.assert_close(history.snapshots[0], before)
    with torch.no_grad():
        torch.testing.assert_close(history.snapshots[15], trained(fixed_z))
    assert not torch.equal(history.snapshots[0], history.snapshots[15])
    plain, _, _ = run()
    assert plain.generator_losses == history.generator_losses
    assert plain.snapshots == {}


def test_train_gan_learns_a_one_dimensional_gaussian() -> None:
    # Sign errors in either player's update would drive the generator away from the data.
    data = 3.0 + 0.5 * torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    generator, discriminator = Generator(1, 1, hidden=32, depth=2), Discriminator(1, 32, 2)
    before = generator.sample(4000, generator=torch.Generator().manual_seed(1))
    assert abs(before.mean().item() - 3.0) > 2.0
    train_gan(
        generator,
        discriminator,
        data,
        steps=400,
        batch_size=128,
        lr_g=2e-3,
        lr_d=2e-3,
        progress=False,
        device="cpu",
    )
    after = generator.sample(4000, generator=torch.Generator().manual_seed(1))
    # The mean settles within a few hundred steps (seeds 0-2 all land within 0.05); the
    # spread keeps oscillating, as a GAN's does, so it only gets a loose check.
    assert after.mean().item() == pytest.approx(3.0, abs=0.15)
    assert 0.02 < after.std().item() < 1.0


class PoisonedDiscriminator(Discriminator):
    """Returns NaN logits from training step ``at_step`` on, for the chosen player's inputs."""

    def __init__(self, player: str, at_step: int) -> None:
        super().__init__(data_dim=2, hidden=8, depth=1)
        self.player, self.at_step, self.step = player, at_step, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        # Only the generator's turn passes fakes that carry gradients to G.
        generator_turn = x.requires_grad
        hit = (self.player == "generator") == generator_turn and self.step >= self.at_step
        if generator_turn:
            self.step += 1  # the generator's turn ends a training step
        return logits * float("nan") if hit else logits


@pytest.mark.parametrize("player", ["discriminator", "generator"])
def test_nan_guard_names_the_player_and_step(player: str) -> None:
    generator, _ = tiny_gan()
    poisoned = PoisonedDiscriminator(player, at_step=3)
    with pytest.raises(FloatingPointError, match=f"^{player} loss became nan at step 3"):
        train_gan(
            generator, poisoned, ring_data(), steps=10, batch_size=32, progress=False, device="cpu"
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"data": torch.zeros(64, 3)}, "data"),
        ({"data": torch.zeros(64, 2, 1)}, "data"),
        ({"discriminator": Discriminator(data_dim=3)}, "discriminator"),
        ({"generator": torch.nn.Linear(2, 2)}, "generator"),
        ({"batch_size": 65}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"d_steps": 0}, "d_steps"),
        ({"lr_d": -1.0}, "lr_d"),
        ({"lr_g": 0.0}, "lr_g"),
        ({"betas": (0.5, 1.0)}, "betas"),
        ({"snapshot_steps": [11]}, "snapshot_steps"),
    ],
)
def test_train_gan_rejects_bad_arguments(kwargs, name) -> None:
    generator, discriminator = tiny_gan()
    options = dict(
        generator=generator,
        discriminator=discriminator,
        data=torch.zeros(64, 2),
        steps=10,
        batch_size=16,
        progress=False,
    )
    options.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        train_gan(
            options.pop("generator"), options.pop("discriminator"), options.pop("data"), **options
        )
