"""Tests for udm.guidance against exact mixtures, closed-form Gaussians and autograd."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import guidance as G
from udm import samplers
from udm.nets import TimeConditionedMLP
from udm.parameterizations import PREDICTIONS, Denoiser
from udm.schedules import cosine_schedule, linear_schedule
from udm.score import langevin
from udm.toy import GaussianMixture, default_mixture
from udm.train import train

PROPERTY = settings(max_examples=25, deadline=None)
F64 = torch.float64
SCHEDULE = cosine_schedule(20)
PATH = SCHEDULE.path


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def steps(t: int, n: int, T: int = SCHEDULE.T) -> torch.Tensor:
    """The time of step t of a T-step schedule, for a batch of n."""
    return torch.full((n,), t / T, dtype=F64)


def sample(model, path, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """Ancestral sampling on the schedule's own grid, from N(0, I)."""
    x_init = path.sample_prior((n, dim), generator=generator)
    return samplers.ancestral(model, path, path.grid(), x_init, generator)


# --------------------------------------------------------------- a Gaussian test problem
class GaussianProblem:
    """x_0 ~ N(0, s2) in 1-D, observed as y = x_0 + N(0, tau2): every density is Gaussian.

    Prior p(x_0) = N(0, s2), posterior p(x_0 | y) = N(m, v) with v = s2 tau2 / (s2 + tau2)
    and m = s2 y / (s2 + tau2). One "class" (label 0 means "given y") and the null label 1.
    """

    def __init__(self, s2: float = 1.0, tau2: float = 0.25, y: float = 1.5) -> None:
        self.s2, self.tau2, self.y = s2, tau2, y
        self.v = s2 * tau2 / (s2 + tau2)
        self.m = s2 * y / (s2 + tau2)
        one = torch.ones(1, dtype=F64)
        self.prior = GaussianMixture([[0.0]], [[[s2]]], one)
        self.posterior = GaussianMixture([[self.m]], [[[self.v]]], one)

    def net(self, path):
        """An exact x_0-predicting 'network' net(x, t, y): y = 0 conditional, y = 1 null."""

        def net(x, t, y):
            alpha_bar = path.alpha_bar(t)
            out = self.prior.denoiser(x, alpha_bar)
            given = y == 0
            out[given] = self.posterior.denoiser(x[given], alpha_bar[given])
            return out

        net.n_classes = 1
        return net

    def guided_gaussian(self, alpha_bar: float, w: float) -> tuple[float, float]:
        """Mean and variance of q_w proportional to p_t(x)^(1 - w) p_t(x | y)^w at alpha_bar."""
        var_u = alpha_bar * self.s2 + 1 - alpha_bar
        var_c = alpha_bar * self.v + 1 - alpha_bar
        precision = (1 - w) / var_u + w / var_c
        mean = w * math.sqrt(alpha_bar) * self.m / var_c / precision
        return mean, 1 / precision

    def tilted(self, gamma: float) -> tuple[float, float]:
        """Mean and variance of p(x) p(y | x)^gamma, from the prior and the likelihood."""
        precision = 1 / self.s2 + gamma / self.tau2
        return gamma * self.y / self.tau2 / precision, 1 / precision

    def ancestral_output(self, schedule, w: float) -> tuple[float, float]:
        """Exact mean and variance of ancestral sampling on the guided x_0-predictor.

        The guided score is affine, so each reverse step maps a Gaussian to a Gaussian: the
        recursion below follows mean and variance from x_T ~ N(0, 1) down to x_0.
        """
        ab, al = schedule.alpha_bars.numpy(), schedule.alphas.numpy()
        mean, var = 0.0, 1.0
        for t in range(schedule.T, 0, -1):
            a = ab[t]
            centre, spread = self.guided_gaussian(a, w)
            gain = (1 - (1 - a) / spread) / math.sqrt(a)  # x0_hat = gain * x + offset
            offset = (1 - a) / spread * centre / math.sqrt(a)
            if t == 1:
                return gain * mean + offset, gain**2 * var
            c_x = math.sqrt(al[t]) * (1 - ab[t - 1]) / (1 - a)
            c_0 = math.sqrt(ab[t - 1]) * (1 - al[t]) / (1 - a)
            noise_var = (1 - al[t]) * (1 - ab[t - 1]) / (1 - a)
            slope = c_x + c_0 * gain
            mean, var = slope * mean + c_0 * offset, slope**2 * var + noise_var
        raise AssertionError("unreachable")


def three_class_mixture() -> GaussianMixture:
    means = [[-1.0, -0.5], [1.0, -0.6], [0.0, 0.9]]
    covariances = [
        [[0.45, 0.15], [0.15, 0.25]],
        [[0.3, -0.12], [-0.12, 0.2]],
        [[0.6, 0], [0, 0.12]],
    ]
    return GaussianMixture(means, covariances, [0.45, 0.35, 0.2])


# ------------------------------------------------------------- exact reproductions
def test_gamma_zero_reproduces_the_unconditional_sampler_exactly():
    torch.manual_seed(0)
    base = Denoiser(TimeConditionedMLP(2, hidden=32, depth=2, time_scale=20), PATH, "eps")
    classifier = G.NoisyClassifier(2, 3, hidden=32, depth=2, time_scale=20)
    guided = G.ClassifierGuidance(base, classifier, y=1, gamma=0.0)
    plain = sample(base, PATH, 300, 2, generator=gen(1))
    assert torch.equal(sample(guided, PATH, 300, 2, generator=gen(1)), plain)
    # ... and a nonzero scale does change the samples (so the comparison can fail).
    steered = G.ClassifierGuidance(base, classifier, y=1, gamma=2.0)
    assert not torch.allclose(sample(steered, PATH, 300, 2, generator=gen(1)), plain)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_cfg_weights_one_and_zero_reproduce_conditional_and_unconditional_samplers(prediction):
    torch.manual_seed(0)
    net = TimeConditionedMLP(2, hidden=32, depth=2, n_classes=3)
    y = torch.arange(3).repeat(100)
    conditional = Denoiser(lambda x, t: net(x, t, y), PATH, prediction)
    unconditional = Denoiser(lambda x, t: net(x, t), PATH, prediction)
    for w, reference in ((1.0, conditional), (0.0, unconditional)):
        guided = G.ClassifierFreeGuidance(net, PATH, prediction, y, w)
        expected = sample(reference, PATH, 300, 2, generator=gen(2))
        assert torch.equal(sample(guided, PATH, 300, 2, generator=gen(2)), expected)
    strong = G.ClassifierFreeGuidance(net, PATH, prediction, y, 3.0)
    assert not torch.allclose(sample(strong, PATH, 300, 2, generator=gen(2)), expected)


# ------------------------------------------------------------- exact ingredients
def test_mixture_classifier_is_bayes_rule_on_the_noised_mixture():
    mixture = three_class_mixture()
    classifier = G.MixtureClassifier(mixture, PATH)
    x = torch.randn(200, 2, generator=gen(3), dtype=F64)
    for t in (0, 1, 7, 20):
        alpha_bar = SCHEDULE.alpha_bars[t].item()
        noised = mixture.noised(alpha_bar)
        probabilities = torch.softmax(classifier(x, steps(t, 200)), dim=1)
        assert torch.allclose(probabilities, noised.responsibilities(x), atol=1e-12)
        # grad log p_t(y | x) = grad log p_t(x | y) - grad log p_t(x)  (Bayes' rule)
        for y in range(3):
            xr = x.clone().requires_grad_(True)
            log_p = torch.log_softmax(classifier(xr, steps(t, 200)), dim=1)[:, y].sum()
            (gradient,) = torch.autograd.grad(log_p, xr)
            bayes = mixture.component(y).noised(alpha_bar).score(x) - noised.score(x)
            assert torch.allclose(gradient, bayes, atol=1e-10)


def test_mixture_conditional_denoiser_matches_component_and_mixture_denoisers():
    mixture = three_class_mixture()
    net = G.MixtureConditionalDenoiser(mixture, PATH)
    x = torch.randn(300, 2, generator=gen(4), dtype=F64)
    k = torch.randint(1, SCHEDULE.T + 1, (300,), generator=gen(5))
    t = k.to(F64) / SCHEDULE.T
    y = torch.randint(0, 4, (300,), generator=gen(6))  # 3 is the null label
    alpha_bar = SCHEDULE.alpha_bar(k, dtype=F64)
    out = net(x, t, y)
    for label in range(4):
        rows = y == label
        model = mixture if label == 3 else mixture.component(label)
        assert torch.allclose(out[rows], model.denoiser(x[rows], alpha_bar[rows]), atol=1e-12)
    assert torch.allclose(net(x, t), mixture.denoiser(x, alpha_bar), atol=1e-12)


@PROPERTY
@given(
    gamma=st.floats(-2.0, 8.0),
    label=st.integers(0, 2),
    t=st.integers(1, SCHEDULE.T),
    seed=st.integers(0, 10_000),
)
def test_exact_classifier_guidance_equals_exact_classifier_free_guidance(gamma, label, t, seed):
    """With exact ingredients, classifier guidance at gamma is CFG at w = gamma (eq-cfg)."""
    mixture = three_class_mixture()
    unconditional_net = G.MixtureConditionalDenoiser(mixture, PATH)
    exact_classifier = G.MixtureClassifier(mixture, PATH)
    classifier_guided = G.ClassifierGuidance(
        Denoiser(lambda x, s: unconditional_net(x, s), PATH, "x0"), exact_classifier, label, gamma
    )
    free = G.ClassifierFreeGuidance(unconditional_net, PATH, "x0", label, gamma)
    x = 1.5 * torch.randn(64, 2, generator=gen(seed), dtype=F64)
    s = steps(t, 64)
    assert torch.allclose(classifier_guided(x, s), free(x, s), rtol=1e-8, atol=1e-8)
    assert torch.allclose(classifier_guided.score(x, s), free.score(x, s), rtol=1e-8, atol=1e-8)
    assert torch.allclose(classifier_guided.eps(x, s), free.eps(x, s), rtol=1e-8, atol=1e-8)
    # and the guided score is the stated combination of exact scores
    alpha_bar = SCHEDULE.alpha_bars[t].item()
    expected = (1 - gamma) * mixture.noised(alpha_bar).score(x) + gamma * mixture.component(
        label
    ).noised(alpha_bar).score(x)
    assert torch.allclose(free.score(x, s), expected, rtol=1e-8, atol=1e-8)


# ------------------------------------------------ what the guided sampler samples
@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 4.0])
def test_guided_score_is_the_score_of_the_guided_gaussian(w):
    problem, schedule = GaussianProblem(), linear_schedule(100)
    guided = G.ClassifierFreeGuidance(problem.net(schedule.path), schedule.path, "x0", 0, w)
    x = torch.linspace(-3, 3, 61, dtype=F64)[:, None]
    for t in (1, 30, 100):
        mean, var = problem.guided_gaussian(schedule.alpha_bars[t].item(), w)
        assert torch.allclose(guided.score(x, steps(t, 61, 100)), -(x - mean) / var, atol=1e-9)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_exact_guided_ancestral_sampler_matches_its_gaussian_recursion(w):
    """Monte Carlo of ancestral sampling on the exact guided score vs the exact recursion.

    Tolerance: 5 standard errors of the mean and of the variance (n = 10,000).
    """
    problem, schedule, n = GaussianProblem(), linear_schedule(100), 10_000
    guided = G.ClassifierFreeGuidance(problem.net(schedule.path), schedule.path, "x0", 0, w)
    draws = sample(guided, schedule.path, n, 1, generator=gen(7)).to(F64)[:, 0]
    mean, var = problem.ancestral_output(schedule, w)
    assert abs(draws.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(draws.var().item() - var) < 5 * var * math.sqrt(2 / n)


def test_guided_ancestral_sampler_is_not_the_tilted_distribution_beyond_w_one():
    """The recursion's output vs p(x) p(y | x)^w: equal at w = 1 (up to finite T), not at 3."""
    problem, schedule = GaussianProblem(), linear_schedule(1000)
    mean_1, var_1 = problem.ancestral_output(schedule, 1.0)
    tilted_mean_1, tilted_var_1 = problem.tilted(1.0)
    assert abs(mean_1 - tilted_mean_1) < 1e-3 and abs(var_1 / tilted_var_1 - 1) < 0.03
    mean_3, var_3 = problem.ancestral_output(schedule, 3.0)
    tilted_mean_3, tilted_var_3 = problem.tilted(3.0)
    assert var_3 < 0.75 * tilted_var_3 and mean_3 > tilted_mean_3 + 0.05


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_langevin_on_the_last_guided_score_samples_the_tilted_gaussian(w):
    """Ancestral sampling, then Langevin on the guided score at t = 1: the tilted Gaussian.

    Unadjusted Langevin with step eta on N(mu, v) is stationary at N(mu, v / (1 - eta / 2v));
    q_w at t = 1 differs from the tilted p(x) p(y | x)^w by under 1% here. Tolerance: 5
    standard errors (n = 8,000) plus that 1%.
    """
    problem, schedule, n, eta = GaussianProblem(), linear_schedule(100), 8000, 0.006
    guided = G.ClassifierFreeGuidance(problem.net(schedule.path), schedule.path, "x0", 0, w)
    start = sample(guided, schedule.path, n, 1, generator=gen(8)).to(F64)
    draws = langevin(lambda x: guided.score(x, 0.01), start, eta, 250, generator=gen(9))
    mean, var = problem.tilted(w)
    stationary_var = var / (1 - eta / (2 * var))
    assert abs(draws.mean().item() - mean) < 5 * math.sqrt(var / n) + 0.01 * abs(mean)
    assert abs(draws.var().item() / stationary_var - 1) < 5 * math.sqrt(2 / n) + 0.01


# ---------------------------------------------------------------------- losses
def test_classifier_loss_is_cross_entropy_on_noised_data():
    torch.manual_seed(0)
    classifier = G.NoisyClassifier(2, 3, hidden=16, depth=1, time_scale=20)
    x0 = torch.randn(50, 2, generator=gen(10))
    y = torch.randint(0, 3, (50,), generator=gen(11))
    k = torch.randint(1, SCHEDULE.T + 1, (50,), generator=gen(12))
    noise = torch.randn(50, 2, generator=gen(13))
    ab = SCHEDULE.alpha_bar(k, dtype=F64)[:, None]
    x_t = (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).float()
    expected = F.cross_entropy(classifier(x_t, k.to(F64) / SCHEDULE.T), y)
    loss = G.classifier_loss(classifier, PATH, x0, y, t=k.to(F64) / SCHEDULE.T, noise=noise)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_trained_noisy_classifier_approaches_the_exact_one():
    """A short run brings the cross-entropy at mid noise within 0.05 nats of Bayes'."""
    mixture, schedule = three_class_mixture(), linear_schedule(100)
    x, y = mixture.sample(8000, generator=gen(14), return_labels=True)
    torch.manual_seed(0)
    classifier = G.NoisyClassifier(2, 3, hidden=64, depth=2, time_scale=100)
    train(
        classifier,
        lambda model, batch: G.classifier_loss(model, schedule.path, batch[0], batch[1]),
        (x, y),
        steps=400,
        batch_size=256,
        lr=5e-3,
        progress=False,
    )
    x_eval, y_eval = mixture.sample(4000, generator=gen(15), return_labels=True)
    for t in (10, 40):
        s = steps(t, 4000, 100)
        ab = schedule.alpha_bars[t].item()
        x_t = math.sqrt(ab) * x_eval + math.sqrt(1 - ab) * torch.randn(4000, 2, generator=gen(t))
        with torch.no_grad():
            learned = F.cross_entropy(classifier(x_t, s), y_eval).item()
        exact = F.cross_entropy(G.MixtureClassifier(mixture, schedule.path)(x_t, s), y_eval).item()
        assert exact - 0.02 < learned < exact + 0.05, (t, learned, exact)


class RecordingNet:
    """A label-conditional 'network' that remembers the labels it saw and predicts zeros."""

    n_classes = 4

    def __init__(self) -> None:
        self.weight = torch.ones((), requires_grad=True)
        self.seen: list[torch.Tensor] = []

    def __call__(self, x, t, y):
        self.seen.append(y.clone())
        return 0.5 * self.weight * x


@pytest.mark.parametrize("p_uncond", [0.0, 0.3, 1.0])
def test_cfg_training_loss_drops_labels_at_the_stated_rate(p_uncond):
    net, n = RecordingNet(), 20_000
    y = torch.randint(0, 4, (n,), generator=gen(16))
    G.cfg_training_loss(net, PATH, torch.zeros(n, 2), y, p_uncond=p_uncond, generator=gen(17))
    (seen,) = net.seen
    dropped = seen == 4
    assert torch.equal(seen[~dropped], y[~dropped])  # kept labels are unchanged
    rate = dropped.double().mean().item()
    assert abs(rate - p_uncond) < 5 * math.sqrt(0.25 / n)


def test_cfg_training_loss_without_dropout_is_the_conditional_regression():
    net = RecordingNet()
    x0 = torch.randn(64, 2, generator=gen(18))
    y = torch.randint(0, 4, (64,), generator=gen(19))
    k = torch.randint(1, SCHEDULE.T + 1, (64,), generator=gen(20))
    noise = torch.randn(64, 2, generator=gen(21))
    loss = G.cfg_training_loss(net, PATH, x0, y, p_uncond=0.0, t=k.to(F64) / 20, noise=noise)
    ab = SCHEDULE.alpha_bar(k, dtype=F64)[:, None]
    x_t = (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).float()
    assert torch.allclose(loss, (0.5 * x_t - noise).square().mean(), atol=1e-6)


# ---------------------------------------------------------------------- bad input
def _exact_pair():
    mixture = default_mixture()
    return G.MixtureConditionalDenoiser(mixture, PATH), G.MixtureClassifier(mixture, PATH)


@pytest.mark.parametrize("bad", [-1, 4, 2.0, True, "1", torch.tensor([0.0, 1.0])])
def test_bad_labels_are_refused_naming_y(bad):
    net, classifier = _exact_pair()
    error = (ValueError, TypeError)
    with pytest.raises(error, match="y"):
        G.ClassifierGuidance(Denoiser(lambda x, t: net(x, t), PATH, "x0"), classifier, bad, 1.0)
    with pytest.raises(error, match="y"):
        G.ClassifierFreeGuidance(net, PATH, "x0", bad, 1.0)


def test_label_vector_of_the_wrong_length_is_refused_at_call_time():
    net, _ = _exact_pair()
    guided = G.ClassifierFreeGuidance(net, PATH, "x0", torch.tensor([0, 1, 2]), 1.0)
    with pytest.raises(ValueError, match="y"):
        guided(torch.zeros(5, 2), steps(3, 5))
    with pytest.raises(ValueError, match="y"):
        G.cfg_training_loss(net, PATH, torch.zeros(5, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="y"):
        G.classifier_loss(G.NoisyClassifier(2, 3), PATH, torch.zeros(3, 2), torch.tensor([0, 1, 3]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "2", True, None])
def test_bad_scales_are_refused_naming_the_scale(bad):
    net, classifier = _exact_pair()
    error = (ValueError, TypeError)
    with pytest.raises(error, match="gamma"):
        G.ClassifierGuidance(Denoiser(lambda x, t: net(x, t), PATH, "x0"), classifier, 0, bad)
    with pytest.raises(error, match="w"):
        G.ClassifierFreeGuidance(net, PATH, "x0", 0, bad)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.2"])
def test_bad_dropout_rate_is_refused_naming_p_uncond(bad):
    net, _ = _exact_pair()
    with pytest.raises((ValueError, TypeError), match="p_uncond"):
        labels = torch.zeros(4, dtype=torch.int64)
        G.cfg_training_loss(net, PATH, torch.zeros(4, 2), labels, p_uncond=bad)


def test_other_bad_arguments_name_themselves():
    net, classifier = _exact_pair()
    with pytest.raises(ValueError, match="null_label"):
        G.ClassifierFreeGuidance(lambda x, t, y: x, PATH, "x0", 0, 1.0)
    with pytest.raises(ValueError, match="prediction"):
        G.ClassifierFreeGuidance(net, PATH, "epsilon", 0, 1.0)
    with pytest.raises(TypeError, match="path"):
        G.ClassifierFreeGuidance(net, "cosine", "x0", 0, 1.0)
    with pytest.raises(ValueError, match="x_t"):
        G.NoisyClassifier(2, 3)(torch.zeros(4, 3), steps(1, 4))
    with pytest.raises(ValueError, match="n_classes"):
        G.NoisyClassifier(2, 1)
    base = Denoiser(lambda x, t: net(x, t), PATH, "x0")
    guided = G.ClassifierGuidance(base, classifier, 0, 1.0)
    with pytest.raises(ValueError, match="t must be above 0"):
        guided(torch.zeros(4, 2), steps(0, 4))
    with pytest.raises(TypeError, match="denoiser must be a denoiser on a path"):
        G.ClassifierGuidance(lambda x, t: x, classifier, 0, 1.0)
    with pytest.raises(ValueError, match="classifier"):
        G.ClassifierGuidance(base, lambda x, t: x[:, 0], 0, 1.0)(torch.zeros(4, 2), steps(1, 4))


def test_noisy_classifier_takes_any_trailing_shape():
    classifier = G.NoisyClassifier(64, 10, hidden=16, depth=1)
    images = torch.randn(5, 1, 8, 8)
    logits = classifier(images, steps(3, 5))
    assert logits.shape == (5, 10)
    assert torch.equal(logits, classifier(images.flatten(1), steps(3, 5)))


def test_guidance_gradient_does_not_leak_into_the_callers_graph():
    _, classifier = _exact_pair()
    x = torch.randn(8, 2, requires_grad=True)
    guided = G.ClassifierGuidance(Denoiser(lambda z, t: z * 0.5, PATH, "x0"), classifier, 2, 1.0)
    gradient = guided.classifier_gradient(x, steps(5, 8))
    assert not gradient.requires_grad
