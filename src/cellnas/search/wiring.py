"""Recording the wiring dynamics of a search (Xie et al., AISTATS 2021; SPEC 4).

* :class:`ControlledSupernet` wraps a :class:`~cellnas.supernet.SearchNetwork` and computes the
  per-edge op weights Z = softmax(α) itself, so that it can (a) ablate edges (remove an edge:
  all its op weights 0; fix an edge to an op: a one-hot weight), as in SPEC 4 (c), and (b) hook Z.
* :class:`CostRecorder` records the **cost** of SPEC 4: for edge (i, j) and op k,
  C_ij^k = dL/dZ_ij^k = <dL/dx_j, o_k(x_i)>, summed over the batch (the loss is the batch mean,
  so the gradient is multiplied by the batch size). C(none) = 0 by construction. All cells of one
  type share Z, so the cost of Z itself is summed over the cells of that type; the recorder also
  keeps it **per cell**, as the reference's ``normal_weights_tensor`` (layers x edges x ops) does:
  each cell reads Z through its own view, whose gradient is that cell's share (the shares add up to
  the summed cost). Beside it, the **output-level cost** of the DARTS analysis (SPEC 4 (d),
  ``model_search_cost.py``): per sample c = -z_y + Σ_i softmax(z)_i z_i = d CE(s·z)/ds at s = 1,
  with the loss and the prediction entropy, split by correctly and wrongly classified samples
  (:func:`output_cost`). Everything is accumulated per phase ("search": the architecture step on
  search batches; "train": the weight step) and averaged per epoch, from the gradients and logits
  the step computes anyway: no extra pass.

The per-epoch means of the summed cost go into ``metrics.jsonl`` (``wiring_cost``); the per-cell
costs and the output-level statistics into ``wiring.npz`` (:meth:`CostRecorder.arrays`).

Recording needs first-order, single-level or DSNAS search: the second-order step runs several extra
passes (virtual step, finite differences) whose costs have no place in the analysis.

**Sampled children** (``--mode dsnas``, :mod:`cellnas.search.dsnas`; ``CostRecorder(model, sampled=True)``): Z is
the one-hot op weights of the child sampled at the step, so only the chosen op of an edge has a cost (the others
are not run; their entry of dL/dZ is 0, and C(none) = 0 as before). The means are then taken, per (edge, op), over
the steps that **chose** the op, as the reference's "cost mean statistics" are (``normal_reward_mean`` over
``normal_stat_count`` in ``Analysis/snas/model_search.py``): NaN (``null`` in ``metrics.jsonl``) for an op no step
of the epoch chose. How often each (edge, op) was chosen is kept beside them (``chosen``); a removed edge has no
op, so none of its ops is ever counted.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError
from cellnas.genotype import Genotype, edge_pairs, parse_edge, searched_cell_types
from cellnas.runs import atomic_write_bytes
from cellnas.supernet import one_hot_choice

__all__ = ["ControlledSupernet", "CostRecorder", "WIRING_ARRAYS", "output_cost", "parse_edge"]

log = logging.getLogger(__name__)

_FIX_LOGIT = 1e4  # α logit that makes a fixed edge's op win the derivation outright

#: the per-cell costs and output-level statistics of a run with ``--record-wiring`` (:meth:`CostRecorder.arrays`)
WIRING_ARRAYS = "wiring.npz"


class ControlledSupernet(nn.Module):
    """A search network whose op weights pass through ablations and optional recording hooks."""

    def __init__(self, net: nn.Module, remove_edges: dict | None = None, fix_edges: dict | None = None) -> None:
        super().__init__()
        self.net = net
        self.space = net.space
        ops = list(self.space.ops)
        n_edges, n_ops = self.space.n_edges, self.space.n_ops
        self.remove_edges = {c: sorted(parse_edge(e, self.space.n_nodes) for e in es)
                             for c, es in (remove_edges or {}).items()}  # fmt: skip
        self.fix_edges = {}
        for c, mapping in (fix_edges or {}).items():
            fixed = {}
            for e, op in mapping.items():
                if op not in ops or op == "none":
                    valid = ", ".join(o for o in ops if o != "none")
                    raise CellnasError(f"cannot fix edge {e} to {op!r}; choose one of {valid}")
                fixed[parse_edge(e, self.space.n_nodes)] = ops.index(op)
            self.fix_edges[c] = fixed
        for c in set(self.remove_edges) | set(self.fix_edges):
            if c not in ("normal", "reduce"):
                raise CellnasError(f"unknown cell type {c!r} in edge ablation; valid: normal, reduce")
            if c == "reduce" and net.all_normal:
                raise CellnasError("this supernet has no reduction cell (all-normal): ablate normal edges only")
            both = sorted(set(self.remove_edges.get(c, [])) & set(self.fix_edges.get(c, {})))
            if both:
                pairs = edge_pairs(self.space.n_nodes)
                names = ", ".join("{}-{}".format(*pairs[e]) for e in both)
                raise CellnasError(f"{c} edge(s) {names} both removed and fixed; "
                                   "give each edge one ablation")  # fmt: skip
        masks = {}
        for c in ("normal", "reduce"):
            keep = torch.ones(n_edges, n_ops)
            onehot = torch.zeros(n_edges, n_ops)
            for e in self.remove_edges.get(c, []):
                keep[e] = 0
            for e, k in self.fix_edges.get(c, {}).items():
                keep[e] = 0
                onehot[e, k] = 1
            masks[c] = (keep, onehot)
        self.register_buffer("keep_normal", masks["normal"][0], persistent=False)
        self.register_buffer("onehot_normal", masks["normal"][1], persistent=False)
        self.register_buffer("keep_reduce", masks["reduce"][0], persistent=False)
        self.register_buffer("onehot_reduce", masks["reduce"][1], persistent=False)
        self.recorder: CostRecorder | None = None

    def short_nodes(self) -> list[tuple[str, int, int]]:
        """``(cell, node, live input edges)`` of every node that removed edges leave with fewer live inputs than k."""
        pairs = edge_pairs(self.space.n_nodes)
        short = []
        for cell in sorted(self.remove_edges):
            removed = set(self.remove_edges[cell])
            for j in range(2, self.space.n_nodes + 2):
                live = sum(1 for e, (_, dst) in enumerate(pairs) if dst == j and e not in removed)
                if live < self.space.k:
                    short.append((cell, j, live))
        return short

    def warn_short_nodes(self) -> None:
        """A node left with fewer live input edges than k still names k inputs in the derived genotype (the format
        has k per node): say so up front, so that a removed edge in the derived cell is no surprise. The search
        calls this once, when a run starts; a resumed run does not say it again."""
        for cell, j, live in self.short_nodes():
            log.warning("%s node %d keeps %d live input edge(s) of %d, fewer than k=%d: the derived genotype "
                        "still names %d inputs, the strongest removed edge(s) filling the place (their α never "
                        "trains)", cell, j, live, j, self.space.k, self.space.k)  # fmt: skip

    # the interface the search loop uses ---------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        return self.net.arch_parameters()

    def unused_arch_parameters(self) -> list[nn.Parameter]:
        return self.net.unused_arch_parameters()

    def weight_parameters(self) -> list[nn.Parameter]:
        return self.net.weight_parameters()

    @property
    def all_normal(self) -> bool:
        return self.net.all_normal

    def mixing_weights(self, cell_type: str) -> torch.Tensor:
        alphas = self.net.alphas_normal if cell_type == "normal" else self.net.alphas_reduce
        keep, onehot = getattr(self, f"keep_{cell_type}"), getattr(self, f"onehot_{cell_type}")
        return F.softmax(alphas, dim=-1) * keep + onehot

    def forward(
        self,
        x: torch.Tensor,
        weights_normal: torch.Tensor | None = None,
        weights_reduce: torch.Tensor | None = None,
        choice_normal: Sequence[int] | None = None,
        choice_reduce: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Logits for ``x`` with the ablated softmax(α) (:meth:`mixing_weights`) as op weights Z; ``weights_*`` replace
        them when given. ``choice_*``: a sampled child (DSNAS, :mod:`cellnas.search.dsnas`), whose ``weights_*`` are
        its one-hot Z (the sampler has applied the ablations); they are hooked for the recorder all the same."""
        if choice_normal is not None and weights_normal is None:
            weights_normal = one_hot_choice(choice_normal, self.space.n_ops, self.net.alphas_normal)
        if choice_reduce is not None and weights_reduce is None:
            weights_reduce = one_hot_choice(choice_reduce, self.space.n_ops, self.net.alphas_reduce)
        w_normal = self.mixing_weights("normal") if weights_normal is None else weights_normal
        w_reduce = weights_reduce
        if w_reduce is None and not self.net.all_normal:
            w_reduce = self.mixing_weights("reduce")
        if self.recorder is not None and self.recorder.phase is not None and torch.is_grad_enabled():
            self.recorder.hook("normal", w_normal, x.shape[0])
            if w_reduce is not None:
                self.recorder.hook("reduce", w_reduce, x.shape[0])
        return self.net(x, weights_normal=w_normal, weights_reduce=w_reduce, choice_normal=choice_normal,
                        choice_reduce=choice_reduce)  # fmt: skip

    def genotype(self) -> Genotype:
        """Derived from α: fixed edges win with their op; removed edges lose to every live edge
        (a node with fewer live edges than k still names k inputs, the removed ones last)."""
        from cellnas.supernet import derive

        logits = {}
        for c in ("normal", "reduce"):
            a = (self.net.alphas_normal if c == "normal" else self.net.alphas_reduce).detach().cpu().double()
            keep, onehot = getattr(self, f"keep_{c}").cpu().double(), getattr(self, f"onehot_{c}").cpu().double()
            removed = (keep.sum(1) == 0) & (onehot.sum(1) == 0)
            a[removed] = -_FIX_LOGIT
            if "none" in self.space.ops:
                a[removed, list(self.space.ops).index("none")] = _FIX_LOGIT
            fixed = onehot.sum(1) > 0
            a[fixed] = torch.where(onehot[fixed] > 0, _FIX_LOGIT, -_FIX_LOGIT).double()
            logits[c] = a
        return derive(logits["normal"], logits["reduce"], self.space)


def output_cost(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample, the output-level cost of SPEC 4 (d) and what it is plotted against.

    ``cost`` = -z_y + Σ_i softmax(z)_i z_i = d CE(s·z)/ds at s = 1 (``model_search_cost.py``): it is <= 0
    when z_y is the largest logit (the mean of z under softmax(z) cannot exceed its maximum) and can be > 0
    for a misclassified sample. ``loss``: the cross-entropy; ``entropy``: of softmax(z), in nats; ``correct``:
    argmax z == y, the loop's accuracy rule. Computed in the logits' dtype (at least float32).
    """
    z = logits.detach()
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    log_p = F.log_softmax(z, dim=1)
    p = log_p.exp()
    y = labels.view(-1, 1)
    return {
        "cost": (p * z).sum(1) - z.gather(1, y).squeeze(1),
        "loss": -log_p.gather(1, y).squeeze(1),
        "entropy": -(p * log_p).sum(1),
        "correct": z.argmax(1) == labels,
    }


class CostRecorder:
    """Accumulates C = dL/dZ per phase and cell type over an epoch, per cell too, and the output-level cost
    (see the module docstring)."""

    PHASES = ("search", "train")
    #: the two rows and the four columns of an output-level record (:meth:`arrays`)
    OUTPUT_GROUPS = ("correct", "wrong")
    OUTPUT_STATS = ("samples", "cost", "loss", "entropy")

    def __init__(self, model: ControlledSupernet, sampled: bool = False) -> None:
        self.model = model
        self.sampled = sampled  # DSNAS children: means over the steps that chose each op (module docstring)
        model.recorder = self
        self.phase: str | None = None
        space = model.space
        self.shape = (space.n_edges, space.n_ops)
        self.cell_types = searched_cell_types(model.all_normal)
        # the network position of every cell of each type, in the order of the per-cell arrays
        kinds = ["reduce" if cell.reduction else "normal" for cell in model.net.cells]
        self.cell_layers = {c: [i for i, k in enumerate(kinds) if k == c] for c in self.cell_types}
        for i, (cell, kind) in enumerate(zip(model.net.cells, kinds)):
            if kind in self.cell_layers:
                cell.register_forward_pre_hook(self._cell_hook(kind, self.cell_layers[kind].index(i)))
        self._pending: list[tuple[tuple[str, str], int, torch.Tensor, int]] = []
        self.reset_epoch()
        self.history: list[dict] = []
        self.cell_history: list[dict] = []  # per epoch: {(phase, cell type): (cells, edges, ops) mean cost}
        self.output_history: list[dict] = []  # per epoch: {phase: (groups, stats) samples and means}
        self.chosen_history: list[dict] = []  # sampled: per epoch {(phase, cell type): (edges, ops) times chosen}

    def reset_epoch(self) -> None:
        self.sums = {(p, c): np.zeros(self.shape) for p in self.PHASES for c in self.cell_types}
        self.counts = {(p, c): 0 for p in self.PHASES for c in self.cell_types}
        self.cell_sums = {(p, c): np.zeros((len(self.cell_layers[c]), *self.shape))
                          for p in self.PHASES for c in self.cell_types}  # fmt: skip
        self.output_sums = {p: np.zeros((len(self.OUTPUT_GROUPS), len(self.OUTPUT_STATS))) for p in self.PHASES}
        self.chosen = {(p, c): np.zeros(self.shape) for p in self.PHASES for c in self.cell_types}

    def begin(self, phase: str) -> None:
        self.phase = phase

    def end(self, logits: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> None:
        """Close the phase; ``logits`` and ``labels`` of its batch add to the output-level statistics."""
        self._flush()
        if logits is not None and self.phase is not None:
            self.record_outputs(logits, labels)
        self.phase = None

    def hook(self, cell_type: str, weights: torch.Tensor, batch: int) -> None:
        if not weights.requires_grad:
            return
        key = (self.phase, cell_type)
        if self.sampled:
            # a sampled child's one-hot Z says which op each edge ran (all 0 on a removed edge); counted when the
            # child runs, also on the (rare) step whose child runs no op at all and so sends no gradient to Z
            self.chosen[key] += weights.detach().cpu().double().numpy()
            self.counts[key] += 1

        def record(grad: torch.Tensor) -> None:
            # to the CPU first: some devices (Apple MPS) have no float64; float32 -> float64 is exact either way
            self.sums[key] += grad.detach().cpu().double().numpy() * batch
            if not self.sampled:
                self.counts[key] += 1

        weights.register_hook(record)

    def _cell_hook(self, cell_type: str, position: int) -> Callable:
        """A forward pre-hook for one cell: hands the cell its own view of Z, whose gradient is its cost."""

        def pre_hook(cell: nn.Module, args: tuple) -> tuple | None:
            s0, _, weights, *_ = args
            if self.phase is None or not torch.is_grad_enabled() or weights is None or not weights.requires_grad:
                return None
            view = weights.view_as(weights)
            key, batch = (self.phase, cell_type), s0.shape[0]
            # kept on the device until the phase ends: one transfer per step, not one per cell
            view.register_hook(lambda grad: self._pending.append((key, position, grad.detach(), batch)))
            return (args[0], args[1], view, *args[3:])

        return pre_hook

    def _flush(self) -> None:
        if not self._pending:
            return
        grads = torch.stack([g for _, _, g, _ in self._pending]).cpu().double().numpy()
        for (key, position, _, batch), g in zip(self._pending, grads):
            self.cell_sums[key][position] += g * batch
        self._pending = []

    def record_outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch to the output-level sums of the current phase (:func:`output_cost`)."""
        c = output_cost(logits, labels)
        rows = []
        for mask in (c["correct"], ~c["correct"]):
            m = mask.to(c["cost"].dtype)
            rows.append(torch.stack([m.sum(), (c["cost"] * m).sum(), (c["loss"] * m).sum(), (c["entropy"] * m).sum()]))
        self.output_sums[self.phase] += torch.stack(rows).cpu().double().numpy()

    def epoch_summary(self) -> dict:
        """Mean cost per (edge, op) of this epoch, per phase and cell type; also kept in :attr:`history`.

        The per-cell means and the output-level statistics of the epoch go to :attr:`cell_history` and
        :attr:`output_history` (written by :meth:`write`)."""
        self._flush()
        out = {}
        for (p, c), s in self.sums.items():
            n = self.counts[(p, c)]
            if self.sampled:  # per (edge, op), over the steps that chose it; null where none did
                mean = self._chosen_mean(s, (p, c)).round(6)
                out.setdefault(p, {})[c] = {
                    "mean": [[float(v) if np.isfinite(v) else None for v in row] for row in mean] if n else None,
                    "count": n, "chosen": self.chosen[(p, c)].astype(np.int64).tolist(),
                }  # fmt: skip
                continue
            out.setdefault(p, {})[c] = {"mean": (s / n).round(6).tolist() if n else None, "count": n}
        self.history.append(out)
        # the per-cell means divide by the same count, so that they add up to the summed mean
        if self.sampled:
            self.cell_history.append({key: self._chosen_mean(s, key) for key, s in self.cell_sums.items()})
            self.chosen_history.append({key: v.copy() for key, v in self.chosen.items()})
        else:
            self.cell_history.append({key: s / self.counts[key] if self.counts[key] else np.full(s.shape, np.nan)
                                      for key, s in self.cell_sums.items()})  # fmt: skip
        outputs = {}
        for p, s in self.output_sums.items():
            stats = np.full(s.shape, np.nan)
            stats[:, 0] = s[:, 0]
            seen = s[:, 0] > 0
            stats[seen, 1:] = s[seen, 1:] / s[seen, :1]
            outputs[p] = stats
        self.output_history.append(outputs)
        return out

    def _chosen_mean(self, sums: np.ndarray, key: tuple[str, str]) -> np.ndarray:
        """``sums`` (..., edges, ops) over the number of steps that chose each (edge, op); NaN where none did."""
        n = self.chosen[key]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, sums / np.where(n > 0, n, 1), np.nan)

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-epoch records as the arrays of ``wiring.npz`` (T epochs, E edges, O ops, n_c cells of type c):

        * ``epoch`` (T,): the epoch index, as ``metrics.jsonl`` counts it; ``ops`` (O,);
        * ``layers_<cell>`` (n_c,): the network position of each cell of the type;
        * ``cell_cost_<phase>_<cell>`` (T, n_c, E, O): the epoch's mean cost C per cell, edge and op; summed over
          the cells it is the ``wiring_cost`` mean of ``metrics.jsonl``; NaN where the phase saw no step;
        * ``output_<stat>_<phase>`` (T, 2), stat in :attr:`OUTPUT_STATS`, columns :attr:`OUTPUT_GROUPS`
          (``output_groups``): the number of samples, then the mean output-level cost, loss and entropy;
        * sampled children only: ``chosen_<phase>_<cell>`` (T, E, O): how many steps of the epoch chose each op on
          each edge (the cost means above are over these; NaN where 0).

        Epochs recorded before the recorder kept these (a resumed older checkpoint) are NaN.
        """
        T = len(self.cell_history)
        out = {"epoch": np.arange(T, dtype=np.int64), "ops": np.array(self.model.space.ops),
               "output_groups": np.array(self.OUTPUT_GROUPS)}  # fmt: skip
        for c in self.cell_types:
            out[f"layers_{c}"] = np.asarray(self.cell_layers[c], dtype=np.int64)
        for p in self.PHASES:
            for c in self.cell_types:
                empty = np.zeros((0, len(self.cell_layers[c]), *self.shape))
                out[f"cell_cost_{p}_{c}"] = np.stack([h[(p, c)] for h in self.cell_history]) if T else empty
            stats = np.stack([h[p] for h in self.output_history]) if T else np.zeros((0, 2, len(self.OUTPUT_STATS)))
            for k, name in enumerate(self.OUTPUT_STATS):
                out[f"output_{name}_{p}"] = stats[:, :, k]  # (T, groups)
            if self.sampled:
                for c in self.cell_types:
                    out[f"chosen_{p}_{c}"] = (np.stack([h[(p, c)] for h in self.chosen_history]).astype(np.int64)
                                              if T else np.zeros((0, *self.shape), np.int64))  # fmt: skip
        return out

    def write(self, run_dir: str | Path) -> Path:
        """Write :meth:`arrays` to ``run_dir/wiring.npz`` (atomically)."""
        buf = io.BytesIO()
        np.savez(buf, **self.arrays())
        return atomic_write_bytes(Path(run_dir) / WIRING_ARRAYS, buf.getvalue())

    def state_dict(self) -> dict:
        self._flush()
        state = {"sums": self.sums, "counts": self.counts, "history": self.history, "cell_sums": self.cell_sums,
                 "cell_history": self.cell_history, "output_sums": self.output_sums,
                 "output_history": self.output_history}  # fmt: skip
        if self.sampled:
            state.update(chosen=self.chosen, chosen_history=self.chosen_history)
        return state

    def load_state_dict(self, s: dict) -> None:
        self.sums, self.counts, self.history = s["sums"], s["counts"], s["history"]
        if self.sampled:  # DSNAS runs are newer than every older checkpoint format below
            self.chosen, self.chosen_history = s["chosen"], s["chosen_history"]
        if "cell_sums" in s:
            self.cell_sums, self.cell_history = s["cell_sums"], s["cell_history"]
            self.output_sums, self.output_history = s["output_sums"], s["output_history"]
            return
        # a checkpoint from before the per-cell and output-level records: the epochs it finished have none
        # (NaN), nor has the epoch it stopped in, if it stopped mid-epoch
        self.reset_epoch()
        self.sums, self.counts = s["sums"], s["counts"]
        nan_cells = {key: np.full(v.shape, np.nan) for key, v in self.cell_sums.items()}
        nan_outputs = {p: np.full(v.shape, np.nan) for p, v in self.output_sums.items()}
        self.cell_history = [dict(nan_cells) for _ in self.history]
        self.output_history = [dict(nan_outputs) for _ in self.history]
        if any(self.counts.values()):
            self.cell_sums = {key: v.copy() for key, v in nan_cells.items()}
            self.output_sums = {p: v.copy() for p, v in nan_outputs.items()}
