"""Answers to the book's exercises, recorded where they are computed so a student can be checked.

Every exercise's solution ends with one call

    exercises.answer("ex-vae-iwae-limit", gap=gap, weight=w_expr, rtol=0.05)

naming the exercise's label and the final answer(s): numbers, arrays or tensors, SymPy
expressions, strings or booleans (or tuples and lists of them). In the book the call
only checks that the values can be recorded. When the environment variable
``UDM_ANSWER_KEY`` names a folder, it also writes the answers to ``<folder>/<label>.json``:
``make student`` collects them into the answer key that the student notebooks check
against.

Floats are compared with ``rtol`` and ``atol`` (``|got - want| <= atol + rtol |want|``),
integers, booleans and strings exactly, SymPy expressions symbolically.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
import torch

#: The environment variable naming the folder where answers are written.
KEY_ENV_VAR = "UDM_ANSWER_KEY"

_LABEL = re.compile(r"ex-[a-z0-9]+(-[a-z0-9]+)*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def encode(name: str, value: Any) -> dict[str, Any]:
    """The JSON form of one answer value; raises ``TypeError`` naming ``name`` if unsupported."""
    if isinstance(value, bool):
        return {"kind": "bool", "value": value}
    if isinstance(value, int | np.integer):
        return {"kind": "int", "value": int(value)}
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return {"kind": "float", "value": float(value)}
    if isinstance(value, str):
        return {"kind": "str", "value": value}
    if isinstance(value, sp.Basic):
        return {"kind": "sympy", "value": sp.srepr(value)}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_ or np.issubdtype(value.dtype, np.integer):
            return {
                "kind": "array",
                "dtype": "int",
                "shape": list(value.shape),
                "value": value.astype(np.int64).ravel().tolist(),
            }
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{name} must be a numeric array, got dtype {value.dtype}")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} must hold finite values only")
        return {
            "kind": "array",
            "dtype": "float",
            "shape": list(value.shape),
            "value": value.astype(np.float64).ravel().tolist(),
        }
    if isinstance(value, tuple | list):
        return {
            "kind": "sequence",
            "value": [encode(f"{name}[{i}]", item) for i, item in enumerate(value)],
        }
    raise TypeError(
        f"{name} must be a number, array, tensor, SymPy expression, string or bool "
        f"(or a tuple or list of them), got {type(value).__name__}"
    )


def answer(label: str, *, rtol: float = 1e-6, atol: float = 0.0, **values: Any) -> None:
    """Record the reference answer(s) of exercise ``label`` (see the module docstring).

    Book: every chapter's exercises.
    """
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ValueError(f"label must be an exercise label such as 'ex-vae-gap', got {label!r}")
    for tol_name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < math.inf:
            raise ValueError(f"{tol_name} must be a finite number >= 0, got {tol!r}")
    if not values:
        raise ValueError(f"answer({label!r}) needs at least one named value, e.g. gap=gap")
    record = {
        "label": label,
        "rtol": float(rtol),
        "atol": float(atol),
        "values": {name: encode(name, value) for name, value in values.items()},
    }
    folder = os.environ.get(KEY_ENV_VAR, "").strip()
    if folder:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / f"{label}.json").write_text(json.dumps(record, indent=1))
