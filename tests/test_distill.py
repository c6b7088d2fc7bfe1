"""Tests for udm.distill: the target against DDIM itself, the loss against an exact case,
and one round of training against the teacher's own one-step error."""

from __future__ import annotations

import pytest
import torch

from udm import distill, paths, samplers, toy
from udm.nets import TimeConditionedMLP
from udm.parameterizations import Denoiser, MixtureDenoiser

F64 = torch.float64
PATH = paths.ContinuousVP()


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Constant:
    """A denoiser that returns one fixed x0_hat, whatever its input."""

    def __init__(self, x0):
        self.x0, self.path = x0, PATH

    def __call__(self, x, t):
        return self.x0


@pytest.mark.parametrize("t_next", [0.3, 0.0])
def test_one_ddim_step_with_the_target_lands_on_the_given_point(t_next):
    t = 0.7
    x_t = torch.randn(32, 2, generator=gen(1), dtype=F64)
    x_next = torch.randn(32, 2, generator=gen(2), dtype=F64)
    a_t, s_t = PATH.a(t).item(), PATH.s(t).item()
    a_n, s_n = (1.0, 0.0) if t_next == 0 else (PATH.a(t_next).item(), PATH.s(t_next).item())
    target = distill.distillation_target(x_t, x_next, a_t, s_t, a_n, s_n)
    grid = torch.tensor([t, t_next] if t_next == 0 else [t, t_next, 0.0], dtype=F64)
    landed = samplers.ddim(Constant(target), PATH, grid, x_t, return_trajectory=True)[1]
    assert (landed - x_next).abs().max().item() < 1e-12


def test_the_loss_vanishes_for_a_point_mass_and_not_for_the_mixture():
    # For a point mass DDIM is exact in any number of steps, so the teacher is its own
    # perfect student; for the mixture two steps differ from one.
    grid = samplers.karras_grid(PATH, 8)
    point = toy.GaussianMixture([[0.5, -1.0]], 1e-12 * torch.eye(2, dtype=F64)[None], [1.0])
    x0 = point.sample(256, generator=gen(3), dtype=F64)
    exact = MixtureDenoiser(point, PATH)
    student = Denoiser(lambda x, t: exact(x, t), PATH, "x0")
    assert distill.distillation_loss(student, exact, x0, grid, generator=gen(4)).item() < 1e-16
    mixture = toy.default_mixture()
    exact = MixtureDenoiser(mixture, PATH)
    student = Denoiser(lambda x, t: exact(x, t), PATH, "x0")
    x0 = mixture.sample(256, generator=gen(5), dtype=F64)
    assert distill.distillation_loss(student, exact, x0, grid, generator=gen(4)).item() > 1e-3


def test_one_round_brings_the_student_closer_to_two_teacher_steps_than_one_teacher_step():
    torch.manual_seed(0)
    mixture = toy.default_mixture()
    data = mixture.sample(4096, generator=gen(6))
    teacher = Denoiser(TimeConditionedMLP(2, hidden=32, depth=2), PATH, "x0", data_std=1.3)
    teacher.requires_grad_(False)
    grid = samplers.karras_grid(PATH, 4)
    ((student, student_grid),) = distill.distill(
        teacher, data, grid, rounds=1, steps=300, batch_size=256, lr=1e-3, seed=7
    )
    assert torch.equal(student_grid, grid[::2])
    x_start = PATH.sample_prior((512, 2), generator=gen(8))
    two_steps = samplers.ddim(teacher, PATH, grid, x_start)
    gap_student = (samplers.ddim(student, PATH, student_grid, x_start) - two_steps).norm(dim=1)
    gap_teacher = (samplers.ddim(teacher, PATH, student_grid, x_start) - two_steps).norm(dim=1)
    assert gap_student.mean() < 0.5 * gap_teacher.mean(), (gap_student.mean(), gap_teacher.mean())


def test_bad_grids_and_teachers_are_named():
    with pytest.raises(ValueError, match="even number"):
        distill.halve_grid(torch.tensor([0.9, 0.5, 0.1, 0.0], dtype=F64))
    net = Denoiser(TimeConditionedMLP(2, hidden=8, depth=1), PATH, "x0")
    with pytest.raises(TypeError, match="teacher"):
        distill.distill(
            MixtureDenoiser(toy.default_mixture(), PATH),
            torch.zeros(8, 2),
            samplers.karras_grid(PATH, 2),
            rounds=1,
            steps=1,
        )
    with pytest.raises(ValueError, match="built on"):
        distill.distillation_loss(
            net,
            MixtureDenoiser(toy.default_mixture(), paths.EDM()),
            torch.zeros(8, 2),
            samplers.karras_grid(PATH, 2),
        )
