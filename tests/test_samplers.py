"""Tests for udm.samplers: every sampler x prediction x path on the exact mixture, measured
orders, exact identities, and bad input.

References, each independent of the samplers' code: fresh samples of the mixture (sliced
Wasserstein distance, against the distance between two sets of true samples); a many-step
Heun solution (deterministic orders); for Gaussian data the exact law of E[x_0 | x_t_min]
(the limit of every sampler on a grid ending at t_min, then 0) against each sampler's exact
output law, obtained from its impulse responses (every step is affine in the starting point
and the noise); and moment recursions written out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch
from oracles import oracle_denoiser

from udm import paths, samplers, schedules, toy
from udm.metrics import sliced_wasserstein
from udm.nets import TimeConditionedMLP
from udm.parameterizations import PREDICTIONS, Denoiser, MixtureDenoiser, prediction_loss
from udm.train import train

F64 = torch.float64
PATHS = {
    "discrete VP": schedules.linear_schedule(100).path,
    "continuous VP": paths.ContinuousVP(),
    "VE": paths.VE(),
    "straight line": paths.StraightLine(),
    "EDM": paths.EDM(),
}
T_MAX = {"straight line": 0.999}  # eps and score networks cannot give x_0 at t = 1 (a = 0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# (sampler, evaluations per step, needs a generator, extra keyword arguments)
SAMPLERS = {
    "ancestral": (samplers.ancestral, 1, True, {}),
    "ddim(eta=0.5)": (samplers.ddim, 1, True, {"eta": 0.5}),
    "euler": (samplers.euler, 1, False, {}),
    "heun": (samplers.heun, 2, False, {}),
    "euler_maruyama": (samplers.euler_maruyama, 1, True, {}),
    "predictor_corrector": (samplers.predictor_corrector, 2, True, {}),
    "edm_stochastic": (samplers.edm_stochastic, 2, True, {}),
}


def run(name, denoiser, path, grid, x_init, seed=5):
    sampler, _, stochastic, kwargs = SAMPLERS[name]
    extra = {"generator": gen(seed)} if stochastic else {}
    return sampler(denoiser, path, grid, x_init, **extra, **kwargs)


def grid_for(path_name, n_steps):
    path, t_max = PATHS[path_name], T_MAX.get(path_name)
    if path_name == "discrete VP":
        return samplers.uniform_grid(path, n_steps)
    return samplers.karras_grid(path, n_steps, t_max=t_max)


# ----------------------------------------------------------------------- the matrix
N_POINTS, NFE = 600, 32
MIXTURE = toy.default_mixture()
TRUTH = MIXTURE.sample(N_POINTS, generator=gen(1))


def sliced(x):
    return sliced_wasserstein(x, TRUTH, n_projections=128, generator=gen(3))


FLOOR = sum(sliced(MIXTURE.sample(N_POINTS, generator=gen(100 + k))) for k in range(8)) / 8


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("sampler_name", list(SAMPLERS))
def test_every_sampler_every_prediction_every_path_samples_the_mixture(sampler_name, path_name):
    """Within 2.5x the mean distance of 8 true sets to the truth (600 points), at NFE <= 32.

    The five prediction kinds go through oracle networks (the exact targets of each kind) and
    the Denoiser's conversions; their samples must agree with each other to float32
    rounding, and sit as close to the mixture as fresh data do. One exception in budget:
    Euler's method in t on the VE path gets 128 evaluations (at 32 it stands at about 3x the
    floor): there the velocity s'(t) eps grows like sigma itself and a first-order step in t
    misjudges it, where DDIM, first order in sigma, does not.
    """
    path = PATHS[path_name]
    per_step = SAMPLERS[sampler_name][1]
    budget = 128 if (sampler_name, path_name) == ("euler", "VE") else NFE
    grid = grid_for(path_name, budget // per_step)
    x_init = path.sample_prior((N_POINTS, 2), generator=gen(4), t=grid[0].item())
    outputs = {}
    for prediction in PREDICTIONS:
        denoiser = oracle_denoiser(MIXTURE, path, prediction)
        outputs[prediction] = run(sampler_name, denoiser, path, grid, x_init)
        assert sliced(outputs[prediction]) < 2.5 * FLOOR, (prediction, sliced(outputs[prediction]))
    for prediction in PREDICTIONS[1:]:
        gap = (outputs[prediction] - outputs["x0"]).abs().max().item()
        assert gap < 2e-3, (prediction, gap)


# --------------------------------------------------------------- deterministic orders
@pytest.mark.parametrize("path_name", [name for name in PATHS if name != "discrete VP"])
def test_euler_is_first_order_and_heun_second_order(path_name):
    """Error against a 512-step Heun solution, same start points, under step halving.

    Karras grids (rho = 7) from the path's t_max (0.999 on the straight line) to t_min;
    mean distance over 100 points. Bands: Euler 1.8-2.3 (ratio 2), Heun 3.5-5.0 (ratio 4).
    """
    path, t_max = PATHS[path_name], T_MAX.get(path_name)
    denoiser = MixtureDenoiser(MIXTURE, path)
    x_init = path.sample_prior((100, 2), generator=gen(6), dtype=F64, t=t_max)

    def solve(sampler, n):
        return sampler(denoiser, path, samplers.karras_grid(path, n, t_max=t_max), x_init)

    reference = solve(samplers.heun, 512)
    for sampler, steps, band in (
        (samplers.euler, (16, 32, 64), (1.8, 2.3)),
        (samplers.heun, (16, 32, 64), (3.5, 5.0)),
    ):
        errors = [(solve(sampler, n) - reference).norm(dim=1).mean().item() for n in steps]
        ratio = errors[-2] / errors[-1]
        assert band[0] < ratio < band[1], (sampler.__name__, errors)


def test_on_a_discrete_path_heun_is_second_order_on_grids_that_refine_its_steps():
    """The discrete path's rates are constant on each step ((k-1)/T, k/T] and jump between
    steps, so the flow's velocity has a kink at every k / T. Heun is second order on grids
    that contain every k / T (here T = 10 and n = 10, 20, 40 steps; reference 320 steps),
    and not on grids that straddle the kinks (a 64-step Karras grid on T = 100 stalls)."""
    path = schedules.linear_schedule(10, 0.01, 0.5).path
    denoiser = MixtureDenoiser(MIXTURE, path)
    x = path.sample_prior((100, 2), generator=gen(6), dtype=F64)

    def solve(n):  # the state at t = 0.1
        grid = torch.linspace(1.0, 0.0, n + 1, dtype=F64)
        return samplers.heun(denoiser, path, grid, x, return_trajectory=True)[n - n // 10]

    reference = solve(320)
    errors = [(solve(n) - reference).norm(dim=1).mean().item() for n in (10, 20, 40)]
    assert 3.2 < errors[-2] / errors[-1] < 5.2, errors
    coarse = schedules.linear_schedule(100).path
    on_coarse = MixtureDenoiser(MIXTURE, coarse)
    y = coarse.sample_prior((100, 2), generator=gen(6), dtype=F64)
    stalls = [
        (
            samplers.heun(on_coarse, coarse, samplers.karras_grid(coarse, n), y)
            - samplers.heun(on_coarse, coarse, samplers.karras_grid(coarse, 512), y)
        )
        .norm(dim=1)
        .mean()
        .item()
        for n in (32, 64)
    ]
    assert stalls[0] / stalls[1] < 2.0, stalls


# ----------------------------------------------------- the exact law on Gaussian data
M, SD = 0.8, 0.5  # data N(M, SD^2) in one dimension


class GaussianDenoiser:
    """The exact E[x_0 | x_t] for N(M, SD^2) data on a path: x_0 = M + gain (x_t - a M)."""

    def __init__(self, path):
        self.path, self.cache = path, {}

    def __call__(self, x, t):
        if t not in self.cache:
            a, s = self.path.a(t).item(), self.path.s(t).item()
            self.cache[t] = (a, a * SD**2 / (a * a * SD**2 + s * s))
        a, gain = self.cache[t]
        return M + gain * (x - a * M)


def exact_output_law(sampler, path, grid, x_mean, x_var, monkeypatch, **kwargs):
    """Mean and variance of the sampler's output for Gaussian data and x_init ~ N(x_mean, x_var).

    Every step is affine in (x_init, noise draws): out = A x_init + b + sum_k C_k z_k. One
    batch reads them all off: row 0 starts at 0 with no noise (b), row 1 at 1 (A + b), and row
    2 + k gets a unit impulse in the k-th noise draw (b + C_k).
    """
    draws = []

    def impulse(self, like):
        z = torch.zeros_like(like)
        z[2 + len(draws)] = 1.0
        draws.append(None)
        return z

    monkeypatch.setattr(samplers._Run, "noise", impulse)
    x = torch.zeros(2 + 3 * len(grid), 1, dtype=F64)
    x[1] = 1.0
    out = sampler(GaussianDenoiser(path), path, grid, x, **kwargs)[:, 0]
    monkeypatch.undo()
    b, A = out[0].item(), out[1].item() - out[0].item()
    C = out[2 : 2 + len(draws)] - b
    return A * x_mean + b, A * A * x_var + C.square().sum().item()


def limit_law(path):
    """The law every sampler approaches as its steps shrink: E[x_0 | x_t_min], x_t_min ~ q."""
    a, s = path.a(path.t_min).item(), path.s(path.t_min).item()
    gain = a * SD**2 / (a * a * SD**2 + s * s)
    return M, gain**2 * (a * a * SD**2 + s * s)


@pytest.mark.parametrize(
    ("name", "band"),
    [
        ("ancestral", (1.8, 2.2)),
        ("ddim(eta=0.5)", (1.8, 2.2)),
        ("euler", (1.8, 2.2)),
        ("euler_maruyama", (1.8, 2.2)),
        ("heun", (3.6, 4.4)),
        ("edm_stochastic", (3.4, 4.4)),
    ],
)
def test_weak_order_from_the_exact_output_law(name, band, monkeypatch):
    """Error of the output's mean and variance, exact (no Monte Carlo), log-SNR grids, VP SDE.

    Weak order 1 (ratio 2 under halving) for ancestral, DDIM, Euler and Euler-Maruyama,
    order 2 for Heun. EDM's churn adds noise of variance ~ churn / n per step, and its error
    then falls like Heun's (ratio ~4, measured at 128 -> 256 steps, churn = 40).
    """
    path = paths.ContinuousVP()
    sampler, _, stochastic, kwargs = SAMPLERS[name]
    if stochastic:
        kwargs = {**kwargs, "generator": None}
    a, s = path.a(1.0).item(), path.s(1.0).item()
    x_mean, x_var = a * M, a * a * SD**2 + s * s  # exactly the marginal at t = 1
    target_mean, target_var = limit_law(path)
    errors = []
    for n in (64, 128, 256):
        mean, var = exact_output_law(
            sampler,
            path,
            samplers.log_snr_grid(path, n),
            x_mean,
            x_var,
            monkeypatch,
            **({"churn": 40.0} if name == "edm_stochastic" else {}),
            **kwargs,
        )
        errors.append(abs(mean - target_mean) + abs(var - target_var))
    assert band[0] < errors[-2] / errors[-1] < band[1], errors


def test_euler_maruyama_has_strong_order_one_for_additive_noise(monkeypatch):
    """Strong error against a 1024-step run on the same Brownian paths, VP SDE, Gaussian data.

    Uniform grids in t from 1 to t_min whose steps nest in the reference's; the coarse run's
    noise is the sum of the fine increments it spans. The noise g(t) dW does not depend on x,
    so Euler-Maruyama is Milstein's scheme and the mean error at t_min halves with the step
    (ratio 2, band 1.7-2.3; order 1/2 would give 1.41).
    """
    path = paths.ContinuousVP()
    fine_steps, batch = 1024, 2000
    increments = torch.randn(fine_steps, batch, 1, generator=gen(11), dtype=F64)
    x_init = path.sample_prior((batch, 1), generator=gen(12), dtype=F64)

    def at_t_min(n_steps):
        m = fine_steps // n_steps
        z = increments.reshape(n_steps, m, batch, 1).sum(dim=1) / math.sqrt(m)
        draws = iter(z)
        monkeypatch.setattr(samplers._Run, "noise", lambda self, like: next(draws))
        grid = samplers.uniform_grid(path, n_steps + 1)  # n_steps steps to t_min, then t = 0
        out = samplers.euler_maruyama(
            GaussianDenoiser(path), path, grid, x_init, gen(0), return_trajectory=True
        )
        monkeypatch.undo()
        return out[-2]

    reference = at_t_min(fine_steps)
    errors = [(at_t_min(n) - reference).abs().mean().item() for n in (16, 32, 64)]
    assert 1.7 < errors[-2] / errors[-1] < 2.3, errors


def test_euler_maruyama_follows_its_moment_recursion_written_out(monkeypatch):
    """x' = (1 + h beta (1/2 - 1/v_t)) x + h beta a_t M / v_t + sqrt(beta h) z on the VP SDE,
    iterated by hand with beta(t) = 0.1 + 19.9 t, then the final denoising step."""
    path = paths.ContinuousVP()
    grid = samplers.uniform_grid(path, 40)
    mean, var = 0.0, 1.0
    times = grid.tolist()
    for t, t_next in zip(times[:-2], times[1:-1], strict=True):
        h, beta = t - t_next, 0.1 + 19.9 * t
        ab = math.exp(-(0.1 * t + 19.9 * t * t / 2))
        v_t = ab * SD**2 + 1 - ab
        slope = 1 + h * beta * (0.5 - 1 / v_t)
        mean = slope * mean + h * beta * math.sqrt(ab) * M / v_t
        var = slope**2 * var + beta * h
    ab = math.exp(-(0.1 * times[-2] + 19.9 * times[-2] ** 2 / 2))
    gain = math.sqrt(ab) * SD**2 / (ab * SD**2 + 1 - ab)
    mean, var = M + gain * (mean - math.sqrt(ab) * M), gain**2 * var
    got = exact_output_law(samplers.euler_maruyama, path, grid, 0.0, 1.0, monkeypatch)
    assert got == pytest.approx((mean, var), rel=1e-10)


def test_probability_flow_samplers_approach_the_exact_flow_of_gaussian_data():
    """For N(M, SD^2) data the flow in (sigma, y) is y - M ~ sqrt(SD^2 + sigma^2): compare
    Euler and Heun (in t) point by point with it at t_min, before the final denoising step."""
    path = paths.VE()
    x = path.sample_prior((64, 1), generator=gen(22), dtype=F64)
    sigma_0, sigma_min = path.sigma(1.0).item(), path.sigma(path.t_min).item()
    exact = M + (x - M) * math.sqrt((SD**2 + sigma_min**2) / (SD**2 + sigma_0**2))
    for sampler, order in ((samplers.euler, 1), (samplers.heun, 2)):
        errors = []
        for n in (32, 64):
            grid = samplers.karras_grid(path, n)
            out = sampler(GaussianDenoiser(path), path, grid, x, return_trajectory=True)[-2]
            errors.append((out - exact).abs().max().item())
        assert 0.8 * 2**order < errors[0] / errors[1] < 1.25 * 2**order, (sampler, errors)


def test_predictor_corrector_converges_with_a_small_snr_and_not_with_a_large_one():
    """Monte Carlo (50,000 points): snr = 0.02 has its predictor's weak order 1 (4x the steps,
    error / 4 within 2.8-6); snr = 0.2 keeps a Langevin bias ~ snr^2 Var that no number of
    steps removes (4x the steps change the error by less than 2x)."""
    path = paths.ContinuousVP()
    n = 50_000
    x = (
        math.sqrt(path.a(1.0).item() ** 2 * SD**2 + path.s(1.0).item() ** 2)
        * torch.randn(n, 1, generator=gen(7), dtype=F64)
        + path.a(1.0).item() * M
    )
    _, target_var = limit_law(path)

    def error(snr, n_steps):
        grid = samplers.log_snr_grid(path, n_steps)
        out = samplers.predictor_corrector(GaussianDenoiser(path), path, grid, x, gen(8), snr=snr)
        return out.var().item() - target_var

    small = [error(0.02, 32), error(0.02, 128)]
    assert 2.8 < small[0] / small[1] < 6.0, small
    large = [error(0.2, 32), error(0.2, 128)]
    assert large[1] > 3 * target_var * math.sqrt(2 / n) and large[0] / large[1] < 2.0, large


# ------------------------------------------------------------------ exact identities
def test_ddim_with_eta_one_is_ancestral_and_other_identities():
    """DDIM(eta = 1) = ancestral; on the straight line Euler in t = DDIM(0) (a, s linear in t);
    on EDM's path (a = 1, t = sigma) EDM's sampler without churn = Heun; predictor only = EM."""
    path = paths.ContinuousVP()
    denoiser = MixtureDenoiser(MIXTURE, path)
    grid = samplers.log_snr_grid(path, 30)
    x = path.sample_prior((200, 2), generator=gen(9), dtype=F64)
    ancestral = samplers.ancestral(denoiser, path, grid, x, gen(10))
    ddim_one = samplers.ddim(denoiser, path, grid, x, gen(10), eta=1.0)
    torch.testing.assert_close(ddim_one, ancestral, rtol=1e-10, atol=1e-10)
    predictor_only = samplers.predictor_corrector(
        denoiser, path, grid, x, gen(12), corrector_steps=0
    )
    torch.testing.assert_close(
        predictor_only, samplers.euler_maruyama(denoiser, path, grid, x, gen(12)), rtol=0, atol=0
    )
    line = paths.StraightLine()
    on_line = MixtureDenoiser(MIXTURE, line)
    grid = samplers.uniform_grid(line, 20)
    x = line.sample_prior((200, 2), generator=gen(9), dtype=F64)
    torch.testing.assert_close(
        samplers.euler(on_line, line, grid, x),
        samplers.ddim(on_line, line, grid, x),
        rtol=1e-10,
        atol=1e-10,
    )
    edm = paths.EDM()
    on_edm = MixtureDenoiser(MIXTURE, edm)
    grid = samplers.karras_grid(edm, 20)
    x = edm.sample_prior((200, 2), generator=gen(9), dtype=F64)
    no_churn = samplers.edm_stochastic(on_edm, edm, grid, x, gen(11), churn=0.0)
    torch.testing.assert_close(
        no_churn, samplers.heun(on_edm, edm, grid, x), rtol=1e-10, atol=1e-10
    )
    vp = samplers.euler(denoiser, path, samplers.log_snr_grid(path, 30), x)
    ddim_zero = samplers.ddim(denoiser, path, samplers.log_snr_grid(path, 30), x)
    assert (vp - ddim_zero).abs().max() > 1e-3  # two different first-order methods on VP


def test_euler_is_the_euler_step_in_t_written_out():
    """x <- x + h (a'(t) x0_hat + s'(t) eps_hat) with eps_hat = (x - a x0_hat) / s, then x0_hat."""
    path = schedules.cosine_schedule(50).path
    denoiser = MixtureDenoiser(MIXTURE, path)
    grid = samplers.uniform_grid(path, 50)
    x = path.sample_prior((100, 2), generator=gen(13), dtype=F64)
    y = x.clone()
    times = grid.tolist()
    for t, t_next in zip(times[:-2], times[1:-1], strict=True):
        x0 = denoiser(y, t)
        a, s, da, ds = (v.item() for v in path.coefficients(t))
        y = y + (t_next - t) * (da * x0 + ds * (y - a * x0) / s)
    y = denoiser(y, times[-2])
    torch.testing.assert_close(samplers.euler(denoiser, path, grid, x), y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("path_name", list(PATHS))
def test_ddim_is_exact_in_one_step_for_a_point_mass(path_name):
    """For data at one point m, eps_hat is constant along the flow: one step lands on m."""
    path, t_max = PATHS[path_name], T_MAX.get(path_name, PATHS[path_name].t_max)
    point = toy.GaussianMixture([[1.0, -2.0]], [[[1e-12, 0], [0, 1e-12]]], [1.0])
    x = path.sample_prior((16, 2), generator=gen(14), dtype=F64, t=t_max)
    grid = torch.tensor([t_max, path.t_min, 0.0], dtype=F64)
    out = samplers.ddim(MixtureDenoiser(point, path), path, grid, x)
    torch.testing.assert_close(out, point.means.expand(16, 2), rtol=0, atol=1e-5)


def test_ancestral_on_the_schedule_grid_follows_the_exact_moment_recursion():
    """Data N(m, s^2): each reverse step is affine; iterate mean and variance by hand."""
    schedule = schedules.linear_schedule(100)
    path = schedule.path
    m, s2 = 1.0, 0.25
    data = toy.GaussianMixture([[m]], [[[s2]]], [1.0])
    samples = samplers.ancestral(
        MixtureDenoiser(data, path),
        path,
        path.grid(),
        path.sample_prior((20_000, 1), generator=gen(15), dtype=F64),
        gen(16),
    )
    mean, var = 0.0, 1.0
    for t in range(100, 0, -1):
        ab, al = schedule.alpha_bars[t].item(), schedule.alphas[t].item()
        gain = math.sqrt(ab) * s2 / (ab * s2 + 1 - ab)  # x0_hat = c + gain x_t
        c = m - gain * math.sqrt(ab) * m
        if t == 1:
            mean, var = c + gain * mean, gain**2 * var
            break
        abp = schedule.alpha_bars[t - 1].item()
        c_xt, c_x0 = math.sqrt(al) * (1 - abp) / (1 - ab), math.sqrt(abp) * (1 - al) / (1 - ab)
        mean = c_xt * mean + c_x0 * (c + gain * mean)
        var = (c_xt + c_x0 * gain) ** 2 * var + (1 - al) * (1 - abp) / (1 - ab)
    n = samples.shape[0]
    assert abs(samples.mean().item() - mean) < 5 * math.sqrt(var / n)
    assert abs(samples.var().item() - var) < 5 * var * math.sqrt(2 / n)


def test_trajectories_and_evaluation_counts():
    path = paths.ContinuousVP()
    calls = []
    exact = MixtureDenoiser(MIXTURE, path)

    def counted(x, t):
        calls.append(t)
        return exact(x, t)

    grid = samplers.uniform_grid(path, 10)
    x = path.sample_prior((50, 2), generator=gen(17))
    expected = {
        "ancestral": 10,
        "ddim(eta=0.5)": 10,
        "euler": 10,
        "heun": 19,
        "euler_maruyama": 10,
        "predictor_corrector": 19,
        "edm_stochastic": 19,
    }
    for name, nfe in expected.items():
        calls.clear()
        run(name, counted, path, grid, x)
        assert len(calls) == nfe, (name, len(calls))
    trajectory = samplers.ancestral(exact, path, grid, x, gen(18), return_trajectory=True)
    assert trajectory.shape == (11, 50, 2) and torch.equal(trajectory[0], x)
    torch.testing.assert_close(trajectory[-1], samplers.ancestral(exact, path, grid, x, gen(18)))


def test_straight_line_samplers_start_at_pure_noise_for_x0_v_and_velocity():
    path = paths.StraightLine()
    grid = samplers.uniform_grid(path, 32)
    x = path.sample_prior((N_POINTS, 2), generator=gen(19))
    for prediction in ("x0", "v", "velocity"):
        for name in ("ancestral", "euler", "heun", "edm_stochastic"):
            out = run(name, oracle_denoiser(MIXTURE, path, prediction), path, grid, x)
            assert sliced(out) < 2.5 * FLOOR, (prediction, name)


# ---------------------------------------------------------------------------- grids
def test_grid_builders():
    path = schedules.linear_schedule(100).path
    torch.testing.assert_close(samplers.uniform_grid(path, 100), path.grid(), rtol=0, atol=1e-15)
    vp = paths.ContinuousVP()
    lam = vp.log_snr(samplers.log_snr_grid(vp, 20)[:-1])
    torch.testing.assert_close(lam.diff(), torch.full((19,), lam.diff()[0].item(), dtype=F64))
    karras = samplers.karras_grid(vp, 20, rho=7.0)
    root = vp.sigma(karras[:-1]) ** (1 / 7)
    torch.testing.assert_close(root.diff(), torch.full((19,), root.diff()[0].item(), dtype=F64))
    for grid in (karras, samplers.uniform_grid(vp, 7), samplers.log_snr_grid(vp, 3)):
        assert grid[0] == vp.t_max and grid[-1] == 0 and (grid.diff() < 0).all()
        assert grid[-2] == vp.t_min
    assert samplers.log_snr_grid(vp, 1).tolist() == [1.0, 0.0]


# ------------------------------------------------------------ trained networks
def test_networks_trained_as_in_chapters_6_7_and_9_run_with_every_sampler():
    """Short trainings of the three chapters' models; every sampler runs each on its path.

    150 Adam steps each: the samples must be finite and within 6x the floor (a model this
    short-trained is far from exact; the point is that the interfaces meet).
    """
    schedule = schedules.linear_schedule(100)
    path = schedule.path
    data, labels = MIXTURE.sample(2000, generator=gen(20), return_labels=True)
    torch.manual_seed(0)
    chapter_6 = Denoiser(
        TimeConditionedMLP(2, hidden=64, depth=2, time_scale=100),
        path,
        "x0",
        data_std=data.std().item(),
    )
    chapter_7 = Denoiser(TimeConditionedMLP(2, hidden=64, depth=2, time_scale=100), path, "v")
    from udm.guidance import ClassifierFreeGuidance, cfg_training_loss

    cfg_net = TimeConditionedMLP(2, hidden=64, depth=2, time_scale=100, n_classes=4)
    for model in (chapter_6, chapter_7):
        train(
            model,
            lambda m, b: prediction_loss(m, b[0]),
            data,
            steps=300,
            batch_size=256,
            lr=2e-3,
            progress=False,
        )
    train(
        cfg_net,
        lambda m, b: cfg_training_loss(m, path, b[0], b[1]),
        (data, labels),
        steps=300,
        batch_size=256,
        lr=2e-3,
        progress=False,
    )
    chapter_9 = ClassifierFreeGuidance(cfg_net, path, "eps", torch.arange(4).repeat(150), 1.0)
    for model in (chapter_6, chapter_7, chapter_9):
        for name in SAMPLERS:
            grid = samplers.uniform_grid(path, 20 // SAMPLERS[name][1])
            x = path.sample_prior((N_POINTS, 2), generator=gen(21))
            with torch.no_grad():
                out = run(name, model, path, grid, x)
            assert torch.isfinite(out).all() and sliced(out) < 6 * FLOOR, (name, sliced(out))


# ------------------------------------------------------------------------- bad input
def test_bad_grids_start_points_paths_and_parameters_are_named():
    path = paths.ContinuousVP()
    exact = MixtureDenoiser(MIXTURE, path)
    x = torch.zeros(4, 2)
    good = samplers.uniform_grid(path, 5)
    with pytest.raises(ValueError, match="grid must end at 0"):
        samplers.ddim(exact, path, good[:-1], x)
    with pytest.raises(ValueError, match="grid must decrease strictly"):
        samplers.ddim(exact, path, torch.tensor([1.0, 0.5, 0.7, 0.0], dtype=F64), x)
    with pytest.raises(ValueError, match="grid must start at most at t_max"):
        samplers.ddim(exact, path, torch.tensor([1.5, 0.5, 0.0], dtype=F64), x)
    with pytest.raises(TypeError, match="grid must have a floating-point dtype"):
        samplers.ddim(exact, path, torch.tensor([1, 0]), x)
    with pytest.raises(ValueError, match="x_init must be finite"):
        samplers.ddim(exact, path, good, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="x_init must have at least 2 dimensions"):
        samplers.ddim(exact, path, good, torch.zeros(4))
    with pytest.raises(ValueError, match="denoiser was built on"):
        samplers.ddim(exact, paths.VE(), samplers.uniform_grid(paths.VE(), 5), x)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        samplers.ddim("model", path, good, x)
    with pytest.raises(TypeError, match="path must be a udm.paths.Path"):
        samplers.ddim(exact, schedules.linear_schedule(10, 0.01, 0.2), good, x)
    with pytest.raises(ValueError, match="eta must lie in"):
        samplers.ddim(exact, path, good, x, eta=1.5)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        samplers.ancestral(exact, path, good, x, generator=7)
    line = paths.StraightLine()
    with pytest.raises(ValueError, match="reverse SDE's coefficients are not finite at t = 1"):
        samplers.euler_maruyama(
            MixtureDenoiser(MIXTURE, line), line, samplers.uniform_grid(line, 5), x
        )
    with pytest.raises(ValueError, match="sigma\\(t_max\\) is infinite"):
        samplers.karras_grid(line, 5)
    with pytest.raises(ValueError, match="grid's ends"):
        samplers.uniform_grid(path, 5, t_min=0.0)
    with pytest.raises(ValueError, match="snr"):
        samplers.predictor_corrector(exact, path, good, x, snr=0.0)
    with pytest.raises(ValueError, match="churn must be >= 0"):
        samplers.edm_stochastic(exact, path, good, x, churn=-1.0)


def test_a_non_finite_state_is_reported_with_its_step():
    path = paths.ContinuousVP()
    grid = samplers.uniform_grid(path, 10)

    def breaks_at_step_4(x, t):  # a denoiser that returns NaN at the fifth grid time
        return 0.5 * x * (float("nan") if abs(t - grid[4].item()) < 1e-12 else 1.0)

    with pytest.raises(FloatingPointError, match=r"non-finite at step 4 \(t = 0.556"):
        samplers.ddim(breaks_at_step_4, path, grid, path.sample_prior((8, 2), generator=gen(1)))
