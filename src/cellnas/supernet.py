"""The DARTS supernet: mixed ops, search cells, the search network and genotype derivation.

Implements Liu, Simonyan & Yang (ICLR 2019), Sec. 2.2 (continuous relaxation) and Sec. 2.4
(deriving the discrete cell), following ``quark0/darts cnn/model_search.py`` (SPEC 1.1-1.4, 1.7).

* :class:`SearchSpace` - the candidate ops, the number of intermediate nodes and k (inputs per node).
* :class:`MixedOp` - softmax(alpha)-weighted sum of every candidate op on one edge.
* :class:`SearchCell`, :class:`SearchNetwork` - the weight-sharing supernet; the architecture
  parameters ``alphas_normal`` / ``alphas_reduce`` are real ``nn.Parameter`` s (so they live in
  ``state_dict``), separated from the weights by :meth:`SearchNetwork.arch_parameters` and
  :meth:`SearchNetwork.weight_parameters`.
* :func:`derive` - the discrete genotype from alpha (SPEC 1.7).

Off by default, the two changes of PC-DARTS (Xu et al., ICLR 2020, Sec. 3.2-3.3): partial channel connections
(``partial_channels=K``: each edge runs its ops on the first C/K channels of its input, passes the other channels
through, max-pooled 2x2 on stride-2 edges, and shuffles the channels in K groups) and edge normalisation
(``edge_norm=True``: a parameter beta per edge, softmax over the edges entering each node, weights every edge
and multiplies softmax(alpha) when the cell is derived).

>>> net = SearchNetwork(C=4, layers=3, space=SearchSpace(n_nodes=2), seed=0)
>>> net(torch.zeros(2, 3, 8, 8)).shape
torch.Size([2, 10])
>>> net.genotype().normal.n_nodes
2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError, unknown_name
from cellnas.genotype import PRIMITIVES, Cell, Genotype
from cellnas.ops import (
    OPS,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    Zero,
    _memory_format,
    batch_norm,
    cat_channels,
    create_op,
    make_generator,
    seeded_init,
    train_batch_norm,
    update_running_stats,
)

__all__ = [
    "SearchSpace",
    "MixedOp",
    "SearchCell",
    "SearchNetwork",
    "derive",
    "derive_cell",
    "edge_index",
    "channel_shuffle",
    "node_softmax",
    "edge_weights",
    "one_hot_choice",
]


@dataclass(frozen=True)
class SearchSpace:
    """A DARTS-style cell search space (SPEC 1.3).

    ``ops``: candidate ops in alpha-column order (``none`` optional); ``n_nodes``: intermediate
    nodes per cell; ``k``: inputs kept per node when deriving the genotype. Node 2 has only two
    predecessors and every node of a genotype needs the same number of inputs, so ``k`` is 1 or 2.
    """

    ops: tuple[str, ...] = PRIMITIVES
    n_nodes: int = 4
    k: int = 2

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if not ops:
            raise CellnasError("a search space needs at least one op")
        for op in ops:
            if op not in OPS:
                raise unknown_name("op", op, OPS)
        if len(set(ops)) != len(ops):
            raise CellnasError(f"search space ops repeat a name: {list(ops)}")
        if all(op == "none" for op in ops):
            raise CellnasError("a search space needs at least one op other than 'none'")
        if isinstance(self.n_nodes, bool) or not isinstance(self.n_nodes, int) or self.n_nodes < 1:
            raise CellnasError(f"n_nodes (intermediate nodes per cell) must be an integer >= 1, got {self.n_nodes!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 2:
            raise CellnasError(
                f"k (inputs per node) must be 1 or 2, got {self.k!r}: node 2 has only two predecessors "
                "and every node of a genotype needs the same number of inputs"
            )

    @property
    def n_edges(self) -> int:
        """Edges per cell: node j (2 .. n+1) has j predecessors (14 for 4 nodes, 5 for 2)."""
        return sum(j + 2 for j in range(self.n_nodes))

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    def cell_count(self) -> int:
        """How many discrete cells :func:`derive` can give (SPEC 1.9): each node picks ``k`` distinct predecessors
        (node j+2 has j+2) and an op other than ``none`` for each. 7^8 x 180 = 1,037,664,180 for DARTS's space;
        a normal and a reduce cell together give its square (about 1.08e18)."""
        n_ops = sum(op != "none" for op in self.ops)
        return math.prod(math.comb(j + 2, self.k) * n_ops**self.k for j in range(self.n_nodes))

    def to_dict(self) -> dict:
        return {"ops": list(self.ops), "n_nodes": self.n_nodes, "k": self.k}


def edge_index(src: int, dst: int) -> int:
    """Row of alpha for the edge ``src -> dst`` (SPEC 1.3: offset(dst) + src, offsets 0, 2, 5, 9, ...)."""
    if not 0 <= src < dst or dst < 2:
        raise CellnasError(f"no edge {src} -> {dst}: need 0 <= src < dst and dst >= 2")
    return sum(range(2, dst)) + src


class _Source:
    """A node's output x_i and what every edge leaving it shares (SPEC 1.3: all edges i -> j read x_i).

    ``relu(x_i)`` feeds every conv op (and the stride-2 ``skip_connect``) of every outgoing edge; pooling has no
    parameters, so ``pool(x_i)`` and, in training mode, its batch normalisation (batch statistics only) are the
    same on every outgoing edge. Each is computed once, on first use.
    """

    __slots__ = ("x", "_relu", "_pooled", "_normalised", "_stats")

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self._relu: torch.Tensor | None = None
        self._pooled: dict[str, torch.Tensor] = {}
        self._normalised: dict[tuple[str, float], torch.Tensor] = {}
        self._stats: dict[tuple[str, float], tuple[torch.Tensor, torch.Tensor, int]] = {}  # mean, biased var, n

    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu

    def pooled(self, pool: nn.Module) -> tuple[str, torch.Tensor]:
        key = repr(pool)  # kind, kernel, stride, padding: equal reprs compute equal functions
        if key not in self._pooled:
            self._pooled[key] = _avg_pool_3x3(self.x, pool) if _is_avg_pool_3x3(pool) else pool(self.x)
        return key, self._pooled[key]

    def normalised(self, key: str, p: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        """``bn(p)`` in training mode for an affine-free ``bn``: normalised once per source, buffers per edge.

        The batch statistics are computed once; every edge's BN gets the running-average update its own
        ``forward`` would make (momentum, unbiased variance, ``num_batches_tracked``).
        """
        if (key, bn.eps) not in self._normalised:
            out, mean, var = train_batch_norm(p, None, bn.eps)
            self._normalised[key, bn.eps] = out
            self._stats[key, bn.eps] = (mean, var, p.numel() // p.shape[1])
        bn.num_batches_tracked.add_(1)
        update_running_stats(bn, *self._stats[key, bn.eps], bn.momentum)
        return self._normalised[key, bn.eps]


AVGPOOL_AS_CONV = True


def _is_avg_pool_3x3(pool: nn.Module) -> bool:
    return (
        AVGPOOL_AS_CONV
        and isinstance(pool, nn.AvgPool2d)
        and pool.kernel_size in (3, (3, 3))
        and pool.stride in (1, 2, (1, 1), (2, 2))
        and pool.padding in (1, (1, 1))
        and not pool.count_include_pad
        and not pool.ceil_mode
        and pool.divisor_override is None
    )


_INV_COUNTS: dict[tuple, torch.Tensor] = {}


def _avg_pool_3x3(x: torch.Tensor, pool: nn.AvgPool2d) -> torch.Tensor:
    """``avg_pool_3x3`` (padding excluded from the average) as a depthwise box sum times 1 / (pixels in the window).

    The same function; oneDNN's channels_last depthwise 3x3 convolution (and its backward) is several times faster
    than its average pooling here.
    """
    stride = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
    C, (H, W) = x.shape[1], x.shape[-2:]
    key = (H, W, stride, x.dtype, x.device)
    if key not in _INV_COUNTS:
        ones = torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device)
        _INV_COUNTS[key] = 1.0 / (9.0 * F.avg_pool2d(ones, 3, stride, 1, count_include_pad=True)).round()
    box = x.new_ones(C, 1, 3, 3)
    # in place: the convolution's backward needs its input, not its output
    return F.conv2d(x, box, None, stride, 1, 1, C).mul_(_INV_COUNTS[key])


def _kind(op: nn.Module) -> str:
    if isinstance(op, Zero):
        return "zero"
    if isinstance(op, Identity):
        return "identity"
    if hasattr(op, "forward_activated"):
        return "activated"
    if isinstance(op, nn.Sequential) and len(op) == 2 and isinstance(op[1], nn.BatchNorm2d):
        return "pool"
    return "other"


class MixedOp(nn.Module):
    """One edge of the supernet: sum_k w_k * op_k(x) over ``space.ops`` (SPEC 1.1, search specifics).

    Every op is built with ``affine=False``; each pooling op is followed by ``BatchNorm2d(C, affine=False)``
    (search network only). ``self._ops`` holds the ops in ``space.ops`` order; each ``self._ops[k](x)`` is the
    op on its own.

    The sum is computed without changing its value (up to float rounding): ``none`` (a zero output) is skipped,
    its weight still enters the softmax; the ReLU that starts every conv op is taken once per input node
    (:class:`_Source`); the weight w_k is folded into the op's final BN (:func:`cellnas.ops.batch_norm`); pooling
    and its batch normalisation are shared by the edges leaving one node; terms are accumulated in place.
    """

    def __init__(self, C: int, stride: int, ops: tuple[str, ...] = PRIMITIVES):
        super().__init__()
        self._ops = nn.ModuleList()
        for name in ops:
            op = create_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)
        self._kinds = tuple(_kind(op) for op in self._ops)
        # conv ops first: the sum then starts from an op's fresh output and every other term is added in place
        self._order = tuple(sorted(range(len(self._ops)), key=lambda k: self._kinds[k] != "activated"))
        self.stride = stride

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: 1-D tensor of length ``len(self._ops)``."""
        return self.accumulate(_Source(x), weights)

    def _term(self, src: _Source, k: int, w: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Op ``k`` (not ``none``) on ``src``: ``(t, True)`` with ``t = w * op_k(x)``, or ``(op_k(x), False)``.

        The parameter-free outputs (``skip_connect`` at stride 1, pooling with a shared BN) come back unscaled,
        so that a sum can add ``w`` times them in one ``addcmul_`` without a temporary; every other op folds
        ``w`` into its final BN (:func:`cellnas.ops.batch_norm`).
        """
        op, kind = self._ops[k], self._kinds[k]
        if kind == "identity":
            return src.x, False
        if kind == "pool" and _shared_bn(op[1]):
            key, p = src.pooled(op[0])
            return src.normalised(key, p, op[1]), False
        if kind == "activated":
            return op.forward_activated(src.relu(), w), True
        if kind == "pool":
            return batch_norm(src.pooled(op[0])[1], op[1], w), True
        return w * op(src.x), True

    def accumulate(self, src: _Source, weights: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``out + sum_k w_k op_k(src.x)`` (``out`` is updated in place; ``None`` starts a new sum)."""
        for k in self._order:
            if self._kinds[k] == "zero":
                continue
            w = weights[k]
            t, scaled = self._term(src, k, w)
            if scaled:
                out = t if out is None else out.add_(t)
            else:
                out = w * t if out is None else out.addcmul_(w, t)
        if out is None:  # only 'none' on this edge
            x = src.x if self.stride == 1 else src.x[:, :, :: self.stride, :: self.stride]
            out = x * weights.sum() * 0.0
        return out

    def accumulate_one(
        self, src: _Source, k: int, w: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """``out + w * op_k(src.x)``: the one op of a sampled child on this edge (DSNAS, :mod:`cellnas.search.dsnas`).

        ``w`` is the 0-d op weight Z_k (1 in value; its gradient is the op's cost). ``none`` adds nothing (``out``
        is returned as it is, ``None`` included). The op runs exactly as in :meth:`accumulate` (shared ReLU and
        pooling, the weight folded into the final BN), so a child equals the supernet with one-hot weights.
        """
        if self._kinds[k] == "zero":
            return out
        t, scaled = self._term(src, k, w)
        term = t if scaled else w * t
        # out of place: a child's node sums a few terms, and the first may be an output that autograd keeps
        return term if out is None else out + term


def _shared_bn(bn: nn.BatchNorm2d) -> bool:
    """Training-mode BN without affine transform: its output depends on the batch only."""
    return bn.training and not bn.affine and bn.track_running_stats and bn.momentum is not None


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle (PC-DARTS Sec. 3.2): channels seen as (groups, C/groups), transposed.

    Output channel ``i * groups + g`` is input channel ``g * (C/groups) + i``; the memory format is kept.
    """
    B, C, H, W = x.shape
    if C % groups:
        raise CellnasError(f"channel_shuffle: {C} channels do not split into {groups} groups")
    if _memory_format(x) == torch.channels_last:
        nhwc = x.permute(0, 2, 3, 1).reshape(B, H, W, groups, C // groups).transpose(3, 4)
        return nhwc.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return x.reshape(B, groups, C // groups, H, W).transpose(1, 2).reshape(B, C, H, W)


def node_softmax(betas: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """PC-DARTS edge normalisation (Sec. 3.3): softmax of ``betas`` (one per edge, SPEC 1.3 order) over the
    edges entering each intermediate node (2, 3, 4, ... of them)."""
    n_edges = sum(j + 2 for j in range(n_nodes))
    if tuple(betas.shape) != (n_edges,):
        raise CellnasError(f"beta must hold one value per edge ({n_edges} for {n_nodes} nodes), got shape "
                           f"{tuple(betas.shape)}")  # fmt: skip
    parts, start = [], 0
    for j in range(n_nodes):
        parts.append(F.softmax(betas[start : start + j + 2], dim=-1))
        start += j + 2
    return torch.cat(parts)


def _dense(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A dense copy of the view ``x`` in the memory format of ``like`` (the tensor it was sliced from)."""
    return x.clone(memory_format=_memory_format(like))


class SearchCell(nn.Module):
    """A search cell: every intermediate node sums MixedOps from all earlier nodes (SPEC 1.2, 1.3).

    Output: channel concatenation of all ``n_nodes`` intermediate nodes (``n_nodes * C`` channels).

    With ``partial_channels=K > 1`` (PC-DARTS, Xu et al. ICLR 2020, Sec. 3.2) every MixedOp works on C/K channels:
    edge i -> j gives ``shuffle(cat(sum_k w_k op_k(x_i[:C/K]), x_i[C/K:]), K)``, the passed-through part max-pooled
    2x2 (``ceil_mode``, so odd sizes give ``ceil(H/2)`` like the ops) on stride-2 edges. A node sums its edges
    before the one concatenation and shuffle, the same function by linearity. ``edge_weights`` (PC-DARTS Sec. 3.3,
    from :func:`node_softmax`) multiply whole edges.
    """

    def __init__(
        self,
        space: SearchSpace,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        partial_channels: int = 1,
    ):
        super().__init__()
        if partial_channels < 1 or C % partial_channels:
            raise CellnasError(f"partial_channels must be >= 1 and divide C={C}, got {partial_channels}")
        self.reduction = reduction
        self.n_nodes = space.n_nodes
        self.partial_channels = partial_channels
        self.C = C
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self._ops = nn.ModuleList()
        for j in range(space.n_nodes):
            for i in range(j + 2):
                stride = 2 if reduction and i < 2 else 1
                self._ops.append(MixedOp(C // partial_channels, stride, space.ops))

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        choice: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """``weights``: (n_edges, n_ops), one row per edge in SPEC 1.3 order; ``edge_weights``: (n_edges,) or None.

        ``choice`` (one op index per edge, -1: no op) runs a sampled child instead of the mixture (DSNAS,
        :meth:`_forward_sampled`)."""
        if choice is not None:
            if self.partial_channels > 1 or edge_weights is not None:
                raise CellnasError("a sampled child (DSNAS) runs the plain DARTS cell: no partial channels or edge "
                                   "normalisation (PC-DARTS)")  # fmt: skip
            return self._forward_sampled(s0, s1, weights, choice)
        if self.partial_channels > 1 or edge_weights is not None:
            return self._forward_general(s0, s1, weights, edge_weights)
        sources = [_Source(self.preprocess0(s0)), _Source(self.preprocess1(s1))]
        offset = 0
        for _ in range(self.n_nodes):
            node = None
            for i, src in enumerate(sources):
                node = self._ops[offset + i].accumulate(src, weights[offset + i], node)
            offset += len(sources)
            sources.append(_Source(node))
        return cat_channels([src.x for src in sources[2:]])

    def _forward_sampled(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                         choice: Sequence[int]) -> torch.Tensor:  # fmt: skip
        """A one-op-per-edge child (DSNAS, Hu et al. CVPR 2020; SPEC 4): edge e runs only op ``choice[e]``, its output
        times ``weights[e, choice[e]]`` (the one-hot Z, 1 in value); ``none`` and -1 (a removed edge) run nothing. A
        node whose every input edge runs nothing is zero, as it is in the supernet with those one-hot weights."""
        sources = [_Source(self.preprocess0(s0)), _Source(self.preprocess1(s1))]
        offset = 0
        for _ in range(self.n_nodes):
            node = None
            for i, src in enumerate(sources):
                k = choice[offset + i]
                if k >= 0:
                    node = self._ops[offset + i].accumulate_one(src, k, weights[offset + i, k], node)
            if node is None:
                stride = self._ops[offset].stride  # the shape an op on the edge from input 0 gives
                node = sources[0].x.detach()[:, :, ::stride, ::stride] * 0.0
            offset += len(sources)
            sources.append(_Source(node))
        return cat_channels([src.x for src in sources[2:]])

    def _forward_general(self, s0, s1, weights, edge_weights):
        K, c = self.partial_channels, self.C // self.partial_channels
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        sampled: list[_Source] = []  # per state: the first C/K channels, shared by every edge leaving it
        passed: dict[tuple[int, int], torch.Tensor] = {}  # (state, stride): the other channels, pooled on stride 2
        offset = 0
        for _ in range(self.n_nodes):
            part = rest = None
            for i, h in enumerate(states):
                e, op = offset + i, self._ops[offset + i]
                if i == len(sampled):
                    sampled.append(_Source(_dense(h[:, :c], h) if K > 1 else h))
                w = weights[e] if edge_weights is None else weights[e] * edge_weights[e]
                part = op.accumulate(sampled[i], w, part)
                if K == 1:
                    continue
                if (i, op.stride) not in passed:
                    r = h[:, c:]
                    passed[i, op.stride] = (
                        F.max_pool2d(r, 2, 2, ceil_mode=True) if op.stride == 2 else _dense(r, h)
                    )
                r = passed[i, op.stride]
                if edge_weights is None:
                    rest = r.clone() if rest is None else rest.add_(r)
                else:
                    rest = r * edge_weights[e] if rest is None else rest.addcmul_(edge_weights[e], r)
            offset += len(states)
            states.append(part if K == 1 else channel_shuffle(cat_channels([part, rest]), K))
        return cat_channels(states[2:])


class SearchNetwork(nn.Module):
    """The DARTS search network (SPEC 1.4): stem, ``layers`` search cells, global pool, linear head.

    Reduction cells sit at ``layers//3`` and ``2*layers//3`` (none when ``all_normal``, as in the
    Xie et al. analysis supernet, SPEC 4). The stem is conv3x3 ``in_channels -> stem_multiplier*C`` + BN.

    ``seed`` (int, ``torch.Generator`` or ``None`` = 0) fixes both the alpha initialisation
    (``1e-3 * N(0, 1)`` from a generator) and the weight initialisation (run under a forked, seeded RNG),
    so the global RNG is neither read nor changed.

    With ``all_normal=True`` ``alphas_reduce`` still exists (so checkpoints have one shape) but is unused
    and never receives a gradient (:meth:`unused_arch_parameters`: the architect leaves its ``.grad`` at ``None``, so
    that Adam's weight decay does not move it either).

    ``partial_channels=K`` and ``edge_norm`` are PC-DARTS's partial channel connections and edge normalisation
    (:class:`SearchCell`); ``K`` must divide ``C``. With ``edge_norm`` the parameters ``betas_normal`` /
    ``betas_reduce`` (one per edge, ``1e-3 * N(0, 1)`` drawn after the weights) join :meth:`arch_parameters`.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        space: SearchSpace | None = None,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        all_normal: bool = False,
        seed: int | torch.Generator | None = None,
        partial_channels: int = 1,
        edge_norm: bool = False,
    ):
        super().__init__()
        space = SearchSpace() if space is None else space
        if layers < 1 or C < 1 or num_classes < 1 or in_channels < 1:
            raise CellnasError(
                f"C, num_classes, layers and in_channels must be >= 1, got {C}, {num_classes}, {layers}, {in_channels}"
            )
        check_partial_channels(C, partial_channels)
        self.partial_channels, self.edge_norm = partial_channels, edge_norm
        self.space = space
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.in_channels, self.stem_multiplier, self.all_normal = in_channels, stem_multiplier, all_normal
        gen = make_generator(seed)
        # alpha first, from the generator, so it does not depend on how many weights the net has
        shape = (space.n_edges, space.n_ops)
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape, generator=gen))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape, generator=gen))
        with seeded_init(gen):
            self._build()
        if edge_norm:  # after the weights, so that alpha and the weights do not depend on it
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(space.n_edges, generator=gen))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(space.n_edges, generator=gen))

    def _build(self) -> None:
        C, space = self.C, self.space
        C_curr = self.stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(self.in_channels, C_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_curr),
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(self.layers):
            reduction = i in self.reduction_indices
            if reduction:
                C_curr *= 2
            self.cells.append(
                SearchCell(space, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, self.partial_channels)
            )
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, space.n_nodes * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, self.num_classes)

    @property
    def reduction_indices(self) -> tuple[int, ...]:
        if self.all_normal:
            return ()
        return tuple(sorted({self.layers // 3, 2 * self.layers // 3}))

    def arch_parameters(self) -> list[nn.Parameter]:
        """``[alphas_normal, alphas_reduce]`` (both, even when ``all_normal``), then ``betas_normal, betas_reduce``
        with ``edge_norm``."""
        alphas = [self.alphas_normal, self.alphas_reduce]
        return alphas + [self.betas_normal, self.betas_reduce] if self.edge_norm else alphas

    def unused_arch_parameters(self) -> list[nn.Parameter]:
        """The parameters of :meth:`arch_parameters` that the forward pass never reads: those of the reduce cell
        when ``all_normal``."""
        if not self.all_normal:
            return []
        return [self.alphas_reduce, self.betas_reduce] if self.edge_norm else [self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every parameter except those of :meth:`arch_parameters` (alpha, and beta with ``edge_norm``)."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(
        self,
        x: torch.Tensor,
        weights_normal: torch.Tensor | None = None,
        weights_reduce: torch.Tensor | None = None,
        choice_normal: Sequence[int] | None = None,
        choice_reduce: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Logits for ``x``. ``weights_*`` (n_edges x n_ops) replace softmax(alpha) when given.

        The external weights are the hook of the wiring-cost analysis (SPEC 4: C = dL/dZ for one-hot Z).
        ``choice_*`` (one op index per edge, -1: none runs) run a sampled child network instead of the mixture
        (DSNAS, :meth:`SearchCell._forward_sampled`): only the chosen op of each edge, times its entry of
        ``weights_*`` (default: one-hot, no gradient).
        """
        if choice_normal is not None or choice_reduce is not None:
            if self.partial_channels > 1 or self.edge_norm:
                raise CellnasError("a sampled child (DSNAS) needs the plain DARTS supernet: no partial channels or "
                                   "edge normalisation (PC-DARTS)")  # fmt: skip
            if weights_normal is None and choice_normal is not None:
                weights_normal = one_hot_choice(choice_normal, self.space.n_ops, self.alphas_normal)
            if weights_reduce is None and choice_reduce is not None:
                weights_reduce = one_hot_choice(choice_reduce, self.space.n_ops, self.alphas_reduce)
        if weights_normal is None:
            weights_normal = F.softmax(self.alphas_normal, dim=-1)
        if weights_reduce is None and not self.all_normal:
            weights_reduce = F.softmax(self.alphas_reduce, dim=-1)
        if x.device.type == "cpu" and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout for the depthwise convs
        edges_normal = edges_reduce = None
        if self.edge_norm:
            edges_normal = node_softmax(self.betas_normal, self.space.n_nodes)
            edges_reduce = None if self.all_normal else node_softmax(self.betas_reduce, self.space.n_nodes)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            choice = choice_reduce if cell.reduction else choice_normal
            if choice is None:
                s0, s1 = s1, cell(s0, s1, weights, edges_reduce if cell.reduction else edges_normal)
            else:
                s0, s1 = s1, cell(s0, s1, weights, None, choice=choice)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))

    def genotype(self) -> Genotype:
        """The discrete cell derived from the current alpha (SPEC 1.7), and beta with ``edge_norm``."""
        if self.edge_norm:
            return derive(self.alphas_normal, self.alphas_reduce, self.space, self.betas_normal, self.betas_reduce)
        return derive(self.alphas_normal, self.alphas_reduce, self.space)

    def config(self) -> dict:
        """Constructor arguments (for checkpoints; the seed is not kept)."""
        return {
            "C": self.C,
            "num_classes": self.num_classes,
            "layers": self.layers,
            "space": self.space.to_dict(),
            "in_channels": self.in_channels,
            "stem_multiplier": self.stem_multiplier,
            "all_normal": self.all_normal,
            "partial_channels": self.partial_channels,
            "edge_norm": self.edge_norm,
        }


def one_hot_choice(choice: Sequence[int], n_ops: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """The one-hot op weights Z (n_edges x n_ops) of a sampled child: row e is one-hot on ``choice[e]``, all zero
    where ``choice[e]`` is -1 (no op: a removed edge). Dtype and device of ``like`` (default float32, CPU)."""
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    z = torch.zeros(len(choice), n_ops, **kw)
    for e, k in enumerate(choice):
        if k >= 0:
            z[e, k] = 1.0
    return z


def check_partial_channels(C: int, K: int) -> None:
    """Refuse a PC-DARTS ``K`` that the supernet of ``C`` channels cannot use, in one line.

    ``K`` must divide ``C``; it then divides the 2C and 4C of the later stages too. The stride-2 ``skip_connect``
    of a reduction cell's edges gets 2C/K channels, always even, as its ``FactorizedReduce`` needs.
    """
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise CellnasError(f"partial channels K must be an integer >= 1 (1: off, PC-DARTS uses 4), got {K!r}")
    if K > 1 and C % K:
        raise CellnasError(f"partial channels K={K} must divide the channels C={C} (each edge runs on C/K)")


def _float64(values) -> np.ndarray:
    """A float64 numpy copy of a tensor (detached) or an array-like."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def edge_weights(betas, n_nodes: int) -> np.ndarray:
    """PC-DARTS's normalised edge weights (:func:`node_softmax`) of beta logits (tensor or array), in float64."""
    return node_softmax(torch.from_numpy(_float64(betas)), n_nodes).numpy()


def _softmax_rows(alphas) -> np.ndarray:
    a = _float64(alphas)
    if a.ndim != 2:
        raise CellnasError(f"alpha must be a 2-D (edges x ops) array, got shape {a.shape}")
    e = np.exp(a - a.max(axis=1, keepdims=True))
    # the exactly rounded sum (math.fsum) does not depend on the order of the terms: rows whose logits are the same
    # values in another order get bit-equal weights, so that mathematically equal edge strengths tie exactly and
    # the stable rule of SPEC 1.7 sends them to the lower input (a pairwise sum differed by an ulp)
    return e / np.array([math.fsum(row) for row in e])[:, None]


def derive_cell(
    alphas,
    ops: tuple[str, ...] = PRIMITIVES,
    n_nodes: int | None = None,
    k: int = 2,
    concat: tuple[int, ...] | None = None,
    edge_weights=None,
) -> Cell:
    """One discrete cell from alpha logits (SPEC 1.7, DARTS ``genotype()._parse``, generalised).

    For each node j: W = softmax over all ops (``none`` included) per incoming edge; strength of an edge =
    max over non-``none`` ops of W; keep the ``k`` strongest edges (stable descending sort: ties go to the
    lower input index; a node with fewer than ``k`` predecessors keeps all of them); on each kept edge the op
    is the first maximum over non-``none`` ops (strict '>', ties -> lower op index); pairs are emitted
    strongest edge first. ``concat`` defaults to every intermediate node.

    The softmax is taken in float64, its sum exactly rounded (``math.fsum``), so that equal strengths tie exactly
    whatever the order of the logits (quark0's float32 softmax can tie or not by rounding). The result is not
    validated: with ``k > 2`` node 2 keeps fewer pairs than later nodes, which :class:`~cellnas.genotype.Genotype`
    rejects. ``edge_weights`` (one per edge, e.g. PC-DARTS's normalised beta) multiply the rows of W first, as
    PC-DARTS's ``genotype()`` does.
    """
    W = _softmax_rows(alphas)
    if W.shape[1] != len(ops):
        raise CellnasError(f"alpha has {W.shape[1]} op columns but the space has {len(ops)} ops")
    if edge_weights is not None:
        edge_weights = _float64(edge_weights)
        if edge_weights.shape != (W.shape[0],):
            raise CellnasError(f"edge weights have shape {edge_weights.shape}, alpha has {W.shape[0]} edge rows")
        W = W * edge_weights[:, None]
    if n_nodes is None:
        n_nodes = _nodes_for_edges(W.shape[0])
    n_edges = sum(j + 2 for j in range(n_nodes))
    if W.shape[0] != n_edges:
        raise CellnasError(f"alpha has {W.shape[0]} edge rows but {n_nodes} nodes need {n_edges}")
    if k < 1:
        raise CellnasError(f"k (inputs per node) must be >= 1, got {k}")
    candidates = [c for c, name in enumerate(ops) if name != "none"]
    if not candidates:
        raise CellnasError("cannot derive a cell from a space whose only op is 'none'")
    nodes = []
    start = 0
    for j in range(n_nodes):
        n_in = j + 2
        rows = W[start : start + n_in]

        def strength(i: int, rows=rows) -> float:
            return max(rows[i][c] for c in candidates)

        edges = sorted(range(n_in), key=lambda i: -strength(i))[:k]
        pairs = []
        for i in edges:
            best = None
            for c in candidates:
                if best is None or rows[i][c] > rows[i][best]:
                    best = c
            pairs.append((ops[best], i))
        nodes.append(tuple(pairs))
        start += n_in
    if concat is None:
        concat = tuple(range(2, n_nodes + 2))
    return Cell(nodes=tuple(nodes), concat=tuple(concat))


def _nodes_for_edges(n_edges: int) -> int:
    n, total = 0, 0
    while total < n_edges:
        total += n + 2
        n += 1
    if total != n_edges:
        raise CellnasError(f"{n_edges} alpha rows is not 2 + 3 + ... + (n+1) for any node count n")
    return n


def derive(
    alphas_normal, alphas_reduce, space: SearchSpace | None = None, betas_normal=None, betas_reduce=None
) -> Genotype:
    """The genotype of a search (SPEC 1.7) from alpha logits (torch tensors or numpy arrays).

    ``betas_*``: PC-DARTS edge-normalisation logits (one per edge); their softmax over each node's incoming edges
    multiplies softmax(alpha) before the DARTS rule (PC-DARTS Sec. 3.3).

    >>> a = np.zeros((14, 8)); a[:, 4] = 1.0          # sep_conv_3x3 strongest everywhere
    >>> g = derive(a, a)
    >>> g.normal.pairs[:3]
    [('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0)]
    """
    space = SearchSpace() if space is None else space

    def edges(betas):
        return None if betas is None else edge_weights(betas, space.n_nodes)

    return Genotype(
        normal=derive_cell(alphas_normal, space.ops, space.n_nodes, space.k, edge_weights=edges(betas_normal)),
        reduce=derive_cell(alphas_reduce, space.ops, space.n_nodes, space.k, edge_weights=edges(betas_reduce)),
    )
