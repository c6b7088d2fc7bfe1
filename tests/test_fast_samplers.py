"""Tests for the exponential integrators of udm.samplers (dpm_solver, dpm_solver_2m).

References, independent of the solvers' code: for Gaussian data the probability-flow ODE
has a closed-form solution (x_t - a m) / sqrt(a^2 v + s^2) is constant along it), against
which the measured order under step halving is read; on the mixture, a many-step Heun
solution; DDIM for the first-order step (a different formula for the same step).
"""

from __future__ import annotations

import math

import pytest
import torch

from udm import paths, samplers, schedules, toy
from udm.parameterizations import MixtureDenoiser

F64 = torch.float64
MEAN, STD = torch.tensor([1.0, -2.0], dtype=F64), 0.7
GAUSSIAN = toy.GaussianMixture(MEAN[None], STD**2 * torch.eye(2, dtype=F64)[None], [1.0])
PATHS = {
    "continuous VP": paths.ContinuousVP(),
    "EDM": paths.EDM(sigma_max=20.0),
    "straight line": paths.StraightLine(),
}


class Counted:
    """A denoiser that counts its evaluations."""

    def __init__(self, denoiser):
        self.denoiser, self.path, self.calls = denoiser, denoiser.path, 0

    def prepare(self, times, like):
        self.denoiser.prepare(times, like)

    def __call__(self, x, t):
        self.calls += 1
        return self.denoiser(x, t)


def start(n=256, seed=3, scale=1.0):
    return scale * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def exact_gaussian_flow(path, x_start, t_start, t_end):
    """The probability-flow ODE's exact solution for N(MEAN, STD^2 I) data."""
    (a0, s0), (a1, s1) = ((path.a(t).item(), path.s(t).item()) for t in (t_start, t_end))
    scale = math.sqrt((a1**2 * STD**2 + s1**2) / (a0**2 * STD**2 + s0**2))
    return a1 * MEAN + scale * (x_start - a0 * MEAN)


def solve_to_t_min(solver, path, n_steps, x_start):
    if isinstance(path, paths.StraightLine):  # sigma is infinite at t = 1: a uniform grid
        grid = samplers.uniform_grid(path, n_steps + 1)
    else:
        grid = samplers.karras_grid(path, n_steps + 1, rho=3.0)
    return solver(MixtureDenoiser(GAUSSIAN, path), path, grid, x_start, return_trajectory=True)[-2]


SOLVERS = {
    "dpm_solver(order=1)": (lambda *a, **k: samplers.dpm_solver(*a, order=1, **k), 1),
    "dpm_solver(order=2)": (samplers.dpm_solver, 2),
    "dpm_solver_2m": (samplers.dpm_solver_2m, 2),
}


@pytest.mark.parametrize("path_name", ["continuous VP", "EDM"])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_measured_order_against_the_exact_gaussian_flow(name, path_name):
    solver, order = SOLVERS[name]
    path = PATHS[path_name]
    x_start = start(scale=path.prior_std())
    exact = exact_gaussian_flow(path, x_start, path.t_max, path.t_min)
    errors = [
        (solve_to_t_min(solver, path, n, x_start) - exact).abs().max().item() for n in (40, 80, 160)
    ]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    # Halving the step divides the error by 2^order (within 25%).
    for ratio in ratios:
        assert 0.75 * 2**order < ratio < 1.3 * 2**order, (errors, ratios)


def test_second_order_on_the_mixture_against_a_many_step_heun_solution():
    path, mixture = PATHS["continuous VP"], toy.default_mixture()
    denoiser = MixtureDenoiser(mixture, path)
    x_start = start(512, seed=4)
    reference = samplers.heun(denoiser, path, samplers.karras_grid(path, 1500), x_start)
    for solver in (samplers.dpm_solver, samplers.dpm_solver_2m):
        errors = [
            (solver(denoiser, path, samplers.karras_grid(path, n), x_start) - reference)
            .norm(dim=1)
            .mean()
            .item()
            for n in (20, 40, 80)
        ]
        assert errors[0] / errors[1] > 3.0 and errors[1] / errors[2] > 3.0, errors


@pytest.mark.parametrize("path_name", list(PATHS))
def test_the_first_order_exponential_step_is_ddim(path_name):
    path, mixture = PATHS[path_name], toy.default_mixture()
    denoiser = MixtureDenoiser(mixture, path)
    grid = samplers.karras_grid(path, 7, t_max=0.999 if path_name == "straight line" else None)
    x_start = start(64, scale=path.prior_std())
    first = samplers.dpm_solver(denoiser, path, grid, x_start, order=1, return_trajectory=True)
    ddim = samplers.ddim(denoiser, path, grid, x_start, return_trajectory=True)
    assert (first - ddim).abs().max().item() < 1e-12


def test_on_a_discrete_schedule_grid_the_first_order_step_is_ddim():
    path = schedules.linear_schedule(50).path
    denoiser = MixtureDenoiser(toy.default_mixture(), path)
    x_start = start(64)
    first = samplers.dpm_solver(denoiser, path, path.grid(), x_start, order=1)
    assert (first - samplers.ddim(denoiser, path, path.grid(), x_start)).abs().max() < 1e-12


def test_a_start_at_pure_noise_on_the_straight_line_is_finite_and_converges():
    path = PATHS["straight line"]
    x_start = start()
    exact = exact_gaussian_flow(path, x_start, 1.0, path.t_min)
    for solver in (samplers.dpm_solver, samplers.dpm_solver_2m):
        errors = [
            (solve_to_t_min(solver, path, n, x_start) - exact).abs().max().item() for n in (20, 80)
        ]
        assert errors[1] < errors[0] / 4, errors


def test_evaluation_counts_and_trajectories():
    path = PATHS["continuous VP"]
    x_start = start(16)
    grid = samplers.karras_grid(path, 6)
    for solver, kwargs, nfe in (
        (samplers.dpm_solver, {"order": 1}, 6),
        (samplers.dpm_solver, {"order": 2}, 11),
        (samplers.dpm_solver_2m, {}, 6),
    ):
        counted = Counted(MixtureDenoiser(toy.default_mixture(), path))
        states = solver(counted, path, grid, x_start, return_trajectory=True, **kwargs)
        assert counted.calls == nfe
        assert states.shape == (7, 16, 2) and torch.equal(states[0], x_start)


def test_bad_order_and_grid_are_named():
    path = PATHS["continuous VP"]
    denoiser = MixtureDenoiser(toy.default_mixture(), path)
    with pytest.raises(ValueError, match="order"):
        samplers.dpm_solver(denoiser, path, samplers.karras_grid(path, 4), start(4), order=3)
    with pytest.raises(ValueError, match="grid"):
        samplers.dpm_solver(denoiser, path, torch.tensor([0.5, 0.7, 0.0], dtype=F64), start(4))
