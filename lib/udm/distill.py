"""Progressive distillation: a student that takes one DDIM step where its teacher takes two.

Salimans and Ho (2022): start from a teacher sampled with DDIM (eta = 0) on a grid of 2K
steps; train a student, initialised as a copy of the teacher, so that *one* DDIM step of
the student from grid time t_i to t_(i+2) lands where *two* DDIM steps of the teacher land.
DDIM's step is affine in the denoiser's output x0_hat, so the student's regression target
is one x_0 in closed form (:func:`distillation_target`). Then the student becomes the
teacher and the grid is halved again: 2K -> K -> K/2 -> ... -> 1 step.

Book: eq. (eq-pd-target), Chapter on fast sampling.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from udm.parameterizations import Denoiser, check_denoiser_path
from udm.paths import Path
from udm.samplers import check_grid
from udm.train import train
from udm.validate import check_int_at_least, check_same_shape, check_tensor, per_example


def halve_grid(grid: Tensor) -> Tensor:
    """Every other time of a grid of 2K steps (2K + 1 times ending at 0): K steps.

    Book: the student's grid, Chapter on fast sampling.
    """
    check_tensor("grid", grid, shape=(None,))
    n_steps = grid.shape[0] - 1
    if n_steps < 2 or n_steps % 2:
        raise ValueError(f"grid must hold an even number (>= 2) of steps to halve, got {n_steps}")
    return grid[::2].clone()


def ddim_step(x0_hat: Tensor, x_t: Tensor, a_t, s_t, a_next, s_next) -> Tensor:
    """x_next = a_next x0_hat + s_next (x_t - a_t x0_hat) / s_t, per example or scalar.

    Book: eq. (eq-ddim), Chapter on score-based models.
    """
    return a_next * x0_hat + s_next * (x_t - a_t * x0_hat) / s_t


def distillation_target(x_t: Tensor, x_next: Tensor, a_t, s_t, a_next, s_next) -> Tensor:
    """The x_0 whose DDIM step from x_t (at a_t, s_t) lands exactly on x_next (a_next, s_next).

    Solving :func:`ddim_step` for x0_hat with r = s_next / s_t:

        x0_target = (x_next - r x_t) / (a_next - r a_t).

    The denominator is a_next (1 - e^(-h)) > 0 for h = log(a_next/s_next) - log(a_t/s_t) > 0.

    Book: eq. (eq-pd-target), Chapter on fast sampling.
    """
    check_same_shape("x_t", x_t, "x_next", x_next)
    ratio = s_next / s_t
    return (x_next - ratio * x_t) / (a_next - ratio * a_t)


def _columns(path: Path, times: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """a(t), s(t) at per-example times as (B, 1, ...) columns in like's dtype and device."""
    c = path.coefficients(times)
    return tuple(per_example(v.to(like.device, like.dtype), like) for v in (c.a, c.s))


def distillation_loss(
    student: Denoiser,
    teacher,
    x0: Tensor,
    grid: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The progressive-distillation loss for a student on ``halve_grid(grid)``.

    For each example: a student step i uniform in 0..K-1 (t = grid[2i], t_mid = grid[2i+1],
    t_next = grid[2i+2]), x_t drawn from the path at t, two DDIM steps of the teacher
    t -> t_mid -> t_next, the target :func:`distillation_target`, and the student's error
    ||x0_hat - target||^2 weighted by max(SNR(t), 1) (Salimans and Ho's "truncated SNR"
    weighting: the error of the implied noise prediction where the SNR is large, of x_0 where
    it is small). ``teacher`` is any denoiser on the same path (e.g. the exact
    :class:`udm.parameterizations.MixtureDenoiser`).

    Book: eq. (eq-pd-target) and eq. (eq-pd-loss), Chapter on fast sampling.
    """
    path = student.path
    check_denoiser_path(teacher, path)
    times = check_grid(grid, path)
    check_tensor("x0", x0, min_ndim=2)
    n_student = (times.shape[0] - 1) // 2
    halve_grid(times)  # the grid's step count must be even
    batch = x0.shape[0]
    step = torch.randint(0, n_student, (batch,), generator=generator)
    t, t_mid, t_next = times[2 * step], times[2 * step + 1], times[2 * step + 2]
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = path.q_sample(x0, t, noise)
    a_t, s_t = _columns(path, t, x0)
    a_mid, s_mid = _columns(path, t_mid, x0)
    a_next, s_next = _columns(path, t_next, x0)
    with torch.no_grad():
        x_mid = ddim_step(teacher(x_t, t), x_t, a_t, s_t, a_mid, s_mid)
        # At t_next = 0 (a = 1, s = 0) the second step returns the teacher's x0_hat itself.
        x_next = ddim_step(teacher(x_mid, t_mid), x_mid, a_mid, s_mid, a_next, s_next)
        target = distillation_target(x_t, x_next, a_t, s_t, a_next, s_next)
    weight = (a_t / s_t).square().clamp(min=1.0)
    return (weight * (student(x_t, t) - target).square()).flatten(1).sum(1).mean()


def distill(
    teacher: Denoiser,
    data: Tensor,
    grid: Tensor,
    *,
    rounds: int,
    steps: int,
    batch_size: int = 512,
    lr: float = 3e-4,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> list[tuple[Denoiser, Tensor]]:
    """``rounds`` rounds of progressive distillation from ``teacher`` sampled on ``grid``.

    Each round copies the current teacher into a student, trains it for ``steps`` Adam steps
    on :func:`distillation_loss` (book seed ``seed + round``), freezes it and makes it the
    next round's teacher on the halved grid. ``device`` is passed to :func:`udm.train.train`
    (default: its default device); the teacher should already be there. Returns
    [(student, its grid), ...], one per round: grids of 2K / 2, 2K / 4, ... steps.

    Book: eq. (eq-pd-loss), Chapter on fast sampling.
    """
    if not isinstance(teacher, Denoiser):
        raise TypeError(f"teacher must be a udm.parameterizations.Denoiser, got {type(teacher)}")
    check_int_at_least("rounds", rounds, 1)
    check_int_at_least("steps", steps, 1)
    students = []
    current, current_grid = teacher, check_grid(grid, teacher.path)
    for k in range(rounds):
        halve_grid(current_grid)  # names a grid that cannot be halved this many times
        student = copy.deepcopy(current).requires_grad_(True).train()

        def loss_fn(model, batch, teacher=current, grid=current_grid):
            return distillation_loss(model, teacher, batch[0], grid)

        train(
            student,
            loss_fn,
            data,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed + k,
            device=device,
            progress=False,
        )
        student.eval().requires_grad_(False)
        current, current_grid = student, halve_grid(current_grid)
        students.append((student, current_grid))
    return students
