"""One switch for every random seed in the book: the environment variable ``UDM_SEED``.

A chapter names its seeds with small integers (``seeds.generator(3)``, ``train(...,
seed=0)``). With ``UDM_SEED`` unset or ``0`` each number is used as it is, so the book
you read is the default run. With ``UDM_SEED=s`` every seed number ``k`` becomes
:func:`seed` ``(k)``, a different but fixed seed: torch's and NumPy's generators, the
training loop's shuffling, the toy data sets and the split of the digits all move
together, and a claim about a trained model or a sampler can be checked on other draws
of every random choice (``make seeds`` runs every chapter for s = 1, 2, 3).

Chapters never call ``torch.manual_seed`` or ``torch.Generator().manual_seed`` directly;
they call :func:`manual_seed`, :func:`generator` and :func:`numpy_rng` here, which
``tests/test_book.py`` checks.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from udm.validate import check_int_at_least

#: The environment variable that selects the run.
ENV_VAR = "UDM_SEED"

# Seed numbers k of one run are k + STRIDE * s: runs s and s' never share a seed as long
# as a chapter's seed numbers stay below STRIDE (they are small integers).
STRIDE = 1_000_003


def run() -> int:
    """The run selected by ``UDM_SEED``: 0 (the book as printed) when it is unset or empty."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{ENV_VAR} must be a non-negative integer, got {value}")
    return value


def seed(k: int) -> int:
    """The seed that the book's seed number ``k`` stands for in this run.

    ``k`` itself when ``UDM_SEED`` is unset or 0; ``k + 1_000_003 * UDM_SEED`` otherwise.
    The result fits every generator (below 2**32 for UDM_SEED < 4000).
    """
    check_int_at_least("k", k, 0)
    if k >= STRIDE:
        raise ValueError(f"k must be below {STRIDE} (seed numbers are small integers), got {k}")
    return k + STRIDE * run()


def manual_seed(k: int) -> int:
    """Seed torch's global generator with :func:`seed` ``(k)`` (initial weights, dropout).

    Returns the seed used.
    """
    value = seed(k)
    torch.manual_seed(value)
    return value


def generator(k: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with :func:`seed` ``(k)``."""
    return torch.Generator(device=device).manual_seed(seed(k))


def numpy_rng(k: int) -> np.random.Generator:
    """A fresh NumPy ``Generator`` (PCG64) seeded with :func:`seed` ``(k)``."""
    return np.random.default_rng(seed(k))
