"""The argument checks every udm module relies on."""

import numpy as np
import pytest
import torch

from udm.validate import (
    check_batch_vector,
    check_int_at_least,
    check_positive,
    check_same_shape,
    check_tensor,
    per_example,
)


def test_check_tensor_names_the_argument() -> None:
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        check_tensor("x0", [1.0, 2.0])
    with pytest.raises(TypeError, match="x0 must have a floating-point dtype"):
        check_tensor("x0", torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x0 must have shape \(\*, 2\), got \(4, 3\)"):
        check_tensor("x0", torch.zeros(4, 3), shape=(None, 2))
    with pytest.raises(ValueError, match="x0 must have at least 2 dimensions"):
        check_tensor("x0", torch.zeros(4), min_ndim=2)
    x = torch.zeros(4, 2)
    assert check_tensor("x0", x, shape=(None, 2), min_ndim=2) is x


def test_shape_and_batch_checks() -> None:
    with pytest.raises(ValueError, match="mean and log_var must have the same shape"):
        check_same_shape("mean", torch.zeros(2, 3), "log_var", torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"t must have shape \(5,\)"):
        check_batch_vector("t", torch.zeros(4), 5)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        check_positive("lr", 0.0)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        check_positive("lr", float("nan"))
    with pytest.raises(TypeError, match="steps must be an int"):
        check_int_at_least("steps", 2.0, 1)
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        check_int_at_least("steps", 0, 1)


@pytest.mark.parametrize("shape", [(3, 2), (3, 1, 8, 8), (3,)])
def test_per_example_broadcasts_along_the_batch_only(shape: tuple[int, ...]) -> None:
    x = torch.ones(shape)
    coef = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    scaled = per_example(coef, x) * x
    assert scaled.shape == x.shape and scaled.dtype == x.dtype
    for i in range(3):
        assert torch.all(scaled[i] == coef[i].item())
    with pytest.raises(ValueError, match="coef must have shape"):
        per_example(torch.ones(2), x)


def test_finite_real_and_dtype_checks() -> None:
    from udm.validate import check_finite, check_floating_dtype, check_real, check_same_dtype

    with pytest.raises(
        ValueError, match=r"x0 must be finite, got 2 of 3 values that are inf / nan"
    ):
        check_finite("x0", torch.tensor([1.0, float("inf"), float("nan")]))
    with pytest.raises(TypeError, match="beta_start must be a real number, got str"):
        check_real("beta_start", "0.1")
    with pytest.raises(TypeError, match="flag must be a real number"):
        check_real("flag", True)
    assert check_real("beta", np.float32(0.5)) == 0.5
    with pytest.raises(TypeError, match="a and b must have the same dtype"):
        check_same_dtype("a", torch.zeros(1), "b", torch.zeros(1, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype must be a floating-point torch dtype"):
        check_floating_dtype("dtype", torch.long)
