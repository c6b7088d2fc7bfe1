"""Tests for udm.latent: the latent scale and the scaled encoder/decoder pair."""

import pytest
import torch

from udm.latent import ScaledLatents, latent_scale


def test_latent_scale_gives_unit_standard_deviation():
    z = 3.7 * torch.randn(2000, 4, generator=torch.Generator().manual_seed(0)) + 1.0
    scale = latent_scale(z)
    assert (z * scale).std().item() == pytest.approx(1.0, rel=1e-6)
    assert scale == pytest.approx(1 / 3.7, rel=0.05)


def test_scaled_latents_round_trip_through_the_codec():
    weight = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    encode = lambda x: x.flatten(1) @ weight  # noqa: E731
    decode = lambda z: (z @ torch.linalg.pinv(weight)).view(-1, 1, 8, 8)  # noqa: E731
    codec = ScaledLatents(encode, decode, scale=0.25)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    z = codec.encode(x)
    assert torch.allclose(z, 0.25 * encode(x))
    assert torch.allclose(codec.decode(z), decode(encode(x)))  # the scale cancels exactly
    assert "0.25" in repr(codec)


def test_latent_glue_rejects_bad_input():
    with pytest.raises(ValueError, match="zero standard deviation"):
        latent_scale(torch.ones(10, 2))
    with pytest.raises(ValueError, match="latents"):
        latent_scale(torch.ones(3))
    with pytest.raises(ValueError, match="scale"):
        ScaledLatents(lambda x: x, lambda z: z, scale=0.0)
    with pytest.raises(TypeError, match="callables"):
        ScaledLatents(None, lambda z: z, scale=1.0)
    codec = ScaledLatents(lambda x: x.flatten(1)[:, :2], lambda z: z, scale=1.0)
    with pytest.raises(ValueError, match="z must have shape"):
        codec.decode(torch.ones(3))
