"""Figures of the Wan et al. (ICLR 2022) studies: error distributions of constrained samples (Sec. 5, SPEC 5.4),
operation importance by primitive and cell type with the +/-threshold band (Figs. 3, 4), skips by source
(Fig. 8), mined motifs (Fig. 7 / Table 1, SPEC 5.3), and the verification experiments (SPEC 5.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cellnas.plots.cells import OP_COLOURS, finish_figure  # noqa: E402

__all__ = [
    "plot_distributions",
    "plot_importance",
    "plot_motifs",
    "plot_reduce_ablation",
    "plot_disabling",
]

_GROUP_COLOURS = ("#7f7f7f", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#ff7f0e")


def _strip(ax, position: float, values: Sequence[float], colour: str, seed: int = 0) -> None:
    """Jittered points over a box (deterministic jitter: STYLE 6)."""
    if len(values) == 0:
        return
    jitter = np.random.default_rng(seed).uniform(-0.18, 0.18, len(values))
    ax.scatter(position + jitter, values, s=9, color=colour, alpha=0.55, zorder=3, linewidths=0)


def _boxes(ax, groups: Mapping[str, Sequence[float]], colours: Sequence[str]) -> None:
    names = list(groups)
    data = [np.asarray(groups[n], dtype=float) for n in names]
    present = [i for i, d in enumerate(data) if len(d)]
    if present:
        ax.boxplot([data[i] for i in present], positions=[i + 1 for i in present], widths=0.55,
                   showfliers=False, medianprops=dict(color="black"), zorder=2)  # fmt: skip
    for i, d in enumerate(data):
        _strip(ax, i + 1, d, colours[i % len(colours)], seed=i)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels([f"{n}\n(n={len(d)})" for n, d in zip(names, data)])


def plot_distributions(
    groups: Mapping[str, Sequence[float]],
    path: str | Path | None = None,
    title: str | None = None,
    ylabel: str = "test error (%)",
    scale: float = 100.0,
    reference: Mapping[str, float] | None = None,
):
    """One box + strip per group (e.g. Random/Prim/Skip/PrimSkip samples, SPEC 5.4) on one axis; optional
    horizontal reference lines (e.g. a published cell's error)."""
    fig, ax = plt.subplots(figsize=(1.9 * max(3, len(groups)) + 1.0, 4.2))
    _boxes(ax, {k: [v * scale for v in vals] for k, vals in groups.items()}, _GROUP_COLOURS)
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(value * scale, ls="--", lw=1, color=_GROUP_COLOURS[(i + 3) % len(_GROUP_COLOURS)], label=name)
    if reference:
        ax.legend(fontsize=8, loc="upper right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return finish_figure(fig, path, title, ax=ax)


def plot_importance(
    by_primitive: Mapping[str, Mapping[str, Sequence[float]]],
    skips: Mapping[str, Sequence[float]],
    threshold: float,
    path: str | Path | None = None,
    title: str | None = None,
):
    """OI (in %) per primitive for each cell type, the +/-``threshold`` band shaded (Figs. 3-4), and skip
    OI by source: ``in0``, ``in1`` (residual links), ``others``, ``all`` (Fig. 8)."""
    cell_types = list(by_primitive)
    fig, axes = plt.subplots(1, len(cell_types) + 1, figsize=(6.0 * len(cell_types) + 4.0, 4.4),
                             gridspec_kw={"width_ratios": [3] * len(cell_types) + [2]})  # fmt: skip
    axes = np.atleast_1d(axes)
    t = threshold * 100
    for ax, cell_type in zip(axes, cell_types):
        groups = {op: [v * 100 for v in vals] for op, vals in by_primitive[cell_type].items()}
        _boxes(ax, groups, [OP_COLOURS.get(op, "#333333") for op in groups])
        ax.set_xticklabels([f"{op.replace('_', ' ')}\n(n={len(v)})" for op, v in groups.items()], fontsize=7)
        ax.set_title(f"{cell_type} cell")
        ax.set_ylabel("operation importance (%)")
    ax = axes[-1]
    _boxes(ax, {k: [v * 100 for v in vals] for k, vals in skips.items()}, ("#2ca02c", "#17becf", "#7f7f7f", "#333333"))
    ax.set_title("skip_connect by source, both cells\n(in0/in1 = residual links)", fontsize=10)
    for ax in axes:
        ax.axhspan(-t, t, color="#bbbbbb", alpha=0.35, zorder=0, label=f"|OI| < {t:g} %")
        ax.axhline(0, color="#666666", lw=0.8, zorder=1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    return finish_figure(fig, path, title)


def _draw_motif(ax, graph, node_label: str, edge_label: str) -> None:
    import networkx as nx

    inputs = [v for v, d in graph.nodes(data=True) if str(d.get(node_label, "")).startswith("input")]
    others = [v for v in graph.nodes if v not in inputs]
    pos = {}
    for i, v in enumerate(sorted(inputs, key=lambda v: str(graph.nodes[v].get(node_label)))):
        pos[v] = (0.0, 1.0 - 2.0 * i)
    try:
        order = [v for v in nx.topological_sort(graph) if v in others]
    except nx.NetworkXUnfeasible:  # pragma: no cover - cells are DAGs
        order = others
    for i, v in enumerate(order):
        pos[v] = (1.0 + i, 0.6 if i % 2 == 0 else -0.6)
    colours = ["#ffe9a8" if v in inputs else "#cfe3ff" for v in graph.nodes]
    labels = {v: str(d.get(node_label, v)) for v, d in graph.nodes(data=True)}
    edge_colours = [OP_COLOURS.get(d.get(edge_label), "#333333") for _, _, d in graph.edges(data=True)]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colours, edgecolors="#333333", node_size=900)
    nx.draw_networkx_labels(graph, pos, labels=labels, ax=ax, font_size=7)
    nx.draw_networkx_edges(graph, pos, ax=ax, edge_color=edge_colours, width=1.8, arrowsize=14,
                           node_size=900, connectionstyle="arc3,rad=0.12")  # fmt: skip
    edge_labels = {(u, v): d.get(edge_label) for u, v, d in graph.edges(data=True)}
    nx.draw_networkx_edge_labels(graph, pos, ax=ax, font_size=6, connectionstyle="arc3,rad=0.12",
                                 edge_labels=edge_labels)  # fmt: skip
    xs = [p[0] for p in pos.values()] or [0]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_axis_off()


def plot_motifs(
    motifs: Sequence,
    path: str | Path | None = None,
    title: str | None = None,
    columns: int = 3,
    node_label: str = "node_name",
    edge_label: str = "op_name",
):
    """The given motifs (objects with ``graph``, ``support``, ``support_fraction``, ``norm_support``), one
    panel each, titled with their rank and supports (SPEC 5.3, Table 1)."""
    n = max(1, len(motifs))
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (ax, m) in enumerate(zip(axes.flat, motifs)):
        _draw_motif(ax, m.graph, node_label, edge_label)
        norm = "" if m.norm_support is None else f", norm {m.norm_support:.2f}"
        ax.set_title(f"#{i + 1}: support {m.support} ({100 * m.support_fraction:.0f} %){norm}", fontsize=9)
    if not motifs:
        axes.flat[0].text(0.5, 0.5, "no motif reaches the minimum support", ha="center", va="center")
    return finish_figure(fig, path, title)


def plot_reduce_ablation(
    errors: Mapping[str, Sequence[float]],
    path: str | Path | None = None,
    title: str | None = None,
):
    """Error of each reduce-cell variant (``original``, ``red<-nor``, ...) with one line per architecture
    joining its variants (SPEC 5.2, Finding 2). ``errors[variant][i]`` is architecture i (NaN: failed)."""
    names = list(errors)
    fig, ax = plt.subplots(figsize=(1.8 * len(names) + 1.5, 4.2))
    data = np.asarray([[np.nan if v is None else v for v in errors[n]] for n in names], dtype=float) * 100
    for j in range(data.shape[1]):
        ax.plot(range(1, len(names) + 1), data[:, j], color="#999999", lw=0.6, alpha=0.5, zorder=1)
    _boxes(ax, {n: [v for v in data[i] if np.isfinite(v)] for i, n in enumerate(names)}, _GROUP_COLOURS)
    ax.set_ylabel("test error (%)")
    ax.grid(axis="y", alpha=0.3)
    return finish_figure(fig, path, title, ax=ax)


def plot_disabling(
    curves: Mapping[str, np.ndarray],
    path: str | Path | None = None,
    title: str | None = None,
):
    """Mean +/- std test error (%) against the number of disabled ops, one curve per order (``ascending``:
    lowest OI first, ``descending``: highest first), SPEC 5.2 Finding 1. ``curves[order]`` has shape
    (architectures, k + 1) with column 0 the original cells; NaN marks a failed evaluation."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    colours = {"ascending": "#1f77b4", "descending": "#d62728"}
    for order, arr in curves.items():
        arr = np.asarray(arr, dtype=float) * 100
        k = np.arange(arr.shape[1])
        mean = np.nanmean(arr, axis=0)
        std = np.nanstd(arr, axis=0)
        label = {"ascending": "lowest OI first", "descending": "highest OI first"}.get(order, order)
        ax.plot(k, mean, marker="o", color=colours.get(order), label=label)
        ax.fill_between(k, mean - std, mean + std, color=colours.get(order), alpha=0.15)
    ax.set_xlabel("operations disabled (replaced by none)")
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path, title, ax=ax)
