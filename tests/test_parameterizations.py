"""Tests for udm.parameterizations: conversions, targets, the Denoiser and its loss.

Independent references: SymPy's solution of the 2x2 system and of the Gaussian conditional,
the exact Gaussian mixture (its denoiser and its noised score are separate closed forms),
autograd of log q(x_t | x_0), diffusers' formulas written out, and udm.diffusion's x_0-form
posterior and KL terms.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import oracle_denoiser

from udm import diffusion, paths, schedules, toy
from udm.parameterizations import (
    DIFFUSERS_PREDICTION_TYPES,
    PREDICTIONS,
    Denoiser,
    MixtureDenoiser,
    convert,
    elbo_weight,
    eps_from_score,
    posterior_mean_from_eps,
    posterior_mean_from_score,
    predict_eps_from_v,
    predict_eps_from_x0,
    predict_x0_from_eps,
    predict_x0_from_score,
    predict_x0_from_v,
    prediction_loss,
    prediction_target,
    prediction_weights,
    score_from_eps,
    score_from_x0,
    v_from_x0_eps,
    x0_and_eps,
)

F64 = torch.float64
SHAPES = [(2,), (3,), (1, 4, 4), (2, 3, 2)]  # trailing shapes: points and small "images"
PATHS = {
    "discrete": schedules.linear_schedule(50).path,
    "vp": paths.ContinuousVP(),
    "ve": paths.VE(),
    "edm": paths.EDM(),
    "line": paths.StraightLine(),
}


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-9) -> bool:
    """Equal within tol, relative to the size of the values (float64 round trips)."""
    return bool(((a - b).abs() <= tol * (1 + b.abs())).all())


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def batches(draw):
    """A float64 batch (x0, eps) of a random trailing shape, and alpha_bar per example."""
    batch = draw(st.integers(1, 6))
    shape = (batch, *draw(st.sampled_from(SHAPES)))
    generator = gen(draw(st.integers(0, 2**31 - 1)))
    x0 = 3 * torch.randn(shape, generator=generator, dtype=F64)
    eps = torch.randn(shape, generator=generator, dtype=F64)
    alpha_bar = torch.tensor(
        draw(st.lists(st.floats(1e-4, 1 - 1e-4), min_size=batch, max_size=batch)), dtype=F64
    )
    coef = alpha_bar.reshape(batch, *[1] * (len(shape) - 1))
    x_t = coef.sqrt() * x0 + (1 - coef).sqrt() * eps
    return x0, eps, x_t, alpha_bar


# ----------------------------------------------------------- the one conversion
def test_prediction_weights_and_the_solve_match_sympy():
    a, s, da, ds = sp.symbols("a s a' s'", positive=True)
    x0, eps, x, y = sp.symbols("x_0 epsilon x y", real=True)
    x_t = a * x0 + s * eps
    definitions = {  # each kind as written in its paper
        "x0": x0,
        "eps": eps,
        "score": -(x_t - a * x0) / s**2,  # grad of log N(x_t; a x0, s^2)
        "v": a * eps - s * x0,
        "velocity": da * x0 + ds * eps,
    }
    numbers = (0.6, 0.8, -0.7, 1.3)
    values = dict(zip((a, s, da, ds), numbers, strict=True))
    path = _ConstantPath(*numbers)
    for kind, expr in definitions.items():
        alpha, beta = prediction_weights(kind, *numbers)
        coefficients = sp.Poly(sp.expand(expr), x0, eps)
        assert math.isclose(alpha, float(coefficients.coeff_monomial(x0).subs(values)))
        assert math.isclose(beta, float(coefficients.coeff_monomial(eps).subs(values)))
        (solution,) = sp.solve([sp.Eq(x, x_t), sp.Eq(y, expr)], [x0, eps], dict=True)
        at = {**values, x: 1.5, y: -0.4}
        x_value, y_value = torch.tensor([[1.5]], dtype=F64), torch.tensor([[-0.4]], dtype=F64)
        for name, unknown in (("x0", x0), ("eps", eps)):
            got = convert(y_value, x_value, 0.7, path, kind, name).item()
            assert math.isclose(got, float(solution[unknown].subs(at)), rel_tol=1e-12), kind


class _ConstantPath(paths.Path):
    """A 'path' with fixed a, s, a', s' (for checking the algebra at chosen numbers)."""

    t_max, t_min = 1.0, 0.5

    def __init__(self, a, s, da, ds):
        self.values = (a, s, da, ds)

    def _a_s(self, t):
        return torch.full_like(t, self.values[0]), torch.full_like(t, self.values[1])

    def _da_ds(self, t):
        return torch.full_like(t, self.values[2]), torch.full_like(t, self.values[3])


@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("path_name", list(PATHS))
def test_every_kind_converts_to_every_other(source, path_name):
    """Exact targets of kind source at (x_t, t) convert to the exact targets of every kind."""
    path = PATHS[path_name]
    g = gen(1)
    x0, eps = torch.randn(64, 3, generator=g, dtype=F64), torch.randn(64, 3, generator=g, dtype=F64)
    t = path.t_max * (0.02 + 0.9 * torch.rand(64, generator=g, dtype=F64))
    x_t = path.q_sample(x0, t, eps)
    output = prediction_target(x0, eps, source, path, t)
    for target in PREDICTIONS:
        expected = prediction_target(x0, eps, target, path, t)
        assert close(convert(output, x_t, t, path, source, target), expected, tol=1e-8), target


def test_vp_targets_are_the_book_formulas_and_velocity_is_dx_dt():
    path = paths.ContinuousVP()
    g = gen(2)
    x0, eps = torch.randn(32, 2, generator=g, dtype=F64), torch.randn(32, 2, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(32, generator=g, dtype=F64)
    ab = path.alpha_bar(t)
    assert close(prediction_target(x0, eps, "v", path, t), v_from_x0_eps(x0, eps, ab))
    assert close(prediction_target(x0, eps, "score", path, t), score_from_eps(eps, ab))
    h = 1e-6  # the velocity is d/dt of x_t = a(t) x0 + s(t) eps at fixed (x0, eps)
    finite_difference = (path.q_sample(x0, t + h, eps) - path.q_sample(x0, t - h, eps)) / (2 * h)
    assert close(prediction_target(x0, eps, "velocity", path, t), finite_difference, tol=1e-6)


# ------------------------------------------------------------------- VP forms
@settings(max_examples=40, deadline=None)
@given(batches())
def test_vp_conversions_round_trip_and_recover_the_forward_draw(data):
    x0, eps, x_t, ab = data
    assert close(predict_x0_from_eps(x_t, eps, ab), x0)
    assert close(predict_eps_from_x0(x_t, x0, ab), eps)
    score = score_from_eps(eps, ab)
    assert close(eps_from_score(score, ab), eps)
    assert close(predict_x0_from_score(x_t, score, ab), x0)
    assert close(score_from_x0(x_t, x0, ab), score, tol=1e-8)
    v = v_from_x0_eps(x0, eps, ab)
    assert close(predict_x0_from_v(x_t, v, ab), x0)
    assert close(predict_eps_from_v(x_t, v, ab), eps)
    assert close(x_t.square() + v.square(), x0.square() + eps.square())  # a rotation


@settings(max_examples=30, deadline=None)
@given(batches(), st.sampled_from(PREDICTIONS[:4]))
def test_any_vp_output_converts_back_to_the_pair_x0_eps(data, prediction):
    x0, eps, x_t, ab = data
    alpha, beta = prediction_weights(prediction, ab.sqrt(), (1 - ab).sqrt())
    shape = (-1, *[1] * (x0.ndim - 1))
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.reshape(shape)
    if isinstance(beta, torch.Tensor):
        beta = beta.reshape(shape)
    target = alpha * x0 + beta * eps
    x0_back, eps_back = x0_and_eps(target, x_t, ab, prediction)
    assert close(x0_back, x0, tol=1e-8) and close(eps_back, eps, tol=1e-8)


def test_float_alpha_bar_means_one_level_for_the_batch_and_dtype_is_kept():
    x_t, eps = torch.randn(5, 2), torch.randn(5, 2)
    as_float = predict_x0_from_eps(x_t, eps, 0.3)
    as_tensor = predict_x0_from_eps(x_t, eps, torch.full((5,), 0.3, dtype=F64))
    assert as_float.dtype == torch.float32 and torch.allclose(as_float, as_tensor, atol=1e-6)


def test_tweedie_on_the_exact_mixture_gives_its_denoiser():
    mixture = toy.default_mixture()
    generator = gen(0)
    for alpha_bar in (0.999, 0.7, 0.2, 0.01, 1e-4):
        noised = mixture.noised(alpha_bar)
        x_t = noised.sample(500, generator=generator, dtype=F64)
        via_score = predict_x0_from_score(x_t, noised.score(x_t), alpha_bar)
        # closed forms computed two different ways: agreement to rounding, scaled by 1/sqrt(ab)
        assert (via_score - mixture.denoiser(x_t, alpha_bar)).abs().max() < 1e-12 / alpha_bar**0.5


def test_score_from_eps_is_the_gradient_of_log_q_xt_given_x0():
    generator = gen(1)
    x0, eps = torch.randn(8, 3, generator=generator, dtype=F64), torch.randn(8, 3, dtype=F64)
    ab = torch.linspace(0.05, 0.95, 8, dtype=F64)
    x_t = (ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * eps).requires_grad_()
    log_q = -((x_t - ab.sqrt()[:, None] * x0) ** 2 / (2 * (1 - ab)[:, None])).sum()
    (autograd_score,) = torch.autograd.grad(log_q, x_t)
    assert close(score_from_eps(eps, ab), autograd_score, tol=1e-12)


@pytest.mark.parametrize(("ours", "theirs"), list(DIFFUSERS_PREDICTION_TYPES.items()))
def test_agrees_with_diffusers_formulas_written_out(ours, theirs):
    """diffusers' pred_original_sample and its training targets, per prediction_type."""
    generator = gen(2)
    x0, eps, out = (torch.randn(16, 2, generator=generator, dtype=F64) for _ in range(3))
    ab = torch.linspace(0.01, 0.99, 16, dtype=F64)
    a, b = ab.sqrt()[:, None], (1 - ab).sqrt()[:, None]
    x_t = a * x0 + b * eps
    diffusers_x0 = {
        "epsilon": (x_t - b * out) / a,
        "sample": out,
        "v_prediction": a * x_t - b * out,
    }
    diffusers_target = {"epsilon": eps, "sample": x0, "v_prediction": a * eps - b * x0}
    assert close(x0_and_eps(out, x_t, ab, ours)[0], diffusers_x0[theirs], tol=1e-12)
    path = schedules.NoiseSchedule.from_alpha_bars(ab.flip(0)).path
    t = torch.arange(16, 0, -1, dtype=F64) / 16  # alpha_bar(t) = ab, on that schedule's grid
    assert close(prediction_target(x0, eps, ours, path, t), diffusers_target[theirs], tol=1e-10)


def test_posterior_mean_forms_match_the_x0_form():
    schedule = schedules.linear_schedule(50)
    generator = gen(3)
    x_t, eps = (torch.randn(32, 1, 3, 3, generator=generator, dtype=F64) for _ in range(2))
    t = torch.randint(1, 51, (32,), generator=generator)
    ab = schedule.alpha_bar(t, dtype=F64)
    x0_form, _ = diffusion.posterior_mean_variance(
        schedule, x_t, predict_x0_from_eps(x_t, eps, ab), t
    )
    assert close(posterior_mean_from_eps(schedule, x_t, eps, t), x0_form, tol=1e-11)
    score = score_from_eps(eps, ab)
    assert close(posterior_mean_from_score(schedule, x_t, score, t), x0_form, tol=1e-11)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_elbo_weight_matches_the_kl_between_the_reverse_steps(prediction):
    # udm.diffusion computes the KL from the two Gaussians' means, with no weights at all.
    schedule = schedules.linear_schedule(40)
    generator = gen(4)
    x0, noise, out = (torch.randn(64, 2, generator=generator, dtype=F64) for _ in range(3))
    t = torch.randint(2, 41, (64,), generator=generator)
    model = Denoiser(lambda x, times: out, schedule.path, prediction)
    kl = diffusion.denoising_matching_term(model, schedule, x0, t, noise)
    target = prediction_target(x0, noise, prediction, schedule.path, t.to(F64) / 40)
    weighted = elbo_weight(schedule, t, prediction) * (out - target).square().sum(1)
    assert close(weighted, kl, tol=1e-9)


# ------------------------------------------------------------------ the Denoiser
@pytest.mark.parametrize("path_name", list(PATHS))
def test_oracles_of_all_five_kinds_give_the_exact_denoiser_score_and_eps(path_name):
    path, mixture = PATHS[path_name], toy.default_mixture()
    g = gen(7)
    t = path.t_max * (0.01 + 0.98 * torch.rand(300, generator=g, dtype=F64))
    x_t = mixture.marginal(1.0, 0.0).sample(300, generator=g, dtype=F64) + torch.randn(
        300, 2, generator=g, dtype=F64
    )
    exact = MixtureDenoiser(mixture, path)(x_t, t)
    c = path.coefficients(t)
    noised_scores = torch.cat(
        [
            mixture.marginal(a, s).score(x[None])
            for a, s, x in zip(c.a.tolist(), c.s.tolist(), x_t, strict=True)
        ]
    )
    for prediction in PREDICTIONS:
        d = oracle_denoiser(mixture, path, prediction)
        assert close(d(x_t, t), exact, tol=1e-9), prediction
        assert close(d.score(x_t, t), noised_scores, tol=1e-7), prediction  # Tweedie
        eps = d.eps(x_t, t)
        assert close(c.a[:, None] * d(x_t, t) + c.s[:, None] * eps, x_t, tol=1e-9)
        one = float(t[0])
        assert close(d(x_t[:1], one), exact[:1], tol=1e-9)  # a float time, the samplers' way
        d.prepare(torch.tensor([one], dtype=F64), x_t)
        assert close(d(x_t[:1], one), exact[:1], tol=1e-9)


def test_denoiser_flattens_images_for_a_flat_network():
    path = schedules.linear_schedule(10, 1e-3, 0.3).path
    seen = []

    def net(x, t):
        seen.append((x.shape, t.shape))
        return 2 * x

    d = Denoiser(net, path, "eps")
    x_t, t = torch.randn(4, 1, 3, 3), torch.tensor([0.1, 0.2, 0.3, 1.0], dtype=F64)
    out = d.eps(x_t, t)
    assert seen == [((4, 9), (4,))] and torch.equal(out, 2 * x_t)
    assert d(x_t, t).shape == x_t.shape and "eps" in repr(d)


def test_network_sees_the_time_and_a_discrete_network_its_step_number():
    from udm.nets import TimeConditionedMLP

    T = 100
    path = schedules.linear_schedule(T).path
    seen = []
    Denoiser(lambda x, t: seen.append(t.clone()) or x, path, "x0")(torch.zeros(2, 2), 0.37)
    assert seen[0].tolist() == pytest.approx([0.37, 0.37])
    net = TimeConditionedMLP(2, time_scale=T)
    embedded = net.time_embed[0](seen[0] * T)
    reference = net.time_embed[0](torch.tensor([37.0, 37.0]))
    torch.testing.assert_close(embedded, reference, rtol=0, atol=1e-5)


# ----------------------------------------------------------- preconditioning
def test_preconditioning_coefficients_are_the_gaussian_conditional():
    """c_in^-2 = Var(x_t), c_skip x_t = E[y | x_t], c_out^2 = Var(y | x_t) for N(0, sd^2) data."""
    a, s, sd, alpha, beta = sp.symbols("a s sigma_d alpha beta", positive=True)
    var_x = a**2 * sd**2 + s**2
    cov = alpha * a * sd**2 + beta * s
    var_y = alpha**2 * sd**2 + beta**2
    values = {a: 0.8, s: 0.6, sd: 0.7}
    for prediction in PREDICTIONS:
        wa, wb = prediction_weights(prediction, 0.8, 0.6, -0.9, 1.1)
        at = {**values, alpha: wa, beta: wb}
        d = Denoiser(lambda x, t: x, _ConstantPath(0.8, 0.6, -0.9, 1.1), prediction, data_std=0.7)
        c_in, _, _, _, _, c_skip, c_out = d._numbers(d.path.coefficients(0.7))
        assert math.isclose(c_in, float((1 / sp.sqrt(var_x)).subs(at)), rel_tol=1e-12)
        assert math.isclose(c_skip, float((cov / var_x).subs(at)), rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(c_out**2, float((var_y - cov**2 / var_x).subs(at)), rel_tol=1e-10)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_preconditioned_zero_network_is_the_wiener_filter(prediction):
    """F = 0 gives E[x_0 | x_t] exactly for Gaussian data N(0, sd^2 I), for every kind."""
    path, sd = paths.ContinuousVP(), 0.7
    data = toy.GaussianMixture([[0.0, 0.0]], [[[sd**2, 0.0], [0.0, sd**2]]], [1.0])
    d = Denoiser(lambda x, t: torch.zeros_like(x), path, prediction, data_std=sd)
    g = gen(8)
    t = 0.01 + 0.98 * torch.rand(50, generator=g, dtype=F64)
    x_t = torch.randn(50, 2, generator=g, dtype=F64)
    assert close(d(x_t, t), MixtureDenoiser(data, path)(x_t, t), tol=1e-12)


def test_preconditioned_x0_is_karras_and_its_simple_loss_is_the_old_weighted_loss():
    """c_skip, c_out, c_in of EDM for x0 on a VP schedule; simple loss = 1/c_out^2 weighted."""
    schedule = schedules.cosine_schedule(40)
    torch.manual_seed(1)
    from udm.nets import TimeConditionedMLP

    net = TimeConditionedMLP(2, hidden=16, depth=1, time_scale=40).double()
    d = Denoiser(net, schedule.path, "x0", data_std=0.8)
    g = gen(18)
    x0, noise = (
        torch.randn(16, 2, generator=g, dtype=F64),
        torch.randn(16, 2, generator=g, dtype=F64),
    )
    steps = torch.randint(1, 41, (16,), generator=g)
    t = steps.to(F64) / 40
    loss = prediction_loss(d, x0, t=t, noise=noise)
    ab = schedule.alpha_bars[steps][:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    var_xt = ab * 0.64 + 1 - ab
    c_skip, c_out = ab.sqrt() * 0.64 / var_xt, 0.8 * (1 - ab).sqrt() / var_xt.sqrt()
    target = (x0 - c_skip * x_t) / c_out
    own = (net(x_t / var_xt.sqrt(), t) - target).square().mean()
    assert loss.item() == pytest.approx(own.item(), rel=1e-10)
    x0_hat = c_skip * x_t + c_out * net(x_t / var_xt.sqrt(), t)
    assert close(d(x_t, t), x0_hat, tol=1e-12)


# ----------------------------------------------------------------------- loss
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_elbo_loss_is_T_times_the_kl_terms(prediction):
    schedule = schedules.linear_schedule(30)
    torch.manual_seed(5)
    net = torch.nn.Linear(2, 2).double()
    d = Denoiser(lambda x, t: net(x), schedule.path, prediction)
    x0, noise = torch.randn(128, 2, dtype=F64), torch.randn(128, 2, dtype=F64)
    steps = torch.randint(2, 31, (128,))
    loss = prediction_loss(d, x0, weighting="elbo", t=steps.to(F64) / 30, noise=noise)
    kl = diffusion.denoising_matching_term(d, schedule, x0, steps, noise)
    assert math.isclose(loss.item(), 30 * kl.mean().item(), rel_tol=1e-9)


def test_simple_losses_match_their_definitions_and_score_equals_eps_in_noise_units():
    schedule = schedules.linear_schedule(30)
    path = schedule.path
    torch.manual_seed(6)
    net = torch.nn.Linear(2, 2).double()
    x0, noise = torch.randn(128, 2, dtype=F64), torch.randn(128, 2, dtype=F64)
    steps = torch.randint(1, 31, (128,))
    t = steps.to(F64) / 30
    sigma = schedule.noise_std(steps, dtype=F64)[:, None]
    kwargs = {"t": t, "noise": noise}
    x_t = diffusion.q_sample(schedule, x0, steps, noise)
    x0_loss = prediction_loss(Denoiser(lambda x, s: net(x), path, "x0"), x0, **kwargs)
    assert math.isclose(x0_loss.item(), (net(x_t) - x0).square().mean().item(), rel_tol=1e-12)
    eps_loss = prediction_loss(Denoiser(lambda x, s: net(x), path, "eps"), x0, **kwargs)
    assert math.isclose(eps_loss.item(), (net(x_t) - noise).square().mean().item(), rel_tol=1e-12)
    # A score network s = -eps_net / sigma has, under lambda = 1 - alpha_bar, the eps loss.
    score_loss = prediction_loss(
        Denoiser(lambda x, s: -net(x) / sigma, path, "score"), x0, **kwargs
    )
    assert math.isclose(score_loss.item(), eps_loss.item(), rel_tol=1e-10)


def test_continuous_elbo_loss_averages_to_the_integral():
    """Mean of the t-sampled ELBO loss over t = the quadrature of -1/2 SNR' E||x0_hat - x0||^2."""
    path, mixture = paths.ContinuousVP(), toy.default_mixture()
    d = Denoiser(lambda x, t: 0.9 * x, path, "eps")  # a deliberately poor network
    g = gen(9)
    x0 = mixture.sample(20, generator=g, dtype=F64).repeat_interleave(2000, 0)
    noise = torch.randn(x0.shape, generator=g, dtype=F64)
    u = (torch.arange(x0.shape[0], dtype=F64) + 0.5) / x0.shape[0]
    t = path.t_min + (1 - path.t_min) * u  # stratified times
    loss = prediction_loss(d, x0, weighting="elbo", t=t, noise=noise)
    x0_hat = d(path.q_sample(x0, t, noise), t)
    direct = path.elbo_weight(t) * (x0_hat - x0).square().sum(1)
    assert math.isclose(loss.item(), direct.mean().item(), rel_tol=1e-10)
    snr = path.alpha_bar(t) / (1 - path.alpha_bar(t))
    h = 1e-7
    d_snr = (
        path.alpha_bar(t + h) / (1 - path.alpha_bar(t + h))
        - path.alpha_bar(t - h) / (1 - path.alpha_bar(t - h))
    ) / (2 * h)
    assert close(path.elbo_weight(t), -(1 - path.t_min) * d_snr / 2, tol=1e-4)
    assert snr.numel() == x0.shape[0]


def test_training_tables_kept_with_a_path_are_per_prediction_and_data_std():
    """Denoisers on one discrete path share its training tables only where they agree."""
    shared = schedules.cosine_schedule(20).path
    x0, noise = torch.randn(64, 2, generator=gen(11)), torch.randn(64, 2, generator=gen(12))
    t = torch.randint(1, 21, (64,), generator=gen(13)).to(F64) / 20
    for prediction in PREDICTIONS:
        for data_std in (None, 0.5, 1.0):
            losses = [
                prediction_loss(
                    Denoiser(lambda x, s: 0.5 * x, path, prediction, data_std=data_std),
                    x0,
                    t=t,
                    noise=noise,
                ).item()
                for path in (shared, schedules.cosine_schedule(20).path)  # used vs fresh
            ]
            assert losses[0] == losses[1], (prediction, data_std)


def test_loss_draws_grid_times_on_a_discrete_path():
    path = schedules.linear_schedule(20, 0.01, 0.3).path
    seen = []
    d = Denoiser(lambda x, t: seen.append(t) or x, path, "eps")
    prediction_loss(d, torch.randn(500, 2), generator=gen(10))
    steps = seen[0].to(F64) * 20
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------ bad input
def test_unknown_prediction_is_rejected_with_a_hint_for_diffusers_names():
    x = torch.randn(3, 2)
    path = schedules.linear_schedule(10, 1e-3, 0.3).path
    with pytest.raises(ValueError, match="prediction must be one of"):
        x0_and_eps(x, x, 0.5, "noise")
    with pytest.raises(ValueError, match="prediction.*diffusers' 'epsilon' is 'eps'"):
        Denoiser(lambda x, t: x, path, "epsilon")
    with pytest.raises(ValueError, match="prediction"):
        prediction_target(x, x, "sample", path, 0.5)
    with pytest.raises(ValueError, match="prediction"):
        elbo_weight(schedules.linear_schedule(10, 1e-3, 0.3), torch.tensor([1]), "x_0")


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_alpha_bar_outside_zero_one_is_rejected(bad):
    x = torch.randn(2, 2)
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\]"):
        predict_x0_from_eps(x, x, bad)
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        v_from_x0_eps(x, x, torch.tensor([0.5, bad]))


def test_alpha_bar_one_is_rejected_where_the_noise_is_undefined():
    x = torch.randn(2, 2)
    assert torch.equal(predict_x0_from_eps(x, torch.randn(2, 2), 1.0), x)  # no noise: x_0 = x_t
    for call in (
        lambda: predict_eps_from_x0(x, x, 1.0),
        lambda: score_from_eps(x, 1.0),
        lambda: score_from_x0(x, x, 1.0),
        lambda: x0_and_eps(x, x, 1.0, "v"),
    ):
        with pytest.raises(ValueError, match=r"alpha_bar must lie in \(0, 1\) \(alpha_bar = 1"):
            call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_conversions_refuse_non_finite_inputs_by_name(bad):
    """The issue's predict_x0_from_eps(NaN) and its relatives: entry points check values."""
    x, y = torch.randn(3, 2), torch.randn(3, 2)
    y[1, 0] = bad
    path = schedules.linear_schedule(10, 1e-3, 0.3).path
    for name, call in (
        ("eps", lambda: predict_x0_from_eps(x, y, 0.5)),
        ("x0", lambda: predict_eps_from_x0(x, y, 0.5)),
        ("eps", lambda: score_from_eps(y, 0.5)),
        ("x0", lambda: score_from_x0(x, y, 0.5)),
        ("eps", lambda: v_from_x0_eps(x, y, 0.5)),
        ("output", lambda: x0_and_eps(y, x, 0.5, "v")),
        ("output", lambda: convert(y, x, 0.5, path, "eps", "x0")),
        ("x_t", lambda: convert(x, y, 0.5, path, "eps", "x0")),
        ("noise", lambda: prediction_target(x, y, "v", path, 0.5)),
    ):
        with pytest.raises(ValueError, match=f"{name} must be finite"):
            call()


def test_shape_mismatch_names_both_arguments():
    with pytest.raises(ValueError, match="x_t and eps must have the same shape"):
        predict_x0_from_eps(torch.randn(3, 2), torch.randn(3, 1, 2), 0.5)
    with pytest.raises(ValueError, match="x_t and output"):
        x0_and_eps(torch.randn(3, 3), torch.randn(3, 2), 0.5, "x0")
    with pytest.raises(ValueError, match="eps must have at least 2 dimensions"):
        score_from_eps(torch.randn(3), 0.5)


def test_denoiser_rejects_bad_times_nets_paths_and_outputs():
    path = schedules.linear_schedule(10, 1e-3, 0.3).path
    d = Denoiser(lambda x, t: x, path, "x0")
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="t must be above 0"):
        d(x, torch.tensor([0.0, 0.1, 0.2], dtype=F64))
    with pytest.raises(ValueError, match="t must be above 0"):
        d(x, 0.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0, t_max\]"):
        d(x, torch.tensor([0.1, 0.2, 1.1], dtype=F64))
    with pytest.raises(TypeError, match="t must be a floating-point time"):
        d(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"t must be a number or have shape \(3,\)"):
        d(x, torch.tensor([0.1, 0.2], dtype=F64))
    with pytest.raises(ValueError, match="net must map"):
        Denoiser(lambda x, t: x[:, :1], path, "eps")(x, 0.5)
    with pytest.raises(ValueError, match="net must map"):
        Denoiser(lambda x, t: x[:, :1], path, "x0", data_std=1.0)(x, 0.5)
    with pytest.raises(TypeError, match="net must be callable"):
        Denoiser("net", path, "eps")
    with pytest.raises(TypeError, match="path must be a udm.paths.Path"):
        Denoiser(lambda x, t: x, [0.1, 0.2], "eps")
    with pytest.raises(ValueError, match="data_std"):
        Denoiser(lambda x, t: x, path, "eps", data_std=-1.0)
    with pytest.raises(ValueError, match="cannot give x_0 at t = 1"):
        Denoiser(lambda x, t: x, paths.StraightLine(), "eps").prepare(torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="weighting must be one of"):
        prediction_loss(d, x, weighting="snr")
    with pytest.raises(ValueError, match="x0 and noise must have the same shape"):
        prediction_loss(d, x, noise=torch.randn(3, 3))
    with pytest.raises(TypeError, match="denoiser must be a udm.parameterizations.Denoiser"):
        prediction_loss(MixtureDenoiser(toy.default_mixture(), path), x)
    with pytest.raises(TypeError, match="t must be an integer tensor"):
        elbo_weight(schedules.linear_schedule(10, 1e-3, 0.3), 3, "eps")
    assert torch.isfinite(Denoiser(lambda x, t: x, paths.StraightLine(), "velocity")(x, 1.0)).all()
