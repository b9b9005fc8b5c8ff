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
when its cost is below the p-weighted mean cost of its edge; C(none) = 0. Runs recorded with the
per-cell costs (``wiring.npz``) also give them per cell position, the summed cost being their sum
(which cells drive the shared α, and does the sign of the cost depend on depth?), and the
output-level cost of SPEC 4 (d) per epoch for correctly and wrongly classified samples, beside the
loss and the prediction entropy. Per sample the three are tied: cost = loss - entropy
(-z_y + Σ p_i z_i = (logsumexp z - z_y) - (logsumexp z - Σ p_i z_i)), so a correct sample's loss
never exceeds its entropy. Run directories without ``wiring.npz`` are analysed as before.

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
    """A search run directory's records: softmax(α) history, config, metrics and (``wiring``, None when absent)
    the arrays of ``wiring.npz``."""
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
    # the per-cell costs and output-level statistics of --record-wiring (search.wiring.CostRecorder.arrays)
    wiring = run_dir / "wiring.npz"
    arrays = dict(np.load(wiring)) if wiring.is_file() else None
    return {"dir": run_dir, "history": hist, "config": config, "metrics": metrics, "wiring": arrays}


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
    if run.get("wiring") is not None:
        cell_cost = _cell_cost(run["wiring"], ops, cell_types)
        if cell_cost is not None:
            out["cell_cost"] = cell_cost
        output_cost = _output_cost(run["wiring"])
        if output_cost is not None:
            out["output_cost"] = output_cost
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


_PHASES = ("search", "train")


def _cell_cost(arrays: dict, ops: list[str], cell_types) -> dict | None:
    """The per-cell cost (SPEC 4), mean over edges, at the first and the last recorded epoch.

    -> ``{"layers": {cell: [network position]}, "epochs": [first, last] (counted from 1),
    "first_epoch"|"last_epoch": {phase: {cell: {op: [cost per cell]}}}}``; None when nothing was recorded.
    """
    per_op = {}
    for p in _PHASES:
        for c in cell_types:
            a = arrays.get(f"cell_cost_{p}_{c}")
            if a is not None and a.ndim == 4 and a.shape[1] > 0 and np.isfinite(a).any():
                per_op[(p, c)] = a.mean(2)  # (T, cells, E, O) -> (T, cells, O)
    if not per_op:
        return None
    # an epoch counts when some phase recorded it (NaN: a phase without steps, or an epoch of an older checkpoint)
    recorded = np.flatnonzero(np.any([np.isfinite(v).all((1, 2)) for v in per_op.values()], axis=0))
    first, last = int(recorded[0]), int(recorded[-1])
    epoch = arrays["epoch"]
    out: dict = {
        "layers": {c: arrays[f"layers_{c}"].tolist() for c in cell_types},
        "epochs": [int(epoch[first]) + 1, int(epoch[last]) + 1],
        "first_epoch": {},
        "last_epoch": {},
    }
    for (p, c), v in per_op.items():
        for name, t in (("first_epoch", first), ("last_epoch", last)):
            if np.isfinite(v[t]).all():
                out[name].setdefault(p, {})[c] = {op: v[t, :, k].tolist() for k, op in enumerate(ops)}
    return out


def _output_cost(arrays: dict) -> dict | None:
    """The output-level cost, loss and entropy (SPEC 4 (d)) per epoch, for correct, wrong and all samples.

    -> ``{"epochs": [1..T], phase: {"correct"|"wrong"|"all": {"samples"|"cost"|"loss"|"entropy": [per epoch]}}}``;
    a phase without samples is left out, an epoch without a value is None.
    """
    groups = [str(g) for g in arrays.get("output_groups", ("correct", "wrong"))]
    out: dict = {"epochs": (arrays["epoch"] + 1).tolist()}
    for p in _PHASES:
        samples = arrays.get(f"output_samples_{p}")
        if samples is None or not np.nansum(samples) > 0:
            continue
        stats = {name: arrays[f"output_{name}_{p}"] for name in ("cost", "loss", "entropy")}
        phase = {}
        for g, name in enumerate(groups):
            phase[name] = {"samples": _listed(samples[:, g]), **{k: _listed(v[:, g]) for k, v in stats.items()}}
        total = samples.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            phase["all"] = {"samples": _listed(total),
                            **{k: _listed(np.nansum(v * samples, 1) / total) for k, v in stats.items()}}  # fmt: skip
        out[p] = phase
    return out if len(out) > 1 else None


def _listed(values: np.ndarray) -> list[float | None]:
    """JSON numbers: NaN (not recorded) as None."""
    return [float(v) if np.isfinite(v) else None for v in values]
