"""Latent diffusion's glue: an autoencoder's latents, scaled to unit variance, and back.

A latent diffusion model runs an ordinary diffusion model on z = scale * E(x), the codes of a
pretrained encoder E, and decodes its samples with D(z / scale). The one number ``scale``
matters because a noising path x_t = a(t) z + s(t) eps assumes data of about unit variance:
latents of standard deviation sigma_z move every log-SNR by 2 log sigma_z
(eq. (eq-latent-log-snr-shift)). Stable Diffusion's autoencoder has sigma_z of about 5.5 and
its scale factor 0.18215 is 1 / sigma_z, fitted once on training latents as here.

Book: the Chapter on latent diffusion and images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from udm.validate import check_finite, check_positive, check_tensor

#: ``encode(x) -> z`` (B, ...) -> (B, latent_dim) and ``decode(z) -> x``, for instance a VAE's
#: encoder mean and decoder mean.
Codec = Callable[[Tensor], Tensor]


def latent_scale(latents: Tensor) -> float:
    """1 / (the standard deviation of all entries of ``latents``): it gives them unit variance.

    One number for all coordinates, as Stable Diffusion's scale factor: a per-coordinate
    factor would also whiten the latents and change which directions the noise hides first.

    Book: eq. (eq-latent-scale), Chapter on latent diffusion and images.
    """
    check_tensor("latents", latents, min_ndim=2)
    check_finite("latents", latents)
    if latents.numel() < 2:
        raise ValueError("latents must hold at least two numbers to have a standard deviation")
    std = latents.detach().double().std().item()
    if std == 0:
        raise ValueError("latents have zero standard deviation: the encoder is constant")
    return 1.0 / std


class ScaledLatents:
    """An encoder and a decoder with a fixed scale: z = scale * encode(x), x = decode(z / scale).

    ``encode`` and ``decode`` are frozen functions (run without gradients); ``scale`` is a
    positive float, usually :func:`latent_scale` of the training latents, or 1.0 for the
    unscaled latents.

    Book: eq. (eq-latent-scale), Chapter on latent diffusion and images.
    """

    def __init__(self, encode: Codec, decode: Codec, scale: float) -> None:
        if not callable(encode) or not callable(decode):
            raise TypeError("encode and decode must be callables mapping tensors to tensors")
        self._encode, self._decode = encode, decode
        self.scale = check_positive("scale", float(scale))

    def __repr__(self) -> str:
        return f"ScaledLatents(scale={self.scale:.4g})"

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """The diffusion model's data: scale * encode(x), shape (B, latent_dim)."""
        check_tensor("x", x, min_ndim=2)
        z = self._encode(x)
        check_tensor("encode(x)", z, shape=(x.shape[0], None))
        return z * self.scale

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """Images from the diffusion model's samples: decode(z / scale)."""
        check_tensor("z", z, shape=(None, None))
        check_finite("z", z)
        return self._decode(z / self.scale)
