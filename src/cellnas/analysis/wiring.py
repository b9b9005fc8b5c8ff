"""The wiring evolution of a differentiable search (Xie et al., AISTATS 2021; SPEC 4).

Reads a search run directory (``alphas_history.npz``, ``metrics.jsonl`` with the derived cell
per epoch and, with ``--record-wiring``, the cost statistics) and extracts the three patterns
of the paper:

1. *growing rather than pruning*: an edge is **selected** at a time t when its strongest
   non-``none`` op has a larger softmax(α) than ``none`` by more than ``margin``; the number of
   selected edges over time grows from zero when ``none`` starts on top;
2. *width preference*: the order in which edges are first selected (edges fed by the input
   nodes first?) and the derived cell's width/depth over epochs;
3. *no edge selected in bi-level search*: the count stays at zero.

The cost view: SPEC 4's C_ij^k means per op, early vs late in training (the paper's Fig. 4 form).
Under the softmax relaxation dL/dα^k = p^k (C^k - Σ_m p^m C^m), so an op gains weight exactly
when its cost is below the p-weighted mean cost of its edge; C(none) = 0.

**The selection margin** (the paper's exact rule is unknown, SPEC 4). With the DARTS
initialisation (α = 1e-3 · N(0, 1)) every op starts at softmax ≈ 1/|ops|, and the largest of
seven near-equal values beats the eighth (``none``) on most edges by chance alone: with a zero
margin nearly every edge counts as "selected from the start". The default ``margin = 0.001``
(in softmax probability; 0.8 % of 1/8) lies well above that initial spread (about 1e-4) and
below the gaps that searches open (0.002-0.01 after 20 digits epochs). ``--margin 0`` gives the
plain comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cellnas.errors import RunError
from cellnas.genotype import edge_pairs, searched_cell_types

__all__ = ["DEFAULT_MARGIN", "selected_mask", "selection_times", "wiring_summary", "load_run"]

#: softmax(α) by which an edge's strongest op must beat ``none`` to count as selected (module docstring)
DEFAULT_MARGIN = 0.001


def selected_mask(history: np.ndarray, ops, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """(T, edges) booleans: the strongest non-``none`` op beats ``none`` by more than ``margin``.

    ``history``: softmax(α) over time, shape (T, edges, ops). With no ``none`` op every edge is
    selected at every time.
    """
    ops = list(ops)
    if "none" not in ops:
        return np.ones(history.shape[:2], bool)
    k_none = ops.index("none")
    others = [k for k in range(len(ops)) if k != k_none]
    return history[:, :, others].max(-1) - history[:, :, k_none] > margin


def selection_times(history: np.ndarray, times: np.ndarray, ops, margin: float = DEFAULT_MARGIN) -> list[float | None]:
    """Per edge, the first time its strongest non-``none`` op overtakes ``none`` by more than ``margin``
    (None: never). With no ``none`` op every edge is selected from the start."""
    selected = selected_mask(history, ops, margin)
    out = []
    for e in range(history.shape[1]):
        hits = np.flatnonzero(selected[:, e])
        out.append(float(times[hits[0]]) if hits.size else None)
    return out


def load_run(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not (run_dir / "alphas_history.npz").is_file():
        raise RunError(f"{run_dir} is not a search run directory (no alphas_history.npz)")
    hist = np.load(run_dir / "alphas_history.npz")
    config = json.loads((run_dir / "config.json").read_text())
    metrics = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return {"dir": run_dir, "history": hist, "config": config, "metrics": metrics}


def wiring_summary(run: dict, margin: float = DEFAULT_MARGIN) -> dict:
    """The JSON summary of ``cellnas analyze wiring`` for one run (``margin``: see the module docstring)."""
    hist, cfg, metrics = run["history"], run["config"], run["metrics"]
    ops = [str(o) for o in hist["ops"]]
    n_nodes = int(cfg["nodes"])
    times = hist["epoch"]
    edges = edge_pairs(n_nodes)
    cell_types = searched_cell_types(bool(cfg.get("all_normal")))
    out: dict = {
        "run": str(run["dir"]),
        "mode": cfg.get("mode", "bilevel"),
        "order": cfg.get("order", 1),
        "ops": ops,
        "margin": margin,
        "times": times.tolist(),
        "cells": {},
    }
    for c in cell_types:
        h = hist[c]
        sel = selection_times(h, times, ops, margin)
        k_none = ops.index("none") if "none" in ops else None
        count = [int(n) for n in selected_mask(h, ops, margin).sum(1)]
        # edges above `none` already at the first record were not grown: listed apart
        order = sorted((t, e) for e, t in enumerate(sel) if t is not None and t > times[0])
        out["cells"][c] = {
            "edges": [
                {"edge": f"{i}-{j}", "from_input": i < 2, "selected_at": sel[e],
                 "final_none": float(h[-1, e, k_none]) if k_none is not None else None,
                 "final_best_op": ops[int(np.argmax(np.where(np.arange(len(ops)) == k_none, -1, h[-1, e])))]}
                for e, (i, j) in enumerate(edges)
            ],  # fmt: skip
            "selected_count": count,
            "selected_at_start": [f"{i}-{j}" for e, (i, j) in enumerate(edges) if sel[e] == times[0]],
            "growth_order": [f"{edges[e][0]}-{edges[e][1]}" for _, e in order],
            "input_edges_first": _inputs_first([edges[e] for _, e in order]),
            "pattern": "grow" if count and count[0] <= count[-1] and count[-1] > 0 else
                       ("none selected" if count and count[-1] == 0 else "prune"),  # fmt: skip
        }
        topo = [m.get("topology", {}).get(c) for m in metrics]
        out["cells"][c]["derived_width"] = [t["width"] if t else None for t in topo]
        out["cells"][c]["derived_depth"] = [t["depth"] if t else None for t in topo]
    costs = [m["wiring_cost"] for m in metrics if "wiring_cost" in m]
    if costs:
        out["cost"] = {"first_epoch": _cost_per_op(costs[0], ops), "last_epoch": _cost_per_op(costs[-1], ops),
                       "epochs": len(costs)}  # fmt: skip
    return out


def _inputs_first(order: list[tuple[int, int]]) -> float | None:
    """Fraction of the first half of the selected edges that leave an input node."""
    if not order:
        return None
    head = order[: max(1, len(order) // 2)]
    return sum(i < 2 for i, _ in head) / len(head)


def _cost_per_op(epoch_cost: dict, ops: list[str]) -> dict:
    """Mean over edges of the per-(edge, op) mean cost, per phase and cell type -> {phase: {cell: {op: c}}}."""
    out: dict = {}
    for phase, cells in epoch_cost.items():
        for cell, stats in cells.items():
            if stats.get("mean") is None:
                continue
            mean = np.asarray(stats["mean"]).mean(0)
            out.setdefault(phase, {})[cell] = {op: float(v) for op, v in zip(ops, mean)}
    return out
