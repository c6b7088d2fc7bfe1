"""Small networks used across the chapters: an MLP, a sinusoidal time embedding, denoisers.

The book's toy data are 2-D points and flattened 8x8 digits, so the networks here are
small enough (tens of thousands of parameters) to train on a laptop CPU in seconds.
:class:`TimeConditionedMLP` is the network behind most denoisers, noise predictors and score
models in the book; :class:`SmallUNet`, a convolutional U-Net with the same flat interface, is
the image denoiser of the chapter on latent diffusion. What a network is trained to output
is decided by the chapter's loss, not by the network.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from udm.validate import check_batch_vector, check_int_at_least, check_positive, check_tensor


def _check_dtype(x: Tensor, module: nn.Module) -> None:
    """Raise unless ``x`` has the dtype of the module's weights (no silent up- or downcast)."""
    weight = next(module.parameters())
    if x.dtype != weight.dtype:
        raise TypeError(
            f"x has dtype {x.dtype} but the network's weights are {weight.dtype}: convert one "
            "of them (net.double() or x.float())"
        )


def _check_real(name: str, t: Tensor) -> None:
    """Raise unless the tensor ``t`` holds real numbers (integer or floating, not bool)."""
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers (int or float), got {t.dtype}")


class MLP(nn.Module):
    """A plain multilayer perceptron mapping ``(B, in_dim)`` to ``(B, out_dim)``.

    ``depth`` is the number of hidden layers, each ``hidden`` units wide and followed
    by ``activation``; the output layer is linear.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 128,
        depth: int = 3,
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        check_int_at_least("in_dim", in_dim, 1)
        check_int_at_least("out_dim", out_dim, 1)
        check_int_at_least("hidden", hidden, 1)
        check_int_at_least("depth", depth, 1)
        self.in_dim = in_dim
        self.out_dim = out_dim
        widths = [in_dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(width_in, width_out), activation()]
        layers.append(nn.Linear(hidden, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network to a batch ``x`` of shape ``(B, in_dim)``."""
        check_tensor("x", x, shape=(None, self.in_dim))
        _check_dtype(x, self)
        return self.layers(x)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sin/cos features of timesteps: ``t`` of shape ``(B,)`` to ``(B, dim)``.

    Feature pair ``k`` (for ``k = 0, ..., dim/2 - 1``) is ``cos(w_k t)`` and ``sin(w_k t)``
    with frequencies ``w_k = max_period ** (-k / (dim/2))`` running geometrically from 1
    down to about ``1 / max_period``. Nearby timesteps get nearby features, distant ones
    differ in the fast features, and every feature lies in ``[-1, 1]``. The periods span
    ``2 pi`` to ``2 pi * max_period``, so ``t`` should range over tens to thousands: use
    integer steps ``0, ..., T-1`` directly and multiply a continuous time in ``[0, 1]``
    by about 1000 first (``TimeConditionedMLP`` has ``time_scale`` for that).
    """

    def __init__(self, dim: int, max_period: float = 10_000) -> None:
        super().__init__()
        check_int_at_least("dim", dim, 2)
        if dim % 2:
            raise ValueError(f"dim must be even (one sin and one cos per frequency), got {dim}")
        check_positive("max_period", max_period)
        self.dim = dim
        half = dim // 2
        frequencies = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float64) / half
        )
        # A buffer follows the module to its device; not persistent, as it is recomputed here.
        self.register_buffer("frequencies", frequencies.float(), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Embed timesteps ``t`` of shape ``(B,)`` (integer or float) as ``(B, dim)`` features."""
        check_tensor("t", t, shape=(None,), floating=False)
        _check_real("t", t)
        angles = t.to(self.frequencies.dtype)[:, None] * self.frequencies[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class _TimeAndLabelConditioned(nn.Module):
    """What the book's denoiser networks share: a time embedding and an optional label embedding.

    ``time_embed`` is a :class:`SinusoidalTimeEmbedding` followed by a small MLP of width
    ``time_dim``; ``label_embed`` has ``n_classes + 1`` rows, the last one the null label
    ("no label"), and its vector is added to the time embedding.
    """

    def __init__(self, time_dim: int, n_classes: int | None, time_scale: float) -> None:
        super().__init__()
        check_positive("time_scale", time_scale)
        if n_classes is not None:
            check_int_at_least("n_classes", n_classes, 1)
        self.n_classes = n_classes
        self.time_scale = time_scale
        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        self.label_embed = nn.Embedding(n_classes + 1, time_dim) if n_classes is not None else None

    def _embedding(self, t: Tensor, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Time embedding plus label embedding, shape (B, time_dim); checks t and y."""
        check_batch_vector("t", t, batch)
        _check_real("t", t)
        embedding = self.time_embed(t * self.time_scale)
        if self.label_embed is None:
            if y is not None:
                raise ValueError("y was given but this network was built with n_classes=None")
            return embedding
        if y is None:
            y = torch.full((batch,), self.n_classes, dtype=torch.int64, device=device)
        check_batch_vector("y", y, batch)
        if y.dtype != torch.int64:
            raise TypeError(f"y must have dtype torch.int64, got {y.dtype}")
        if y.numel() and (y.min() < 0 or y.max() > self.n_classes):
            raise ValueError(
                f"y must hold labels in 0..{self.n_classes} ({self.n_classes} = no label), "
                f"got values from {y.min().item()} to {y.max().item()}"
            )
        return embedding + self.label_embed(y)


class TimeConditionedMLP(_TimeAndLabelConditioned):
    """A denoiser network ``f(x_t, t[, y]) -> (B, data_dim)`` for flattened data.

    The timestep is embedded by :class:`SinusoidalTimeEmbedding` (after multiplying by
    ``time_scale``) followed by a small MLP; the result is concatenated with ``x_t``
    and fed to an :class:`MLP` of ``depth`` hidden SiLU layers of width ``hidden``.

    With ``n_classes`` set, a class label ``y`` in ``0, ..., n_classes - 1`` is embedded by
    ``nn.Embedding`` and added to the time embedding. The extra index ``n_classes``
    is the "null" label meaning *no label*: classifier-free guidance trains on it by
    replacing some labels with ``n_classes``, and calling ``forward`` without ``y``
    uses it for the whole batch (the unconditional model).

    The defaults (width 128, depth 3, time embedding 32) give about 40k parameters for
    2-D data, which trains on a CPU in seconds.
    """

    def __init__(
        self,
        data_dim: int,
        hidden: int = 128,
        depth: int = 3,
        time_dim: int = 32,
        n_classes: int | None = None,
        time_scale: float = 1.0,
    ) -> None:
        check_int_at_least("data_dim", data_dim, 1)
        super().__init__(time_dim, n_classes, time_scale)
        self.data_dim = data_dim
        self.net = MLP(data_dim + time_dim, data_dim, hidden=hidden, depth=depth)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the network to ``x`` of shape ``(B, data_dim)`` at times ``t``, shape ``(B,)``.

        ``t`` is the path's time (any real dtype); it enters as ``t * time_scale``, so a
        network for a T-step discrete path (times k / T) built with ``time_scale=T`` sees the
        step numbers k. ``x`` must have the dtype of the weights.

        ``y`` (shape ``(B,)``, int64, values in ``0, ..., n_classes``) is the class label;
        leave it out (or pass ``n_classes``) for "no label". It is an error to pass
        ``y`` to a network built without ``n_classes``.
        """
        check_tensor("x", x, shape=(None, self.data_dim))
        _check_dtype(x, self)
        embedding = self._embedding(t, y, x.shape[0], x.device)
        return self.net(torch.cat([x, embedding], dim=1))


# ------------------------------------------------------------------ a small U-Net
def _groups(channels: int) -> int:
    """Groups for GroupNorm: 8 where the channels divide evenly, else 1 (layer norm)."""
    return 8 if channels % 8 == 0 else 1


class _ResidualBlock(nn.Module):
    """norm -> SiLU -> conv, add the embedding per channel, norm -> SiLU -> conv, plus a skip."""

    def __init__(self, channels_in: int, channels_out: int, embed_dim: int) -> None:
        super().__init__()
        self.norm_in = nn.GroupNorm(_groups(channels_in), channels_in)
        self.conv_in = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.embed = nn.Linear(embed_dim, channels_out)
        self.norm_out = nn.GroupNorm(_groups(channels_out), channels_out)
        self.conv_out = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = (
            nn.Identity()
            if channels_in == channels_out
            else nn.Conv2d(channels_in, channels_out, 1)
        )

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        out = self.conv_in(nn.functional.silu(self.norm_in(h)))
        out = out + self.embed(embedding)[:, :, None, None]
        out = self.conv_out(nn.functional.silu(self.norm_out(out)))
        return out + self.skip(h)


class SmallUNet(_TimeAndLabelConditioned):
    """A two-level U-Net for small images, with the flat interface of :class:`TimeConditionedMLP`.

    ``forward(x, t[, y])`` takes flattened images ``x`` of shape ``(B, C*H*W)`` (what
    :class:`udm.parameterizations.Denoiser` passes) and returns the same shape. Inside,
    ``x`` is viewed as ``(B, C, H, W)`` (``image_shape``, H and W even) and goes through

    - a 3x3 convolution to ``width`` channels and a residual block at full resolution,
    - a stride-2 convolution to ``2 * width`` channels at half resolution, two residual blocks,
    - nearest-neighbour upsampling and a 3x3 convolution back to ``width`` channels, joined
      (concatenated) with the full-resolution features saved on the way down (the U-Net's
      skip connection), one residual block, and a 3x3 convolution to ``C`` channels.

    Every residual block adds a per-channel shift computed from the time embedding
    (:class:`SinusoidalTimeEmbedding` of ``t * time_scale`` and a small MLP), plus the label
    embedding when ``n_classes`` is set; the label ``n_classes`` means *no label*, exactly as
    in :class:`TimeConditionedMLP`, so :func:`udm.guidance.cfg_training_loss` and
    :class:`udm.guidance.ClassifierFreeGuidance` use either network. The output convolution
    starts at zero, so an untrained network outputs 0. Convolutions share their weights
    across positions, which is what an MLP on flattened pixels cannot do.

    Book: the convolutional denoiser of the Chapter on latent diffusion and images.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int] = (1, 8, 8),
        width: int = 32,
        time_dim: int = 32,
        n_classes: int | None = None,
        time_scale: float = 1.0,
    ) -> None:
        if not (
            isinstance(image_shape, tuple)
            and len(image_shape) == 3
            and all(isinstance(n, int) and n >= 1 for n in image_shape)
        ):
            raise ValueError(f"image_shape must be a tuple (C, H, W) of ints, got {image_shape!r}")
        if image_shape[1] % 2 or image_shape[2] % 2:
            raise ValueError(
                f"image_shape must have even H and W (one downsampling), got {image_shape}"
            )
        check_int_at_least("width", width, 1)
        super().__init__(time_dim, n_classes, time_scale)
        channels = image_shape[0]
        self.image_shape = image_shape
        self.data_dim = math.prod(image_shape)
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        self.down_block = _ResidualBlock(width, width, time_dim)
        self.downsample = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.middle = nn.ModuleList(
            [_ResidualBlock(2 * width, 2 * width, time_dim) for _ in range(2)]
        )
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * width, width, 3, padding=1)
        )
        self.up_block = _ResidualBlock(2 * width, width, time_dim)
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(width), width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Apply the U-Net to flattened images ``x`` (B, C*H*W) at times ``t`` (B,); see the class.

        ``x`` must have the dtype of the weights; ``y`` (int64, (B,)) as in
        :meth:`TimeConditionedMLP.forward`.
        """
        check_tensor("x", x, shape=(None, self.data_dim))
        _check_dtype(x, self)
        batch = x.shape[0]
        embedding = self._embedding(t, y, batch, x.device).to(x.dtype)
        h = self.stem(x.view(batch, *self.image_shape))
        full = self.down_block(h, embedding)
        h = self.downsample(full)
        for block in self.middle:
            h = block(h, embedding)
        h = self.up_block(torch.cat([self.upsample(h), full], dim=1), embedding)
        return self.head(h).reshape(batch, self.data_dim)
