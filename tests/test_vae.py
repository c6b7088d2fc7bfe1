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
    bits_per_dim,
    importance_weighted_log_likelihood,
    negative_elbo,
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
