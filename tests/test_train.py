"""Tests for udm.train: the training loop, its guards, and weights-only checkpoints."""

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

from udm.nets import MLP
from udm.train import (
    TrainHistory,
    check_finite,
    default_device,
    load_checkpoint,
    progress,
    save_checkpoint,
    seed_everything,
    train,
)


def mse_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    return ((model(x).squeeze(1) - y) ** 2).mean()


def regression_data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    w = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    y = x @ w + 0.3 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return x, y


def test_linear_regression_reaches_least_squares():
    x, y = regression_data()
    design = np.c_[x.numpy(), np.ones(len(x))]
    solution = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]
    # The noise moves the least-squares fit 0.05 away from the true weights, so a loop
    # that only got close to the truth would not meet the tolerance below.
    tol = 2e-3
    assert np.abs(solution - [1.5, -2.0, 0.5, 0.3]).max() > 10 * tol

    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    history = train(
        model, mse_loss, (x, y), steps=1000, batch_size=100, lr=1e-2, device="cpu", progress=False
    )
    learned = np.r_[model.weight.detach().numpy()[0], model.bias.detach().numpy()]
    np.testing.assert_allclose(learned, solution, atol=tol)
    assert history.steps == 1000 and len(history.losses) == 1000
    assert history.seconds > 0
    # Minibatch losses average to the full-data residual mean square at the optimum.
    residual = np.mean((design @ solution - y.numpy()) ** 2)
    assert history.final_loss == pytest.approx(residual, rel=0.05)


def noisy_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    (x,) = batch
    noise = torch.randn_like(x)  # draws from torch's global RNG, which train() seeds
    return ((model(x + noise) - x) ** 2).mean()


def run_noisy(seed: int, model: nn.Module) -> list[float]:
    data = torch.linspace(-1, 1, 64).reshape(32, 2)
    history = train(
        copy.deepcopy(model), noisy_loss, data, steps=30, batch_size=8, seed=seed, progress=False
    )
    return history.losses


def test_same_seed_same_losses_different_seed_different():
    torch.manual_seed(0)
    model = MLP(2, 2, hidden=16, depth=2)
    first = run_noisy(0, model)
    torch.rand(5)  # disturb the global RNG between runs: train() must reseed it
    assert run_noisy(0, model) == first
    assert run_noisy(1, model) != first


def test_minibatches_are_shuffled_epochs_without_replacement():
    n, batch_size, epochs = 20, 6, 3
    per_epoch = n // batch_size
    seen: list[torch.Tensor] = []

    def record(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        seen.append(batch[0].clone())
        return model(batch[1]).sum()

    ids = torch.arange(n)
    train(
        nn.Linear(1, 1),
        record,
        (ids, torch.zeros(n, 1)),
        steps=per_epoch * epochs,
        batch_size=batch_size,
        progress=False,
    )
    assert all(b.shape == (batch_size,) for b in seen)
    for epoch in range(epochs):
        drawn = torch.cat(seen[epoch * per_epoch : (epoch + 1) * per_epoch])
        assert len(set(drawn.tolist())) == per_epoch * batch_size  # no repeats within an epoch
    assert not torch.equal(seen[0], seen[per_epoch])  # each epoch is reshuffled


def test_nan_loss_raises_at_the_step_it_happens():
    calls = {"n": 0}

    def loss_nan_at_step_5(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        loss = model(batch[0]).pow(2).mean()
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 6 else loss  # the 6th call is step 5

    with pytest.raises(FloatingPointError, match="nan at step 5"):
        train(
            nn.Linear(2, 1),
            loss_nan_at_step_5,
            torch.randn(16, 2),
            steps=10,
            batch_size=4,
            progress=False,
        )


def test_check_finite():
    check_finite(torch.tensor(1.0), 3)
    with pytest.raises(FloatingPointError, match="inf at step 12; lower the learning rate"):
        check_finite(torch.tensor(float("inf")), 12)


def test_loss_fn_must_return_a_scalar():
    def per_example(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return model(batch[0]).squeeze(1)

    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        train(
            nn.Linear(2, 1), per_example, torch.randn(8, 2), steps=1, batch_size=4, progress=False
        )

    def detached(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return batch[0].sum()

    with pytest.raises(ValueError, match="loss_fn"):
        train(nn.Linear(2, 1), detached, torch.randn(8, 2), steps=1, batch_size=4, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 9}, ValueError, "batch_size"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"data": [torch.randn(8, 2)]}, TypeError, "data"),
        ({"data": (torch.randn(8, 2), torch.randn(7))}, ValueError, "data"),
        ({"data": torch.tensor(1.0)}, ValueError, "data"),
        ({"model": lambda x: x}, TypeError, "model"),
        ({"loss_fn": 3}, TypeError, "loss_fn"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_train_validates_arguments(kwargs, error, match):
    args = {
        "model": nn.Linear(2, 1),
        "loss_fn": lambda m, b: m(b[0]).mean(),
        "data": torch.randn(8, 2),
        "steps": 2,
        "batch_size": 4,
        "progress": False,
    } | kwargs
    model, loss_fn, data = args.pop("model"), args.pop("loss_fn"), args.pop("data")
    with pytest.raises(error, match=match):
        train(model, loss_fn, data, **args)


def test_given_optimizer_is_used():
    model = nn.Linear(2, 1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights must not move
    before = copy.deepcopy(model.state_dict())
    train(
        model,
        lambda m, b: m(b[0]).pow(2).mean(),
        torch.randn(8, 2),
        steps=3,
        batch_size=4,
        optimizer=sgd,
        progress=False,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_smoothed_is_a_trailing_mean():
    losses = [float(v) for v in np.random.default_rng(0).random(37)]
    history = TrainHistory(losses=losses, seconds=1.0)
    brute = [np.mean(losses[max(0, i - 4) : i + 1]) for i in range(37)]
    np.testing.assert_allclose(history.smoothed(5), brute, rtol=1e-12)
    assert history.final_loss == pytest.approx(np.mean(losses[-3:]))
    with pytest.raises(ValueError, match="window"):
        history.smoothed(0)


def test_seed_everything_seeds_all_generators():
    def draws(gen: torch.Generator) -> tuple:
        legacy_numpy = np.random.rand()  # noqa: NPY002 (seed_everything seeds the legacy RNG)
        return (
            random.random(),
            legacy_numpy,
            torch.rand(1).item(),
            torch.rand(1, generator=gen).item(),
        )

    first = draws(seed_everything(7))
    assert draws(seed_everything(7)) == first
    assert all(a != b for a, b in zip(draws(seed_everything(8)), first, strict=True))


def test_default_device():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_progress_can_be_disabled(monkeypatch):
    monkeypatch.delenv("UDM_PROGRESS", raising=False)
    bar = progress(5, "x")
    assert not bar.disable and bar.mininterval >= 0.5 and list(bar) == list(range(5))
    assert progress([1, 2], "x", enabled=False).disable
    monkeypatch.setenv("UDM_PROGRESS", "0")
    assert progress(5, "x").disable


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MLP(3, 2, hidden=16, depth=2)
    path = tmp_path / "mlp.pt"
    save_checkpoint(path, model, steps=100, schedule="cosine", sizes=[1, 2], extra={"a": None})
    fresh = MLP(3, 2, hidden=16, depth=2)
    x = torch.randn(10, 3)
    assert not torch.equal(fresh(x), model(x))
    metadata = load_checkpoint(path, fresh)
    assert metadata == {"steps": 100, "schedule": "cosine", "sizes": [1, 2], "extra": {"a": None}}
    assert torch.equal(fresh(x), model(x))


def test_checkpoint_metadata_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError, match="metadata\\['device'\\]"):
        save_checkpoint(tmp_path / "m.pt", nn.Linear(1, 1), device=torch.device("cpu"))


class Payload:
    """An arbitrary object: unpickling one could run code, so it must be refused."""


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": nn.Linear(1, 1).state_dict(), "metadata": Payload()}, path)
    with pytest.raises(Exception, match="weights-only loading refused"):
        load_checkpoint(path, nn.Linear(1, 1))


def test_load_checkpoint_reports_mismatched_keys_and_shapes(tmp_path):
    path = tmp_path / "mlp.pt"
    save_checkpoint(path, MLP(3, 2, hidden=16, depth=2))
    with pytest.raises(ValueError, match="missing keys \\['layers.6.bias'"):
        load_checkpoint(path, MLP(3, 2, hidden=16, depth=3))
    with pytest.raises(ValueError, match="wrong shapes \\['layers.0.weight"):
        load_checkpoint(path, MLP(4, 2, hidden=16, depth=2))


def test_checkpoint_functions_need_a_module(tmp_path):
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        save_checkpoint(tmp_path / "m.pt", {"weight": torch.zeros(1)})
    save_checkpoint(tmp_path / "m.pt", nn.Linear(1, 1))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        load_checkpoint(tmp_path / "m.pt", None)


def test_load_checkpoint_rejects_other_files(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="not a udm checkpoint"):
        load_checkpoint(path, nn.Linear(1, 1))


def test_load_checkpoint_names_files_that_are_not_checkpoints(tmp_path):
    """Empty, text, truncated and wrong-structure files: 'not a udm checkpoint' and why."""
    model = nn.Linear(1, 1)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="not a udm checkpoint: the file is empty"):
        load_checkpoint(empty, model)
    text = tmp_path / "notes.txt"
    text.write_text("hello, these are notes\n")
    with pytest.raises(ValueError, match="not a udm checkpoint: save_checkpoint writes"):
        load_checkpoint(text, model)
    whole = tmp_path / "whole.pt"
    save_checkpoint(whole, model, steps=3)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    with pytest.raises(ValueError, match="not a udm checkpoint: torch could not read it"):
        load_checkpoint(truncated, model)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": [1, 2], "metadata": {}}, wrong)
    with pytest.raises(ValueError, match="not a udm checkpoint: 'state_dict' must map"):
        load_checkpoint(wrong, model)
    torch.save({"state_dict": model.state_dict(), "metadata": [1]}, wrong)
    with pytest.raises(ValueError, match="not a udm checkpoint: 'metadata' must be a dict"):
        load_checkpoint(wrong, model)
    torch.save({"weights": model.state_dict()}, wrong)
    with pytest.raises(ValueError, match="not a udm checkpoint: expected a dict"):
        load_checkpoint(wrong, model)
    assert load_checkpoint(whole, model) == {"steps": 3}
