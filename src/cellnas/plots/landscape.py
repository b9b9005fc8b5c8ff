"""Figures of loss landscapes and gradient variance (Li et al. 2018 ``plot_2D.py``/``plot_1D.py``; Shu et al. 2020
Figs. 17 and 22; SPEC 3.4, 3.5).

* :func:`plot_contour`: the 2-D contour in the reference style (``plt.contour`` with levels
  ``arange(vmin, vmax, vlevel)`` = ``arange(0.1, 10, 0.5)``, ``cmap='summer'``, inline labels);
* :func:`plot_surface`: a 3-D surface (``cmap='coolwarm'``), for the loss or the gradient variance;
* :func:`plot_1d`: loss and accuracy along one direction or an interpolation (two y axes);
* :func:`plot_compare`: several networks' contours side by side with shared levels.

Points of a partial grid (NaN) are left blank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cellnas.plots.cells import save_figure  # noqa: E402

__all__ = ["LEVELS", "contour_levels", "plot_contour", "plot_surface", "plot_1d", "plot_compare"]

#: Li et al.'s plot_surface defaults (SPEC 3.4): vmin, vmax, vlevel.
LEVELS = (0.1, 10.0, 0.5)


def contour_levels(vmin: float = LEVELS[0], vmax: float = LEVELS[1], vlevel: float = LEVELS[2]) -> np.ndarray:
    """``np.arange(vmin, vmax, vlevel)``, the reference's contour levels (0.1, 0.6, ..., 9.6 by default)."""
    return np.arange(vmin, vmax, vlevel)


def _contour_on(ax, xs, ys, z, levels, labels: bool = True):
    X, Y = np.meshgrid(xs, ys)
    z = np.ma.masked_invalid(np.asarray(z, dtype=float))
    finite = z.compressed()
    inside = levels[(levels >= finite.min()) & (levels <= finite.max())] if finite.size else levels[:0]
    if inside.size:
        cs = ax.contour(X, Y, z, cmap="summer", levels=levels)
        if labels:
            ax.clabel(cs, inline=1, fontsize=8)
    ax.plot([0], [0], "k+", ms=8)  # the trained weights
    ax.set_xlim(float(np.min(xs)), float(np.max(xs)))  # the whole grid, even where no contour is drawn
    ax.set_ylim(float(np.min(ys)), float(np.max(ys)))
    ax.set_aspect("equal")
    return inside.size


def plot_contour(
    xs, ys, z, path: str | Path, *, levels: Sequence[float] | None = None, title: str | None = None,
    xlabel: str = r"$\alpha$ (direction $d_1$)", ylabel: str = r"$\beta$ (direction $d_2$)",
) -> Path:  # fmt: skip
    """The 2-D loss contour in Li et al.'s style; ``z`` has shape ``(len(ys), len(xs))``."""
    levels = contour_levels() if levels is None else np.asarray(levels, dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    drawn = _contour_on(ax, xs, ys, z, levels)
    if not drawn:
        ax.text(0.5, 0.5, "no contour level inside the loss range", transform=ax.transAxes, ha="center")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_surface(
    xs, ys, z, path: str | Path, *, zlabel: str = "loss", title: str | None = None, log: bool = False,
) -> Path:  # fmt: skip
    """A 3-D surface of ``z`` over the plane (``log``: plot log10 z)."""
    X, Y = np.meshgrid(xs, ys)
    z = np.asarray(z, dtype=float)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(z)
        zlabel = f"log10 {zlabel}"
    fig = plt.figure(figsize=(6.4, 5))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(X, Y, np.ma.masked_invalid(z), cmap="coolwarm", linewidth=0, antialiased=True)
    ax.set_xlabel(r"$\alpha$ ($d_1$)")
    ax.set_ylabel(r"$\beta$ ($d_2$)")
    ax.set_zlabel(zlabel, labelpad=12)
    ax.xaxis.set_major_locator(MaxNLocator(5))  # the default 9 ticks overlap on the tilted axes
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.zaxis.get_offset_text().set_x(1.1)  # keep a "1e8" scale clear of the label
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def plot_1d(
    xs, losses, accuracies, path: str | Path, *, xlabel: str = r"$\alpha$ (direction $d_1$)",
    title: str | None = None, log_loss: bool | None = None,
    marks: Sequence[tuple[float, str]] = ((0.0, r"$\theta^*$"),),
) -> Path:  # fmt: skip
    """Loss (left axis) and accuracy % (right axis) along a line, as Li et al.'s ``plot_1d_loss_err``.

    ``log_loss``: a log loss axis; ``None`` (default) chooses it when the finite losses span more than two decades
    (far from the trained weights the loss explodes and would flatten the rest of the curve). Points without a
    finite loss have no accuracy either: both are left blank and the figure says how many there are. ``marks``:
    dotted vertical lines with labels at the networks themselves (theta* at 0; t = 0 and 1 of an interpolation).
    """
    xs = np.asarray(xs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    bad = ~np.isfinite(losses)
    finite = losses[~bad]
    if log_loss is None:
        log_loss = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100.0)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, np.where(bad, np.nan, losses), "b-", lw=1.5, marker="." if len(xs) <= 25 else None, label="loss")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (log scale)" if log_loss else "loss", color="b")
    if log_loss:
        ax.set_yscale("log")
    ax.tick_params(axis="y", labelcolor="b")
    for x, label in marks:
        if xs.size and xs.min() <= x <= xs.max():
            ax.axvline(x, color="0.5", ls=":", lw=1)
            ax.annotate(label, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -12),
                        textcoords="offset points", fontsize=9, color="0.3")  # fmt: skip
    if accuracies is not None:
        acc = 100.0 * np.asarray(accuracies, dtype=float)
        ax2 = ax.twinx()
        ax2.plot(xs, np.where(bad, np.nan, acc), "r--", lw=1.2, marker="." if len(xs) <= 25 else None,
                 label="accuracy")  # fmt: skip
        ax2.set_ylabel("accuracy (%)", color="r")
        ax2.set_ylim(0, 100)
        ax2.tick_params(axis="y", labelcolor="r")
    if bad.any():
        ax.text(0.5, 0.02, f"no finite loss at {int(bad.sum())} of {bad.size} points (left blank)",
                transform=ax.transAxes, ha="center", fontsize=8, color="k")  # fmt: skip
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_compare(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | Path, *,
    levels: Sequence[float] | None = None, title: str | None = None, ncols: int | None = None,
) -> Path:  # fmt: skip
    """Contours of several networks, ``(label, xs, ys, z)`` each, on one figure with the same levels (Fig. 17)."""
    levels = contour_levels() if levels is None else np.asarray(levels, dtype=float)
    n = len(panels)
    ncols = ncols or min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (label, xs, ys, z) in zip(axes.flat, panels):
        _contour_on(ax, xs, ys, z, levels)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(r"$\alpha$ (direction $d_1$)")
        ax.set_ylabel(r"$\beta$ (direction $d_2$)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title or f"loss contours (levels {levels[0]:g}:{levels[-1]:g} step "
                          f"{(levels[1] - levels[0]) if len(levels) > 1 else 0:g})")  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)
