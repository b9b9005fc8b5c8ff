"""Operation importance (OI) of every edge of a genotype (Wan, Ru, Esperança, Li, ICLR 2022,
Sec. 3, Eq. 1; SPEC 5.1), given any evaluator ``y(genotype) -> test error as a fraction``
(NAS-Bench-301 predictions, a trained-from-scratch error, or a synthetic function in tests).

    OI(alpha, e := o) = mean over alpha_m in N(alpha, e) of y(alpha_m) - y(alpha)

Positive OI: perturbing the op raises the error, i.e. the op is important and beneficial.
Edge positions follow the reference (``find_node_proximate_archs``): 0 .. P-1 are the normal
cell's (op, input) pairs in DARTS order, P .. 2P-1 the reduction cell's (P = 8 for DARTS cells).

>>> from cellnas.zoo import get_genotype
>>> len(neighbourhood(get_genotype("DARTS_V2"), 7))  # 6 op swaps + rewirings for node 5
9
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from cellnas.errors import GenotypeError
from cellnas.genotype import PRIMITIVES, Cell, Genotype

__all__ = [
    "SKIP_KINDS",
    "locate",
    "neighbourhood",
    "operation_importance",
    "important",
    "disable_ops",
    "skip_kind",
    "is_residual",
]

log = logging.getLogger(__name__)

#: Fig. 8 of Wan et al.: skip edges from node 0 (c_{k-2}), node 1 (c_{k-1}) or an intermediate node.
SKIP_KINDS: tuple[str, ...] = ("in0", "in1", "others")

_CANDIDATE_OPS = PRIMITIVES[1:]


def locate(genotype: Genotype, position: int) -> tuple[str, int]:
    """``(cell_type, pair index within that cell)`` of an edge position."""
    n_normal = len(genotype.normal.pairs)
    n_total = n_normal + len(genotype.reduce.pairs)
    if not 0 <= position < n_total:
        raise GenotypeError(f"edge position {position} out of range 0 .. {n_total - 1}")
    return ("normal", position) if position < n_normal else ("reduce", position - n_normal)


def _replace(genotype: Genotype, cell_type: str, index: int, pair: tuple[str, int]) -> Genotype:
    cell = genotype.cell(cell_type)
    pairs = cell.pairs
    pairs[index] = pair
    new = Cell.from_pairs(pairs, cell.concat, k=genotype.k)
    return (
        Genotype(normal=new, reduce=genotype.reduce)
        if cell_type == "normal"
        else Genotype(normal=genotype.normal, reduce=new)
    )


def neighbourhood(genotype: Genotype, position: int) -> list[Genotype]:
    """N(alpha, e): the genotypes one perturbation of edge ``position`` away (SPEC 5.1).

    (a) op swaps: the op replaced by each other non-``none`` DARTS primitive (6 neighbours; 7 when
    the op is ``none`` or not a DARTS primitive), in PRIMITIVES order; then (b) re-wirings: the
    edge's input replaced by every predecessor 0 .. node-1 of its node except its current input
    and the inputs of the node's other edges, ascending. For k = 2 DARTS cells
    |N| = 6 + (node - 2). Same order as the reference ``find_node_proximate_archs``.
    """
    cell_type, index = locate(genotype, position)
    cell = genotype.cell(cell_type)
    k = genotype.k
    node = index // k + 2
    op, src = cell.pairs[index]
    siblings = {s for e, (_, s) in enumerate(cell.nodes[index // k]) if e != index % k}
    out = [_replace(genotype, cell_type, index, (other, src)) for other in _CANDIDATE_OPS if other != op]
    out += [
        _replace(genotype, cell_type, index, (op, new_src))
        for new_src in range(node)
        if new_src != src and new_src not in siblings
    ]
    return out


def operation_importance(
    genotype: Genotype,
    evaluate: Callable[[Genotype], float],
    positions: Iterable[int] | None = None,
    cache: dict[str, float] | None = None,
) -> dict[int, float]:
    """``{position: OI}`` for the given edge positions (default: all of them), SPEC 5.1.

    ``evaluate`` returns the test error as a fraction (e.g. ``1 - acc/100`` of an NB301
    prediction without noise). Evaluations are cached by :meth:`Genotype.content_hash`, so a
    genotype shared by several neighbourhoods is evaluated once; pass your own ``cache`` dict to
    share it across calls (e.g. over a population of architectures).
    """
    cache = {} if cache is None else cache

    def y(g: Genotype) -> float:
        key = g.content_hash()
        if key not in cache:
            cache[key] = float(evaluate(g))
        return cache[key]

    n_total = len(genotype.normal.pairs) + len(genotype.reduce.pairs)
    positions = range(n_total) if positions is None else list(positions)
    base = y(genotype)
    oi: dict[int, float] = {}
    for p in positions:
        neighbours = neighbourhood(genotype, p)
        oi[p] = sum(y(m) for m in neighbours) / len(neighbours) - base
        log.debug("OI position %d: %.6f over %d neighbours", p, oi[p], len(neighbours))
    return oi


def important(oi: dict[int, float], threshold: float = 0.001, direction: str = "both") -> dict[int, float]:
    """The important ops: |OI| >= ``threshold`` (0.1 % as a fraction, SPEC 5.1).

    ``direction="positive"`` keeps OI > threshold (the top-architecture analysis), ``"negative"`` keeps
    OI < -threshold (the bottom-architecture analysis): strict, as the reference notebook counts them.
    """
    signs = {"both": 0, "positive": 1, "negative": -1}
    if direction not in signs:
        raise ValueError(f"direction must be 'both', 'positive' or 'negative', got {direction!r}")
    sign = signs[direction]
    if sign == 0:
        return {p: v for p, v in oi.items() if abs(v) >= threshold}
    return {p: v for p, v in oi.items() if sign * v > threshold}


def disable_ops(genotype: Genotype, positions: Iterable[int]) -> Genotype:
    """Replace the ops at ``positions`` by ``none``; the edges keep their places (SPEC 5.2,
    the op-disabling verification of Finding 1)."""
    for p in positions:
        cell_type, index = locate(genotype, p)
        genotype = _replace(genotype, cell_type, index, ("none", genotype.cell(cell_type).pairs[index][1]))
    return genotype


def skip_kind(cell: Cell, edge: int) -> str:
    """'in0', 'in1' or 'others': where the skip_connect at pair ``edge`` of ``cell`` comes from (Fig. 8)."""
    op, src = cell.pairs[edge]
    if op != "skip_connect":
        raise GenotypeError(f"edge {edge} is {op}, not skip_connect")
    return SKIP_KINDS[min(src, 2)]


def is_residual(cell: Cell, edge: int) -> bool:
    """A residual link: a skip_connect whose input is an input node (0 or 1), SPEC 5.1."""
    op, src = cell.pairs[edge]
    return op == "skip_connect" and src < 2
