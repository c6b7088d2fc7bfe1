"""The one small training loop every chapter uses, with seeding, a progress bar and checkpoints.

Every model in the book (VAE, denoiser, score network, guided denoiser) is trained by
:func:`train`: it draws minibatches from a tensor (or a tuple of tensors) in shuffled
epochs, hands each batch to the chapter's ``loss_fn(model, batch)``, and takes an Adam
step. The loss is the only thing a chapter writes; the loop stays the same.

A loss that turns NaN or infinite stops the run at once (:func:`check_finite`) instead of
training on garbage for minutes. Checkpoints hold only tensors and plain data and are
read back with ``torch.load(..., weights_only=True)``: loading a checkpoint never runs
code from the file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from udm import seeds
from udm.validate import check_int_at_least, check_positive, check_tensor

LossFn = Callable[[nn.Module, tuple[Tensor, ...]], Tensor]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's legacy global RNG and torch; return a seeded generator.

    ``seed`` is a book seed number: the value used is :func:`udm.seeds.seed` ``(seed)``, which
    moves with the environment variable ``UDM_SEED``. The returned ``torch.Generator`` (on
    the CPU, seeded with that value) is meant for data shuffling, so that the order of
    minibatches does not depend on how many random numbers the model or the loss drew.
    """
    check_int_at_least("seed", seed, 0)
    value = seeds.seed(seed)
    random.seed(value)
    np.random.seed(value)  # noqa: NPY002 (the legacy global RNG is what we mean to seed)
    torch.manual_seed(value)
    return torch.Generator().manual_seed(value)


def default_device() -> torch.device:
    """The device models train on by default: the first CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress(iterable_or_total: Iterable | int, desc: str, *, enabled: bool = True) -> tqdm:
    """A quiet tqdm progress bar over an iterable, or over ``range(total)`` for an int.

    ``tqdm.auto`` draws a widget in Jupyter and text elsewhere. The bar redraws at most
    every half second, so it costs nothing next to a training step and does not flood
    a log. It is off when ``enabled`` is false or the environment variable
    ``UDM_PROGRESS`` is ``0`` (useful for tests and batch builds).
    """
    iterable = range(iterable_or_total) if isinstance(iterable_or_total, int) else iterable_or_total
    disabled = not enabled or os.environ.get("UDM_PROGRESS", "1") == "0"
    return tqdm(iterable, desc=desc, mininterval=0.5, disable=disabled)


# train() has an argument named `progress` that shadows the function above.
_progress_bar = progress


def check_finite(loss: Tensor, step: int) -> None:
    """Raise ``FloatingPointError`` naming the step and the value if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss).all():
        value = loss.item() if loss.numel() == 1 else loss.detach().cpu().tolist()
        raise FloatingPointError(
            f"loss became {value} at step {step}; lower the learning rate or check the inputs"
        )


@dataclass
class TrainHistory:
    """What a call to :func:`train` leaves behind: the loss at every step and the time taken."""

    losses: list[float]
    seconds: float

    @property
    def steps(self) -> int:
        """The number of optimizer steps taken."""
        return len(self.losses)

    def smoothed(self, window: int = 50) -> np.ndarray:
        """The losses averaged over a trailing window of ``window`` steps (shorter at the start).

        Entry ``i`` is the mean of ``losses[max(0, i - window + 1) : i + 1]``; the result
        has one entry per step, so it plots against the same step axis as the raw losses.
        """
        check_int_at_least("window", window, 1)
        cumulative = np.concatenate([[0.0], np.cumsum(self.losses)])
        end = np.arange(1, self.steps + 1)
        start = np.maximum(end - window, 0)
        return (cumulative[end] - cumulative[start]) / (end - start)

    @property
    def final_loss(self) -> float:
        """The mean loss over the last tenth of the steps (at least one step).

        A single minibatch loss is noisy; this average is the number to quote in prose.
        """
        tail = max(1, self.steps // 10)
        return float(np.mean(self.losses[-tail:]))


def _as_tensor_tuple(data: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Check ``data`` (a tensor, or a tuple of tensors sharing the first dimension); tuple it."""
    if isinstance(data, Tensor):
        return (check_tensor("data", data, min_ndim=1, floating=False),)
    if not isinstance(data, tuple) or len(data) == 0:
        raise TypeError(
            "data must be a torch.Tensor or a non-empty tuple of tensors, "
            f"got {type(data).__name__}"
        )
    tensors = tuple(
        check_tensor(f"data[{i}]", t, min_ndim=1, floating=False) for i, t in enumerate(data)
    )
    sizes = [t.shape[0] for t in tensors]
    if len(set(sizes)) != 1:
        raise ValueError(f"the tensors in data must share their first dimension, got sizes {sizes}")
    return tensors


def minibatch_indices(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """Yield ``steps`` index batches: shuffled epochs, each example at most once per epoch.

    An epoch is a fresh random permutation of ``range(n)`` cut into ``n // batch_size``
    batches; the ``n % batch_size`` leftover examples sit that epoch out (a different
    few each time), so every batch has exactly ``batch_size`` examples.
    """
    per_epoch = n // batch_size
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=generator)
        k = step % per_epoch
        yield order[k * batch_size : (k + 1) * batch_size]


def train(
    model: nn.Module,
    loss_fn: LossFn,
    data: Tensor | tuple[Tensor, ...],
    *,
    steps: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    desc: str = "training",
    optimizer: torch.optim.Optimizer | None = None,
    weight_decay: float = 0.0,
    progress: bool = True,
) -> TrainHistory:
    """Train ``model`` by minimizing ``loss_fn`` over minibatches of ``data``; return the losses.

    Each step draws a batch from ``data`` (a tensor, or a tuple of tensors such as
    ``(images, labels)`` that share their first dimension) in shuffled epochs, moves it
    to ``device``, computes ``loss = loss_fn(model, batch)`` with ``batch`` always a
    tuple, and takes one optimizer step. ``loss_fn`` must return a scalar tensor.

    The optimizer is Adam with learning rate ``lr`` and L2 penalty ``weight_decay``
    unless ``optimizer`` is given (then ``lr`` and ``weight_decay`` are unused).
    ``seed`` seeds every random number generator (:func:`seed_everything`) before the
    first step, so the same seed gives the same losses; the model's initial weights
    are the caller's business. ``device`` defaults to :func:`default_device`; the model
    is moved there and stays there. A NaN or infinite loss raises ``FloatingPointError``
    at the step where it happens.

    Book: the generic loop of stochastic gradient descent; each chapter supplies its loss.
    """
    check_int_at_least("steps", steps, 1)
    check_int_at_least("batch_size", batch_size, 1)
    check_positive("lr", lr)
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(model, batch), got {loss_fn!r}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    tensors = _as_tensor_tuple(data)
    n = tensors[0].shape[0]
    if batch_size > n:
        raise ValueError(
            f"batch_size must be at most the number of examples ({n}), got {batch_size}"
        )

    device = torch.device(device) if device is not None else default_device()
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = seed_everything(seed)

    losses: list[float] = []
    start = time.perf_counter()
    indices = minibatch_indices(n, batch_size, steps, generator)
    with _progress_bar(steps, desc, enabled=progress) as bar:
        for step, idx in zip(bar, indices, strict=True):
            batch = tuple(t[idx.to(t.device)].to(device) for t in tensors)
            loss = loss_fn(model, batch)
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise ValueError(f"loss_fn must return a scalar tensor (shape ()), got {got}")
            if not loss.requires_grad:
                raise ValueError(
                    "loss_fn returned a loss that does not depend on the model's parameters"
                )
            value = loss.item()  # one read of the loss a step, for the check and the history
            if not math.isfinite(value):
                check_finite(loss, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(value)
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
    return TrainHistory(losses=losses, seconds=time.perf_counter() - start)


def _check_json_metadata(metadata: dict[str, Any]) -> None:
    """Raise unless every metadata value is plain JSON data (numbers, strings, lists, dicts)."""
    for key, value in metadata.items():
        try:
            json.dumps(value, allow_nan=True)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"metadata[{key!r}] must be plain JSON data (numbers, strings, bools, None, "
                f"lists and dicts of them), got {type(value).__name__}: {err}"
            ) from err


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **metadata: Any) -> None:
    """Save ``model``'s weights and plain-data ``metadata`` to ``path`` with ``torch.save``.

    The file holds ``{"state_dict": ..., "metadata": {...}}`` with every tensor on the
    CPU, and nothing else, so :func:`load_checkpoint` can read it without unpickling
    arbitrary objects. Metadata values must be JSON-able (for example
    ``steps=2000, schedule="cosine", final_loss=0.41``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_json_metadata(metadata)
    state_dict = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save({"state_dict": state_dict, "metadata": metadata}, Path(path))


def load_checkpoint(path: str | os.PathLike, model: nn.Module) -> dict[str, Any]:
    """Load weights saved by :func:`save_checkpoint` into ``model``; return the metadata.

    The file is read with ``torch.load(path, weights_only=True, map_location="cpu")``:
    a file that holds pickled Python objects other than tensors and plain containers is
    refused, never executed. A file that is empty, truncated, not torch's zip format, or a
    zip without the two entries raises ``ValueError`` saying it is "not a udm checkpoint"
    and why. The weights are copied into ``model`` wherever its parameters live. A
    checkpoint whose keys or shapes do not match ``model`` raises ``ValueError`` listing the
    differences.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    with path.open("rb") as file:
        head = file.read(4)
    if not head:
        raise ValueError(f"{path} is not a udm checkpoint: the file is empty")
    if head != b"PK\x03\x04":
        raise ValueError(
            f"{path} is not a udm checkpoint: save_checkpoint writes torch.save's zip archive, "
            f"but this file starts with {head!r}"
        )
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise ValueError(f"{path} is not a udm checkpoint: {err}") from err
        raise pickle.UnpicklingError(
            f"weights-only loading refused {path}: it holds pickled Python objects, not just "
            "tensors and plain data. udm never unpickles arbitrary objects; re-save the model "
            "with udm.train.save_checkpoint."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise ValueError(
            f"{path} is not a udm checkpoint: torch could not read it (truncated or "
            f"corrupted?): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(checkpoint, dict) or set(checkpoint) != {"state_dict", "metadata"}:
        raise ValueError(
            f"{path} is not a udm checkpoint: expected a dict with keys 'state_dict' and "
            "'metadata' (written by udm.train.save_checkpoint)"
        )
    if not isinstance(checkpoint["state_dict"], dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in checkpoint["state_dict"].items()
    ):
        raise ValueError(
            f"{path} is not a udm checkpoint: 'state_dict' must map parameter names to tensors"
        )
    if not isinstance(checkpoint["metadata"], dict):
        raise ValueError(f"{path} is not a udm checkpoint: 'metadata' must be a dict")
    state_dict = checkpoint["state_dict"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if state_dict[key].shape != expected[key].shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"checkpoint {path} does not fit this {type(model).__name__}: "
            f"missing keys {missing}, unexpected keys {unexpected}, wrong shapes {wrong_shape}"
        )
    model.load_state_dict(state_dict)
    return checkpoint["metadata"]
