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
never exceeds its entropy. Run directories without ``wiring.npz`` are analysed as before. The mean cost
per op is also given at every epoch (``cost.per_epoch``), the form of the paper's ablation figure (Fig. 10b).

**Edge ablations** (SPEC 4 (c); ``--remove-edge`` / ``--fix-edge``, read from the run's ``config.json``):
the search ran with the op weights Z of :class:`~cellnas.search.wiring.ControlledSupernet`, all 0 on a
removed edge and one-hot on a fixed one, whatever α says there. The analysis reads the edges through the
same Z: a removed edge is never selected, has no op and no place in the counts; a fixed edge carries its
fixed op and counts as selected from the start (its Z leads ``none`` by 1). The recorder still logs a cost
for every op of an ablated edge (<dL/dx_j, o_k(x_i)> exists even where Z = 0), but only the fixed op's
is the cost of something the network computes: the mean cost per op is taken over the *free* edges
(neither removed nor fixed, their α learnt), and the fixed op's cost on a fixed edge is reported apart.
Runs without ablations are analysed as before (every edge is free).

**Sampled children** (``--mode dsnas``, :mod:`cellnas.search.dsnas`; SPEC 4 (b)): the network of a step is a
child with one op per edge, so beside softmax(α) the summary follows the children themselves
(``sampled_child``): per epoch and edge, the fraction of steps whose child ran an op other than ``none`` there,
their sum (the mean number of edges a child wires: does it grow?), and the edges of the argmax(α) child (``none``
included, the reference's ``--gen_max_child`` child) at every α record. The recorded cost of such a run is the
chosen op's only, its mean taken over the steps that chose the op (``null`` where none did); the means over
edges skip the edges where an op was not chosen.

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
import zipfile
import zlib
from pathlib import Path

import numpy as np

from cellnas.errors import GenotypeError, RunError
from cellnas.genotype import edge_pairs, parse_edge, searched_cell_types
from cellnas.runs import read_json_object, search_run

__all__ = ["DEFAULT_MARGIN", "ablated_weights", "run_ablations", "selected_mask", "selection_times",
           "wiring_summary", "load_run"]

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
    return _first_times(selected_mask(history, ops, margin), times)


def _first_times(selected: np.ndarray, times: np.ndarray) -> list[float | None]:
    """Per edge (column of ``selected``, T x edges), the first time it is True (None: never)."""
    out = []
    for e in range(selected.shape[1]):
        hits = np.flatnonzero(selected[:, e])
        out.append(float(times[hits[0]]) if hits.size else None)
    return out


def _edge_row(edge: str | int, n_nodes: int) -> int:
    """An edge of ``config.json``'s ablations as its α row (:func:`~cellnas.genotype.parse_edge`, which checked it
    when the run started)."""
    try:
        return parse_edge(edge, n_nodes)
    except GenotypeError as exc:
        raise RunError(f"config.json ablates an edge this run's cells lack: {exc}") from None


def run_ablations(cfg: dict) -> dict[str, dict]:
    """The edge ablations of a search run (SPEC 4 (c)), from ``config.json``'s ``remove_edges`` and ``fix_edges``.

    -> ``{cell: {"removed": [edge row, ...], "fixed": {edge row: op}}}`` for the cell types that have one; ``{}``
    for a run without ablations (also one from before ``--remove-edge`` / ``--fix-edge``).
    """
    n_nodes = int(cfg["nodes"])
    out: dict[str, dict] = {}
    for c, edges in (cfg.get("remove_edges") or {}).items():
        if edges:
            out.setdefault(c, {"removed": [], "fixed": {}})["removed"] = sorted(_edge_row(e, n_nodes) for e in edges)
    for c, mapping in (cfg.get("fix_edges") or {}).items():
        if mapping:
            out.setdefault(c, {"removed": [], "fixed": {}})["fixed"] = {
                _edge_row(e, n_nodes): str(op) for e, op in mapping.items()
            }
    return out


def ablated_weights(history: np.ndarray, ops, ablation: dict | None) -> np.ndarray:
    """The op weights Z the search network used (``ControlledSupernet.mixing_weights``, SPEC 4 (c)): softmax(α)
    ``history`` (T, edges, ops) with a removed edge's row all 0 and a fixed edge's row one-hot on its op."""
    if not ablation:
        return history
    ops = list(ops)
    z = np.array(history, dtype=float, copy=True)
    z[:, ablation["removed"]] = 0.0
    for e, op in ablation["fixed"].items():
        z[:, e] = 0.0
        z[:, e, ops.index(op)] = 1.0
    return z


def load_run(run_dir: str | Path) -> dict:
    """A search run directory's records: softmax(α) history, config, metrics and (``wiring``, None when absent)
    the arrays of ``wiring.npz``. A missing or damaged record is a :class:`RunError` naming the file."""
    run_dir = Path(run_dir)
    if not (run_dir / "alphas_history.npz").is_file():
        raise RunError(_no_history(run_dir))
    hist = _load_npz(run_dir / "alphas_history.npz")
    config = read_json_object(run_dir / "config.json")
    if config is None:
        raise RunError(f"{run_dir / 'config.json'} is missing or damaged; a search run directory needs the "
                       "config.json its search wrote")  # fmt: skip
    metrics = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise RunError(f"cannot read {run_dir / 'metrics.jsonl'}: {exc.strerror or exc}; "
                       f"`cellnas search --resume {run_dir}` continues the run and rewrites it") from None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            metrics.append(record)
    # the per-cell costs and output-level statistics of --record-wiring (search.wiring.CostRecorder.arrays)
    wiring = run_dir / "wiring.npz"
    arrays = _load_npz(wiring) if wiring.is_file() else None
    return {"dir": run_dir, "history": hist, "config": config, "metrics": metrics, "wiring": arrays}


def _no_history(run_dir: Path) -> str:
    """Why ``run_dir`` has no ``alphas_history.npz``, from the run kind its ``meta.json`` records: a training run
    (which never has one), a search that has not finished an epoch (resume it), or no search run at all."""
    meta = read_json_object(run_dir / "meta.json")
    kind = meta.get("kind") if meta is not None else None
    need = "analyze wiring needs the directory of a `cellnas search` run (it reads the search's alphas_history.npz)"
    if kind == "train":
        return f"{run_dir} is a `cellnas train` run, not a search; {need}"
    if kind == "train-seeds":
        return f"{run_dir} is a `cellnas train --seeds` run, not a search; {need}"
    # a meta.json naming no kind (damaged, or from an older cellnas): what the directory holds decides
    unknown = kind is None and ((run_dir / "checkpoint.pt").is_file() or search_run(run_dir) is not None)
    if kind == "search" or unknown:
        return (f"{run_dir} is a search run that has not finished an epoch yet (no alphas_history.npz); "
                f"continue it with `cellnas search --resume {run_dir}`, then analyse it")  # fmt: skip
    return f"{run_dir} is not a search run directory (no alphas_history.npz); give a `cellnas search` run directory"


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, read now (``np.load`` reads lazily): a truncated or otherwise
    damaged file is a one-line :class:`RunError` naming it, never a traceback from deep in the analysis."""
    try:
        with np.load(path) as data:
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise RunError(f"{path} is damaged ({why}); `cellnas search --resume {path.parent}` rewrites it from the "
                       "run's checkpoint") from None


def wiring_summary(run: dict, margin: float = DEFAULT_MARGIN) -> dict:
    """The JSON summary of ``cellnas analyze wiring`` for one run (``margin``: see the module docstring)."""
    hist, cfg, metrics = run["history"], run["config"], run["metrics"]
    ops = [str(o) for o in hist["ops"]]
    n_nodes = int(cfg["nodes"])
    times = hist["epoch"]
    edges = edge_pairs(n_nodes)
    cell_types = searched_cell_types(bool(cfg.get("all_normal")))
    ablations = run_ablations(cfg)
    no_ablation = {"removed": [], "fixed": {}}
    # the edges whose α the search learnt: the cost means average over these (module docstring)
    free = {c: [e for e in range(len(edges)) if e not in ablations.get(c, no_ablation)["removed"]
                and e not in ablations.get(c, no_ablation)["fixed"]] for c in cell_types}  # fmt: skip
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
        ablation = ablations.get(c, no_ablation)
        removed = ablation["removed"]
        h = ablated_weights(hist[c], ops, ablations.get(c))  # the Z the network used
        mask = selected_mask(h, ops, margin)
        mask[:, removed] = False  # also without a `none` op, where every edge counts as selected
        sel = _first_times(mask, times)
        k_none = ops.index("none") if "none" in ops else None
        count = [int(n) for n in mask.sum(1)]
        # the pattern is the free edges': a fixed edge is selected throughout by construction
        free_count = [int(n) for n in mask[:, free[c]].sum(1)]
        # edges above `none` already at the first record were not grown: listed apart
        order = sorted((t, e) for e, t in enumerate(sel) if t is not None and t > times[0])
        out["cells"][c] = {
            "edges": [_edge_record(e, i, j, h, sel, ops, k_none, ablation, bool(ablations))
                      for e, (i, j) in enumerate(edges)],  # fmt: skip
            "selected_count": count,
            "selected_at_start": [f"{i}-{j}" for e, (i, j) in enumerate(edges) if sel[e] == times[0]],
            "growth_order": [f"{edges[e][0]}-{edges[e][1]}" for _, e in order],
            "input_edges_first": _inputs_first([edges[e] for _, e in order]),
            "pattern": _pattern(free_count),
        }
        topo = [m.get("topology", {}).get(c) for m in metrics]
        out["cells"][c]["derived_width"] = [t["width"] if t else None for t in topo]
        out["cells"][c]["derived_depth"] = [t["depth"] if t else None for t in topo]
        if ablations:
            out["cells"][c].update({
                "removed_edges": [_name(edges, e) for e in removed],
                "fixed_edges": {_name(edges, e): op for e, op in sorted(ablation["fixed"].items())},
                "live_edges": len(edges) - len(removed),
                "free_edges": [_name(edges, e) for e in free[c]],
            })  # fmt: skip
    recorded = [m for m in metrics if "wiring_cost" in m]
    if recorded:
        costs = [m["wiring_cost"] for m in recorded]
        out["cost"] = {"first_epoch": _cost_per_op(costs[0], ops, free),
                       "last_epoch": _cost_per_op(costs[-1], ops, free),
                       "epochs": len(costs),
                       "per_epoch": _cost_per_epoch(recorded, ops, free)}  # fmt: skip
        if any(a["fixed"] for a in ablations.values()):
            out["cost"]["fixed_edges"] = _fixed_cost_per_epoch(costs, ops, edges, ablations)
    sampled = _sampled_child(run, ops, cell_types, ablations, edges)
    if sampled is not None:
        out["sampled_child"] = sampled
    if run.get("wiring") is not None:
        cell_cost = _cell_cost(run["wiring"], ops, cell_types, free, ablations, edges)
        if cell_cost is not None:
            out["cell_cost"] = cell_cost
        output_cost = _output_cost(run["wiring"])
        if output_cost is not None:
            out["output_cost"] = output_cost
    return out


def _name(edges: list[tuple[int, int]], e: int) -> str:
    return "{}-{}".format(*edges[e])


def _edge_record(e: int, i: int, j: int, z: np.ndarray, sel: list, ops: list[str], k_none: int | None,
                 ablation: dict, ablated_run: bool) -> dict:
    """One edge of the summary, read through the op weights ``z`` the network used (:func:`ablated_weights`):
    a fixed edge's best op is its fixed op; a removed edge has none, and is never selected."""
    record = {"edge": f"{i}-{j}", "from_input": i < 2, "selected_at": sel[e],
              "final_none": float(z[-1, e, k_none]) if k_none is not None else None,
              "final_best_op": ops[int(np.argmax(np.where(np.arange(len(ops)) == k_none, -1, z[-1, e])))]}  # fmt: skip
    if e in ablation["removed"]:
        record.update(final_none=None, final_best_op=None)
    if ablated_run:  # older summaries keep their keys
        record["ablation"] = "removed" if e in ablation["removed"] else "fixed" if e in ablation["fixed"] else None
    return record


def _pattern(count: list[int]) -> str:
    """Grow, prune or none selected, from the number of selected edges over time."""
    if count and count[0] <= count[-1] and count[-1] > 0:
        return "grow"
    return "none selected" if count and count[-1] == 0 else "prune"


def _inputs_first(order: list[tuple[int, int]]) -> float | None:
    """Fraction of the first half of the selected edges that leave an input node."""
    if not order:
        return None
    head = order[: max(1, len(order) // 2)]
    return sum(i < 2 for i, _ in head) / len(head)


def _cost_per_op(epoch_cost: dict, ops: list[str], free: dict[str, list[int]]) -> dict:
    """Mean over a cell's free edges (all edges without ablations) of the per-(edge, op) mean cost, per phase and
    cell type -> {phase: {cell: {op: c}}}; a cell with no free edge is left out."""
    out: dict = {}
    for phase, cells in epoch_cost.items():
        for cell, stats in cells.items():
            if stats.get("mean") is None or not free.get(cell):
                continue
            mean = _edge_mean(_floats(stats["mean"])[free[cell]], axis=0)
            out.setdefault(phase, {})[cell] = {op: float(v) if np.isfinite(v) else None for op, v in zip(ops, mean)}
    return out


def _floats(rows) -> np.ndarray:
    """A (nested) JSON list of numbers as floats, NaN for ``null`` (an op that no step of a sampled run chose)."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _edge_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """The mean over edges; where some are NaN (a sampled run's unchosen ops) the mean of the others, NaN if none."""
    if np.isfinite(values).all():
        return values.mean(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.isfinite(values).sum(axis)
        return np.where(n > 0, np.nansum(values, axis) / np.maximum(n, 1), np.nan)


def _cost_per_epoch(recorded: list[dict], ops: list[str], free: dict[str, list[int]]) -> dict:
    """The mean cost per op over the free edges at every recorded epoch (SPEC 4 (c), the paper's Fig. 10b).

    -> ``{"epochs": [epoch, counted from 1], phase: {cell: {op: [c per epoch]}}}``; None at an epoch where the phase
    took no step; a phase without any is left out.
    """
    per_epoch = [_cost_per_op(m["wiring_cost"], ops, free) for m in recorded]
    out: dict = {"epochs": [int(m.get("epoch", t)) + 1 for t, m in enumerate(recorded)]}
    for phase in _PHASES:
        cells = {c for p in per_epoch for c in p.get(phase, {})}
        for cell in sorted(cells):
            out.setdefault(phase, {})[cell] = {
                op: [p[phase][cell][op] if cell in p.get(phase, {}) else None for p in per_epoch] for op in ops
            }
    return out


def _fixed_cost_per_epoch(costs: list[dict], ops: list[str], edges: list[tuple[int, int]],
                          ablations: dict[str, dict]) -> dict:
    """The cost of each fixed edge's op at every recorded epoch (the op the network computes there; SPEC 4 (c)).

    -> ``{phase: {cell: {"i-j": {"op": op, "cost": [c per epoch, None without a step]}}}}``.
    """
    out: dict = {}
    for phase in _PHASES:
        for cell, ablation in ablations.items():
            rows = [(m.get(phase) or {}).get(cell, {}).get("mean") for m in costs]
            if not ablation["fixed"] or all(r is None for r in rows):
                continue
            out.setdefault(phase, {})[cell] = {
                _name(edges, e): {"op": op, "cost": [None if r is None else _listed(_floats(r)[e, [ops.index(op)]])[0]
                                                     for r in rows]}
                for e, op in sorted(ablation["fixed"].items())
            }  # fmt: skip
    return out


_PHASES = ("search", "train")


def _cell_cost(arrays: dict, ops: list[str], cell_types, free: dict[str, list[int]],
               ablations: dict[str, dict], edges: list[tuple[int, int]]) -> dict | None:
    """The per-cell cost (SPEC 4), mean over the free edges, at the first and the last recorded epoch.

    -> ``{"layers": {cell: [network position]}, "epochs": [first, last] (counted from 1),
    "first_epoch"|"last_epoch": {phase: {cell: {op: [cost per cell]}}}}``, and in a run with fixed edges
    ``"fixed_edges": {"first_epoch"|"last_epoch": {phase: {cell: {"i-j": {"op": op, "cost": [per cell]}}}}}``
    (the fixed op's cost on that edge); None when nothing was recorded.
    """
    recorded_arrays = {}
    for p in _PHASES:
        for c in cell_types:
            a = arrays.get(f"cell_cost_{p}_{c}")
            if a is not None and a.ndim == 4 and a.shape[1] > 0 and np.isfinite(a).any():
                recorded_arrays[(p, c)] = a  # (T, cells, E, O)
    if not recorded_arrays:
        return None
    # a sampled run (chosen_* arrays) has NaN for the ops no step of an epoch chose: its epoch counts with any value
    sampled = any(k.startswith("chosen_") for k in arrays)

    def seen(a: np.ndarray, axes) -> np.ndarray:
        return np.isfinite(a).any(axes) if sampled else np.isfinite(a).all(axes)

    # an epoch counts when some phase recorded it (NaN: a phase without steps, or an epoch of an older checkpoint)
    recorded = np.flatnonzero(np.any([seen(a, (1, 2, 3)) for a in recorded_arrays.values()], axis=0))
    first, last = int(recorded[0]), int(recorded[-1])
    epoch = arrays["epoch"]
    out: dict = {
        "layers": {c: arrays[f"layers_{c}"].tolist() for c in cell_types},
        "epochs": [int(epoch[first]) + 1, int(epoch[last]) + 1],
        "first_epoch": {},
        "last_epoch": {},
    }
    fixed_out: dict = {"first_epoch": {}, "last_epoch": {}}
    for (p, c), a in recorded_arrays.items():
        for name, t in (("first_epoch", first), ("last_epoch", last)):
            if not seen(a[t], None):
                continue
            if free.get(c):
                per_op = _edge_mean(a[t][:, free[c]], axis=1)  # (cells, E, O) -> (cells, O)
                out[name].setdefault(p, {})[c] = {op: _listed(per_op[:, k]) if sampled else per_op[:, k].tolist()
                                                  for k, op in enumerate(ops)}  # fmt: skip
            fixed = ablations.get(c, {}).get("fixed", {})
            if fixed:
                fixed_out[name].setdefault(p, {})[c] = {
                    _name(edges, e): {"op": op, "cost": _listed(a[t][:, e, ops.index(op)]) if sampled
                                      else a[t][:, e, ops.index(op)].tolist()}
                    for e, op in sorted(fixed.items())
                }  # fmt: skip
    if any(fixed_out.values()):
        out["fixed_edges"] = fixed_out
    return out


def _sampled_child(run: dict, ops: list[str], cell_types, ablations: dict[str, dict],
                   edges: list[tuple[int, int]]) -> dict | None:  # fmt: skip
    """The sampled children of a ``--mode dsnas`` run (SPEC 4 (b); ``metrics.jsonl``'s ``sampled``), per cell type:

    * ``non_none_fraction`` ``{"i-j": [per epoch]}``: the fraction of the epoch's steps whose child ran an op other
      than ``none`` on the edge (a removed edge is left out; a fixed edge is 1);
    * ``mean_edges`` [per epoch]: their sum, the mean number of edges a child wired (of ``live_edges``);
    * ``argmax_edges`` [per α record, at ``times``]: the edges on which argmax(α) (``none`` included) is another op,
      the reference's ``--gen_max_child`` child (fixed edges count, removed ones do not);
    * ``pattern`` / ``argmax_pattern``: grow or prune, from the first and the last values, over the free edges.

    None for a run without sampled children (bilevel, single-level).
    """
    recorded = [m for m in run["metrics"] if m.get("sampled")]
    if not recorded:
        return None
    hist = run["history"]
    k_none = ops.index("none") if "none" in ops else None
    out: dict = {"epochs": [int(m.get("epoch", t)) + 1 for t, m in enumerate(recorded)],
                 "times": hist["epoch"].tolist(), "sample_rest": run["config"].get("sample_rest", "alpha")}  # fmt: skip
    for c in cell_types:
        if not all(c in m["sampled"] for m in recorded):
            continue
        ablation = ablations.get(c, {"removed": [], "fixed": {}})
        removed, fixed = ablation["removed"], ablation["fixed"]
        live = [e for e in range(len(edges)) if e not in removed]
        free = [e for e in live if e not in fixed]
        counts = np.array([m["sampled"][c] for m in recorded], dtype=float)  # (T, E, O)
        steps = counts.sum(-1).max(-1)  # every live edge is sampled once a step
        with_op = counts.sum(-1) - (counts[..., k_none] if k_none is not None else 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = with_op / steps[:, None]  # (T, E)
        argmax = hist[c].argmax(-1)  # (T_alpha, E)
        has_op = argmax != k_none if k_none is not None else np.ones(argmax.shape, bool)
        has_op[:, list(fixed)] = True
        out[c] = {
            "live_edges": len(live),
            "non_none_fraction": {_name(edges, e): _listed(frac[:, e]) for e in live},
            "mean_edges": _listed(frac[:, live].sum(1)),
            "argmax_edges": [int(n) for n in has_op[:, live].sum(1)],
            "pattern": _trend(frac[:, free].sum(1)),
            "argmax_pattern": _trend(has_op[:, free].sum(1)),
        }
        if fixed or removed:
            out[c]["fixed_edges"] = [_name(edges, e) for e in sorted(fixed)]
            out[c]["removed_edges"] = [_name(edges, e) for e in removed]
    return out


def _trend(values: np.ndarray) -> str:
    """``grow``, ``prune`` or ``flat`` from the first to the last value of a series (of edge counts)."""
    values = values[np.isfinite(values)]
    if values.size < 2 or values[-1] == values[0]:
        return "flat"
    return "grow" if values[-1] > values[0] else "prune"


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
