"""Tests for udm.parameterizations: conversions, targets, losses and the Denoiser wrapper.

Independent references: the exact Gaussian mixture (its denoiser and its noised score are
separate closed forms), autograd of log q(x_t | x_0), udm.conventions (diffusers'
conventions, implemented separately), and udm.diffusion's x_0-form posterior and KL terms.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from udm import conventions, diffusion, parameterizations, schedules, toy
from udm.parameterizations import (
    PREDICTIONS,
    Denoiser,
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
    score_from_eps,
    score_from_x0,
    v_from_x0_eps,
    x0_and_eps,
)

F64 = torch.float64
SHAPES = [(2,), (3,), (1, 4, 4), (2, 3, 2)]  # trailing shapes: points and small "images"


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-9) -> bool:
    """Equal within tol, relative to the size of the values (float64 round trips)."""
    return bool(((a - b).abs() <= tol * (1 + b.abs())).all())


@st.composite
def batches(draw):
    """A float64 batch (x0, eps) of a random trailing shape, and alpha_bar per example."""
    batch = draw(st.integers(1, 6))
    shape = (batch, *draw(st.sampled_from(SHAPES)))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    x0 = 3 * torch.randn(shape, generator=generator, dtype=F64)
    eps = torch.randn(shape, generator=generator, dtype=F64)
    alpha_bar = torch.tensor(
        draw(st.lists(st.floats(1e-4, 1 - 1e-4), min_size=batch, max_size=batch)), dtype=F64
    )
    coef = alpha_bar.reshape(batch, *[1] * (len(shape) - 1))
    x_t = coef.sqrt() * x0 + (1 - coef).sqrt() * eps
    return x0, eps, x_t, alpha_bar


# ------------------------------------------------------------------- round trips
@settings(max_examples=40, deadline=None)
@given(batches())
def test_conversions_round_trip_and_recover_the_forward_draw(data):
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


@settings(max_examples=30, deadline=None)
@given(batches())
def test_v_is_a_rotation_of_x0_and_eps(data):
    x0, eps, x_t, ab = data
    v = v_from_x0_eps(x0, eps, ab)
    assert close(x_t.square() + v.square(), x0.square() + eps.square())


@settings(max_examples=30, deadline=None)
@given(batches(), st.sampled_from(PREDICTIONS))
def test_any_target_converts_back_to_the_pair_x0_eps(data, prediction):
    x0, eps, x_t, ab = data
    target = prediction_target(x0, eps, ab, prediction)
    x0_back, eps_back = x0_and_eps(target, x_t, ab, prediction)
    assert close(x0_back, x0, tol=1e-8) and close(eps_back, eps, tol=1e-8)


def test_float_alpha_bar_means_one_level_for_the_batch_and_dtype_is_kept():
    x_t, eps = torch.randn(5, 2), torch.randn(5, 2)
    as_float = predict_x0_from_eps(x_t, eps, 0.3)
    as_tensor = predict_x0_from_eps(x_t, eps, torch.full((5,), 0.3, dtype=F64))
    assert as_float.dtype == torch.float32 and torch.equal(as_float, as_tensor)


# ------------------------------------------------- against independent computations
def test_tweedie_on_the_exact_mixture_gives_its_denoiser():
    mixture = toy.default_mixture()
    generator = torch.Generator().manual_seed(0)
    for alpha_bar in (0.999, 0.7, 0.2, 0.01, 1e-4):
        noised = mixture.noised(alpha_bar)
        x_t = noised.sample(500, generator=generator, dtype=F64)
        via_score = predict_x0_from_score(x_t, noised.score(x_t), alpha_bar)
        # closed forms computed two different ways: agreement to rounding, scaled by 1/sqrt(ab)
        assert (via_score - mixture.denoiser(x_t, alpha_bar)).abs().max() < 1e-12 / alpha_bar**0.5


def test_score_from_eps_is_the_gradient_of_log_q_xt_given_x0():
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 3, generator=generator, dtype=F64), torch.randn(8, 3, dtype=F64)
    ab = torch.linspace(0.05, 0.95, 8, dtype=F64)
    x_t = (ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * eps).requires_grad_()
    log_q = -((x_t - ab.sqrt()[:, None] * x0) ** 2 / (2 * (1 - ab)[:, None])).sum()
    (autograd_score,) = torch.autograd.grad(log_q, x_t)
    assert close(score_from_eps(eps, ab), autograd_score, tol=1e-12)
    assert close(prediction_target(x0, eps, ab, "score"), autograd_score, tol=1e-12)


@pytest.mark.parametrize(
    ("ours", "theirs"), list(parameterizations.DIFFUSERS_PREDICTION_TYPES.items())
)
def test_agrees_with_diffusers_conventions(ours, theirs):
    generator = torch.Generator().manual_seed(2)
    x0, eps, out = (torch.randn(16, 2, generator=generator, dtype=F64) for _ in range(3))
    ab = torch.linspace(0.01, 0.99, 16, dtype=F64)
    x_t = ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * eps
    assert close(
        prediction_target(x0, eps, ab, ours),
        conventions.prediction_target(x0, eps, ab, theirs),
        tol=1e-12,
    )
    ours_pair = x0_and_eps(out, x_t, ab, ours)
    theirs_pair = conventions.x0_eps_from_prediction(out, x_t, ab, theirs)
    assert all(close(a, b, tol=1e-12) for a, b in zip(ours_pair, theirs_pair, strict=True))


def test_posterior_mean_forms_match_the_x0_form():
    schedule = schedules.linear_schedule(50)
    generator = torch.Generator().manual_seed(3)
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
    generator = torch.Generator().manual_seed(4)
    x0, noise, out = (torch.randn(64, 2, generator=generator, dtype=F64) for _ in range(3))
    t = torch.randint(2, 41, (64,), generator=generator)
    model = Denoiser(lambda x, steps: out, schedule, prediction)
    kl = diffusion.denoising_matching_term(model, schedule, x0, t, noise)
    target = prediction_target(x0, noise, schedule.alpha_bar(t, dtype=F64), prediction)
    weighted = elbo_weight(schedule, t, prediction) * (out - target).square().sum(1)
    assert close(weighted, kl, tol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_elbo_loss_equals_the_x0_loss_of_the_wrapped_network(prediction):
    schedule = schedules.linear_schedule(30)
    torch.manual_seed(5)
    net = torch.nn.Linear(2, 2).double()
    x0, noise = torch.randn(128, 2, dtype=F64), torch.randn(128, 2, dtype=F64)
    t = torch.randint(1, 31, (128,))

    def flat(x, steps):
        return net(x)

    ours = prediction_loss(
        flat, schedule, x0, prediction=prediction, weighting="elbo", t=t, noise=noise
    )
    theirs = diffusion.x0_prediction_loss(
        Denoiser(flat, schedule, prediction), schedule, x0, weighting="elbo", t=t, noise=noise
    )
    assert math.isclose(ours.item(), theirs.item(), rel_tol=1e-10)


def test_simple_losses_x0_matches_diffusion_and_score_equals_eps_in_noise_units():
    schedule = schedules.linear_schedule(30)
    torch.manual_seed(6)
    net = torch.nn.Linear(2, 2).double()
    x0, noise = torch.randn(128, 2, dtype=F64), torch.randn(128, 2, dtype=F64)
    t = torch.randint(1, 31, (128,))
    sigma = schedule.sigma(t, dtype=F64)[:, None]
    kwargs = {"t": t, "noise": noise}
    x0_loss = prediction_loss(lambda x, s: net(x), schedule, x0, prediction="x0", **kwargs)
    reference = diffusion.x0_prediction_loss(lambda x, s: net(x), schedule, x0, **kwargs)
    assert math.isclose(x0_loss.item(), reference.item(), rel_tol=1e-12)
    # A score network s = -eps_net / sigma has, under lambda = 1 - alpha_bar, the eps loss.
    eps_loss = prediction_loss(lambda x, s: net(x), schedule, x0, prediction="eps", **kwargs)
    score_loss = prediction_loss(
        lambda x, s: -net(x) / sigma, schedule, x0, prediction="score", **kwargs
    )
    assert math.isclose(score_loss.item(), eps_loss.item(), rel_tol=1e-10)
    manual = (net(diffusion.q_sample(schedule, x0, t, noise)) - noise).square().mean()
    assert math.isclose(eps_loss.item(), manual.item(), rel_tol=1e-12)


# -------------------------------------------------------------------- the Denoiser
def _oracle(mixture, schedule, prediction):
    """A flat "network" that outputs the exact target of its kind for the mixture."""

    def net(x, t):
        ab = schedule.alpha_bar(t, dtype=F64)
        x0 = mixture.denoiser(x, ab)
        eps = predict_eps_from_x0(x, x0, ab)
        return {
            "x0": x0,
            "eps": eps,
            "score": score_from_eps(eps, ab),
            "v": v_from_x0_eps(x0, eps, ab),
        }[prediction]

    return net


def test_oracles_of_all_four_kinds_agree_on_x0_eps_score_and_v():
    mixture, schedule = toy.default_mixture(), schedules.linear_schedule(100)
    generator = torch.Generator().manual_seed(7)
    t = torch.randint(1, 101, (300,), generator=generator)
    x_t = torch.randn(300, 2, generator=generator, dtype=F64) * 1.5
    ab = schedule.alpha_bar(t, dtype=F64)
    exact = mixture.denoiser(x_t, ab)
    exact_score = torch.cat(
        [mixture.noised(a.item()).score(x[None]) for a, x in zip(ab, x_t, strict=True)]
    )
    results = {}
    for prediction in PREDICTIONS:
        d = Denoiser(_oracle(mixture, schedule, prediction), schedule, prediction)
        results[prediction] = (d(x_t, t), d.eps(x_t, t), d.score(x_t, t), d.v(x_t, t))
        assert close(results[prediction][0], exact, tol=1e-9)
        assert close(results[prediction][2], exact_score, tol=1e-8)  # Tweedie, independently
    for prediction in PREDICTIONS[1:]:
        assert all(
            close(a, b, tol=1e-8) for a, b in zip(results[prediction], results["x0"], strict=True)
        )


def test_the_ancestral_sampler_runs_every_parameterization_identically():
    mixture = toy.default_mixture()
    schedule = schedules.linear_schedule(20, 1e-3, 0.3)
    chains = []
    for prediction in PREDICTIONS:
        d = Denoiser(_oracle(mixture, schedule, prediction), schedule, prediction)
        chains.append(
            diffusion.sample(d, schedule, 64, 2, generator=torch.Generator().manual_seed(8))
        )
    # float32 sampling: the four conversions differ only by rounding
    assert all((chain - chains[0]).abs().max() < 1e-4 for chain in chains[1:])
    assert chains[0].shape == (64, 2) and torch.isfinite(chains[0]).all()


def test_denoiser_flattens_images_for_a_flat_network():
    schedule = schedules.linear_schedule(10, 1e-3, 0.3)
    seen = []

    def net(x, t):
        seen.append(x.shape)
        return 2 * x

    d = Denoiser(net, schedule, "eps")
    x_t, t = torch.randn(4, 1, 3, 3), torch.tensor([1, 2, 3, 10])
    out = d.eps(x_t, t)
    assert seen == [(4, 9)] and torch.equal(out, 2 * x_t)
    assert d(x_t, t).shape == x_t.shape and "eps" in repr(d)


# ------------------------------------------------------------------------ bad input
def test_unknown_prediction_is_rejected_with_a_hint_for_diffusers_names():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="prediction must be one of"):
        x0_and_eps(x, x, 0.5, "noise")
    with pytest.raises(ValueError, match="prediction.*diffusers' 'epsilon' is 'eps'"):
        Denoiser(lambda x, t: x, schedules.linear_schedule(10, 1e-3, 0.3), "epsilon")
    with pytest.raises(ValueError, match="prediction"):
        prediction_target(x, x, 0.5, "sample")
    with pytest.raises(ValueError, match="prediction"):
        elbo_weight(schedules.linear_schedule(10, 1e-3, 0.3), torch.tensor([1]), "x_0")


def test_shape_mismatch_names_both_arguments():
    with pytest.raises(ValueError, match="x_t and eps must have the same shape"):
        predict_x0_from_eps(torch.randn(3, 2), torch.randn(3, 1, 2), 0.5)
    with pytest.raises(ValueError, match="x_t and v"):
        predict_x0_from_v(torch.randn(3, 2), torch.randn(2, 2), 0.5)
    with pytest.raises(ValueError, match="x_t and output"):
        x0_and_eps(torch.randn(3, 3), torch.randn(3, 2), 0.5, "x0")
    with pytest.raises(ValueError, match="eps must have at least 2 dimensions"):
        score_from_eps(torch.randn(3), 0.5)


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


def test_alpha_bar_of_the_wrong_kind_is_rejected():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"alpha_bar must have shape \(3,\)"):
        predict_x0_from_eps(x, x, torch.full((2,), 0.5))
    with pytest.raises(TypeError, match="alpha_bar must be a float or a tensor"):
        predict_x0_from_eps(x, x, "0.5")
    with pytest.raises(TypeError, match="alpha_bar must have a floating-point dtype"):
        predict_x0_from_eps(x, x, torch.ones(3, dtype=torch.int64))


def test_denoiser_and_loss_reject_bad_steps_nets_and_schedules():
    schedule = schedules.linear_schedule(10, 1e-3, 0.3)
    d = Denoiser(lambda x, t: x, schedule, "x0")
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="t must lie in 1..T"):
        d(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="t must lie in 0..T"):
        d(x, torch.tensor([1, 2, 11]))
    with pytest.raises(TypeError, match="t must have an integer dtype"):
        d(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        d(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="net must map"):
        Denoiser(lambda x, t: x[:, :1], schedule, "eps")(x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="net must be callable"):
        Denoiser("net", schedule, "eps")
    with pytest.raises(TypeError, match="schedule must be a udm.schedules.NoiseSchedule"):
        Denoiser(lambda x, t: x, [0.1, 0.2], "eps")
    with pytest.raises(ValueError, match="weighting must be one of"):
        prediction_loss(lambda x, t: x, schedule, x, prediction="v", weighting="snr")
    with pytest.raises(ValueError, match="x0 and noise must have the same shape"):
        prediction_loss(lambda x, t: x, schedule, x, prediction="v", noise=torch.randn(3, 3))
    with pytest.raises(ValueError, match="t must lie in 1..T"):
        prediction_loss(lambda x, t: x, schedule, x, prediction="v", t=torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="t must be an integer tensor"):
        elbo_weight(schedule, 3, "eps")
