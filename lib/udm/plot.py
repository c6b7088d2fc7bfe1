"""The book's figure style: one place for figure sizes, colours and fonts, and the common plots.

Chapters call :func:`use_book_style` once in their first code cell and draw with the
helpers below, so every figure in the book uses the same colour-blind-safe palette
(Okabe and Ito's eight colours), the same sizes and labelled axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib as mpl
import numpy as np
import torch
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.contour import QuadContourSet
from matplotlib.image import AxesImage
from torch import Tensor

from udm.train import TrainHistory
from udm.validate import check_int_at_least, check_positive

#: Okabe-Ito colour-blind-safe colours, in the order the axes colour cycle uses them
#: (blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, black).
PALETTE: list[str] = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
]

#: Fixed roles, the same in every figure: training data, model samples, exact truth, noise.
COLORS: dict[str, str] = {
    "data": "#0072B2",
    "model": "#D55E00",
    "truth": "#000000",
    "noise": "#CC79A7",
}

#: The matplotlib settings :func:`use_book_style` applies.
BOOK_RC: dict[str, object] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "legend.markerscale": 3.0,  # scatter2d's dots are tiny; show them larger in legends
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's style (sizes, fonts, palette, light grid).

    Safe to call any number of times: it only assigns the values in :data:`BOOK_RC`.
    """
    mpl.rcParams.update(BOOK_RC)


def _to_numpy(name: str, x: Tensor | np.ndarray) -> np.ndarray:
    """Return a tensor or array as a NumPy array (detached, on the CPU)."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def _limits(lim: float | tuple[float, float]) -> tuple[float, float]:
    """Turn ``lim`` (a half-width ``L`` meaning ``(-L, L)``, or a pair ``(lo, hi)``) into a pair."""
    if isinstance(lim, tuple):
        lo, hi = lim
        if not lo < hi:
            raise ValueError(f"lim must be (lo, hi) with lo < hi, got {lim}")
        return float(lo), float(hi)
    check_positive("lim", lim)
    return -float(lim), float(lim)


def _label_plane(ax: Axes, lim: float | tuple[float, float] | None) -> None:
    """Give ``ax`` equal aspect, the axis labels ``x_1`` and ``x_2`` and, if given, limits."""
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if lim is not None:
        lo, hi = _limits(lim)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)


def scatter2d(
    ax: Axes,
    points: Tensor | np.ndarray,
    *,
    label: str | None = None,
    color: str | None = None,
    s: float = 4,
    alpha: float = 0.5,
    lim: float | tuple[float, float] | None = None,
) -> PathCollection:
    """Scatter ``(N, 2)`` points on ``ax`` with equal aspect and axes labelled ``x_1``, ``x_2``.

    ``lim`` sets both axes to ``(-lim, lim)`` (or to ``(lo, hi)`` for a pair). ``color``
    defaults to the next colour of the palette; pass ``COLORS["data"]`` or
    ``COLORS["model"]`` to keep the book's roles.
    """
    array = _to_numpy("points", points)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {tuple(array.shape)}")
    collection = ax.scatter(
        array[:, 0], array[:, 1], s=s, alpha=alpha, color=color, label=label, linewidths=0
    )
    _label_plane(ax, lim)
    return collection


def image_grid(
    ax: Axes,
    images: Tensor | np.ndarray,
    nrow: int | None = None,
    *,
    title: str | None = None,
) -> AxesImage:
    """Show images of shape ``(N, 1, H, W)`` or ``(N, H, W)`` with values in [-1, 1] as one grid.

    ``nrow`` is the number of images per row (as in torchvision's ``make_grid``),
    by default about ``sqrt(N)``. Pixels are drawn in gray from -1 (black) to 1 (white);
    values outside [-1, 1] show as black or white. Images are separated by one-pixel
    white lines and the axes carry no ticks.
    """
    array = _to_numpy("images", images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[0] == 0:
        raise ValueError(
            "images must have shape (N, 1, H, W) or (N, H, W) with N >= 1, "
            f"got {tuple(array.shape)}"
        )
    n, height, width = array.shape
    per_row = math.ceil(math.sqrt(n)) if nrow is None else check_int_at_least("nrow", nrow, 1)
    per_row = min(per_row, n)
    rows = math.ceil(n / per_row)
    # NaN marks the gaps between images; the colormap draws NaN ("bad") pixels white.
    grid = np.full((rows * (height + 1) - 1, per_row * (width + 1) - 1), np.nan)
    for i, image in enumerate(array):
        top, left = (i // per_row) * (height + 1), (i % per_row) * (width + 1)
        grid[top : top + height, left : left + width] = image
    cmap = mpl.colormaps["gray"].with_extremes(bad="white")
    shown = ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return shown


def density_contour(
    ax: Axes,
    log_prob_fn: Callable[[Tensor], Tensor],
    lim: float | tuple[float, float],
    n: int = 200,
    levels: int | list[float] = 8,
    *,
    color: str = COLORS["truth"],
) -> QuadContourSet:
    """Draw contour lines of the density ``exp(log_prob_fn(x))`` over the square ``lim`` x ``lim``.

    ``log_prob_fn`` maps an ``(M, 2)`` tensor of points to their ``(M,)`` log-densities;
    it is evaluated without gradients on an ``n`` x ``n`` grid. ``lim`` is a half-width
    ``L`` (the square ``(-L, L)``) or a pair ``(lo, hi)``. ``levels`` is a number of
    contour lines (spaced evenly between 0 and the largest density, both excluded) or
    their density values. The lines default to the colour of the exact
    truth, :data:`COLORS` ``["truth"]``.
    """
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn must be callable, got {type(log_prob_fn).__name__}")
    check_int_at_least("n", n, 2)
    lo, hi = _limits(lim)
    axis = torch.linspace(lo, hi, n)
    x1, x2 = torch.meshgrid(axis, axis, indexing="xy")
    points = torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=1)
    with torch.no_grad():
        log_prob = log_prob_fn(points)
    if not isinstance(log_prob, Tensor) or log_prob.shape != (n * n,):
        got = tuple(log_prob.shape) if isinstance(log_prob, Tensor) else type(log_prob).__name__
        raise ValueError(
            f"log_prob_fn must map (M, 2) points to shape (M,), got {got} for M={n * n}"
        )
    density = torch.exp(log_prob).reshape(n, n).cpu().numpy()
    if isinstance(levels, int):
        # Evenly spaced strictly inside (0, max): a level at 0 would trace where the
        # density underflows, a stray line along the edge of the plot.
        check_int_at_least("levels", levels, 1)
        levels = np.linspace(0.0, float(density.max()), levels + 2)[1:-1].tolist()
    contours = ax.contour(
        x1.numpy(), x2.numpy(), density, levels=levels, colors=color, linewidths=0.8
    )
    _label_plane(ax, (lo, hi))
    return contours


def loss_curve(ax: Axes, history: TrainHistory, window: int = 50, *, label: str = "loss") -> None:
    """Plot a training run's loss at every step (faint) and its average over ``window`` steps."""
    steps = np.arange(history.steps)
    (raw,) = ax.plot(steps, history.losses, alpha=0.25, linewidth=0.8)
    ax.plot(
        steps, history.smoothed(window), color=raw.get_color(), label=f"{label} (mean of {window})"
    )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
