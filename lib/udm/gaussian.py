"""Diagonal Gaussians: log-densities, KL divergences and reparameterized sampling.

Every function takes a **log-variance** ``log_var`` rather than a standard deviation
or a variance: a network can output any real number for it, and ``exp`` keeps the
variance positive. Arguments are batch first with any trailing shape, ``(B, D)``
points and ``(B, C, H, W)`` images alike; per-example results have shape ``(B,)``
(the sum over every non-batch dimension, since the dimensions are independent).

All tensor arguments of one call must have the same shape: nothing broadcasts. For
a variance shared by every coordinate, expand it yourself, for example
``log_var.expand_as(mean)``, so that the intent is visible at the call site. They must be
finite: a NaN or infinite mean or log-variance is an error that names the argument.
"""

from __future__ import annotations

import math

import torch

from udm.validate import check_finite, check_same_device, check_same_shape, check_tensor

_LOG_2PI = math.log(2.0 * math.pi)


def _check_alike(**tensors: object) -> list[torch.Tensor]:
    """Check that every argument is a floating tensor with a batch axis, all of one shape."""
    checked = [check_tensor(name, t, min_ndim=1) for name, t in tensors.items()]
    names = list(tensors)
    for name, t in zip(names[1:], checked[1:], strict=True):
        check_same_shape(names[0], checked[0], name, t)
        check_same_device(names[0], checked[0], name, t)
    for name, t in zip(names, checked, strict=True):
        check_finite(name, t)
    return checked


def _sum_per_example(values: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first: shape ``(B, ...)`` to ``(B,)``."""
    return values.reshape(values.shape[0], -1).sum(dim=1)


def diag_gaussian_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor
) -> torch.Tensor:
    """Log-density of ``x`` under N(mean, diag(exp(log_var))), one value per example.

    Computes ``-1/2 * sum(log(2 pi) + log_var + (x - mean)**2 / exp(log_var))`` over
    every non-batch dimension. ``x``, ``mean`` and ``log_var`` must have the same
    shape ``(B, ...)``; the result has shape ``(B,)``.

    Book: eq. (eq-gaussian-log-density), Chapter 3.
    """
    x, mean, log_var = _check_alike(x=x, mean=mean, log_var=log_var)
    per_coordinate = -0.5 * (_LOG_2PI + log_var + (x - mean).square() * torch.exp(-log_var))
    return _sum_per_example(per_coordinate)


def kl_diag_gaussians(
    mean_q: torch.Tensor,
    log_var_q: torch.Tensor,
    mean_p: torch.Tensor,
    log_var_p: torch.Tensor,
) -> torch.Tensor:
    """KL(q || p) between two diagonal Gaussians, one value per example.

    With variances ``v_q = exp(log_var_q)`` and ``v_p = exp(log_var_p)``, each
    coordinate contributes ``1/2 * (log(v_p / v_q) + (v_q + (mean_q - mean_p)**2) / v_p - 1)``;
    the result sums these over every non-batch dimension and has shape ``(B,)``.
    All four arguments must have the same shape ``(B, ...)``.

    Book: eq. (eq-kl-diag-gaussians), Chapter 3.
    """
    mean_q, log_var_q, mean_p, log_var_p = _check_alike(
        mean_q=mean_q, log_var_q=log_var_q, mean_p=mean_p, log_var_p=log_var_p
    )
    per_coordinate = 0.5 * (
        log_var_p
        - log_var_q
        + (torch.exp(log_var_q) + (mean_q - mean_p).square()) * torch.exp(-log_var_p)
        - 1.0
    )
    return _sum_per_example(per_coordinate)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(log_var))) || N(0, I)), one value per example.

    Computes ``-1/2 * sum(1 + log_var - mean**2 - exp(log_var))`` over every non-batch
    dimension: the VAE's prior term. ``mean`` and ``log_var`` must have the same shape
    ``(B, ...)``; the result has shape ``(B,)``.

    Book: eq. (eq-kl-std-normal), Chapter 3.
    """
    mean, log_var = _check_alike(mean=mean, log_var=log_var)
    per_coordinate = -0.5 * (1.0 + log_var - mean.square() - torch.exp(log_var))
    return _sum_per_example(per_coordinate)


def sample_diag_gaussian(
    mean: torch.Tensor,
    log_var: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one reparameterized sample ``mean + exp(log_var / 2) * eps``, eps ~ N(0, I).

    The noise ``eps`` is drawn independently of the parameters, so gradients flow from
    the sample to both ``mean`` and ``log_var`` (the reparameterization trick). Pass a
    seeded ``torch.Generator`` (on the device of ``mean``) for reproducible draws. The
    sample has the shape of ``mean``, which must equal the shape of ``log_var``.

    Book: eq. (eq-reparameterization), Chapter 3.
    """
    mean, log_var = _check_alike(mean=mean, log_var=log_var)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(0.5 * log_var) * eps
