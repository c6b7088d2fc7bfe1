"""udm.flows: couplings and straightness, against independent values.

The OT coupling against SciPy's Hungarian solver and, in 1-D, against sorting; the
straightness against closed forms and SciPy quadrature; the reflow pairs against the exact
linear flow of a Gaussian.
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.optimize import linear_sum_assignment

from udm import flows, samplers, toy
from udm.parameterizations import MixtureDenoiser
from udm.paths import StraightLine

F64 = torch.float64


def test_minibatch_ot_matches_hungarian():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(40, 3, generator=g), torch.randn(40, 3, generator=g)
    perm = flows.minibatch_ot_coupling(x0, noise)
    assert sorted(perm.tolist()) == list(range(40))
    cost = torch.cdist(x0.double(), noise.double()).square().numpy()
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    ours = (x0.double() - noise.double()[perm]).square().sum().item()
    assert ours == pytest.approx(best, rel=1e-10)
    assert ours < (x0.double() - noise.double()).square().sum().item()  # beats the identity


def test_minibatch_ot_in_one_dimension_sorts():
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(25, 1, generator=g), torch.randn(25, 1, generator=g)
    perm = flows.minibatch_ot_coupling(x0, noise)
    paired = noise[perm, 0]
    # monotone: the k-th smallest data point gets the k-th smallest noise draw
    order = x0[:, 0].argsort()
    assert torch.equal(paired[order], noise[:, 0].sort().values)


def test_minibatch_ot_bad_input():
    with pytest.raises(ValueError, match="noise"):
        flows.minibatch_ot_coupling(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="x0"):
        flows.minibatch_ot_coupling(torch.full((4, 2), math.nan), torch.zeros(4, 2))


def _grid(n):
    return torch.linspace(1.0, 0.0, n + 1, dtype=F64)


def test_straightness_zero_for_straight_lines():
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(10, 2, generator=g), torch.randn(10, 2, generator=g)
    t = _grid(7)
    trajectory = (1 - t)[:, None, None] * x0 + t[:, None, None] * x1
    assert flows.straightness(trajectory, t).abs().max() < 1e-12


def _curved_flow(sd: float = 0.3):
    """The exact straight-line flow of N(0, sd^2) data, x_t = r(t) z with
    r = sqrt((1-t)^2 sd^2 + t^2), and its straightness per unit |z|^2 by quadrature."""

    def r(t):
        return math.sqrt((1 - t) ** 2 * sd**2 + t**2)

    def dr(t):
        return (t - (1 - t) * sd**2) / r(t)

    exact, _ = quad(lambda t: (dr(t) - (1 - sd)) ** 2, 0, 1)
    return r, exact


def test_straightness_of_a_curved_flow_matches_quadrature():
    r, exact = _curved_flow()
    t = _grid(4000)
    z = torch.tensor([[1.0], [-2.0]], dtype=F64)
    trajectory = torch.tensor([r(v) for v in t.tolist()], dtype=F64)[:, None, None] * z
    got = flows.straightness(trajectory, t)
    assert got[0].item() == pytest.approx(exact, rel=1e-3)
    assert got[1].item() == pytest.approx(4 * exact, rel=1e-3)
    assert exact > 0.05  # a flow that is visibly not straight


def test_straightness_weights_steps_by_their_width_on_an_uneven_grid():
    # The same curved flow as above on a grid crowded near t = 0: an unweighted mean over the
    # steps would count the crowded end many times over.
    r, exact = _curved_flow()
    t = _grid(4000).square()  # strictly decreasing from 1 to 0, steps from 5e-4 down to 6e-8
    trajectory = torch.tensor([r(v) for v in t.tolist()], dtype=F64)[:, None, None]
    assert flows.straightness(trajectory, t).item() == pytest.approx(exact, rel=1e-3)


def test_straightness_bad_times():
    with pytest.raises(ValueError, match="times"):
        flows.straightness(torch.zeros(3, 2, 1), torch.tensor([0.0, 0.5, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="times"):
        flows.straightness(torch.zeros(3, 2, 1), torch.tensor([1.0, 0.5], dtype=F64))


def test_reflow_coupling_is_the_exact_linear_flow_of_a_gaussian():
    # For data N(m, sd^2 I) the straight-line flow maps eps at t = 1 to m + sd eps at t = 0.
    sd, m = 0.5, torch.tensor([1.0, -2.0], dtype=F64)
    gaussian = toy.GaussianMixture(m[None], (sd**2 * torch.eye(2, dtype=F64))[None], [1.0])
    path = StraightLine()
    noise = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    x0 = flows.reflow_coupling(MixtureDenoiser(gaussian, path), path, noise, n_steps=200)
    assert torch.allclose(x0, m + sd * noise, atol=1e-4)
    with pytest.raises(ValueError, match="n_steps"):
        flows.reflow_coupling(MixtureDenoiser(gaussian, path), path, noise, n_steps=1)


def test_straightness_of_the_exact_gaussian_flow_from_a_sampler():
    sd = 0.3
    gaussian = toy.GaussianMixture([[0.0]], [[[sd**2]]], [1.0])
    path = StraightLine()
    grid = samplers.uniform_grid(path, 400, t_min=1 / 400)
    noise = torch.tensor([[1.0]], dtype=F64)
    trajectory = samplers.heun(
        MixtureDenoiser(gaussian, path), path, grid, noise, return_trajectory=True
    )
    dr = lambda t: (t - (1 - t) * sd**2) / np.sqrt((1 - t) ** 2 * sd**2 + t**2)  # noqa: E731
    exact, _ = quad(lambda t: (dr(t) - (1 - sd)) ** 2, 0, 1)
    assert flows.straightness(trajectory, grid).item() == pytest.approx(exact, rel=2e-2)
