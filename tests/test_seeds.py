"""UDM_SEED moves every seed of a chapter together, and leaves the default run alone."""

import numpy as np
import pytest
import torch

from udm import seeds, toy, train


def test_default_run_uses_the_seed_numbers_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UDM_SEED", raising=False)
    assert seeds.run() == 0
    assert [seeds.seed(k) for k in (0, 1, 17)] == [0, 1, 17]
    expected = torch.randn(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.randn(3, generator=seeds.generator(5)), expected)
    assert np.array_equal(seeds.numpy_rng(5).random(3), np.random.default_rng(5).random(3))
    monkeypatch.setenv("UDM_SEED", "0")
    assert seeds.seed(9) == 9


def test_other_runs_move_every_seed_and_never_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    used = set()
    for run in range(4):
        monkeypatch.setenv("UDM_SEED", str(run))
        used.update(seeds.seed(k) for k in range(100))
    assert len(used) == 400
    monkeypatch.setenv("UDM_SEED", "2")
    assert seeds.seed(3) == 3 + 2 * seeds.STRIDE
    default = torch.randn(3, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(torch.randn(3, generator=seeds.generator(3)), default)


def test_library_seeds_follow_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UDM_SEED", raising=False)
    moons, board = toy.two_moons(50), toy.checkerboard(50)
    train_x, _ = toy.load_digits_data("train")
    train.seed_everything(4)
    weights = torch.randn(3)
    monkeypatch.setenv("UDM_SEED", "1")
    assert not torch.equal(toy.two_moons(50), moons)
    assert not torch.equal(toy.checkerboard(50), board)
    other_x, _ = toy.load_digits_data("train")
    assert other_x.shape == train_x.shape and not torch.equal(other_x, train_x)
    train.seed_everything(4)
    assert not torch.equal(torch.randn(3), weights)
    monkeypatch.setenv("UDM_SEED", "1")
    again = toy.load_digits_data("train")[0]
    assert torch.equal(again, other_x), "the same run must give the same split"


@pytest.mark.parametrize("raw", ["-1", "one", "1.5"])
def test_a_bad_switch_names_itself(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("UDM_SEED", raw)
    with pytest.raises(ValueError, match="UDM_SEED must be a non-negative integer"):
        seeds.seed(0)


def test_seed_numbers_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UDM_SEED", raising=False)
    with pytest.raises(ValueError, match="k must be at least 0"):
        seeds.seed(-1)
    with pytest.raises(ValueError, match="k must be below"):
        seeds.seed(seeds.STRIDE)
    with pytest.raises(TypeError, match="k must be an int"):
        seeds.seed(1.0)
