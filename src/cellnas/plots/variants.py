"""A grid of normal cells with their width and depth in the titles (Shu et al. 2020 variants)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cellnas.analysis.topology import cell_depth, cell_width  # noqa: E402
from cellnas.genotype import Cell  # noqa: E402
from cellnas.plots.cells import draw_cell, finish_figure  # noqa: E402

__all__ = ["plot_cell_grid"]


def plot_cell_grid(
    cells: Sequence[tuple[str, Cell]],
    path: str | Path | None = None,
    title: str | None = None,
    columns: int = 3,
):
    """Draw ``(name, cell)`` pairs in a grid, titled "name: width Wc, depth D"; save to ``path`` if given."""
    n = max(1, len(cells))
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, cell) in zip(axes.flat, cells):
        draw_cell(ax, cell, f"{name}: width {cell_width(cell):g}c, depth {cell_depth(cell)}")
    return finish_figure(fig, path, title)
