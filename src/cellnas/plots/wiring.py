"""Figures of the wiring evolution (Xie et al., AISTATS 2021; SPEC 4): edges, growth, cost per op and per cell,
output-level cost."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cellnas.plots.cells import OP_COLOURS, save_figure  # noqa: E402

__all__ = ["plot_edges", "plot_growth", "plot_costs", "plot_cell_costs", "plot_output_costs"]


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
                ax.plot(layers, values, marker="o", ms=3, color=OP_COLOURS.get(op, "#333333"), label=op)
            ax.axhline(0, color="k", lw=0.6)
            ax.set(ylabel="mean cost C = dL/dZ", title=f"{cell} cells, {phase} batches, {when}")
            ax.grid(alpha=0.3)
        axes[1][col].set_xlabel("cell position in the network (0: the first cell, after the stem)")
        axes[1][col].set_xticks(layers)
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 7), fontsize=8, frameon=False)
    fig.suptitle(f"cost per op in each {cell} cell (mean over edges; `none`: 0 = the black line; negative: the op "
                 "lowers the loss there)", fontsize=10)  # fmt: skip
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
    fig.suptitle("output-level cost vs loss vs entropy, epoch means (per sample cost = loss - entropy; <= 0 when "
                 "correct)", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return save_figure(fig, path)
