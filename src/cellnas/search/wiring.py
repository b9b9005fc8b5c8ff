"""Recording the wiring dynamics of a search (Xie et al., AISTATS 2021; SPEC 4).

* :class:`ControlledSupernet` wraps a :class:`~cellnas.supernet.SearchNetwork` and computes the
  per-edge op weights Z = softmax(α) itself, so that it can (a) ablate edges (remove an edge:
  all its op weights 0; fix an edge to an op: a one-hot weight), as in SPEC 4 (c), and (b) hook Z.
* :class:`CostRecorder` records the **cost** of SPEC 4: for edge (i, j) and op k,
  C_ij^k = dL/dZ_ij^k = <dL/dx_j, o_k(x_i)>, summed over the batch (the loss is the batch mean,
  so the gradient is multiplied by the batch size). C(none) = 0 by construction. All cells of one
  type share Z, so the recorded cost is summed over the cells of that type. Costs are accumulated
  per phase ("search": the architecture step on search batches; "train": the weight step) and
  averaged per epoch.

Recording needs first-order or single-level search: the second-order step runs several extra
passes (virtual step, finite differences) whose costs have no place in the analysis.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError
from cellnas.genotype import Genotype, edge_pairs, searched_cell_types

__all__ = ["ControlledSupernet", "CostRecorder", "parse_edge"]

log = logging.getLogger(__name__)

_FIX_LOGIT = 1e4  # α logit that makes a fixed edge's op win the derivation outright


def parse_edge(text: str | int, n_nodes: int) -> int:
    """An edge as its α row: an index ``5`` or ``'i-j'`` (source i, destination j; SPEC 1.3 order)."""
    pairs = edge_pairs(n_nodes)
    n_edges = len(pairs)
    if isinstance(text, int) or str(text).isdigit():
        e = int(text)
    else:
        try:
            i, j = (int(t) for t in str(text).replace("->", "-").split("-"))
        except ValueError:
            raise CellnasError(
                f"edge {text!r} must be an index 0..{n_edges - 1} or 'i-j' (source-destination)"
            ) from None
        if not (2 <= j < n_nodes + 2 and 0 <= i < j):
            raise CellnasError(f"edge {text!r}: no such edge in a cell with {n_nodes} intermediate nodes")
        e = pairs.index((i, j))
    if not 0 <= e < n_edges:
        raise CellnasError(f"edge {text!r} out of range 0..{n_edges - 1}")
    return e


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

    def weight_parameters(self) -> list[nn.Parameter]:
        return self.net.weight_parameters()

    @property
    def all_normal(self) -> bool:
        return self.net.all_normal

    def mixing_weights(self, cell_type: str) -> torch.Tensor:
        alphas = self.net.alphas_normal if cell_type == "normal" else self.net.alphas_reduce
        keep, onehot = getattr(self, f"keep_{cell_type}"), getattr(self, f"onehot_{cell_type}")
        return F.softmax(alphas, dim=-1) * keep + onehot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_normal = self.mixing_weights("normal")
        w_reduce = None if self.net.all_normal else self.mixing_weights("reduce")
        if self.recorder is not None and self.recorder.phase is not None and torch.is_grad_enabled():
            self.recorder.hook("normal", w_normal, x.shape[0])
            if w_reduce is not None:
                self.recorder.hook("reduce", w_reduce, x.shape[0])
        return self.net(x, weights_normal=w_normal, weights_reduce=w_reduce)

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


class CostRecorder:
    """Accumulates C = dL/dZ per phase and cell type over an epoch (see the module docstring)."""

    PHASES = ("search", "train")

    def __init__(self, model: ControlledSupernet) -> None:
        self.model = model
        model.recorder = self
        self.phase: str | None = None
        space = model.space
        self.shape = (space.n_edges, space.n_ops)
        self.cell_types = searched_cell_types(model.all_normal)
        self.reset_epoch()
        self.history: list[dict] = []

    def reset_epoch(self) -> None:
        self.sums = {(p, c): np.zeros(self.shape) for p in self.PHASES for c in self.cell_types}
        self.counts = {(p, c): 0 for p in self.PHASES for c in self.cell_types}

    def begin(self, phase: str) -> None:
        self.phase = phase

    def end(self) -> None:
        self.phase = None

    def hook(self, cell_type: str, weights: torch.Tensor, batch: int) -> None:
        if not weights.requires_grad:
            return
        key = (self.phase, cell_type)

        def record(grad: torch.Tensor) -> None:
            self.sums[key] += grad.detach().double().cpu().numpy() * batch
            self.counts[key] += 1

        weights.register_hook(record)

    def epoch_summary(self) -> dict:
        """Mean cost per (edge, op) of this epoch, per phase and cell type; also kept in :attr:`history`."""
        out = {}
        for (p, c), s in self.sums.items():
            n = self.counts[(p, c)]
            out.setdefault(p, {})[c] = {"mean": (s / n).round(6).tolist() if n else None, "count": n}
        self.history.append(out)
        return out

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts, "history": self.history}

    def load_state_dict(self, s: dict) -> None:
        self.sums, self.counts, self.history = s["sums"], s["counts"], s["history"]
