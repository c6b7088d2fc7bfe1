"""Tests for udm.nets: shapes, the time embedding's formula, gradients, and input checks."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from udm.nets import MLP, SinusoidalTimeEmbedding, TimeConditionedMLP
from udm.train import train


def test_mlp_shape_and_depth():
    model = MLP(5, 3, hidden=16, depth=4)
    assert model(torch.randn(7, 5)).shape == (7, 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 + 1  # depth hidden layers, then the output layer
    # Parameter count from the layer widths 5 -> 16 -> 16 -> 16 -> 16 -> 3.
    widths = [5, 16, 16, 16, 16, 3]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert sum(p.numel() for p in model.parameters()) == expected
    assert (
        sum(isinstance(m, nn.Tanh) for m in MLP(2, 2, depth=2, activation=nn.Tanh).modules()) == 2
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_dim": 0}, "in_dim"),
        ({"out_dim": 0}, "out_dim"),
        ({"hidden": 0}, "hidden"),
        ({"depth": 0}, "depth"),
    ],
)
def test_mlp_validates_dims(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**({"in_dim": 2, "out_dim": 2} | kwargs))


def test_mlp_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="x must have shape"):
        MLP(3, 1)(torch.randn(4, 2))


def test_time_embedding_matches_formula():
    dim, max_period = 8, 10_000
    t = np.array([0, 1, 17, 999])
    w = max_period ** (-np.arange(dim // 2) / (dim // 2))
    expected = np.concatenate([np.cos(t[:, None] * w), np.sin(t[:, None] * w)], axis=1)
    got = SinusoidalTimeEmbedding(dim)(torch.tensor(t))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # Integer and float timesteps give the same features.
    torch.testing.assert_close(
        SinusoidalTimeEmbedding(dim)(torch.tensor(t, dtype=torch.float32)), got
    )


def test_time_embedding_bounded_and_distinct():
    embed = SinusoidalTimeEmbedding(32)
    features = embed(torch.arange(1000))
    assert features.shape == (1000, 32)
    assert features.abs().max() <= 1.0
    assert torch.allclose(features.norm(dim=1), torch.full((1000,), math.sqrt(16)))
    distances = torch.cdist(features, features) + torch.eye(1000) * 1e9
    assert distances.min() > 0.1  # no two of the 1000 timesteps share an embedding


def test_time_embedding_validates():
    with pytest.raises(ValueError, match="dim must be even"):
        SinusoidalTimeEmbedding(7)
    with pytest.raises(ValueError, match="dim must be at least 2"):
        SinusoidalTimeEmbedding(0)
    with pytest.raises(ValueError, match="max_period"):
        SinusoidalTimeEmbedding(8, max_period=0)
    with pytest.raises(ValueError, match="t must have shape"):
        SinusoidalTimeEmbedding(8)(torch.zeros(4, 1))
    with pytest.raises(TypeError, match="t must hold real numbers"):
        SinusoidalTimeEmbedding(8)(torch.zeros(4, dtype=torch.bool))


@pytest.mark.parametrize("data_dim", [2, 64])
def test_time_conditioned_mlp_shapes(data_dim):
    model = TimeConditionedMLP(data_dim, n_classes=10)
    x, t = torch.randn(5, data_dim), torch.randint(0, 1000, (5,))
    assert model(x, t).shape == (5, data_dim)
    assert model(x, t, torch.randint(0, 11, (5,))).shape == (5, data_dim)


def test_two_dimensional_model_is_small():
    n_params = sum(p.numel() for p in TimeConditionedMLP(2).parameters())
    assert 30_000 <= n_params <= 70_000


def test_gradients_reach_every_parameter_and_the_input():
    torch.manual_seed(0)
    model = TimeConditionedMLP(2, n_classes=3)
    x = torch.randn(6, 2, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])  # every row of the label table, null label included
    model(x, torch.rand(6) * 100, y).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_output_depends_on_time_and_label():
    torch.manual_seed(0)
    model = TimeConditionedMLP(2, n_classes=3)
    x = torch.randn(4, 2)
    t = torch.full((4,), 10)
    y = torch.zeros(4, dtype=torch.int64)
    assert not torch.allclose(model(x, t, y), model(x, t + 200, y))
    assert not torch.allclose(model(x, t, y), model(x, t, y + 1))


def test_missing_label_means_null_label():
    model = TimeConditionedMLP(2, n_classes=3)
    x, t = torch.randn(4, 2), torch.arange(4)
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), 3)), rtol=0, atol=0)


def test_time_scale_multiplies_t():
    torch.manual_seed(0)
    model = TimeConditionedMLP(2, time_scale=1000.0)
    x = torch.randn(3, 2)
    t = torch.tensor([0.1, 0.5, 0.9])
    expected = model.net(torch.cat([x, model.time_embed(1000.0 * t)], dim=1))
    torch.testing.assert_close(model(x, t), expected)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.randn(4, 3), torch.zeros(4)), ValueError, "x must have shape"),
        ((torch.randn(4, 2), torch.zeros(3)), ValueError, "t must have shape"),
        ((torch.randn(4, 2), torch.zeros(4, dtype=torch.bool)), TypeError, "t must hold"),
        ((torch.randn(4, 2), torch.zeros(4), torch.zeros(4, dtype=torch.int64)), ValueError, "y"),
    ],
)
def test_unconditional_model_rejects_bad_inputs(args, error, match):
    with pytest.raises(error, match=match):
        TimeConditionedMLP(2)(*args)


@pytest.mark.parametrize(
    ("y", "error", "match"),
    [
        (torch.tensor([0, 1, 4]), ValueError, "y must hold labels in 0..3"),
        (torch.tensor([0, -1, 2]), ValueError, "y must hold labels"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "y must have dtype"),
        (torch.tensor([0, 1]), ValueError, "y must have shape"),
    ],
)
def test_conditional_model_rejects_bad_labels(y, error, match):
    with pytest.raises(error, match=match):
        TimeConditionedMLP(2, n_classes=3)(torch.randn(3, 2), torch.zeros(3), y)


def test_constructor_validates():
    with pytest.raises(ValueError, match="n_classes"):
        TimeConditionedMLP(2, n_classes=0)
    with pytest.raises(ValueError, match="data_dim"):
        TimeConditionedMLP(0)
    with pytest.raises(ValueError, match="time_scale"):
        TimeConditionedMLP(2, time_scale=-1.0)


def test_learns_the_exact_denoiser_of_a_gaussian():
    # x0 ~ N(0, I) in 2-D and x_t = x0 + sigma_t * noise: the best denoiser is
    # E[x0 | x_t] = x_t / (1 + sigma_t^2), a different shrinkage at every t. A network
    # that ignored t could do no better than one shrinkage for all t (baseline below).
    torch.manual_seed(0)
    sigmas = torch.logspace(-1, 0.5, 10)
    shrink = 1 / (1 + sigmas**2)

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (x0,) = batch
        t = torch.randint(0, len(sigmas), (x0.shape[0],))
        x_t = x0 + sigmas[t, None] * torch.randn_like(x0)
        return (model(x_t, t) - x0).square().sum(1).mean()

    model = TimeConditionedMLP(2)
    train(model, loss_fn, torch.randn(4096, 2), steps=500, batch_size=256, lr=3e-3, progress=False)

    errors, baseline = [], []
    with torch.no_grad():
        for t in range(len(sigmas)):
            x_t = torch.randn(2000, 2) * (1 + sigmas[t] ** 2).sqrt()
            exact = shrink[t] * x_t
            errors.append((model(x_t, torch.full((2000,), t)) - exact).square().sum(1).mean())
            baseline.append((shrink.mean() * x_t - exact).square().sum(1).mean())
    assert max(baseline) > 1.0
    assert max(errors) < 0.05  # measured 0.019 at the seed above


def test_input_of_another_dtype_than_the_weights_is_named():
    net = TimeConditionedMLP(2, hidden=8, depth=1)
    t = torch.zeros(3, dtype=torch.float64)  # any real dtype for the time is fine
    assert net(torch.zeros(3, 2), t).dtype == torch.float32
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the network's weights"):
        net(torch.zeros(3, 2, dtype=torch.float64), t)
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        MLP(2, 1)(torch.zeros(3, 2, dtype=torch.float64))
    assert net.double()(torch.zeros(3, 2, dtype=torch.float64), t).dtype == torch.float64


# ------------------------------------------------------------------ the small U-Net
def test_small_unet_shapes_and_zero_start():
    from udm.nets import SmallUNet

    net = SmallUNet((1, 8, 8), width=8, n_classes=10, time_scale=1000.0)
    x = torch.randn(5, 64)
    out = net(x, torch.rand(5), torch.arange(5))
    assert out.shape == (5, 64)
    assert torch.equal(out, torch.zeros_like(out))  # the output convolution starts at zero
    two_channels = SmallUNet((2, 4, 6), width=8)
    assert two_channels(torch.randn(3, 48), torch.rand(3)).shape == (3, 48)


def _trained_a_little(net):
    """A U-Net whose output layer is no longer zero (so its inputs can be told apart)."""
    for p in net.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return net


def test_small_unet_depends_on_time_and_label_and_null_label_is_default():
    from udm.nets import SmallUNet

    torch.manual_seed(0)
    net = _trained_a_little(SmallUNet(width=8, n_classes=3, time_scale=1000.0))
    x = torch.randn(4, 64)
    t = torch.full((4,), 0.3)
    base = net(x, t, torch.zeros(4, dtype=torch.int64))
    assert not torch.allclose(
        base, net(x, torch.full((4,), 0.7), torch.zeros(4, dtype=torch.int64))
    )
    assert not torch.allclose(base, net(x, t, torch.ones(4, dtype=torch.int64)))
    assert torch.equal(net(x, t), net(x, t, torch.full((4,), 3, dtype=torch.int64)))


def test_small_unet_examples_are_independent_and_skip_connection_matters():
    from udm.nets import SmallUNet

    torch.manual_seed(1)
    net = _trained_a_little(SmallUNet(width=8)).eval()
    x, t = torch.randn(6, 64), torch.rand(6)
    batch = net(x, t)
    alone = torch.cat([net(x[i : i + 1], t[i : i + 1]) for i in range(6)])
    assert torch.allclose(batch, alone, atol=1e-6)  # GroupNorm: no mixing across the batch
    # Cut the coarse path (the upsampling returns zeros): the output still depends on the
    # input, through the skip connection alone.
    net.upsample = _Zeros()
    x2 = x.clone()
    x2[:, 0] += 1.0
    assert (net(x2, t) - net(x, t)).abs().max() > 1e-3


class _Zeros(nn.Module):
    """A stand-in for the upsampling path that outputs zeros of the right shape."""

    def forward(self, h):
        return torch.zeros(h.shape[0], h.shape[1] // 2, 2 * h.shape[2], 2 * h.shape[3])


def test_small_unet_is_translation_equivariant_away_from_borders_in_its_convolutions():
    # The stem is a convolution: shifting the input by 2 pixels (a multiple of the stride)
    # shifts its output, away from the zero-padded border.
    from udm.nets import SmallUNet

    net = SmallUNet(width=8)
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 2, 2] = 1.0
    shifted = torch.roll(image, shifts=(2, 2), dims=(2, 3))
    a, b = net.stem(image), net.stem(shifted)
    assert torch.allclose(a[..., 1:4, 1:4], b[..., 3:6, 3:6], atol=1e-6)


def test_small_unet_trains_on_a_tiny_problem():
    from udm.nets import SmallUNet

    torch.manual_seed(2)
    net = SmallUNet(width=8)
    target = torch.randn(1, 64).repeat(32, 1)
    history = train(
        net,
        lambda m, b: (m(b[0], torch.zeros(len(b[0]))) - target).square().mean(),
        torch.randn(32, 64),
        steps=150,
        batch_size=32,
        lr=1e-2,
        progress=False,
        device="cpu",
    )
    assert history.final_loss < 0.1 * history.losses[0]


@pytest.mark.parametrize(
    ("kwargs", "call", "error", "match"),
    [
        ({"image_shape": (1, 7, 8)}, None, ValueError, "even"),
        ({"image_shape": (8, 8)}, None, ValueError, "image_shape"),
        ({"width": 0}, None, ValueError, "width"),
        ({}, (torch.randn(2, 63), torch.rand(2)), ValueError, "x must have shape"),
        ({}, (torch.randn(2, 64), torch.rand(3)), ValueError, "t"),
        ({}, (torch.randn(2, 64).double(), torch.rand(2)), TypeError, "dtype"),
        (
            {},
            (torch.randn(2, 64), torch.rand(2), torch.zeros(2, dtype=torch.int64)),
            ValueError,
            "n_classes=None",
        ),
        (
            {"n_classes": 3},
            (torch.randn(2, 64), torch.rand(2), torch.tensor([0, 4])),
            ValueError,
            "labels",
        ),
    ],
)
def test_small_unet_validates(kwargs, call, error, match):
    from udm.nets import SmallUNet

    with pytest.raises(error, match=match):
        net = SmallUNet(**kwargs)
        net(*call)
