"""Cell drawings with matplotlib alone (no graphviz binary).

Inputs ``c_{k-2}``/``c_{k-1}`` on the left, intermediate nodes in columns by their
depth from the inputs, the output ``c_{k}`` on the right; each edge is labelled with
its op and coloured by op family.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from cellnas.genotype import CELL_TYPES, Cell, Genotype  # noqa: E402

__all__ = ["draw_cell", "draw_genotype", "OP_COLOURS"]

OP_COLOURS = {
    "none": "#bbbbbb",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "skip_connect": "#2ca02c",
    "sep_conv_3x3": "#d62728",
    "sep_conv_5x5": "#ff7f0e",
    "sep_conv_7x7": "#8c564b",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#e377c2",
    "conv_7x1_1x7": "#7f7f7f",
}


def _layout(cell: Cell) -> dict:
    """One column per intermediate node (in node order), staggered up and down so that
    long edges do not run through nodes; inputs on the left, output on the right."""
    pos = {0: (0.0, 1.6), 1: (0.0, -1.6)}
    for j in range(cell.n_nodes):
        pos[j + 2] = (1.3 * (1.0 + j), 0.9 if j % 2 == 0 else -0.9)
    pos["out"] = (1.3 * (cell.n_nodes + 1.0), 0.0)
    return pos


def draw_cell(ax, cell: Cell, title: str | None = None) -> None:
    """Draw one cell on ``ax``."""
    pos = _layout(cell)
    names = {0: "c_{k-2}", 1: "c_{k-1}", "out": "c_{k}"}
    seen: dict[tuple, int] = {}
    for op, src, dst in cell.edges():
        key = (src, dst)
        dup = seen.get(key, 0)
        seen[key] = dup + 1
        span = pos[dst][0] - pos[src][0]
        rad = (0.12 * (span - 1) + 0.22 * dup) * (1 if pos[src][1] >= pos[dst][1] else -1)
        colour = OP_COLOURS.get(op, "#333333")
        arrow = FancyArrowPatch(
            pos[src], pos[dst], connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=12,
            color=colour, lw=1.6, shrinkA=14, shrinkB=14, zorder=1,
        )  # fmt: skip
        ax.add_patch(arrow)
        # label on the arc3 Bezier curve, past its middle so labels of edges that leave one node part
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
        t = 0.62
        mx = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t**2 * x1
        my = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t**2 * y1
        ax.text(mx, my, op, fontsize=7, ha="center", va="center", color=colour, zorder=3,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))  # fmt: skip
    for c in cell.concat:
        ax.add_patch(FancyArrowPatch(pos[c], pos["out"], arrowstyle="-|>", mutation_scale=10, color="#999999",
                                     lw=1.0, ls="--", shrinkA=14, shrinkB=16, zorder=0))  # fmt: skip
    for n, (x, y) in pos.items():
        is_io = n in (0, 1, "out")
        ax.scatter([x], [y], s=900 if is_io else 620, c="#ffe9a8" if is_io else "#cfe3ff",
                   edgecolors="#333333", zorder=2)  # fmt: skip
        ax.text(x, y, f"${names[n]}$" if is_io else str(n), ha="center", va="center", fontsize=9, zorder=4)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)


def draw_genotype(genotype: Genotype, path: str | Path | None = None, title: str | None = None,
                  cell_types: Sequence[str] = CELL_TYPES):  # fmt: skip
    """The cells (normal and reduction by default) side by side; saved to ``path`` (png/svg/pdf) if given.
    Returns the figure."""
    from cellnas.analysis.topology import cell_depth, cell_width

    fig, axes = plt.subplots(1, len(cell_types), figsize=(7 * len(cell_types), 5.5), squeeze=False)
    for ax, name in zip(axes[0], cell_types):
        cell = genotype.cell(name)
        draw_cell(ax, cell, f"{name} cell  (width {cell_width(cell):g}c, depth {cell_depth(cell)})")
    return finish_figure(fig, path, title)


def finish_figure(fig, path: str | Path | None, title: str | None = None, ax=None):
    """The common end of a plot: ``title`` on ``ax`` (or as the figure's suptitle), tight layout, and
    :func:`save_figure` when ``path`` is given. Returns the figure."""
    if title:
        (ax.set_title if ax is not None else fig.suptitle)(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 150) -> Path:
    """Save atomically in the format named by the suffix; close the figure."""
    import io

    from cellnas.errors import CellnasError
    from cellnas.runs import atomic_write_bytes

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf"):
        raise CellnasError(f"cannot draw to {path}: use a .png, .svg or .pdf file name")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
