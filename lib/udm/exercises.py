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

The student side is :func:`check`: in a student notebook each exercise ends with a stub

    gap = ...  # a number
    exercises.check("ex-vae-iwae-limit", gap=gap);

that compares the student's values with the answer key (see :func:`find_key`) and prints one
line per value: correct, not attempted (a value left as ``...``), or wrong with what is off
(a shape, a dtype, a sign, a constant factor, an additive offset, a square or a square root,
the symbols of a SymPy answer, or how far outside the tolerance it is).
"""

from __future__ import annotations

import ast
import cmath
import json
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp
import torch

from udm.symbolic import assert_equal

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
    if isinstance(value, sp.MatrixBase):
        value = sp.ImmutableMatrix(value)
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


# --- The answer key: where it is, and its values read back ----------------------------------

#: The environment variable naming a file where every :func:`check` appends its result (tests).
CHECK_LOG_ENV_VAR = "UDM_CHECK_LOG"
#: The folder :func:`find_key` looks for next to the notebook and above it.
KEY_FOLDER = "answer_key"
HOW_TO_MAKE_KEY = (
    "run `make student` in the book's repository: it writes the student notebooks and their "
    "answer key to _build/student/ (or set UDM_ANSWER_KEY to an answer_key folder)"
)


def find_key(start: Path | None = None) -> Path:
    """The answer key: ``$UDM_ANSWER_KEY`` if set, else an ``answer_key`` folder in ``start``
    (default: the working directory, which is the notebook's folder in Jupyter) or above it.

    The key is a folder of ``<label>.json`` files, or one JSON file mapping labels to records.
    Raises FileNotFoundError saying how to make one.
    """
    configured = os.environ.get(KEY_ENV_VAR, "").strip()
    if configured:
        path = Path(configured)
        if not path.exists():
            raise FileNotFoundError(f"{KEY_ENV_VAR}={configured} does not exist: {HOW_TO_MAKE_KEY}")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / KEY_FOLDER).is_dir():
            return folder / KEY_FOLDER
    raise FileNotFoundError(f"no {KEY_FOLDER}/ folder in {here} or above it: {HOW_TO_MAKE_KEY}")


def reference(label: str, key: Path | None = None) -> dict[str, Any]:
    """The recorded answer of exercise ``label``: ``{"rtol", "atol", "values"}``, values decoded."""
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ValueError(f"label must be an exercise label such as 'ex-vae-gap', got {label!r}")
    key = find_key() if key is None else Path(key)
    if key.is_dir():
        path = key / f"{label}.json"
        if not path.is_file():
            raise LookupError(f"the answer key {key} has no answer for {label}: {HOW_TO_MAKE_KEY}")
        record = json.loads(path.read_text())
    else:
        records = json.loads(key.read_text())
        if label not in records:
            raise LookupError(f"the answer key {key} has no answer for {label}: {HOW_TO_MAKE_KEY}")
        record = records[label]
    return {
        "rtol": record["rtol"],
        "atol": record["atol"],
        "values": {name: decode(encoded) for name, encoded in record["values"].items()},
        "encoded": record["values"],
    }


def decode(encoded: dict[str, Any]) -> Any:
    """The value an :func:`encode` record stands for (arrays as float64/int64 NumPy arrays)."""
    kind = encoded["kind"]
    if kind in ("bool", "int", "float", "str"):
        return {"bool": bool, "int": int, "float": float, "str": str}[kind](encoded["value"])
    if kind == "array":
        dtype = np.int64 if encoded["dtype"] == "int" else np.float64
        return np.asarray(encoded["value"], dtype=dtype).reshape(encoded["shape"])
    if kind == "sympy":
        return parse_srepr(encoded["value"])
    if kind == "sequence":
        return tuple(decode(item) for item in encoded["value"])
    raise ValueError(f"unknown answer kind {kind!r}")


def _sympy_names() -> dict[str, Any]:
    """What srepr writes: SymPy's classes (every loaded subclass of Basic, by name) and its
    singletons (pi, I, oo, true, ...)."""
    names: dict[str, Any] = {
        name: obj for name, obj in vars(sp).items() if isinstance(obj, sp.Basic)
    }
    pending = [sp.Basic]
    while pending:
        cls = pending.pop()
        names.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return names


def parse_srepr(text: str) -> sp.Basic:
    """Read back ``sympy.srepr`` output without running arbitrary code.

    Only calls of SymPy classes (and of their results, as in ``Function('f')(x)``), SymPy
    singletons, literals, lists and tuples are allowed; anything else raises ValueError.
    """
    tree = ast.parse(text, mode="eval")
    known, names = _sympy_names(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in known:
                raise ValueError(f"not a SymPy expression: {node.id!r} in {text[:80]!r}")
            names[node.id] = known[node.id]
        elif not isinstance(node, _SREPR_NODES):
            raise ValueError(f"not a SymPy expression: {type(node).__name__} in {text[:80]!r}")
    return eval(compile(tree, "<srepr>", "eval"), {"__builtins__": {}}, names)  # noqa: S307


_SREPR_NODES = (
    ast.Expression,
    ast.Call,
    ast.keyword,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Load,
    ast.UnaryOp,
    ast.USub,
)


def hint(encoded: dict[str, Any]) -> str:
    """What kind of value an answer is, for a student stub: "a number", "an integer array of
    shape (3,)", "a SymPy expression in a, t", ... (never the value itself)."""
    kind = encoded["kind"]
    if kind == "array":
        if not encoded["shape"]:  # a 0-d array or tensor: any single number will do
            return "an integer" if encoded["dtype"] == "int" else "a number"
        what = "an integer" if encoded["dtype"] == "int" else "a float"
        return f"{what} array of shape {tuple(encoded['shape'])}"
    if kind == "sympy":
        expression = parse_srepr(encoded["value"])
        symbols = ", ".join(sorted({s.name for s in expression.free_symbols}))
        what = "a SymPy matrix" if isinstance(expression, sp.MatrixBase) else "a SymPy expression"
        if isinstance(expression, sp.MatrixBase):
            what = f"a {expression.rows}x{expression.cols} SymPy matrix"
        return f"{what} in {symbols}" if symbols else f"{what} (a number, exact)"
    if kind == "sequence":
        items = encoded["value"]
        return f"a tuple of {len(items)}: " + "; ".join(hint(item) for item in items)
    return {
        "bool": "True or False",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
    }[kind]


# --- Checking a student's answer -------------------------------------------------------------

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"
SQUARED = "this is the square of the answer (a variance where a standard deviation belongs?)"
ROOTED = "this is the square root of the answer (a standard deviation where a variance belongs?)"


@dataclass(frozen=True)
class ValueCheck:
    """The verdict on one named value: ``status`` is correct, wrong or not attempted."""

    name: str
    status: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` found, value by value."""

    label: str
    values: tuple[ValueCheck, ...]

    @property
    def passed(self) -> bool:
        """Every value is correct."""
        return all(value.status == CORRECT for value in self.values)

    @property
    def attempted(self) -> bool:
        """At least one value was filled in."""
        return any(value.status != NOT_ATTEMPTED for value in self.values)

    @property
    def messages(self) -> dict[str, str]:
        return {value.name: value.message for value in self.values}

    @property
    def statuses(self) -> dict[str, str]:
        return {value.name: value.status for value in self.values}

    def __str__(self) -> str:
        return "\n".join([self.label, *(f"  {value}" for value in self.values)])


def check(label: str, **values: Any) -> CheckResult:
    """Compare a student's answer(s) to exercise ``label`` with the answer key; print and return
    the verdict per value (see :class:`CheckResult`).

    A value left as ``...`` is "not attempted", never an error, so a student notebook runs
    top to bottom before anything is filled in. Names must be those of the exercise's stub.

    Book: every chapter's exercises, in the student notebooks that ``make student`` writes.
    """
    recorded = reference(label)
    unknown = sorted(set(values) - set(recorded["values"]))
    if unknown:
        expected = ", ".join(recorded["values"])
        raise TypeError(
            f"{label} has no answer named {', '.join(unknown)}; its answers: {expected}"
        )
    tolerance = Tolerance(rtol=recorded["rtol"], atol=recorded["atol"])
    verdicts = []
    for name, encoded in recorded["encoded"].items():
        got = values.get(name, ...)
        if got is ...:
            verdicts.append(ValueCheck(name, NOT_ATTEMPTED, f"{NOT_ATTEMPTED} (still `...`)"))
            continue
        status, message = compare(got, encoded, tolerance)
        verdicts.append(ValueCheck(name, status, message))
    result = CheckResult(label, tuple(verdicts))
    print(result)
    log = os.environ.get(CHECK_LOG_ENV_VAR, "").strip()
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"label": label, "statuses": result.statuses}) + "\n")
    return result


@dataclass(frozen=True)
class Tolerance:
    """``|got - want| <= atol + rtol |want|``, elementwise."""

    rtol: float
    atol: float

    def allowed(self, want: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * np.abs(want)

    def close(self, got: np.ndarray, want: np.ndarray) -> bool:
        return bool(np.all(np.abs(got - want) <= self.allowed(want)))

    def __str__(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


def compare(got: Any, encoded: dict[str, Any], tolerance: Tolerance) -> tuple[str, str]:
    """``(status, message)`` for a filled-in value against one recorded answer."""
    kind = encoded["kind"]
    want = decode(encoded)
    if kind == "bool":
        return _compare_bool(got, want)
    if kind == "str":
        return _compare_str(got, want)
    if kind == "int":
        return _compare_int(got, want)
    if kind in ("float", "array"):
        return _compare_numbers(got, want, tolerance, scalar=kind == "float")
    if kind == "sympy":
        return _compare_sympy(got, want)
    return _compare_sequence(got, encoded, tolerance)


def _wrong(message: str) -> tuple[str, str]:
    return WRONG, f"{WRONG}: {message}"


def _detail(message: str) -> str:
    """A message without its leading "wrong: ", to nest it in another."""
    return message.removeprefix(f"{WRONG}: ")


def _type_name(value: Any) -> str:
    if isinstance(value, np.ndarray | torch.Tensor):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    return type(value).__name__


def _scalar(value: Any) -> Any:
    """A 0-d array or tensor, or a NumPy scalar, as a Python scalar; anything else unchanged."""
    if isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _compare_bool(got: Any, want: bool) -> tuple[str, str]:
    got = _scalar(got)
    if not isinstance(got, bool):
        return _wrong(f"expected True or False, got {_type_name(got)}")
    return (CORRECT, CORRECT) if got == want else _wrong("the other truth value is right")


def _compare_str(got: Any, want: str) -> tuple[str, str]:
    if not isinstance(got, str):
        return _wrong(f"expected a string, got {_type_name(got)}")
    if got == want:
        return CORRECT, CORRECT
    if got.strip().casefold() == want.strip().casefold():
        return _wrong("differs only in upper/lower case or surrounding spaces")
    return _wrong("not the expected string")


def _compare_int(got: Any, want: int) -> tuple[str, str]:
    got = _scalar(got)
    if isinstance(got, bool) or not isinstance(got, int | float):
        return _wrong(f"expected an integer, got {_type_name(got)}")
    if isinstance(got, float) and not got.is_integer():
        return _wrong(f"expected an integer, got the non-integer {got:g}")
    got = int(got)
    if got == want:
        return CORRECT, CORRECT
    if got == -want:
        return _wrong("the sign is flipped")
    if abs(got - want) == 1:
        return _wrong(f"off by one (1 too {'large' if got > want else 'small'})")
    return _wrong("not the expected integer")


# Constants a factor or an offset is named after, when it matches one (book-typical slips:
# a factor 2 or 1/2, pi, sqrt(2 pi), nats for bits, a dropped log(2 pi)/2).
_NAMED = {
    "2": 2.0,
    "3": 3.0,
    "4": 4.0,
    "10": 10.0,
    "pi": math.pi,
    "2 pi": 2 * math.pi,
    "sqrt(2)": math.sqrt(2),
    "sqrt(pi)": math.sqrt(math.pi),
    "sqrt(2 pi)": math.sqrt(2 * math.pi),
    "e": math.e,
    "log(2)": math.log(2),
    "log(2 pi)/2": math.log(2 * math.pi) / 2,
    "log(2 pi)": math.log(2 * math.pi),
}
_NAMED_OFFSETS = {"1": 1.0, "1/2": 0.5, "log(2)": math.log(2)} | {
    name: value for name, value in _NAMED.items() if name.startswith("log")
}


def _named_factor(ratio: float, tol: float) -> str | None:
    """``yours = answer x 2``-style text when ``ratio`` = yours / answer is a named constant."""
    for name, value in _NAMED.items():
        if abs(ratio - value) <= tol * value:
            return f"yours = answer x {name}{_FACTOR_NOTES.get(name, '')}"
        if abs(ratio - 1 / value) <= tol / value:
            return f"yours = answer / {name}{_FACTOR_NOTES.get(name, '')}"
    return None


_FACTOR_NOTES = {"log(2)": " (nats for bits, or bits for nats?)"}


def _named_offset(offset: float, tol: float) -> str | None:
    for name, value in _NAMED_OFFSETS.items():
        if abs(abs(offset) - value) <= tol:
            return f"yours = answer {'+' if offset > 0 else '-'} {name}"
    return None


def _as_array(got: Any) -> np.ndarray | str:
    """A float64 array of the student's numbers, or a message saying why there is none."""
    if isinstance(got, bool | np.bool_):
        return f"expected numbers, got {_type_name(got)}"
    if isinstance(got, sp.Basic) and not isinstance(got, sp.MatrixBase):
        if got.free_symbols:
            return f"expected numbers, got a SymPy expression in {got.free_symbols}"
        got = float(got)
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().numpy()
    try:
        array = np.asarray(got)
    except ValueError as error:  # ragged lists
        return f"expected numbers, got {_type_name(got)} ({error})"
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        return f"expected real numbers, got {_type_name(got)} with dtype {array.dtype}"
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        return "holds inf or nan"
    return array


def _compare_numbers(got: Any, want: Any, tol: Tolerance, scalar: bool) -> tuple[str, str]:
    array = _as_array(got)
    if isinstance(array, str):
        return _wrong(array)
    want = np.asarray(want, dtype=np.float64)
    if array.shape != want.shape:
        return _wrong(_shape_message(array, want, tol, scalar))
    if tol.close(array, want):
        return CORRECT, CORRECT
    return _wrong(_what_is_off(array, want, tol, scalar))


def _shape_message(got: np.ndarray, want: np.ndarray, tol: Tolerance, scalar: bool) -> str:
    if scalar:
        fix = "; use .item()" if got.size == 1 else ""
        return f"expected a single number, got an array of shape {got.shape}{fix}"
    shapes = f"shape {got.shape} where {want.shape} is expected"
    if got.ndim == 2 and got.T.shape == want.shape and tol.close(got.T, want):
        return f"{shapes}: the values are right but transposed"
    if got.size == want.size and tol.close(got.reshape(want.shape), want):
        return f"{shapes}: the values are right, reshape them"
    return shapes


def _what_is_off(got: np.ndarray, want: np.ndarray, tol: Tolerance, scalar: bool) -> str:
    """Name the slip that turns ``want`` into ``got``, if a simple one does; else how far off.

    Named slips first (a sign, a square or root, a transpose, a factor or offset that is a
    familiar constant), then "close", then any constant factor or offset (arrays only: for a
    single number every error is both), then the relative error.
    """
    if tol.close(-got, want) and np.abs(want).max() > 0:
        return "the sign is flipped"
    if (want >= 0).all() and tol.close(got, want**2):
        return SQUARED
    if (want >= 0).all() and (got >= 0).all() and tol.close(got**2, want):
        return ROOTED
    if got.ndim == 2 and got.shape[0] == got.shape[1] and tol.close(got.T, want):
        return "the values are right but transposed"
    biggest = float(np.abs(want).max())
    scale = float(np.vdot(got, want) / np.vdot(want, want)) if biggest else 0.0
    fits_scale = bool(scale) and tol.close(got, scale * want)
    offset = float(np.mean(got - want))
    fits_offset = tol.close(got - offset, want)
    relative = max(tol.rtol, 1e-9) + tol.atol / max(biggest, 1e-300)
    named = fits_scale and _named_factor(abs(scale), relative)
    if named:
        return f"off by a constant factor: {named}" + (
            "; and the sign is flipped" if scale < 0 else ""
        )
    named = fits_offset and _named_offset(offset, tol.atol + tol.rtol * biggest)
    if named:
        return f"off by an additive constant: {named}"
    worst = float(np.max(np.abs(got - want) / tol.allowed(want)))
    error = float(np.max(np.abs(got - want)) / max(biggest, 1e-300))
    if worst <= 10:
        return f"close but outside the tolerance: relative error {error:.2g} ({tol})"
    if fits_scale and not scalar:
        return f"off by a constant factor: yours = answer x {scale:.4g}"
    if fits_offset and not scalar:
        return f"off by an additive constant: yours = answer {offset:+.4g}"
    return f"relative error {error:.2g}"


def _symbols_by_name(expression: sp.Basic) -> dict[str, sp.Symbol]:
    return {symbol.name: symbol for symbol in expression.free_symbols}


def _proven_equal(left: sp.Basic, right: sp.Basic) -> bool:
    try:
        assert_equal(left, right)
    except AssertionError:
        return False
    return True


def _equal_at_points(left: sp.Basic, right: sp.Basic) -> bool | None:
    """Whether ``left - right`` vanishes at a few seeded random positive points (None: no
    point gave a finite value). For identities SymPy cannot simplify to zero."""
    symbols = sorted((left - right).free_symbols, key=str)
    rng = random.Random(14)
    finite = 0
    for _ in range(6):
        point = {s: sp.Float(rng.uniform(0.2, 3.0), 30) for s in symbols}
        try:
            a, b = (complex(side.evalf(30, subs=point)) for side in (left, right))
        except (TypeError, ValueError):
            continue
        if not (cmath.isfinite(a) and cmath.isfinite(b)):
            continue
        finite += 1
        if abs(a - b) > 1e-12 * (1 + abs(a) + abs(b)):
            return False
    return True if finite else None


def _compare_sympy(got: Any, want: sp.Basic) -> tuple[str, str]:
    if isinstance(got, sp.MatrixBase):
        got = sp.ImmutableMatrix(got)
    elif isinstance(got, int | float | np.integer | np.floating) and not isinstance(got, bool):
        got = sp.nsimplify(got) if isinstance(got, int | np.integer) else sp.Float(got)
    if not isinstance(got, sp.Basic):
        return _wrong(f"expected a SymPy expression, got {_type_name(got)}")
    if isinstance(want, sp.MatrixBase) or isinstance(got, sp.MatrixBase):
        shapes = [getattr(side, "shape", "a scalar") for side in (got, want)]
        if shapes[0] != shapes[1]:
            return _wrong(f"shape {shapes[0]} where {shapes[1]} is expected")
        entries = [_compare_sympy(g, w) for g, w in zip(got, want, strict=True)]
        wrong = [(i, message) for i, (status, message) in enumerate(entries) if status != CORRECT]
        if not wrong:
            return CORRECT, CORRECT
        index, message = wrong[0]
        row, col = divmod(index, want.cols)
        count = "1 entry differs" if len(wrong) == 1 else f"{len(wrong)} entries differ"
        return _wrong(f"{count}; entry ({row}, {col}): {_detail(message)}")
    # The reference's symbols, assumptions included, stand in for the student's of the same name.
    reference_symbols = _symbols_by_name(want)
    got = got.xreplace(
        {s: reference_symbols[s.name] for s in got.free_symbols if s.name in reference_symbols}
    )
    if _proven_equal(got, want):
        return CORRECT, CORRECT
    extra = sorted(set(_symbols_by_name(got)) - set(reference_symbols))
    missing = sorted(set(reference_symbols) - set(_symbols_by_name(got)))
    if (extra or missing) and not _equal_at_points(got, want):
        parts = []
        if extra:
            parts.append(f"uses {', '.join(extra)}, which the answer does not")
        if missing:
            parts.append(f"lacks {', '.join(missing)}, which the answer uses")
        return _wrong("wrong symbols: " + "; ".join(parts))
    if _equal_at_points(got, want):
        return (
            CORRECT,
            f"{CORRECT} (equal at random points; SymPy could not simplify the difference)",
        )
    return _wrong(_symbolic_slip(got, want))


def _symbolic_slip(got: sp.Basic, want: sp.Basic) -> str:
    if want != 0 and _proven_equal(-got, want):
        return "the sign is flipped"
    if _proven_equal(got, want**2):
        return SQUARED
    if _proven_equal(got**2, want):
        return ROOTED
    if want != 0:
        ratio = sp.simplify(got / want)
        if not ratio.free_symbols:
            return f"off by a constant factor: yours = answer x {ratio}"
        if sp.count_ops(ratio) <= 4:
            return f"off by a factor: yours = answer x {ratio}"
    difference = sp.simplify(got - want)
    if not difference.free_symbols:
        return f"off by an additive constant: yours = answer + {difference}"
    if sp.count_ops(difference) <= 4:
        return f"off by an additive term: yours = answer + {difference}"
    return "simplify(yours - answer) is not 0"


def _compare_sequence(got: Any, encoded: dict[str, Any], tol: Tolerance) -> tuple[str, str]:
    items = encoded["value"]
    if isinstance(got, np.ndarray | torch.Tensor) or not isinstance(got, tuple | list):
        return _wrong(f"expected a tuple of {len(items)} values, got {_type_name(got)}")
    if len(got) != len(items):
        return _wrong(f"expected {len(items)} values, got {len(got)}")
    if all(item is ... for item in got):
        return NOT_ATTEMPTED, f"{NOT_ATTEMPTED} (still `...`)"
    problems = []
    for index, (item, item_encoded) in enumerate(zip(got, items, strict=True)):
        if item is ...:
            problems.append(f"[{index}] not attempted")
            continue
        status, message = compare(item, item_encoded, tol)
        if status != CORRECT:
            problems.append(f"[{index}] {_detail(message)}")
    return (CORRECT, CORRECT) if not problems else _wrong("; ".join(problems))
