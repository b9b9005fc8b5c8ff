"""Figures of the wiring evolution (Xie et al., AISTATS 2021): edges, growth, cost per op."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cellnas.plots.cells import OP_COLOURS, save_figure  # noqa: E402

__all__ = ["plot_edges", "plot_growth", "plot_costs"]


def plot_edges(run: dict, summary: dict, cell: str, path: Path) -> Path:
    """Per edge: softmax(α) of `none` against the strongest other op; the selection time marked."""
    hist = run["history"][cell]
    ops = summary["ops"]
    times = np.asarray(summary["times"])
    k_none = ops.index("none") if "none" in ops else None
    edges = summary["cells"][cell]["edges"]
    cols = min(5, len(edges))
    rows = (len(edges) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.1 * rows), sharex=True, sharey=True, squeeze=False)
    for e, info in enumerate(edges):
        ax = axes[e // cols][e % cols]
        others = hist[:, e].copy()
        if k_none is not None:
            ax.plot(times, hist[:, e, k_none], "--", color="#888888", label="none")
            others[:, k_none] = -1
        ax.plot(times, others.max(-1), color="#d62728", label="strongest other op")
        if info["selected_at"] is not None:
            ax.axvline(info["selected_at"], color="#2ca02c", lw=0.8)
        ax.set_title(f"{info['edge']}{' (input)' if info['from_input'] else ''}: {info['final_best_op']}", fontsize=7)
        ax.tick_params(labelsize=7)
    for e in range(len(edges), rows * cols):
        axes[e // cols][e % cols].set_axis_off()
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{cell} cell: `none` vs the strongest op per edge (green: first selected, lead > "
                 f"{summary.get('margin', 0):g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return save_figure(fig, path)


def plot_growth(runs: list[tuple[dict, dict]], path: Path) -> Path:
    """Selected edges over time and the derived cell's width/depth over epochs, one line per run and cell type."""
    fig, (ax_n, ax_w, ax_d) = plt.subplots(1, 3, figsize=(14, 3.8))
    for _run, summary in runs:
        label = f"{summary['mode']} ({Path(summary['run']).name})"
        for cell, info in summary["cells"].items():
            ls = "-" if cell == "normal" else ":"
            ax_n.plot(summary["times"], info["selected_count"], ls, marker="o", ms=2, label=f"{label}, {cell}")
            epochs = np.arange(1, len(info["derived_width"]) + 1)
            ax_w.plot(epochs, info["derived_width"], ls, marker="o", ms=2, label=f"{label}, {cell}")
            ax_d.plot(epochs, info["derived_depth"], ls, marker="o", ms=2, label=f"{label}, {cell}")
    ax_n.set(xlabel="epoch", ylabel=f"edges whose best op leads `none` by > {runs[0][1].get('margin', 0):g}",
             title="grow or prune?")
    ax_w.set(xlabel="epoch", ylabel="width (units of c)", title="derived cell width")
    ax_d.set(xlabel="epoch", ylabel="depth", title="derived cell depth")
    for ax in (ax_n, ax_w, ax_d):
        ax.grid(alpha=0.3)
    ax_n.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_costs(summary: dict, path: Path) -> Path:
    """Mean cost C per op, first epoch vs last epoch, per phase (the paper's Fig. 4 form)."""
    cost = summary["cost"]
    phases = sorted(cost["first_epoch"])
    fig, axes = plt.subplots(1, len(phases), figsize=(6.5 * len(phases), 3.8), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        first = cost["first_epoch"][phase].get("normal", {})
        last = cost["last_epoch"][phase].get("normal", {})
        ops = list(first)
        x = np.arange(len(ops))
        ax.bar(x - 0.2, [first[o] for o in ops], 0.4, label="first epoch", color="#9ecae1")
        ax.bar(x + 0.2, [last[o] for o in ops], 0.4, label=f"epoch {cost['epochs']}",
               color=[OP_COLOURS.get(o, "#333333") for o in ops])  # fmt: skip
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, ops, rotation=35, ha="right", fontsize=8)
        ax.set(ylabel="mean cost C = dL/dZ", title=f"normal cell, {phase} batches")
        ax.legend(fontsize=8)
    fig.suptitle("cost per op (negative: the op lowers the loss and gains weight against `none`)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
