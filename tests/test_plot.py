"""Tests for udm.plot: the style, the palette, and what each helper draws."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.path import Path

from udm.plot import (
    BOOK_RC,
    COLORS,
    PALETTE,
    density_contour,
    image_grid,
    loss_curve,
    scatter2d,
    use_book_style,
)
from udm.train import TrainHistory

# Okabe and Ito's eight colours, as published (https://jfly.uni-koeln.de/color/).
OKABE_ITO = {
    "#000000",
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
}


@pytest.fixture
def ax():
    with matplotlib.rc_context():
        fig, axes = plt.subplots()
        yield axes
        plt.close(fig)


def test_palette_is_okabe_ito():
    assert len(PALETTE) == 8 and set(PALETTE) == OKABE_ITO
    assert set(COLORS.values()) <= OKABE_ITO


def test_book_style_sets_palette_cycle_and_is_idempotent():
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        use_book_style()
        assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == PALETTE
        assert not matplotlib.rcParams["axes.spines.top"]
        assert not matplotlib.rcParams["axes.spines.right"]
        assert tuple(matplotlib.rcParams["figure.figsize"]) == (6.4, 4.0)
        once = dict(matplotlib.rcParams)
        use_book_style()
        assert dict(matplotlib.rcParams) == once
        # A new axes draws its first lines in the palette's order.
        fig, axes = plt.subplots()
        lines = [axes.plot([0, 1])[0] for _ in range(3)]
        assert [line.get_color() for line in lines] == PALETTE[:3]
        plt.close(fig)
    assert set(BOOK_RC) <= set(matplotlib.rcParams)


def test_scatter2d_draws_points_with_equal_aspect(ax):
    points = torch.randn(50, 2)
    collection = scatter2d(ax, points, label="data", color=COLORS["data"], lim=3)
    np.testing.assert_array_equal(collection.get_offsets(), points.numpy())
    assert ax.get_aspect() == 1.0
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$x_1$", "$x_2$")
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-3, 3)
    scatter2d(ax, np.zeros((3, 2)), lim=(0, 1))  # NumPy arrays and (lo, hi) limits work too
    assert ax.get_xlim() == (0, 1)


@pytest.mark.parametrize(
    ("points", "error", "match"),
    [
        (torch.randn(10, 3), ValueError, "points must have shape \\(N, 2\\)"),
        (torch.randn(10), ValueError, "points"),
        ([[0.0, 1.0]], TypeError, "points"),
    ],
)
def test_scatter2d_rejects_bad_points(ax, points, error, match):
    with pytest.raises(error, match=match):
        scatter2d(ax, points)


def test_scatter2d_rejects_bad_lim(ax):
    with pytest.raises(ValueError, match="lim"):
        scatter2d(ax, torch.zeros(2, 2), lim=(1, -1))
    with pytest.raises(ValueError, match="lim"):
        scatter2d(ax, torch.zeros(2, 2), lim=0.0)


def test_image_grid_places_each_image(ax):
    images = torch.rand(10, 1, 8, 8) * 2 - 1
    shown = image_grid(ax, images, nrow=4, title="digits")
    grid = np.ma.filled(shown.get_array(), np.nan)
    assert grid.shape == (3 * 9 - 1, 4 * 9 - 1)  # 3 rows of 4, one-pixel gaps
    for i in range(10):
        top, left = (i // 4) * 9, (i % 4) * 9
        np.testing.assert_array_equal(grid[top : top + 8, left : left + 8], images[i, 0].numpy())
    assert np.isnan(grid[8, :]).all() and np.isnan(grid[:, 8]).all()  # gaps
    assert np.isnan(grid[18:, 2 * 9 :]).all()  # the two empty cells of the last row
    assert shown.get_clim() == (-1, 1)
    assert ax.get_title() == "digits"
    # (N, H, W) without a channel axis draws the same grid; nrow defaults to ceil(sqrt(N)).
    fig, other = plt.subplots()
    same = np.ma.filled(image_grid(other, images[:, 0].numpy()).get_array(), np.nan)
    plt.close(fig)
    np.testing.assert_array_equal(same, grid)


@pytest.mark.parametrize(
    ("images", "nrow", "error", "match"),
    [
        (torch.zeros(4, 3, 8, 8), None, ValueError, "images must have shape"),
        (torch.zeros(8, 8), None, ValueError, "images must have shape"),
        (torch.zeros(0, 8, 8), None, ValueError, "images must have shape"),
        ("digits", None, TypeError, "images"),
        (torch.zeros(4, 8, 8), 0, ValueError, "nrow"),
    ],
)
def test_image_grid_rejects_bad_input(ax, images, nrow, error, match):
    with pytest.raises(error, match=match):
        image_grid(ax, images, nrow)


def gaussian_log_prob(x: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, diag(4, 1)): an ellipse twice as wide as tall, so a transposed grid shows."""
    return -(x[:, 0] ** 2) / 8 - x[:, 1] ** 2 / 2 - math.log(4 * math.pi)


def test_density_contour_lines_lie_on_the_level_sets(ax):
    contours = density_contour(ax, gaussian_log_prob, lim=6, n=200)
    checked = 0
    for level, path in zip(contours.levels, contours.get_paths(), strict=True):
        if not 0 < level < 1 / (4 * math.pi) or len(path.vertices) == 0:
            continue
        vertices = (
            path.vertices if path.codes is None else path.vertices[path.codes != Path.CLOSEPOLY]
        )
        # exp(log p) = level exactly where x1^2 / 4 + x2^2 = -2 log(4 pi level).
        radius = np.sqrt(vertices[:, 0] ** 2 / 4 + vertices[:, 1] ** 2)
        np.testing.assert_allclose(radius, math.sqrt(-2 * math.log(4 * math.pi * level)), atol=5e-3)
        checked += 1
    assert checked >= 4
    assert ax.get_aspect() == 1.0 and ax.get_xlim() == (-6, 6)


def test_density_contour_rejects_bad_log_prob(ax):
    with pytest.raises(ValueError, match="log_prob_fn must map"):
        density_contour(ax, lambda x: x, lim=2, n=10)
    with pytest.raises(TypeError, match="log_prob_fn"):
        density_contour(ax, "normal", lim=2)
    with pytest.raises(ValueError, match="n must be at least 2"):
        density_contour(ax, gaussian_log_prob, lim=2, n=1)


def test_loss_curve_plots_raw_and_smoothed(ax):
    history = TrainHistory(losses=list(np.linspace(2, 1, 30) ** 2), seconds=0.1)
    loss_curve(ax, history, window=5)
    raw, smooth = ax.get_lines()
    np.testing.assert_allclose(raw.get_ydata(), history.losses)
    np.testing.assert_allclose(smooth.get_ydata(), history.smoothed(5))
    assert raw.get_color() == smooth.get_color()
    assert ax.get_xlabel() == "step"


def test_density_contour_levels_stay_inside_the_density_range(ax):
    contours = density_contour(ax, gaussian_log_prob, lim=6, n=100, levels=5)
    peak = 1 / (4 * math.pi)
    assert len(contours.levels) == 5
    assert 0 < min(contours.levels) and max(contours.levels) < peak
