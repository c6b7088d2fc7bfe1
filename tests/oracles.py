"""Exact "networks" for the tests: a Gaussian mixture's exact target of each prediction kind.

An oracle network of kind k maps (x_flat, t) to the exact E[target_k | x_t] of the mixture
on a path: the exact posterior mean E[x_0 | x_t] (udm.parameterizations.MixtureDenoiser,
itself checked against importance sampling in test_toy.py) converted to kind k. Wrapped in
a Denoiser of kind k, it must give back the exact denoiser, whatever k and the path.
"""

from __future__ import annotations

import torch

from udm.parameterizations import Denoiser, MixtureDenoiser, convert
from udm.paths import Path
from udm.toy import GaussianMixture


def oracle_net(mixture: GaussianMixture, path: Path, prediction: str):
    """net(x_flat, t) -> the exact target of kind ``prediction`` (t a tensor (B,))."""
    exact = MixtureDenoiser(mixture, path)

    def net(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        times = t  # the Denoiser passes the exact time, a float64 vector
        if bool((times == times[0]).all()):  # one time for the batch, as samplers call it
            times = float(times[0])
        x0 = exact(x, times)
        return convert(x0, x, times, path, "x0", prediction)

    return net


def oracle_denoiser(mixture: GaussianMixture, path: Path, prediction: str) -> Denoiser:
    """A Denoiser of kind ``prediction`` around the exact network of that kind."""
    return Denoiser(oracle_net(mixture, path, prediction), path, prediction)
