"""The wiring evolution of a differentiable search (Xie et al., AISTATS 2021; SPEC 4).

Reads a search run directory (``alphas_history.npz``, ``metrics.jsonl`` with the derived cell
per epoch and, with ``--record-wiring``, the cost statistics) and extracts the three patterns
of the paper:

1. *growing rather than pruning*: an edge is **selected** at a time t when its strongest
   non-``none`` op has a larger softmax(α) than ``none``; the number of selected edges over
   time grows from zero when ``none`` starts on top;
2. *width preference*: the order in which edges are first selected (edges fed by the input
   nodes first?) and the derived cell's width/depth over epochs;
3. *no edge selected in bi-level search*: the count stays at zero.

The cost view: SPEC 4's C_ij^k means per op, early vs late in training (the paper's Fig. 4 form).
Under the softmax relaxation dL/dα^k = p^k (C^k - Σ_m p^m C^m), so an op gains weight exactly
when its cost is below the p-weighted mean cost of its edge; C(none) = 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cellnas.errors import RunError

__all__ = ["selection_times", "wiring_summary", "load_run"]


def _edges(n_nodes: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(2, n_nodes + 2) for i in range(j)]


def selection_times(history: np.ndarray, times: np.ndarray, ops) -> list[float | None]:
    """Per edge, the first time its strongest non-``none`` op overtakes ``none`` (None: never).

    ``history``: softmax(α) over time, shape (T, edges, ops). With no ``none`` op every edge is
    selected from the start.
    """
    ops = list(ops)
    if "none" not in ops:
        return [float(times[0])] * history.shape[1]
    k_none = ops.index("none")
    others = [k for k in range(len(ops)) if k != k_none]
    selected = history[:, :, others].max(-1) > history[:, :, k_none]  # (T, E)
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


def wiring_summary(run: dict) -> dict:
    """The JSON summary of ``cellnas analyze wiring`` for one run."""
    hist, cfg, metrics = run["history"], run["config"], run["metrics"]
    ops = [str(o) for o in hist["ops"]]
    n_nodes = int(cfg["nodes"])
    times = hist["epoch"]
    edges = _edges(n_nodes)
    cell_types = ("normal",) if cfg.get("all_normal") else ("normal", "reduce")
    out: dict = {
        "run": str(run["dir"]),
        "mode": cfg.get("mode", "bilevel"),
        "order": cfg.get("order", 1),
        "ops": ops,
        "times": times.tolist(),
        "cells": {},
    }
    for c in cell_types:
        h = hist[c]
        sel = selection_times(h, times, ops)
        k_none = ops.index("none") if "none" in ops else None
        count = [
            int(((np.delete(h[t], k_none, axis=-1).max(-1) > h[t][:, k_none]) if k_none is not None
                 else np.ones(len(edges), bool)).sum())
            for t in range(h.shape[0])
        ]  # fmt: skip
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
