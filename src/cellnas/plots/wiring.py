"""Figures of the wiring evolution (Xie et al., AISTATS 2021; SPEC 4): edges, growth, cost per op (first vs last
epoch, and over epochs as in the paper's ablation figure 10b) and per cell, output-level cost.

A run with edge ablations (SPEC 4 (c), ``--remove-edge`` / ``--fix-edge``) says so in every figure's title; the
edge panels mark removed edges (hatched grey, no op) and fixed ones (tinted in the op's colour), and the cost
figures average over the free edges only and draw each fixed edge's op apart (:mod:`cellnas.analysis.wiring`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator, MultipleLocator  # noqa: E402

from cellnas.plots.cells import OP_COLOURS, save_figure  # noqa: E402

__all__ = ["plot_edges", "plot_growth", "plot_costs", "plot_cost_epochs", "plot_cell_costs", "plot_output_costs",
           "plot_sampled_child"]

_REMOVED = "#7f7f7f"  # hatching of a removed edge's panel


def ablation_note(summary: dict) -> str:
    """One line naming the run's edge ablations (SPEC 4 (c)), e.g. ``ablated: normal removed 0-2, 0-3; fixed
    1-2=sep_conv_5x5``; empty for a run without."""
    parts = []
    for cell, info in summary["cells"].items():
        bits = []
        if info.get("removed_edges"):
            bits.append("removed " + ", ".join(info["removed_edges"]))
        if info.get("fixed_edges"):
            bits.append("fixed " + ", ".join(f"{e}={op}" for e, op in info["fixed_edges"].items()))
        if bits:
            parts.append(f"{cell} " + "; ".join(bits))
    return "ablated: " + " | ".join(parts) if parts else ""


def _averaged_over(summary: dict, cell: str) -> str:
    """``'mean over free edges 1-3, 2-3'`` in a run with ablations (for many free edges, the ablated ones are named
    instead: ``'mean over 12 free edges: not 0-2, 1-3'``), ``'mean over edges'`` otherwise."""
    info = summary["cells"].get(cell, {})
    free = info.get("free_edges")
    if free is None:
        return "mean over edges"
    if len(free) <= 4:
        return "mean over free edges " + (", ".join(free) or "(none)")
    return f"mean over {len(free)} free edges: not " + ", ".join([*info["removed_edges"], *info["fixed_edges"]])


def _title(text: str, summary: dict) -> str:
    note = ablation_note(summary)
    return f"{text}\n{note}" if note else text


def _shade(ax, text: str, colour: str, hatch: str | None) -> None:
    """Mark an ablated edge's panel: a tinted (or hatched) background and a word on what the network used."""
    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor=to_rgba(colour, 0.15),
                           edgecolor=to_rgba(colour, 0.6), hatch=hatch, lw=0, zorder=0))  # fmt: skip
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="#333333")


def _values(values: list) -> np.ndarray:
    """JSON numbers (None: not recorded) as floats, NaN for None."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def plot_edges(run: dict, summary: dict, cell: str, path: Path) -> Path:
    """Per edge: softmax(α) of `none` against the strongest other op; the selection time marked. An ablated edge
    (SPEC 4 (c)) gets no curves, its α having no say in the network: a removed edge is hatched grey (Z = 0), a
    fixed edge tinted in its op's colour (Z one-hot on that op, selected throughout)."""
    hist = run["history"][cell]
    ops = summary["ops"]
    times = np.asarray(summary["times"])
    k_none = ops.index("none") if "none" in ops else None
    edges = summary["cells"][cell]["edges"]
    cols = min(5, len(edges))
    rows = (len(edges) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.1 * rows), sharex=True, sharey=True, squeeze=False)
    handles: dict = {}
    for e, info in enumerate(edges):
        ax = axes[e // cols][e % cols]
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs (0: the initial α), never epoch 1.5
        if e + cols >= len(edges):  # the lowest panel of its column
            ax.set_xlabel("epoch", fontsize=8)
        where = f"{info['edge']}{' (input)' if info['from_input'] else ''}"
        if info.get("ablation") == "removed":
            _shade(ax, "removed\n(Z = 0: no op, never selected)", _REMOVED, "///")
            ax.set_title(f"{where}: removed", fontsize=7)
            continue
        if info.get("ablation") == "fixed":
            op = info["final_best_op"]
            _shade(ax, f"fixed to {op}\n(Z one-hot: selected throughout)", OP_COLOURS.get(op, "#333333"), None)
            ax.set_title(f"{where}: {op} (fixed)", fontsize=7)
            continue
        others = hist[:, e].copy()
        if k_none is not None:
            ax.plot(times, hist[:, e, k_none], "--", color="#888888", label="none")
            others[:, k_none] = -1
        ax.plot(times, others.max(-1), color="#d62728", label="strongest other op")
        if info["selected_at"] is not None:
            ax.axvline(info["selected_at"], color="#2ca02c", lw=0.8)
        ax.set_title(f"{where}: {info['final_best_op']}", fontsize=7)
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    for e in range(len(edges), rows * cols):
        axes[e // cols][e % cols].set_axis_off()
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(_title(f"{cell} cell: `none` vs the strongest op per edge (green: first selected, lead > "
                        f"{summary.get('margin', 0):g})", summary), fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return save_figure(fig, path)


def plot_growth(runs: list[tuple[dict, dict]], path: Path) -> Path:
    """Selected edges over time and the derived cell's width/depth over epochs, one line per run and cell type."""
    fig, (ax_n, ax_w, ax_d) = plt.subplots(1, 3, figsize=(14, 3.8))
    for _run, summary in runs:
        label = f"{summary['mode']} ({Path(summary['run']).name})"
        for cell, info in summary["cells"].items():
            ls = "-" if cell == "normal" else ":"
            name = f"{label}, {cell}"
            if "live_edges" in info:  # an ablated run: the count is of its live edges, fixed ones included
                name += f" ({info['live_edges']} of {len(info['edges'])} edges live, {len(info['fixed_edges'])} fixed)"
            ax_n.plot(summary["times"], info["selected_count"], ls, marker="o", ms=2, label=name)
            epochs = np.arange(1, len(info["derived_width"]) + 1)
            ax_w.plot(epochs, info["derived_width"], ls, marker="o", ms=2, label=name)
            ax_d.plot(epochs, info["derived_depth"], ls, marker="o", ms=2, label=name)
    ax_n.set(xlabel="epoch", ylabel=f"edges whose best op leads `none` by > {runs[0][1].get('margin', 0):g}",
             title="grow or prune?")
    ax_w.set(xlabel="epoch", ylabel="width (units of c)", title="derived cell width")
    ax_d.set(xlabel="epoch", ylabel="depth", title="derived cell depth")
    for ax in (ax_n, ax_w, ax_d):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    for ax in (ax_n, ax_d):  # a count of edges and a depth: whole numbers
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # also when every value is the same
    ax_w.yaxis.set_major_locator(MultipleLocator(0.5))  # widths are multiples of c/2 (1c .. 4c in DARTS's space)
    ax_n.legend(fontsize=7)
    notes = [f"{Path(s['run']).name}: {ablation_note(s)}" for _, s in runs if ablation_note(s)]
    if notes:
        fig.suptitle("; ".join(notes), fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_costs(summary: dict, path: Path) -> Path:
    """Mean cost C per op, first epoch (hatched, pale) vs last epoch (solid), per phase (the paper's Fig. 4 form);
    bar colour: the op. In an ablated run (SPEC 4 (c)) the mean is over the free edges, and each fixed edge's op
    gets its own pair of bars, right of the dotted line."""
    cost = summary["cost"]
    phases = sorted(cost["first_epoch"])
    epochs = cost.get("per_epoch", {}).get("epochs") or [1, cost["epochs"]]
    fixed = cost.get("fixed_edges", {})
    fig, axes = plt.subplots(1, len(phases), figsize=(6.5 * len(phases), 3.8), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        first = cost["first_epoch"][phase].get("normal", {})
        last = cost["last_epoch"][phase].get("normal", {})
        labels = list(first)
        colours = [OP_COLOURS.get(o, "#333333") for o in labels]
        before, after = [first[o] for o in labels], [last[o] for o in labels]
        for edge, f in fixed.get(phase, {}).get("normal", {}).items():
            labels.append(f"{edge} fixed:\n{f['op']}")
            colours.append(OP_COLOURS.get(f["op"], "#333333"))
            before.append(f["cost"][0])
            after.append(f["cost"][-1])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, _values(before), 0.4, color=[to_rgba(c, 0.3) for c in colours], edgecolor=colours,
               hatch="///", lw=0.8)  # fmt: skip
        ax.bar(x + 0.2, _values(after), 0.4, color=colours, edgecolor=colours, lw=0.8)
        if len(labels) > len(first):
            ax.axvline(len(first) - 0.5, color="k", ls=":", lw=0.8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("mean cost C = dL/dZ")
        ax.set_title(f"normal cell, {phase} batches ({_averaged_over(summary, 'normal')})", fontsize=9)
        legend = [Patch(facecolor="white", edgecolor="#555555", hatch="///", label=f"epoch {epochs[0]} (hatched)"),
                  Patch(facecolor="#555555", edgecolor="#555555", label=f"epoch {epochs[-1]} (solid)")]  # fmt: skip
        ax.legend(handles=legend, title="bar colour: the op", fontsize=8, title_fontsize=8)
    fig.suptitle(_title("cost per op (negative: the op lowers the loss and gains weight against `none`)", summary),
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)


def plot_cost_epochs(summary: dict, path: Path) -> Path:
    """Mean cost C per op at every epoch, one panel per cell type (rows) and phase (columns): the paper's ablation
    figure (Fig. 10b, SPEC 4 (c)). Thin lines: each op's mean over the (free) edges; thick dashed lines with
    squares: the op of a fixed edge, the cost of what the network computes there. C(none) = 0: the black line."""
    pe = summary["cost"]["per_epoch"]
    fixed = summary["cost"].get("fixed_edges", {})
    epochs = pe["epochs"]
    phases = [p for p in ("search", "train") if p in pe or p in fixed]
    cells = [c for c in summary["cells"] if any(c in pe.get(p, {}) or c in fixed.get(p, {}) for p in phases)]
    fig, axes = plt.subplots(len(cells), len(phases), figsize=(6.5 * len(phases), 3.6 * len(cells) + 0.6),
                             squeeze=False, sharex=True)  # fmt: skip
    handles: dict = {}
    for row, cell in enumerate(cells):
        for col, phase in enumerate(phases):
            ax = axes[row][col]
            for op, values in pe.get(phase, {}).get(cell, {}).items():
                if op == "none":
                    continue
                ax.plot(epochs, _values(values), color=OP_COLOURS.get(op, "#333333"), marker="o", ms=3, lw=1,
                        label=op)  # fmt: skip
            for edge, f in fixed.get(phase, {}).get(cell, {}).items():
                ax.plot(epochs, _values(f["cost"]), "--", color=OP_COLOURS.get(f["op"], "#333333"), lw=2.4,
                        marker="s", ms=6, mec="k", label=f"{edge} fixed: {f['op']}")  # fmt: skip
            ax.axhline(0, color="k", lw=0.6)
            ax.set(ylabel="mean cost C = dL/dZ")
            ax.set_title(f"{cell} cell, {phase} batches ({_averaged_over(summary, cell)})", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 5), fontsize=8,
               frameon=False)  # fmt: skip
    lines = "thin: the op's mean over edges; thick dashed: a fixed edge's op" if fixed else "the op's mean over edges"
    fig.suptitle(_title(f"cost per op over epochs ({lines}; `none`: 0 = the black line)", summary), fontsize=10)
    rows_of_legend = (len(handles) + 4) // 5
    fig.tight_layout(rect=(0, 0.04 * rows_of_legend, 1, 0.95))
    return save_figure(fig, path)


def plot_cell_costs(summary: dict, cell: str, path: Path) -> Path:
    """The cost per op (mean over edges) of every cell of one type against its network position, at the first and
    the last recorded epoch (rows), per phase (columns); SPEC 4's per-(cell, edge, op) cost. Summed over the
    cells, each op's points give its bar in :func:`plot_costs`."""
    cc = summary["cell_cost"]
    layers = cc["layers"][cell]
    phases = sorted(p for p in cc["last_epoch"] if cell in cc["last_epoch"][p])
    first_n, last_n = cc["epochs"]
    rows = [("first_epoch", f"epoch {first_n}"), ("last_epoch", f"epoch {last_n}")]
    fig, axes = plt.subplots(2, len(phases), figsize=(6.5 * len(phases), 6.4), squeeze=False, sharex=True)
    for col, phase in enumerate(phases):
        for row, (key, when) in enumerate(rows):
            ax = axes[row][col]
            per_op = cc[key].get(phase, {}).get(cell, {})
            for op, values in per_op.items():
                if op == "none":  # C(none) = 0: the zero line
                    continue
                ax.plot(layers, _values(values), marker="o", ms=3, color=OP_COLOURS.get(op, "#333333"), label=op)
            for edge, f in cc.get("fixed_edges", {}).get(key, {}).get(phase, {}).get(cell, {}).items():
                ax.plot(layers, _values(f["cost"]), "--", color=OP_COLOURS.get(f["op"], "#333333"), lw=2.4, marker="s",
                        ms=6, mec="k", label=f"{edge} fixed: {f['op']}")  # fmt: skip
            ax.axhline(0, color="k", lw=0.6)
            ax.set(ylabel="mean cost C = dL/dZ")
            ax.set_title(f"{cell} cells, {phase} batches, {when}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[1][col].set_xlabel("cell position in the network (0: the first cell, after the stem)")
        axes[1][col].set_xticks(layers)
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 7), fontsize=8, frameon=False)
    fig.suptitle(_title(f"cost per op in each {cell} cell ({_averaged_over(summary, cell)}; `none`: 0 = the black "
                        "line; negative: the op lowers the loss there)", summary), fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(fig, path)


_GROUP_STYLE = {"correct": ("#2ca02c", "-"), "wrong": ("#d62728", "-"), "all": ("#555555", "--")}


def plot_output_costs(summary: dict, path: Path) -> Path:
    """Output-level cost, loss and entropy over epochs, correct vs wrong samples (SPEC 4 (d), the appendix's
    "cost vs loss vs entropy"), one row per phase."""
    oc = summary["output_cost"]
    epochs = oc["epochs"]
    phases = [p for p in ("train", "search") if p in oc]
    titles = {"cost": "output cost  -z_y + Σ softmax(z)_i z_i", "loss": "cross-entropy loss",
              "entropy": "prediction entropy (nats)"}  # fmt: skip
    fig, axes = plt.subplots(len(phases), 3, figsize=(14, 3.4 * len(phases)), squeeze=False, sharex=True)
    for row, phase in enumerate(phases):
        samples = oc[phase]
        wrong = [w / a if w is not None and a else None for w, a in zip(samples["wrong"]["samples"],
                                                                        samples["all"]["samples"])]  # fmt: skip
        share = [f"{w:.0%}" for w in wrong if w is not None]
        for col, stat in enumerate(("cost", "loss", "entropy")):
            ax = axes[row][col]
            for group, (colour, ls) in _GROUP_STYLE.items():
                values = np.array([np.nan if v is None else v for v in samples[group][stat]], dtype=float)
                ax.plot(epochs, values, ls, color=colour, marker="o", ms=3, label=f"{group} samples")
            if stat == "cost":
                ax.axhline(0, color="k", lw=0.6)
            ax.set_title(titles[stat], fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel(f"{phase} batches\n(wrong: {share[0]} -> {share[-1]})" if share else f"{phase} batches")
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(_title("output-level cost vs loss vs entropy, epoch means (per sample cost = loss - entropy; <= 0 "
                        "when correct)", summary), fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return save_figure(fig, path)


def plot_sampled_child(summary: dict, cell: str, path: Path) -> Path:
    """The sampled children of a ``--mode dsnas`` run (SPEC 4 (b)): left, per edge, the fraction of an epoch's steps
    whose child ran an op other than ``none`` there (solid: edges from an input node; dashed: deeper ones); right,
    the mean number of edges a child wired per epoch, and the edges of the argmax(α) child at every α record."""
    sc = summary["sampled_child"]
    info = sc[cell]
    epochs = sc["epochs"]
    fixed = set(info.get("fixed_edges", []))
    fig, (ax_e, ax_n) = plt.subplots(1, 2, figsize=(13, 4.2))
    colours = plt.get_cmap("tab20")
    for n, (edge, values) in enumerate(info["non_none_fraction"].items()):
        src = int(edge.split("-")[0])
        label = f"{edge} (fixed)" if edge in fixed else edge
        ax_e.plot(epochs, _values(values), "-" if src < 2 else "--", color=colours(n % 20), marker="o", ms=3,
                  label=label)  # fmt: skip
    ax_e.set(xlabel="epoch", ylabel="steps whose child ran an op (not `none`)", ylim=(-0.03, 1.03),
             title=f"{cell} cell: how often each edge was wired")  # fmt: skip
    ax_e.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_e.grid(alpha=0.3)
    ax_e.legend(fontsize=7, ncol=2, title="edge (solid: from an input)", title_fontsize=7)
    ax_n.plot(epochs, _values(info["mean_edges"]), "-", color="#1f77b4", marker="o", ms=3,
              label=f"sampled child, mean per step ({info['pattern']})")  # fmt: skip
    ax_n.step(sc["times"], info["argmax_edges"], where="post", color="#d62728",
              label=f"argmax(α) child ({info['argmax_pattern']})")  # fmt: skip
    ax_n.set(xlabel="epoch", ylabel="edges with an op", ylim=(-0.2, info["live_edges"] + 0.2),
             title=f"{cell} cell: edges of the child (of {info['live_edges']} live)")  # fmt: skip
    ax_n.grid(alpha=0.3)
    ax_n.legend(fontsize=8)
    rest = "uniformly (α not updated)" if sc.get("sample_rest") == "uniform" else "from softmax(α)"
    fig.suptitle(_title(f"sampled children (DSNAS: one op per edge each step, free edges drawn {rest})", summary),
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path)
