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
    "motif_layout",
    "motif_names",
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


#: Motif drawings (data units, equal aspect): node radius, distance between layers and between nodes of a layer,
#: the curvatures an edge may take and where along it its label may sit, and the inches per data unit (the same in
#: every panel, so labels fit).
_NODE_R, _LAYER_DX, _NODE_DY = 0.27, 1.75, 1.0
_RADS = (0.0, 0.22, -0.22, 0.4, -0.4, 0.6, -0.6)
_LABEL_TS = (0.5, 0.38, 0.62)
_INCH = 0.95
#: Half the length and half the height of an edge label (font size 6), in data units, for the overlap checks.
_LABEL_HALF = {"len": 0.05, "h": 0.08}


def motif_names(graph, node_label: str = "node_name") -> dict:
    """``{node: name}`` as the motif's description (and the printed table) names its nodes
    (:func:`cellnas.analysis.motifs.node_names`, in node order: :func:`~cellnas.analysis.motifs.mine` numbers nodes
    canonically)."""
    from cellnas.analysis.motifs import node_names

    nodes = sorted(graph.nodes)
    return dict(zip(nodes, node_names([str(graph.nodes[v].get(node_label, v)) for v in nodes])))


def _bezier(p0, p1, rad: float, n: int = 41) -> np.ndarray:
    """Points of matplotlib's ``arc3,rad=rad`` connection from ``p0`` to ``p1`` (a quadratic Bezier whose control
    point is the midpoint moved by ``rad`` times the chord turned clockwise), valid under an equal aspect."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    c = (p0 + p1) / 2 + rad * np.array([d[1], -d[0]])
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p1


def _label_at(curve: np.ndarray, t: float) -> tuple[np.ndarray, float]:
    """Where an edge label sits on ``curve`` (a fraction ``t`` of the way) and its angle in degrees (along the
    curve, never upside down)."""
    k = int(round(t * (len(curve) - 1)))
    d = curve[min(k + 1, len(curve) - 1)] - curve[max(k - 1, 0)]
    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    return curve[k], angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle


def _label_points(curve: np.ndarray, t: float, text: str) -> np.ndarray:
    """Sample points of an edge label's box (see :func:`_label_at`)."""
    mid, angle = _label_at(curve, t)
    u = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    nrm = np.array([-u[1], u[0]])
    half = _LABEL_HALF["len"] * len(text) / 2 + 0.04
    return np.array([mid + a * half * u + b * _LABEL_HALF["h"] * nrm for a in np.linspace(-1, 1, 7) for b in (-1, 1)])


def motif_layout(graph, node_label: str = "node_name", edge_label: str = "op_name") -> tuple[dict, dict]:
    """``(positions, edges)`` of a motif drawing: ``{node: (x, y)}`` and ``{(u, v): (rad, t)}``. Nodes sit in layers
    by longest path from the inputs (inputs first); each edge is an ``arc3,rad=rad`` curve with its label a fraction
    ``t`` of the way along, chosen so that the curve passes through no other node and the label overlaps no node and
    no other label, where the candidates allow it."""
    import networkx as nx

    names = motif_names(graph, node_label)
    inputs = [v for v in graph.nodes if str(graph.nodes[v].get(node_label, "")).startswith("input")]
    depth: dict = {}
    for v in nx.topological_sort(graph):
        preds = list(graph.predecessors(v))
        depth[v] = 0 if v in inputs or not preds else 1 + max(depth[u] for u in preds)
    pos: dict = {}
    for layer in range(max(depth.values(), default=-1) + 1):
        members = [v for v in graph.nodes if depth[v] == layer]
        # inputs by name; other nodes by the mean height of their inputs (fewer crossings), then by name
        members.sort(key=lambda v: (v not in inputs, -np.mean([pos[u][1] for u in graph.predecessors(v)] or [0.0]),
                                    names[v]))  # fmt: skip
        stagger = 0.0 if layer % 2 == 0 else 0.3  # no three nodes in a row across layers
        for i, v in enumerate(members):
            pos[v] = (layer * _LAYER_DX, ((len(members) - 1) / 2 - i) * _NODE_DY + stagger)
    centres = {v: np.asarray(p, float) for v, p in pos.items()}
    edges = sorted(graph.edges(data=True), key=lambda e: -np.linalg.norm(centres[e[1]] - centres[e[0]]))
    chosen = {(u, v): (0.0, 0.5) for u, v, _ in edges}
    texts = {(u, v): str(d.get(edge_label, "")) for u, v, d in edges}

    def shape(edge, rad: float, t: float) -> tuple[np.ndarray, np.ndarray]:
        curve = _bezier(centres[edge[0]], centres[edge[1]], rad)
        return curve, _label_points(curve, t, texts[edge])

    def gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.min(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)))

    def cost(edge, rad: float, t: float, others: list) -> float:
        curve, box = shape(edge, rad, t)
        ends = np.stack([centres[edge[0]], centres[edge[1]]])
        free = curve[np.linalg.norm(curve[:, None, :] - ends[None, :, :], axis=2).min(axis=1) > _NODE_R]
        total = abs(rad) + 2 * abs(t - 0.5)
        for w, c in centres.items():
            if w not in edge and len(free):
                total += 100 * max(0.0, 1.6 * _NODE_R - gap(free, c[None, :]))
            total += 50 * max(0.0, _NODE_R + 0.14 - gap(box, c[None, :]))  # clear of the arrowheads too
        for other_curve, other_box in others:
            total += 50 * max(0.0, 0.2 - gap(box, other_box)) + 5 * max(0.0, 0.1 - gap(box, other_curve))
        return total

    candidates = [(rad, t) for rad in _RADS for t in _LABEL_TS]
    for _ in range(2):  # greedy, longest edges first, then once more against the final others
        for u, v, _ in edges:
            others = [shape(e, *chosen[e]) for e in chosen if e != (u, v)]
            chosen[(u, v)] = min(candidates, key=lambda c: cost((u, v), *c, others))
    return pos, chosen


def _draw_motif(ax, graph, layout: tuple[dict, dict], node_label: str, edge_label: str) -> None:
    from matplotlib.patches import Circle, FancyArrowPatch

    pos, chosen = layout
    names = motif_names(graph, node_label)
    circles = {}
    for v, (x, y) in pos.items():
        is_input = str(graph.nodes[v].get(node_label, "")).startswith("input")
        circles[v] = Circle((x, y), _NODE_R, facecolor="#ffe9a8" if is_input else "#cfe3ff", edgecolor="#333333",
                            lw=1.0, zorder=3)  # fmt: skip
        ax.add_patch(circles[v])
        ax.text(x, y, names[v], ha="center", va="center", fontsize=7, zorder=4)
    for u, v, d in graph.edges(data=True):
        op = d.get(edge_label)
        colour = OP_COLOURS.get(op, "#333333")
        rad, t = chosen[(u, v)]
        ax.add_patch(FancyArrowPatch(pos[u], pos[v], patchA=circles[u], patchB=circles[v], arrowstyle="-|>",
                                     mutation_scale=11, connectionstyle=f"arc3,rad={rad}", color=colour, lw=1.8,
                                     zorder=2))  # fmt: skip
        (mx, my), angle = _label_at(_bezier(pos[u], pos[v], rad), t)
        ax.text(mx, my, str(op), fontsize=6, ha="center", va="center", rotation=angle, rotation_mode="anchor",
                zorder=5, bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.85))  # fmt: skip
    ax.set_aspect("equal")
    ax.set_axis_off()


def _extent(layout: tuple[dict, dict]) -> tuple[float, float, float, float]:
    """``(x min, x max, y min, y max)`` of a :func:`motif_layout`'s nodes and curves."""
    pos, chosen = layout
    pts = [np.asarray(p) for p in pos.values()] or [np.zeros(2)]
    for (u, v), (rad, _) in chosen.items():
        pts += list(_bezier(pos[u], pos[v], rad, n=9))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), max(xs), min(ys), max(ys)


def plot_motifs(
    motifs: Sequence,
    path: str | Path | None = None,
    title: str | None = None,
    columns: int = 3,
    node_label: str = "node_name",
    edge_label: str = "op_name",
):
    """The given motifs (objects with ``graph``, ``support``, ``support_fraction``, ``ref_incidence``,
    ``norm_support``), one panel each, titled with their rank and supports as the printed table shows them: a motif
    that no reference subgraph holds (``ref_incidence`` 0, norm_support = support / 0) says ``not in ref``
    (SPEC 5.3, Table 1). Nodes are named as in the motif's description (``op1``, ``op2``); every panel has the same
    scale."""
    n = max(1, len(motifs))
    columns = max(1, min(columns, n))
    rows = int(np.ceil(n / columns))
    layouts = [motif_layout(m.graph, node_label, edge_label) for m in motifs]
    extents = [_extent(layout) for layout in layouts]
    margin = _NODE_R + 0.35
    width = max([e[1] - e[0] for e in extents] + [2 * _LAYER_DX]) + 2 * margin
    height = max([e[3] - e[2] for e in extents] + [2 * _NODE_DY]) + 2 * margin
    fig, axes = plt.subplots(rows, columns, figsize=(_INCH * width * columns, (_INCH * height + 0.35) * rows),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.set_axis_off()
    for i, (ax, m, layout, (x0, x1, y0, y1)) in enumerate(zip(axes.flat, motifs, layouts, extents)):
        _draw_motif(ax, m.graph, layout, node_label, edge_label)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ax.set_xlim(cx - width / 2, cx + width / 2)
        ax.set_ylim(cy - height / 2, cy + height / 2)
        ref = getattr(m, "ref_incidence", None)
        if ref is None or m.norm_support is None:
            norm = ""
        elif ref == 0:
            norm = ", not in ref"
        else:
            norm = f", ref {ref}, norm {m.norm_support:.2f}"
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
