"""Figures of a search run: the derived cells, α heatmaps, curves and the evolution of softmax(α).

Everything is drawn from the run directory's own files, so a run can be re-plotted at any time.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cellnas.genotype import Genotype, searched_cell_types  # noqa: E402
from cellnas.plots.cells import OP_COLOURS, draw_genotype, save_figure  # noqa: E402

__all__ = [
    "plot_search_run",
    "edge_labels",
    "plot_alpha_heatmap",
    "plot_alpha_evolution",
    "plot_edge_weight_evolution",
    "plot_curves",
    "derivation_scores",
]


def edge_labels(n_nodes: int) -> list[str]:
    """'i→j' for every supernet edge, in α row order (SPEC 1.3: node j reads nodes 0..j-1)."""
    return [f"{i}→{j}" for j in range(2, n_nodes + 2) for i in range(j)]


def derivation_scores(alphas, name: str, n_nodes: int) -> tuple[np.ndarray, str]:
    """The (edges x ops) scores the derivation ranks for cell ``name`` from an ``alphas.npz``, and what they are:
    softmax(α), times the node-normalised β of each edge when the run used PC-DARTS's edge normalisation."""
    logits = alphas[name]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    if f"betas_{name}" not in alphas:
        return probs, "softmax(α)"
    from cellnas.supernet import edge_weights

    return probs * edge_weights(alphas[f"betas_{name}"], n_nodes)[:, None], "softmax(α) × edge weight"


def plot_alpha_heatmap(
    probs: np.ndarray, ops, n_nodes: int, title: str, path: Path, label: str = "softmax(α)"
) -> Path:
    """The final weights as a heatmap, one row per edge. The colours span the values' own range (early in a search
    every weight is near 1/|ops|, and a scale from 0 would show one flat colour), and each cell prints its value
    with as many decimals as the spread needs to tell them apart (2 to 4)."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(ops), 0.5 + 0.33 * probs.shape[0]))
    lo, hi = float(np.min(probs)), float(np.max(probs))
    if hi <= lo:  # all equal: any scale shows one colour
        lo, hi = min(0.0, lo), max(hi, lo + 1e-12)
    im = ax.imshow(probs, cmap="viridis", aspect="auto", vmin=lo, vmax=hi)
    ax.set_xticks(range(len(ops)), list(ops), rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(probs.shape[0]), edge_labels(n_nodes), fontsize=8)
    digits = int(min(4, max(2, np.ceil(-np.log10(hi - lo)) + 1)))
    for (r, c), v in np.ndenumerate(probs):
        dark = v < lo + 0.6 * (hi - lo)  # viridis is dark at the low end
        ax.text(c, r, f"{v:.{digits}f}", ha="center", va="center", fontsize=6, color="white" if dark else "k")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_alpha_evolution(history: np.ndarray, epochs: np.ndarray, ops, n_nodes: int, title: str, path: Path) -> Path:
    """One panel per edge: softmax(α) of every op against epochs (`none` dashed)."""
    n_edges = history.shape[1]
    cols = min(5, n_edges)
    rows = (n_edges + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.2 * rows), sharex=True, sharey=True, squeeze=False)
    labels = edge_labels(n_nodes)
    for e in range(rows * cols):
        ax = axes[e // cols][e % cols]
        if e >= n_edges:
            ax.set_axis_off()
            continue
        for k, op in enumerate(ops):
            ax.plot(epochs, history[:, e, k], color=OP_COLOURS.get(op), ls="--" if op == "none" else "-", lw=1.2,
                    label=op)  # fmt: skip
        ax.set_title(f"edge {labels[e]}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs (0: the initial α), never epoch 1.5
        if e + cols >= n_edges:  # the lowest panel of its column
            ax.set_xlabel("epoch", fontsize=8)
    axes[0][0].set_ylabel("softmax(α)", fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(ops), 8), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    return save_figure(fig, path)


def plot_edge_weight_evolution(history: np.ndarray, epochs: np.ndarray, n_nodes: int, title: str, path: Path) -> Path:
    """PC-DARTS's edge normalisation: one panel per intermediate node, the normalised β of each incoming edge
    against epochs (each panel's lines sum to 1). ``history`` is (records x edges), in α row order."""
    fig, axes = plt.subplots(1, n_nodes, figsize=(2.8 * n_nodes, 2.6), squeeze=False)  # own y scale: small moves show
    labels = edge_labels(n_nodes)
    row = 0
    for node in range(n_nodes):
        ax = axes[0][node]
        for _ in range(node + 2):  # node j = node + 2 reads nodes 0..j-1
            ax.plot(epochs, history[:, row], lw=1.2, label=labels[row])
            row += 1
        ax.set_title(f"into node {node + 2}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, frameon=False)
    axes[0][0].set_ylabel("edge weight", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path)


def plot_curves(metrics: list[dict], path: Path, title: str = "search") -> Path:
    """Loss and accuracy of each epoch (numbered from 1, on integer ticks): weight step, α step and evaluation."""
    epochs = [m["epoch"] + 1 for m in metrics]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train", "weight step (train half)"), ("search", "α step (search half)"),
                       ("valid", "search half, eval mode")):  # fmt: skip
        if any(f"{key}_loss" in m for m in metrics):
            xs = [e for e, m in zip(epochs, metrics) if f"{key}_loss" in m]
            ax_l.plot(xs, [m[f"{key}_loss"] for m in metrics if f"{key}_loss" in m], marker="o", ms=3, label=label)
            ax_a.plot(xs, [m[f"{key}_acc"] for m in metrics if f"{key}_acc" in m], marker="o", ms=3, label=label)
    ax_l.set(xlabel="epoch", ylabel="cross-entropy", title=f"{title}: loss")
    ax_a.set(xlabel="epoch", ylabel="accuracy", title=f"{title}: accuracy")
    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # one point per epoch: no epoch 1.2
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_search_run(run_dir: str | Path) -> list[Path]:
    """Draw every figure of a search run into ``run_dir``; returns the files written."""
    from cellnas.runs import read_metrics

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    n_nodes = int(cfg["nodes"])
    doc = json.loads((run_dir / "genotype.json").read_text())
    genotype = Genotype.from_dict(doc)  # the run's own file: read without the reader's warnings
    unsearched = set(doc.get("unsearched") or ())  # e.g. the normal cell of a supernet of reduction cells only
    cell_types = tuple(c for c in searched_cell_types(bool(cfg.get("all_normal"))) if c not in unsearched)
    figure = draw_genotype(genotype, title=f"derived cells: {run_dir.name}", cell_types=cell_types)
    written = [save_figure(figure, run_dir / "cell.png")]
    alphas = np.load(run_dir / "alphas.npz")
    ops = [str(o) for o in alphas["ops"]]
    hist = np.load(run_dir / "alphas_history.npz")
    for name in cell_types:
        scores, label = derivation_scores(alphas, name, n_nodes)
        written.append(plot_alpha_heatmap(scores, ops, n_nodes, f"final {label}, {name} cell",
                                          run_dir / f"alphas_{name}.png", label))  # fmt: skip
        if hist[name].ndim == 3 and hist[name].shape[0] > 1:
            written.append(plot_alpha_evolution(hist[name], hist["epoch"], ops, n_nodes,
                                                f"evolution of softmax(α), {name} cell",
                                                run_dir / f"alpha_evolution_{name}.png"))  # fmt: skip
        edges = hist[f"edge_weights_{name}"] if f"edge_weights_{name}" in hist else None
        if edges is not None and edges.ndim == 2 and edges.shape[0] > 1:
            written.append(plot_edge_weight_evolution(edges, hist["epoch"], n_nodes,
                                                      f"evolution of the edge weights (normalised β), {name} cell",
                                                      run_dir / f"edge_weights_{name}.png"))  # fmt: skip
    metrics = read_metrics(run_dir)
    if metrics:
        written.append(plot_curves(metrics, run_dir / "curves.png"))
    return written
