"""Argument checks shared by every ``udm`` module.

Each check raises an error that names the offending argument and says what was
expected, so a reader who passes a wrong shape learns which one and why instead
of meeting a broadcasting surprise three functions later.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch


def check_tensor(
    name: str,
    x: object,
    *,
    shape: Sequence[int | None] | None = None,
    min_ndim: int | None = None,
    floating: bool = True,
) -> torch.Tensor:
    """Return ``x`` unchanged after checking that it is a tensor of the expected kind.

    ``shape`` lists the expected sizes, ``None`` meaning "any size" for that axis.
    ``min_ndim`` asks for at least that many axes (for "batch first, any trailing
    shape" arguments). ``floating`` asks for a floating-point dtype.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")
    if shape is not None:
        ok = x.ndim == len(shape) and all(
            want is None or got == want for got, want in zip(x.shape, shape, strict=True)
        )
        if not ok:
            pretty = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {pretty}, got {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    return x


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise unless ``a`` and ``b`` have identical shapes (no silent broadcasting)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_same_device(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise unless ``a`` and ``b`` live on the same device."""
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}")


def check_batch_vector(name: str, v: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Check a per-example vector (for example timesteps) of shape ``(batch_size,)``."""
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.shape != (batch_size,):
        raise ValueError(
            f"{name} must have shape ({batch_size},) to match the batch, got {tuple(v.shape)}"
        )
    return v


def check_positive(name: str, value: float) -> float:
    """Raise unless the number ``value`` is finite and strictly positive."""
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def check_int_at_least(name: str, value: int, minimum: int) -> int:
    """Raise unless ``value`` is an integer no smaller than ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def per_example(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example coefficient of shape ``(B,)`` to ``(B, 1, ..., 1)``.

    The result broadcasts against ``like`` of shape ``(B, *rest)``, whatever ``rest``
    is: the same code serves 2-D points of shape ``(B, 2)`` and images of shape
    ``(B, C, H, W)``.
    """
    check_batch_vector("coef", coef, like.shape[0])
    return coef.reshape(coef.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise unless every value of the tensor ``x`` is finite (no NaN, no +-inf).

    This is the book's NaN policy: values are checked where data *enter* a computation
    (training data, noise, a sampler's starting point) and where results *leave* it (a
    sampler's final state, the training loop's loss), not at every step in between.
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = x[~finite]
        kinds = sorted(
            {"nan" if v != v else ("inf" if v > 0 else "-inf") for v in bad[:64].tolist()}
        )
        raise ValueError(
            f"{name} must be finite, got {bad.numel()} of {x.numel()} values that are "
            f"{' / '.join(kinds)}"
        )
    return x


def check_real(name: str, value: object) -> float:
    """Return ``value`` as a float after checking that it is a real number (not a bool).

    Python and NumPy numbers are accepted; strings, ``None`` and tensors are not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    return float(value)


def check_same_dtype(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise unless ``a`` and ``b`` have the same dtype (no silent float32/float64 upcast)."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype} "
            "(convert one of them explicitly)"
        )


def check_floating_dtype(name: str, dtype: object) -> torch.dtype:
    """Raise unless ``dtype`` is a floating-point torch dtype (float16/32/64, bfloat16)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch dtype, got {dtype!r}")
    return dtype
