"""Convergence curves of several genotypes, overlaid (Shu et al. 2020 Fig. 13; SPEC 3.3).

Input: :func:`cellnas.analysis.convergence.curves` (``{name: {key: {"epoch", "mean", "std", "n"}}}``). Each
genotype is one line (the mean over seeds) with a band of ± one standard deviation when there are several seeds.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cellnas.plots.cells import save_figure  # noqa: E402

__all__ = ["plot_convergence", "plot_all_curves", "LABELS"]

LABELS = {"train_loss": "train loss", "test_loss": "test loss", "train_acc": "train accuracy (%)",
          "test_acc": "test accuracy (%)"}  # fmt: skip


def _label(name: str, widths: dict | None, depths: dict | None, base: str | None) -> str:
    """``c1 (2c, depth 5)``, ``DARTS_V2 (base, 3.5c, depth 3)``: what a line is, in Fig. 13's terms."""
    facts = ["base"] if name == base else []
    if widths and widths.get(name) is not None:
        facts.append(f"{widths[name]:g}c")
    if depths and depths.get(name) is not None:
        facts.append(f"depth {depths[name]}")
    return f"{name} ({', '.join(facts)})" if facts else name


def _draw(ax, curves: dict, names: list[str], key: str, colors: dict, widths: dict | None,
          depths: dict | None = None, base: str | None = None) -> None:  # fmt: skip
    scale = 100.0 if key.endswith("_acc") else 1.0
    last = 1
    for name in names:
        c = curves[name][key]
        mean, std = scale * np.asarray(c["mean"]), scale * np.asarray(c["std"])
        last = max(last, int(np.max(c["epoch"])) if len(c["epoch"]) else 1)
        label = _label(name, widths, depths, base)
        line = ax.plot(c["epoch"], mean, color=colors[name], lw=1.4, label=label,
                       marker="." if len(mean) < 30 else None)[0]  # fmt: skip
        if c["n"] > 1:
            ax.fill_between(c["epoch"], mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(LABELS.get(key, key))
    # epochs are whole numbers: with one or two of them the default limits (0.945..1.055) would get fractional ticks
    if last <= 3:
        ax.set_xlim(0.5, last + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.grid(alpha=0.3)


def _colors(names: list[str]) -> dict:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_convergence(
    curves: dict, path: str | Path, *, key: str = "test_loss", groups: list[list[str]] | None = None,
    widths: dict | None = None, titles: list[str] | None = None, title: str | None = None,
    depths: dict | None = None, base: str | None = None,
) -> Path:  # fmt: skip
    """Fig. 13's form: ``key`` (test loss) against epoch, one line per genotype; one panel per group of names
    (``groups``, e.g. :func:`~cellnas.analysis.convergence.width_groups`, with ``titles``) or a single panel.
    Legends give each genotype's width (``widths``) and depth (``depths``) and mark the ``base`` cell."""
    names = list(curves)
    groups = groups or [names]
    colors = _colors(names)
    ncols = min(len(groups), 4)
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    for i, (ax, group) in enumerate(zip(axes.flat, groups)):
        _draw(ax, curves, [n for n in group if n in curves], key, colors, widths, depths, base)
        ax.legend(fontsize=8)
        if titles:
            ax.set_title(titles[i], fontsize=10)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    seeds = max(c[key]["n"] for c in curves.values())
    fig.suptitle(title or f"{LABELS.get(key, key)} per epoch (mean{' ± std' if seeds > 1 else ''} over "
                          f"{seeds} seed{'s' if seeds > 1 else ''})")  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)


def plot_all_curves(
    curves: dict, path: str | Path, *, widths: dict | None = None, title: str | None = None,
    depths: dict | None = None, base: str | None = None,
) -> Path:  # fmt: skip
    """Train and test loss and accuracy, four panels, every genotype overlaid (legend as :func:`plot_convergence`)."""
    names = list(curves)
    colors = _colors(names)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for ax, key in zip(axes.flat, ("train_loss", "test_loss", "train_acc", "test_acc")):
        _draw(ax, curves, names, key, colors, widths, depths, base)
        ax.set_title(LABELS[key])
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
