"""Tests for udm.vae against hand-computed values (NumPy, SciPy), exact marginals, and autograd."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
import torch
from torch import nn

from udm.vae import (
    VAE,
    ConditionalVAE,
    Decoder,
    Encoder,
    GaussianTransition,
    MarkovianHVAE,
    bits_per_dim,
    fit_gaussian_posterior,
    hvae_importance_weighted_log_likelihood,
    hvae_negative_elbo,
    importance_weighted_log_likelihood,
    negative_elbo,
    negative_elbo_of_gaussian,
)


def fill_weights(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded values of moderate size (float64)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def mlp_numpy(mlp: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Evaluate a udm.nets.MLP by hand: Linear, SiLU, ..., Linear."""
    linears = [m for m in mlp.layers if isinstance(m, nn.Linear)]
    h = inputs
    for i, layer in enumerate(linears):
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        if i < len(linears) - 1:
            h = h * scipy.special.expit(h)  # SiLU
    return h


def kl_to_standard_normal_by_quadrature(mean: float, var: float) -> float:
    """KL(N(mean, var) || N(0, 1)) = integral q log(q / p), by numerical integration."""
    q = scipy.stats.norm(mean, math.sqrt(var))
    p = scipy.stats.norm(0.0, 1.0)
    lo, hi = mean - 12 * math.sqrt(var), mean + 12 * math.sqrt(var)
    value, _ = scipy.integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), lo, hi)
    return value


# ------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)])
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_shapes(data_shape, likelihood):
    torch.manual_seed(0)
    model = VAE(data_shape, latent_dim=3, hidden=16, likelihood=likelihood)
    x = torch.rand(5, *data_shape) * 2 - 1
    z, mean, log_var = model(x)
    assert z.shape == mean.shape == log_var.shape == (5, 3)
    assert model.decode(z).shape == (5, *data_shape)
    assert model.reconstruct(x).shape == (5, *data_shape)
    assert model.sample(4).shape == (4, *data_shape)
    assert model.sample(4, decoder_noise=True).shape == (4, *data_shape)
    loss = negative_elbo(model, x)
    assert loss.reconstruction.shape == loss.kl.shape == loss.total.shape == (5,)
    assert importance_weighted_log_likelihood(model, x, k=7, max_batch=10).shape == (5,)


@pytest.mark.parametrize("label_encoding", ["one_hot", "embedding"])
def test_conditional_shapes(label_encoding):
    torch.manual_seed(0)
    model = ConditionalVAE((1, 8, 8), 2, n_classes=10, hidden=16, label_encoding=label_encoding)
    x, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.arange(6)
    assert negative_elbo(model, x, y).total.shape == (6,)
    assert importance_weighted_log_likelihood(model, x, 3, y).shape == (6,)
    assert model.sample(6, y=y).shape == (6, 1, 8, 8)


def test_bernoulli_samples_are_pixels_off_or_on_and_means_in_range():
    torch.manual_seed(0)
    model = VAE((1, 8, 8), 2, hidden=16, likelihood="bernoulli")
    samples = model.sample(50, decoder_noise=True)
    assert set(samples.unique().tolist()) <= {-1.0, 1.0}
    means = model.sample(50)
    assert means.min() >= -1 and means.max() <= 1


# ------------------------------------------------------- the loss, computed by hand


def hand_computed_negative_elbo(model, x, eps, cond=None):
    """(reconstruction, kl) per example from the weights, NumPy and SciPy only."""
    x_np = x.numpy().reshape(x.shape[0], -1)
    enc_in = x_np if cond is None else np.concatenate([x_np, cond], axis=1)
    out = mlp_numpy(model.encoder.net, enc_in)
    latent = out.shape[1] // 2
    mean, log_var = out[:, :latent], out[:, latent:]
    z = mean + np.exp(0.5 * log_var) * eps
    dec_in = z if cond is None else np.concatenate([z, cond], axis=1)
    decoded = mlp_numpy(model.decoder.net, dec_in)
    if model.likelihood == "gaussian":
        sd = np.exp(0.5 * model.decoder.log_var.detach().numpy().reshape(-1))
        reconstruction = -scipy.stats.norm.logpdf(x_np, decoded, sd).sum(axis=1)
    else:
        targets = (x_np + 1) / 2
        probs = scipy.special.expit(decoded)
        if np.isin(targets, (0.0, 1.0)).all():  # binary pixels: a Bernoulli log-pmf
            reconstruction = -scipy.stats.bernoulli.logpmf(targets, probs).sum(axis=1)
        else:  # gray pixels: the binary cross-entropy, written out
            bce = -(targets * np.log(probs) + (1 - targets) * np.log1p(-probs))
            reconstruction = bce.sum(axis=1)
    kl = np.array(
        [
            sum(
                kl_to_standard_normal_by_quadrature(m, math.exp(v))
                for m, v in zip(ms, vs, strict=True)
            )
            for ms, vs in zip(mean, log_var, strict=True)
        ]
    )
    return reconstruction, kl


@pytest.mark.parametrize(
    "likelihood, decoder_log_var",
    [("gaussian", -0.4), ("gaussian", None), ("bernoulli", None), ("bernoulli-gray", None)],
)
def test_negative_elbo_equals_hand_computed_value(likelihood, decoder_log_var):
    gray = likelihood == "bernoulli-gray"
    likelihood = "bernoulli" if gray else likelihood
    model = VAE(
        (3,), 2, hidden=5, depth=1, likelihood=likelihood, decoder_log_var=decoder_log_var
    ).double()
    fill_weights(model, seed=1)
    if decoder_log_var is None and likelihood == "gaussian":
        with torch.no_grad():  # a learned log-variance, set to distinct values per dimension
            model.decoder.log_var.copy_(torch.tensor([-0.5, 0.1, 0.6]))
    g = torch.Generator().manual_seed(2)
    if gray:  # gray pixels in [-1, 1]: targets (x + 1) / 2 strictly inside [0, 1]
        x = (2 * torch.rand(4, 3, generator=g) - 1).double()
    elif likelihood == "bernoulli":  # binary pixels: the Bernoulli pmf is a proper likelihood
        x = torch.where(torch.rand(4, 3, generator=g) < 0.5, -1.0, 1.0).double()
    else:
        x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    # the same seed gives the eps that negative_elbo draws: mean + exp(log_var / 2) * eps
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = negative_elbo(model, x, generator=torch.Generator().manual_seed(3))
    reconstruction, kl = hand_computed_negative_elbo(model, x, eps.numpy())
    np.testing.assert_allclose(loss.reconstruction.detach().numpy(), reconstruction, rtol=1e-9)
    np.testing.assert_allclose(loss.kl.detach().numpy(), kl, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(loss.total.detach().numpy(), reconstruction + kl, rtol=1e-7)


@pytest.mark.parametrize("label_encoding", ["one_hot", "embedding"])
def test_conditional_negative_elbo_equals_hand_computed_value(label_encoding):
    model = ConditionalVAE(
        (3,), 2, n_classes=4, hidden=5, depth=1, label_encoding=label_encoding, embed_dim=3
    ).double()
    fill_weights(model, seed=4)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = torch.tensor([3, 0, 2, 3])
    if label_encoding == "one_hot":
        cond = np.eye(4)[y.numpy()]
    else:
        cond = model.label_embedding.weight.detach().numpy()[y.numpy()]
    eps = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    loss = negative_elbo(model, x, y, generator=torch.Generator().manual_seed(6))
    reconstruction, kl = hand_computed_negative_elbo(model, x, eps.numpy(), cond)
    np.testing.assert_allclose(loss.reconstruction.detach().numpy(), reconstruction, rtol=1e-9)
    np.testing.assert_allclose(loss.kl.detach().numpy(), kl, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_decoder_mean_and_samples_agree(likelihood):
    """decode() is E[x | z] in data units: compare with the moments of many decoder samples."""
    torch.manual_seed(0)
    model = VAE((3,), 2, hidden=8, likelihood=likelihood, decoder_log_var=None).double()
    fill_weights(model, seed=10)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    with torch.no_grad():
        draws = torch.stack(
            [
                model.decoder.sample(z, generator=torch.Generator().manual_seed(i))
                for i in range(4000)
            ]
        )
        logits_or_means = mlp_numpy(model.decoder.net, z.numpy())
        expected_mean = (
            2 * scipy.special.expit(logits_or_means) - 1
            if likelihood == "bernoulli"
            else logits_or_means
        )
        np.testing.assert_allclose(model.decode(z).numpy(), expected_mean, rtol=1e-10)
    if likelihood == "gaussian":
        variance = np.exp(model.decoder.log_var.detach().numpy())
        np.testing.assert_allclose(
            draws.var(0).numpy(), np.broadcast_to(variance, (4, 3)), rtol=0.1
        )
        sd = np.sqrt(variance)
    else:  # pixels in {-1, 1} with mean m have standard deviation sqrt(1 - m^2)
        np.testing.assert_array_equal(np.isin(draws.numpy(), (-1.0, 1.0)), True)
        sd = np.sqrt(1 - expected_mean**2)
    # the sample mean of 4000 draws: within 5 standard errors
    assert (np.abs(draws.mean(0).numpy() - expected_mean) < 5 * sd / 4000**0.5 + 1e-12).all()


def test_gradients_reach_the_encoder_through_the_sample():
    """The reconstruction term alone must train the encoder (reparameterization)."""
    torch.manual_seed(0)
    model = VAE((2,), 2, hidden=8)
    negative_elbo(model, torch.randn(16, 2)).reconstruction.sum().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


# ----------------------------------------------- importance weighting vs exact log p(x)


def linear_gaussian_vae(w=1.5, b=0.3, s2=0.5, shift=0.0, log_var_offset=0.0):
    """A 1-D latent, 1-D data VAE whose networks are linear, with an exact log p(x).

    p(z) = N(0, 1), p(x | z) = N(w z + b, s2), so p(x) = N(b, w^2 + s2) and the exact
    posterior is N(w (x - b) / (w^2 + s2), s2 / (w^2 + s2)). The encoder is that
    posterior with its mean moved by ``shift`` and its log-variance by ``log_var_offset``
    (both 0: the encoder is exact).
    """
    model = VAE((1,), 1, decoder_log_var=math.log(s2)).double()
    posterior_var = s2 / (w**2 + s2)
    encoder, decoder = nn.Linear(1, 2).double(), nn.Linear(1, 1).double()
    weight = [[w / (w**2 + s2)], [0.0]]
    bias = [-w * b / (w**2 + s2) + shift, math.log(posterior_var) + log_var_offset]
    with torch.no_grad():
        encoder.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        encoder.bias.copy_(torch.tensor(bias, dtype=torch.float64))
        decoder.weight.fill_(w)
        decoder.bias.fill_(b)
        model.decoder.log_var.fill_(math.log(s2))  # exact in float64 (it was built in float32)
    model.encoder.net, model.decoder.net = encoder, decoder
    exact = scipy.stats.norm(b, math.sqrt(w**2 + s2))
    return model, exact


def test_iwae_is_exact_when_the_encoder_is_the_true_posterior():
    model, exact = linear_gaussian_vae()
    x = torch.linspace(-2, 3, 7, dtype=torch.float64)[:, None]
    expected = exact.logpdf(x.numpy()[:, 0])
    for k, max_batch in [(1, 100), (5, 100), (50, 7)]:
        g = torch.Generator().manual_seed(k)
        got = importance_weighted_log_likelihood(model, x, k, generator=g, max_batch=max_batch)
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)
    # the ELBO is exact in expectation too: average many one-sample estimates
    g = torch.Generator().manual_seed(0)
    totals = torch.stack([negative_elbo(model, x, generator=g).total for _ in range(4000)])
    np.testing.assert_allclose(-totals.mean(0).detach().numpy(), expected, atol=0.05)


def test_iwae_bounds_tighten_towards_the_exact_log_likelihood():
    """E[ELBO] = E[L_1] < E[L_10] < E[L_100] < E[L_1000] <= log p(x) for a wrong encoder."""
    model, exact = linear_gaussian_vae(shift=0.8, log_var_offset=1.0)
    x = torch.linspace(-2, 3, 50, dtype=torch.float64)[:, None]
    log_p = exact.logpdf(x.numpy()[:, 0]).mean()
    # The exact ELBO of a Gaussian q against this linear-Gaussian model, for reference:
    # E_q[log p(x | z)] - KL(q || p(z)) with q = N(m, v), in closed form.
    m, log_v = (t.detach().numpy()[:, 0] for t in model.encode(x))
    v = np.exp(log_v)
    expected_log_lik = scipy.stats.norm.logpdf(x.numpy()[:, 0], 1.5 * m + 0.3, math.sqrt(0.5))
    expected_log_lik -= 1.5**2 * v / (2 * 0.5)
    kl = 0.5 * (v + m**2 - 1 - log_v)
    elbo_exact = (expected_log_lik - kl).mean()
    g = torch.Generator().manual_seed(9)

    def mean_and_standard_error(estimate, reps):
        """Average of ``reps`` independent batch averages, and its standard error."""
        with torch.no_grad():
            values = np.array([estimate().mean().item() for _ in range(reps)])
        return values.mean(), values.std(ddof=1) / math.sqrt(reps)

    elbo, elbo_se = mean_and_standard_error(
        lambda: -negative_elbo(model, x, generator=g).total, 400
    )
    bounds = {
        k: mean_and_standard_error(
            lambda k=k: importance_weighted_log_likelihood(model, x, k, generator=g), reps
        )
        for k, reps in [(1, 400), (10, 100), (100, 20), (1000, 5)]
    }
    gap = log_p - elbo_exact
    assert gap > 0.3, "the test needs a visible ELBO gap to be meaningful"
    # Monte Carlo tolerances: 4 standard errors (each well below the gap).
    assert abs(elbo - elbo_exact) < 4 * elbo_se, (elbo, elbo_se, elbo_exact)
    assert abs(bounds[1][0] - elbo_exact) < 4 * bounds[1][1], (bounds[1], elbo_exact)
    for small, large in [(1, 10), (10, 100), (100, 1000)]:
        assert bounds[small][0] < bounds[large][0], (small, large, bounds)
    assert bounds[1000][0] <= log_p + 4 * bounds[1000][1], (bounds[1000], log_p)
    assert log_p - bounds[1000][0] < 0.05 * gap, (bounds[1000], log_p)


def test_negative_elbo_of_gaussian_at_the_encoder_output_is_negative_elbo():
    """Same q, same generator state: the two functions agree draw for draw."""
    model = ConditionalVAE((1, 8, 8), 3, n_classes=10, hidden=16, likelihood="bernoulli")
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.tensor([0, 3, 9, 1, 1])
    with torch.no_grad():
        mean, log_var = model.encode(x, y)
        by_encoder = negative_elbo(model, x, y, generator=torch.Generator().manual_seed(4))
        given = negative_elbo_of_gaussian(
            model, x, mean, log_var, y, generator=torch.Generator().manual_seed(4)
        )
    for name in ("reconstruction", "kl", "total"):
        torch.testing.assert_close(getattr(given, name), getattr(by_encoder, name))


def test_negative_elbo_of_gaussian_matches_the_linear_gaussian_closed_form():
    """-ELBO of an arbitrary q = N(m, v): closed form E_q[-log p(x|z)] + KL, averaged over draws."""
    model, _ = linear_gaussian_vae()
    x = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    m = torch.tensor([[0.3], [-0.2], [1.1]], dtype=torch.float64)
    log_v = torch.tensor([[-1.0], [0.2], [-2.5]], dtype=torch.float64)
    v = log_v.exp().numpy()[:, 0]
    mn, xn = m.numpy()[:, 0], x.numpy()[:, 0]
    reconstruction = -scipy.stats.norm.logpdf(xn, 1.5 * mn + 0.3, math.sqrt(0.5))
    reconstruction += 1.5**2 * v / (2 * 0.5)
    expected = reconstruction + 0.5 * (v + mn**2 - 1 - np.log(v))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        draws = torch.stack(
            [negative_elbo_of_gaussian(model, x, m, log_v, generator=g).total for _ in range(20000)]
        )
    se = draws.std(0).numpy() / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(0).numpy() - expected) < 4 * se), (draws.mean(0), expected)


def test_fit_gaussian_posterior_finds_the_exact_posterior():
    """With a wrong encoder, per-example fitting recovers the exact posterior N(mu*, v*)."""
    w, b, s2 = 1.5, 0.3, 0.5
    model, exact = linear_gaussian_vae(w, b, s2, shift=0.8, log_var_offset=1.0)
    x = torch.linspace(-2, 3, 6, dtype=torch.float64)[:, None]
    weights_before = [p.detach().clone() for p in model.parameters()]
    mean, log_var = fit_gaussian_posterior(
        model, x, steps=600, n_samples=64, lr=0.05, generator=torch.Generator().manual_seed(2)
    )
    posterior_mean = w * (x[:, 0] - b) / (w**2 + s2)
    posterior_var = torch.full_like(posterior_mean, s2 / (w**2 + s2))
    torch.testing.assert_close(mean[:, 0], posterior_mean, atol=0.03, rtol=0)
    torch.testing.assert_close(log_var[:, 0].exp(), posterior_var, atol=0, rtol=0.1)
    # the model is untouched: same weights, no gradients left behind
    for before, p in zip(weights_before, model.parameters(), strict=True):
        assert torch.equal(before, p) and p.grad is None
    # and its ELBO (in closed form) reaches log p(x): the gap KL(q || posterior) is ~0
    m, v, xn = mean.numpy()[:, 0], log_var.exp().numpy()[:, 0], x.numpy()[:, 0]
    elbo = scipy.stats.norm.logpdf(xn, w * m + b, math.sqrt(s2)) - w**2 * v / (2 * s2)
    elbo -= 0.5 * (v + m**2 - 1 - np.log(v))
    log_p = exact.logpdf(xn)
    assert np.all(elbo <= log_p + 1e-12) and np.all(log_p - elbo < 0.01), log_p - elbo


def test_iwae_with_a_given_proposal():
    """The encoder's output as proposal changes nothing; the exact posterior makes L_k exact."""
    w, b, s2 = 1.5, 0.3, 0.5
    model, exact = linear_gaussian_vae(w, b, s2, shift=0.8, log_var_offset=1.0)
    x = torch.linspace(-2, 3, 5, dtype=torch.float64)[:, None]
    with torch.no_grad():
        encoder = model.encode(x)
        default = importance_weighted_log_likelihood(
            model, x, 7, generator=torch.Generator().manual_seed(1)
        )
        given = importance_weighted_log_likelihood(
            model, x, 7, generator=torch.Generator().manual_seed(1), proposal=encoder
        )
        torch.testing.assert_close(given, default)
        posterior = (
            (w * (x - b) / (w**2 + s2)),
            torch.full_like(x, math.log(s2 / (w**2 + s2))),
        )
        at_posterior = importance_weighted_log_likelihood(
            model, x, 3, generator=torch.Generator().manual_seed(2), proposal=posterior
        )
    np.testing.assert_allclose(at_posterior.numpy(), exact.logpdf(x.numpy()[:, 0]), rtol=1e-10)
    with pytest.raises(ValueError, match="proposal mean"):
        importance_weighted_log_likelihood(model, x, 3, proposal=(x[:2], x[:2]))
    with pytest.raises(TypeError, match="proposal"):
        importance_weighted_log_likelihood(model, x, 3, proposal=x)


def test_fit_gaussian_posterior_checks_its_arguments():
    model = VAE((2,), 2, hidden=8)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="steps"):
        fit_gaussian_posterior(model, x, steps=0)
    with pytest.raises(ValueError, match="n_samples"):
        fit_gaussian_posterior(model, x, n_samples=0)
    with pytest.raises(ValueError, match="lr"):
        fit_gaussian_posterior(model, x, lr=-1.0)
    with pytest.raises(ValueError, match="mean"):
        negative_elbo_of_gaussian(model, x, torch.zeros(3, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="model"):
        fit_gaussian_posterior(nn.Linear(2, 2), x)


# --------------------------------------------------------------------- bad input


def test_wrong_image_size_names_x():
    model = VAE((1, 8, 8), 2, hidden=8)
    with pytest.raises(ValueError, match="x must have shape"):
        negative_elbo(model, torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="x must have shape"):
        model.encode(torch.zeros(3, 64))


def test_wrong_latent_size_names_z():
    with pytest.raises(ValueError, match="z must have shape"):
        VAE((2,), 2, hidden=8).decode(torch.zeros(3, 5))


def test_label_errors_name_y():
    model = ConditionalVAE((2,), 2, n_classes=10, hidden=8)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="y must hold labels in 0..9"):
        negative_elbo(model, x, torch.tensor([0, 10, 3]))
    with pytest.raises(ValueError, match="y must hold labels"):
        model.sample(2, y=torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="y is required"):
        negative_elbo(model, x)
    with pytest.raises(TypeError, match="y must have dtype"):
        negative_elbo(model, x, torch.zeros(3))
    with pytest.raises(ValueError, match="y must have shape"):
        negative_elbo(model, x, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="y was given"):
        negative_elbo(VAE((2,), 2, hidden=8), x, torch.zeros(3, dtype=torch.int64))


def test_k_must_be_a_positive_int():
    model = VAE((2,), 2, hidden=8)
    with pytest.raises(ValueError, match="k must be at least 1"):
        importance_weighted_log_likelihood(model, torch.zeros(3, 2), 0)
    with pytest.raises(TypeError, match="k must be an int"):
        importance_weighted_log_likelihood(model, torch.zeros(3, 2), 2.5)
    with pytest.raises(ValueError, match="max_batch"):
        importance_weighted_log_likelihood(model, torch.zeros(3, 2), 2, max_batch=0)


def test_bernoulli_decoder_rejects_data_outside_minus_one_one():
    model = VAE((2,), 2, hidden=8, likelihood="bernoulli")
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        negative_elbo(model, torch.tensor([[0.0, 1.5]]))


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="likelihood"):
        VAE((2,), 2, likelihood="poisson")
    with pytest.raises(ValueError, match="log_var"):
        Decoder(2, (2,), likelihood="bernoulli", log_var=0.0)
    with pytest.raises(ValueError, match="log_var"):
        Decoder(2, (2,), log_var=float("nan"))
    with pytest.raises(ValueError, match="data_shape"):
        Encoder((0, 8), 2)
    with pytest.raises(ValueError, match="latent_dim"):
        VAE((2,), 0)
    with pytest.raises(ValueError, match="n_classes"):
        ConditionalVAE((2,), 2, n_classes=1)
    with pytest.raises(ValueError, match="label_encoding"):
        ConditionalVAE((2,), 2, n_classes=3, label_encoding="words")
    with pytest.raises(TypeError, match="model"):
        negative_elbo(nn.Linear(2, 2), torch.zeros(1, 2))


def test_cond_is_checked_by_the_networks():
    with pytest.raises(ValueError, match="cond is required"):
        Encoder((2,), 2, cond_dim=3)(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="cond was given"):
        Decoder(2, (2,))(torch.zeros(1, 2), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="cond must have shape"):
        Decoder(2, (2,), cond_dim=3)(torch.zeros(1, 2), torch.zeros(1, 4))


def test_bits_per_dim():
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert bits_per_dim(-10.0, 8) == pytest.approx(-10.0 / 8 / math.log(2))
    with pytest.raises(ValueError, match="n_dims"):
        bits_per_dim(1.0, 0)


# ------------------------------------------------------ the two-level Markovian HVAE


@pytest.mark.parametrize("data_shape", [(2,), (1, 8, 8)])
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_hvae_shapes(data_shape, likelihood):
    torch.manual_seed(0)
    model = MarkovianHVAE(data_shape, 3, 2, hidden=16, transition_hidden=8, likelihood=likelihood)
    x = torch.rand(5, *data_shape) * 2 - 1
    latents = model(x)
    assert latents.z1.shape == latents.mean_1.shape == latents.log_var_1.shape == (5, 3)
    assert latents.z2.shape == latents.mean_2.shape == latents.log_var_2.shape == (5, 2)
    assert [t.shape for t in model.decode_top(latents.z2)] == [(5, 3), (5, 3)]
    assert model.decode(latents.z1).shape == model.reconstruct(x).shape == (5, *data_shape)
    assert model.sample(4).shape == model.sample(4, decoder_noise=True).shape == (4, *data_shape)
    loss = hvae_negative_elbo(model, x)
    assert all(t.shape == (5,) for t in loss)
    assert hvae_importance_weighted_log_likelihood(model, x, k=7, max_batch=10).shape == (5,)
    if likelihood == "bernoulli":
        assert set(model.sample(20, decoder_noise=True).unique().tolist()) <= {-1.0, 1.0}


def hand_computed_hvae_terms(model, x, eps1, eps2):
    """(reconstruction, log_ratio_z1, kl_z2) per example from the weights, NumPy and SciPy."""
    x_np = x.numpy().reshape(x.shape[0], -1)
    d1, d2 = eps1.shape[1], eps2.shape[1]
    out = mlp_numpy(model.encoder.net, x_np)
    mean_1, log_var_1 = out[:, :d1], out[:, d1:]
    z1 = mean_1 + np.exp(0.5 * log_var_1) * eps1
    out = mlp_numpy(model.encoder_top.net, z1)
    mean_2, log_var_2 = out[:, :d2], out[:, d2:]
    z2 = mean_2 + np.exp(0.5 * log_var_2) * eps2
    out = mlp_numpy(model.decoder_top.net, z2)
    prior_mean_1, prior_sd_1 = out[:, :d1], np.exp(0.5 * out[:, d1:])
    decoded = mlp_numpy(model.decoder.net, z1)
    if model.likelihood == "gaussian":
        sd = np.exp(0.5 * model.decoder.log_var.detach().numpy().reshape(-1))
        reconstruction = -scipy.stats.norm.logpdf(x_np, decoded, sd).sum(axis=1)
    else:
        targets = (x_np + 1) / 2
        reconstruction = -scipy.stats.bernoulli.logpmf(targets, scipy.special.expit(decoded))
        reconstruction = reconstruction.sum(axis=1)
    log_q = scipy.stats.norm.logpdf(z1, mean_1, np.exp(0.5 * log_var_1)).sum(axis=1)
    log_p = scipy.stats.norm.logpdf(z1, prior_mean_1, prior_sd_1).sum(axis=1)
    kl_z2 = np.array(
        [
            sum(
                kl_to_standard_normal_by_quadrature(m, math.exp(v))
                for m, v in zip(ms, vs, strict=True)
            )
            for ms, vs in zip(mean_2, log_var_2, strict=True)
        ]
    )
    return reconstruction, log_q - log_p, kl_z2


def tiny_hvae(likelihood="gaussian"):
    model = MarkovianHVAE(
        (3,),
        2,
        2,
        hidden=5,
        depth=1,
        transition_hidden=4,
        transition_depth=1,
        likelihood=likelihood,
    ).double()
    fill_weights(model, seed=21)
    if likelihood == "gaussian":
        with torch.no_grad():
            model.decoder.log_var.copy_(torch.tensor([-0.5, 0.1, 0.6]))
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    else:
        bits = torch.rand(4, 3, generator=torch.Generator().manual_seed(22)) < 0.5
        x = torch.where(bits, -1.0, 1.0).double()
    return model, x


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_hvae_negative_elbo_equals_hand_computed_value(likelihood):
    model, x = tiny_hvae(likelihood)
    # the noise hvae_negative_elbo draws from a generator seeded 23: z_1's first, then z_2's
    g = torch.Generator().manual_seed(23)
    eps1 = torch.randn(4, 2, generator=g, dtype=torch.float64).numpy()
    eps2 = torch.randn(4, 2, generator=g, dtype=torch.float64).numpy()
    loss = hvae_negative_elbo(model, x, generator=torch.Generator().manual_seed(23))
    expected = hand_computed_hvae_terms(model, x, eps1, eps2)
    for name, value in zip(("reconstruction", "log_ratio_z1", "kl_z2"), expected, strict=True):
        got = getattr(loss, name).detach().numpy()
        np.testing.assert_allclose(got, value, rtol=1e-7, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(loss.total.detach().numpy(), sum(expected), rtol=1e-7)


def test_hvae_iwae_equals_hand_computed_value():
    """L_k from the same draws by hand: log-mean-exp of the k log-weights (SciPy)."""
    model, x = tiny_hvae()
    k = 3
    g = torch.Generator().manual_seed(24)  # one chunk: all z_1 noise, then all z_2 noise
    eps1 = torch.randn(k * 4, 2, generator=g, dtype=torch.float64).numpy()
    eps2 = torch.randn(k * 4, 2, generator=g, dtype=torch.float64).numpy()
    x_rep = x.repeat(k, 1)
    reconstruction, log_ratio_z1, _ = hand_computed_hvae_terms(model, x_rep, eps1, eps2)
    # the top level's log-ratio at the sampled z_2: log N(z_2; 0, I) - log q(z_2 | z_1)
    out = mlp_numpy(model.encoder.net, x_rep.numpy())
    z1 = out[:, :2] + np.exp(0.5 * out[:, 2:]) * eps1
    out = mlp_numpy(model.encoder_top.net, z1)
    z2 = out[:, :2] + np.exp(0.5 * out[:, 2:]) * eps2
    log_ratio_z2 = scipy.stats.norm.logpdf(z2).sum(1) - scipy.stats.norm.logpdf(
        z2, out[:, :2], np.exp(0.5 * out[:, 2:])
    ).sum(1)
    log_w = (-reconstruction - log_ratio_z1 + log_ratio_z2).reshape(k, 4)
    expected = scipy.special.logsumexp(log_w, axis=0) - math.log(k)
    got = hvae_importance_weighted_log_likelihood(
        model, x, k, generator=torch.Generator().manual_seed(24)
    )
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-9)


def test_gradients_reach_the_bottom_encoder_through_both_samples():
    """kl_z2 depends on phi_1 only through the sample z_1: it must be reparameterized."""
    torch.manual_seed(0)
    model = MarkovianHVAE((2,), 2, 2, hidden=8, transition_hidden=8)
    hvae_negative_elbo(model, torch.randn(16, 2)).kl_z2.sum().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    model.zero_grad()
    hvae_negative_elbo(model, torch.randn(16, 2)).log_ratio_z1.sum().backward()
    grads = [p.grad for p in model.encoder_top.parameters()]  # through the sample z_2
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


# A 1-D linear-Gaussian hierarchy with an exact log p(x): p(z2) = N(0, 1),
# p(z1 | z2) = N(A z2, S1), p(x | z1) = N(B z1, S0) (S0, S1 variances), so that
# p(x) = N(0, B^2 (A^2 + S1) + S0).
A, B, S1, S0 = 1.2, 0.8, 0.5, 0.3


def exact_posterior_encoder():
    """(c, u1, d, u2) of the exact posterior p(z1 | x) = N(c x, u1), p(z2 | z1) = N(d z1, u2)."""
    v1 = A**2 + S1
    return B * v1 / (B**2 * v1 + S0), v1 * S0 / (B**2 * v1 + S0), A / v1, S1 / v1


def linear_gaussian_hvae(c, u1, d, u2):
    """A MarkovianHVAE whose four networks are the linear maps of the hierarchy above."""
    model = MarkovianHVAE((1,), 1, 1, decoder_log_var=math.log(S0)).double()

    def linear(out_features, weight, bias):
        layer = nn.Linear(1, out_features).double()
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(weight, dtype=torch.float64).reshape(-1, 1))
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float64))
        return layer

    model.encoder.net = linear(2, [c, 0.0], [0.0, math.log(u1)])
    model.encoder_top.net = linear(2, [d, 0.0], [0.0, math.log(u2)])
    model.decoder_top.net = linear(2, [A, 0.0], [0.0, math.log(S1)])
    model.decoder.net = linear(1, [B], [0.0])
    with torch.no_grad():
        model.decoder.log_var.fill_(math.log(S0))  # exact in float64
    return model


def exact_log_p(x):
    return scipy.stats.norm.logpdf(x, 0.0, math.sqrt(B**2 * (A**2 + S1) + S0))


def exact_elbo(x, c, u1, d, u2):
    """The ELBO of the linear hierarchy in closed form, from Gaussian moments (NumPy)."""
    m1 = c * x
    second_moment_z1 = m1**2 + u1
    reconstruction = scipy.stats.norm.logpdf(x, B * m1, math.sqrt(S0)) - B**2 * u1 / (2 * S0)
    kl_z2 = 0.5 * (u2 + d**2 * second_moment_z1 - 1 - math.log(u2))
    # z1 - A z2 = (1 - A d) z1 - A sqrt(u2) eps2 under q
    mean_square = (1 - A * d) ** 2 * second_moment_z1 + A**2 * u2
    log_ratio_z1 = -0.5 * math.log(2 * math.pi * math.e * u1) + (
        0.5 * math.log(2 * math.pi * S1) + mean_square / (2 * S1)
    )
    return reconstruction - kl_z2 - log_ratio_z1


def exact_gap(x, c, u1, d, u2):
    """KL(q(z1, z2 | x) || p(z1, z2 | x)) between the two bivariate Gaussians (NumPy)."""

    def joint(c_, u1_, d_, u2_):
        return np.array([c_ * x, d_ * c_ * x]), np.array(
            [[u1_, d_ * u1_], [d_ * u1_, d_**2 * u1_ + u2_]]
        )

    (mq, cq), (mp, cp) = joint(c, u1, d, u2), joint(*exact_posterior_encoder())
    cp_inv = np.linalg.inv(cp)
    diff = mp - mq
    return 0.5 * (
        np.trace(cp_inv @ cq)
        + diff @ cp_inv @ diff
        - 2
        + math.log(np.linalg.det(cp) / np.linalg.det(cq))
    )


def test_hvae_bounds_are_exact_at_the_exact_posterior():
    params = exact_posterior_encoder()
    model = linear_gaussian_hvae(*params)
    x = torch.linspace(-2, 3, 6, dtype=torch.float64)[:, None]
    expected = exact_log_p(x.numpy()[:, 0])
    # every importance weight equals p(x): L_k is exact for any k and any draw
    for k, max_batch in [(1, 100), (7, 10)]:
        got = hvae_importance_weighted_log_likelihood(
            model, x, k, generator=torch.Generator().manual_seed(k), max_batch=max_batch
        )
        np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-10)
    for x_value, log_p in zip(x.numpy()[:, 0], expected, strict=True):
        assert exact_elbo(x_value, *params) == pytest.approx(log_p, abs=1e-12)


@pytest.mark.parametrize("exact", [True, False])
def test_hvae_elbo_matches_the_linear_gaussian_closed_form(exact):
    """The average of hvae_negative_elbo equals log p(x) at the exact posterior, and
    log p(x) - KL(q || posterior) < log p(x) for a wrong encoder."""
    c, u1, d, u2 = exact_posterior_encoder()
    params = (c, u1, d, u2) if exact else (0.7 * c, 2.0 * u1, d + 0.4, 0.5 * u2)
    model = linear_gaussian_hvae(*params)
    x_values = np.array([-1.5, 0.2, 2.0])
    n_draws = 20_000
    x = torch.tensor(np.repeat(x_values, n_draws), dtype=torch.float64)[:, None]
    with torch.no_grad():
        total = hvae_negative_elbo(model, x, generator=torch.Generator().manual_seed(5)).total
    draws = -total.numpy().reshape(3, n_draws)
    mc_mean, mc_se = draws.mean(1), draws.std(1) / math.sqrt(n_draws)
    elbo = np.array([exact_elbo(v, *params) for v in x_values])
    gap = np.array([exact_gap(v, *params) for v in x_values])
    log_p = exact_log_p(x_values)
    np.testing.assert_allclose(elbo, log_p - gap, atol=1e-12)  # log p(x) = ELBO + KL
    assert (np.abs(mc_mean - elbo) < 4 * mc_se).all(), (mc_mean, elbo, mc_se)
    if exact:
        np.testing.assert_allclose(gap, 0.0, atol=1e-12)
    else:
        assert (gap > 0.1).all() and (mc_mean < log_p - 10 * mc_se).all()


def test_hvae_samples_come_from_the_model():
    """Ancestral samples of the linear hierarchy have the exact marginal variance of x."""
    model = linear_gaussian_hvae(*exact_posterior_encoder())
    with torch.no_grad():
        samples = model.sample(40_000, torch.Generator().manual_seed(3), decoder_noise=True)
    variance = B**2 * (A**2 + S1) + S0
    # sample variance of n normals: standard error variance * sqrt(2 / n)
    assert abs(samples.var().item() - variance) < 4 * variance * math.sqrt(2 / 40_000)
    assert abs(samples.mean().item()) < 4 * math.sqrt(variance / 40_000)


def test_hvae_bad_input_names_the_argument():
    model = MarkovianHVAE((1, 8, 8), 3, 2, hidden=8, transition_hidden=8)
    with pytest.raises(ValueError, match="x must have shape"):
        hvae_negative_elbo(model, torch.zeros(3, 64))
    with pytest.raises(ValueError, match="z1 must have shape"):
        model.decode(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z1 must have shape"):
        model.encode_top(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="z2 must have shape"):
        model.decode_top(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="inputs must have shape"):
        GaussianTransition(2, 3)(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="model"):
        hvae_negative_elbo(VAE((1, 8, 8), 3, hidden=8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(TypeError, match="model"):
        hvae_importance_weighted_log_likelihood(VAE((2,), 2, hidden=8), torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match="k must be at least 1"):
        hvae_importance_weighted_log_likelihood(model, torch.zeros(3, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="max_batch"):
        hvae_importance_weighted_log_likelihood(model, torch.zeros(3, 1, 8, 8), 2, max_batch=0)
    with pytest.raises(ValueError, match="n must be at least 1"):
        model.sample(0)
    bernoulli = MarkovianHVAE((2,), 2, 2, hidden=8, likelihood="bernoulli")
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        hvae_negative_elbo(bernoulli, torch.tensor([[0.0, 1.5]]))


def test_hvae_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="latent_dim_1"):
        MarkovianHVAE((2,), 0, 2)
    with pytest.raises(ValueError, match="latent_dim_2"):
        MarkovianHVAE((2,), 2, 0)
    with pytest.raises(TypeError, match="latent_dim_2"):
        MarkovianHVAE((2,), 2, 1.5)
    with pytest.raises(ValueError, match="likelihood"):
        MarkovianHVAE((2,), 2, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="data_shape"):
        MarkovianHVAE((0,), 2, 2)
    with pytest.raises(ValueError, match="in_dim"):
        GaussianTransition(0, 2)
    with pytest.raises(ValueError, match="out_dim"):
        GaussianTransition(2, 0)
