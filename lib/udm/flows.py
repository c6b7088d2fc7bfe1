"""Flow matching's couplings and the straightness of a flow.

Flow matching trains a velocity network on pairs (x_0, eps) joined by the straight line
x_t = (1 - t) x_0 + t eps (:class:`udm.paths.StraightLine`); the loss itself is
:func:`udm.parameterizations.prediction_loss` of a ``"velocity"`` :class:`Denoiser`, given
the pair as ``x0`` and ``noise``. What this module adds is *which* pairs:

==================================  ==========================================================
independent (no function needed)    x_0 from the data, eps ~ N(0, I) drawn on its own
:func:`minibatch_ot_coupling`       eps reordered within a batch by the exact optimal
                                    transport plan for the squared distance (POT's ``ot.emd``)
:func:`reflow_coupling`             x_0 = the data a trained flow carries eps to (rectified
                                    flow's "reflow")
==================================  ==========================================================

and one number that says whether a flow's trajectories are straight, :func:`straightness`.

Book: Chapter "Flow matching and rectified flow".
"""

from __future__ import annotations

import numpy as np
import ot
import torch
from torch import Tensor

from udm import samplers
from udm.paths import Path, check_path
from udm.validate import check_finite, check_int_at_least, check_same_shape, check_tensor


def minibatch_ot_coupling(x0: Tensor, noise: Tensor) -> Tensor:
    """The permutation ``perm`` that pairs ``x0[i]`` with ``noise[perm[i]]`` at least cost.

    Among all one-to-one pairings of a batch of B data points with B noise draws it is the
    one that minimises sum_i ||x0_i - noise_perm(i)||^2: the exact optimal transport plan
    between the two empirical measures (each point mass 1 / B), found by POT's
    network-simplex solver ``ot.emd`` in float64. For equal masses an optimal plan is a
    permutation matrix (Birkhoff); the solver returns a vertex of the polytope, so one.
    Tong et al.'s and Pooladian et al.'s minibatch OT flow matching trains on
    (x0, noise[perm]). Returns an int64 tensor of shape (B,) on ``noise``'s device.

    Book: eq. (eq-fm-minibatch-ot), Chapter on flow matching.
    """
    check_tensor("x0", x0, min_ndim=2)
    check_tensor("noise", noise, min_ndim=2)
    check_same_shape("x0", x0, "noise", noise)
    check_finite("x0", x0)
    check_finite("noise", noise)
    batch = x0.shape[0]
    a = x0.detach().reshape(batch, -1).to("cpu", torch.float64).numpy()
    b = noise.detach().reshape(batch, -1).to("cpu", torch.float64).numpy()
    cost = ot.dist(a, b, metric="sqeuclidean")
    weights = ot.unif(batch, type_as=cost)
    plan = ot.emd(weights, weights, cost, numItermax=10_000_000)
    perm = np.argmax(plan, axis=1)
    if not np.array_equal(np.sort(perm), np.arange(batch)):  # a vertex is a permutation
        raise RuntimeError("ot.emd returned a plan that is not a permutation")
    return torch.from_numpy(perm).to(device=noise.device, dtype=torch.int64)


def reflow_coupling(
    denoiser: samplers.DenoiserFn, path: Path, noise: Tensor, *, n_steps: int = 50
) -> Tensor:
    """The data x_0 that the flow of ``denoiser`` carries each ``noise`` draw to: reflow's pairs.

    Integrates the probability-flow ODE from t = t_max down to 0 with Heun's method
    (:func:`udm.samplers.heun`) on ``n_steps`` equal steps and returns the end points, shaped
    like ``noise``. Training a new flow on the pairs (returned x_0, ``noise``) instead of
    independent ones is Liu et al.'s reflow: the pairs are already joined by the old flow,
    whose trajectories do not cross, so the new straight-line targets conflict far less.

    Book: eq. (eq-fm-reflow), Chapter on flow matching.
    """
    check_path(path)
    check_int_at_least("n_steps", n_steps, 2)
    check_tensor("noise", noise, min_ndim=2)
    grid = samplers.uniform_grid(path, n_steps, t_min=path.t_max / n_steps)
    return samplers.heun(denoiser, path, grid, noise)


def straightness(trajectory: Tensor, times: Tensor) -> Tensor:
    """Liu et al.'s straightness S = int_0^1 ||dx/dt - (x(1) - x(0))||^2 dt, per example.

    ``trajectory`` (n + 1, B, ...) holds the states at ``times`` (n + 1,), a strictly
    decreasing float64 grid from 1 to 0 (what a sampler's ``return_trajectory=True`` gives
    on such a grid). On each step the velocity is the chord (x_i - x_{i+1}) / (t_i - t_{i+1});
    S is zero exactly when every trajectory is a straight segment run at constant speed, the
    only flows that one Euler step integrates without error. Returns shape (B,), float64.

    Book: eq. (eq-fm-straightness), Chapter on flow matching.
    """
    check_tensor("trajectory", trajectory, min_ndim=3)
    check_tensor("times", times, shape=(trajectory.shape[0],))
    t = times.detach().to("cpu", torch.float64)
    if not (t[0] == 1 and t[-1] == 0 and bool((t[1:] < t[:-1]).all())):
        raise ValueError("times must decrease strictly from 1 to 0")
    x = trajectory.detach().to(torch.float64).flatten(2)  # (n + 1, B, D)
    check_finite("trajectory", x)
    widths = (t[:-1] - t[1:]).to(x.device)  # (n,)
    chords = (x[:-1] - x[1:]) / widths[:, None, None]
    displacement = x[0] - x[-1]  # x(1) - x(0)
    squared = (chords - displacement).square().sum(dim=2)  # (n, B)
    return (widths[:, None] * squared).sum(dim=0)
