"""Constrained random sampling of DARTS cells and edit distance to the constraint sets
(Wan, Ru, Esperança, Li, ICLR 2022, Sec. 5 and Table 2; SPEC 5.4, 5.5).

Constraints (normal and reduction cells follow the same rule, sampled independently; concat
is always ``[2, .., n+1]``):

* ``none``: every node reads 2 distinct predecessors, each op one of the 7 non-``none`` primitives;
* ``prim``: ops restricted to {skip_connect, sep_conv_3x3, sep_conv_5x5};
* ``skip``: node 2 := skip_connect(0) + skip_connect(1), the *residual link*;
* ``primskip``: ``skip`` wiring, the other edges sep_conv_3x3 / sep_conv_5x5 only.

:func:`sample` reproduces the draw order of the reference samplers
(xingchenwan/cell-based-NAS-analysis: ``NASBench301.get_random_arch`` for ``none``,
``get_random_arch(constrain_primitive=True)`` for ``prim``, ``get_constrained_random_arch``
for ``skip``/``primskip``, notebook ``sample_archs.ipynb``) from a local
``np.random.RandomState(seed)``: the first sample equals what the reference returns right
after ``np.random.seed(seed)``, and later samples continue the same stream.

**The Skip/PrimSkip quirk** (SPEC 5.4, 9.7). The reference draws the inputs of nodes 3, 4, 5
from ``np.arange(order)`` for order = 2, 3, 4, i.e. from {0,1}, {0,1,2}, {0,1,2,3}: the
immediately preceding intermediate node is never eligible (node 3 always reads 0 and 1). That is
the default (``quirk=True``, faithful). ``quirk=False`` draws the 2 distinct inputs of node j >= 3
from all its predecessors {0, .., j-1}, as the ``none``/``prim`` samplers do; node 2 stays the
residual link. The quirk belongs to the sampler, not to the constraint: :func:`satisfies` and
:func:`edit_distance` never require it.

**Edit distance unit**: one edit = one edge (one (op, input) pair) whose op, input or both change.
The two inputs of a node are an unordered set: the edges of a node are matched to the target's
edges in whichever order needs fewer edits, so swapping the two pairs of a node costs nothing.
The distance is exact (a dynamic programme over the nodes; every node's 2-input configurations
are enumerated). ``concat`` lists are ignored and kept. Distances are measured within the sampler's
space (``n_nodes`` intermediate nodes, 4 in the DARTS space, with 2 inputs each): a genotype with
another number of nodes (NASNet, AmoebaNet and ENAS have 5) cannot be edited into a sample, so it is
refused rather than given a distance to a set of 5-node cells the sampler never draws.

**Two readings of the Skip constraint** (``residual=``):

* ``"any"``: "cells must contain a residual link" (slides, seed 003): at least one skip_connect
  from an input node (0 or 1) anywhere in the cell; for ``primskip`` every other edge is a
  separable conv.
* ``"node2"``: the constraint sets are exactly the supports of the reference samplers above
  (node 2 = skip(0) + skip(1)).

**Defaults** of :func:`edit_distance` and of ``cellnas sample --distance``: ``residual="any"``
counted on the **normal cell only** (``cells=("normal",)``), because that is the reading that
reproduces the published numbers: it gives DARTS_V2 -> 1 and BANANAS -> 1, the edit distances of
Table 2 of Wan et al. (SPEC 5.5), whereas the sampler-defined reading (``residual="node2"`` on both
cells) gives DARTS_V2 -> 13 (5 normal + 8 reduce). The evidence is two data points: how the paper
defines its edit distance is not known here, so the match may be circumstantial. The sampler's own
set stays available with ``residual="node2", cells=("normal", "reduce")``. :func:`satisfies` keeps
the sampler's set as its default (every sample satisfies its constraint); ``satisfies(g, c,
residual="any", cells=("normal",))`` is true exactly when the default edit distance is 0.

>>> from cellnas.zoo import get_genotype
>>> edit_distance(get_genotype("DARTS_V2"), "primskip")[0]
1
>>> edit_distance(get_genotype("DARTS_V2"), "primskip", residual="node2", cells=("normal", "reduce"))[0]
13
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable

import numpy as np

from cellnas.errors import CellnasError, GenotypeError, check_int, check_seed, unknown_name
from cellnas.genotype import CELL_TYPES, PRIMITIVES, Cell, Genotype

__all__ = [
    "CONSTRAINTS",
    "MAX_SAMPLES",
    "RESIDUAL_READINGS",
    "DEFAULT_RESIDUAL",
    "DEFAULT_DISTANCE_CELLS",
    "DARTS_OPS",
    "PRIM_OPS",
    "SEP_OPS",
    "sample",
    "satisfies",
    "edit_distance",
]

log = logging.getLogger(__name__)

CONSTRAINTS: tuple[str, ...] = ("none", "prim", "skip", "primskip")
#: The most genotypes one :func:`sample` call draws: all are held in memory (about 2.4 kB each, 2.4 GB for 10**6,
#: and minutes of drawing), so a larger ``n`` (a typo such as ``-n 1000000000``) is refused at once.
MAX_SAMPLES = 10**6
#: :func:`sample` logs its progress after every this many samples.
_PROGRESS_EVERY = 100_000
RESIDUAL_READINGS: tuple[str, ...] = ("node2", "any")
#: Defaults of :func:`edit_distance`: the reading that reproduces Table 2 (module docstring, SPEC 5.5).
DEFAULT_RESIDUAL = "any"
DEFAULT_DISTANCE_CELLS: tuple[str, ...] = ("normal",)

#: The 7 non-``none`` DARTS primitives, in the reference sampler's order.
DARTS_OPS: tuple[str, ...] = PRIMITIVES[1:]
#: The ``prim`` sampler's ops, in the reference order.
PRIM_OPS: tuple[str, ...] = ("skip_connect", "sep_conv_3x3", "sep_conv_5x5")
#: The ``primskip`` sampler's ops for the non-residual edges, in the reference order.
SEP_OPS: tuple[str, ...] = ("sep_conv_3x3", "sep_conv_5x5")

_RESIDUAL_NODE = (("skip_connect", 0), ("skip_connect", 1))

Pair = tuple[str, int]


def _check_constraint(constraint: str) -> None:
    if constraint not in CONSTRAINTS:
        raise unknown_name("constraint", constraint, CONSTRAINTS)


# -- sampling ---------------------------------------------------------------------------------


def _sample_pair_random(rs: np.random.RandomState, ops: tuple[str, ...], n_nodes: int) -> tuple[list, list]:
    """``none``/``prim``: per node, normal (ops, inputs) then reduce (ops, inputs), interleaved.

    The reference draws ``n_nodes`` op indices per node and uses the first two; kept for parity.
    """
    normal: list[Pair] = []
    reduce: list[Pair] = []
    for i in range(n_nodes):
        ops_n = rs.choice(len(ops), n_nodes)
        in_n = rs.choice(i + 2, 2, replace=False)
        ops_r = rs.choice(len(ops), n_nodes)
        in_r = rs.choice(i + 2, 2, replace=False)
        normal += [(ops[ops_n[0]], int(in_n[0])), (ops[ops_n[1]], int(in_n[1]))]
        reduce += [(ops[ops_r[0]], int(in_r[0])), (ops[ops_r[1]], int(in_r[1]))]
    return normal, reduce


def _sample_skip_cell(rs: np.random.RandomState, ops: tuple[str, ...], n_nodes: int, quirk: bool) -> list[Pair]:
    """``skip``/``primskip``: inputs of nodes 3.. first, then the ops of those edges."""
    wiring: list[int] = []
    for order in range(2, n_nodes + 1):  # node = order + 1
        candidates = order if quirk else order + 1
        wiring += [int(x) for x in rs.choice(candidates, 2, replace=False)]
    pairs = list(_RESIDUAL_NODE)
    for src in wiring:
        pairs.append((ops[int(rs.choice(len(ops)))], src))
    return pairs


def sample(constraint: str, n: int, seed: int, quirk: bool = True, n_nodes: int = 4) -> list[Genotype]:
    """``n`` random genotypes satisfying ``constraint`` (SPEC 5.4), drawn from ``RandomState(seed)``.

    ``constraint`` is one of :data:`CONSTRAINTS`; ``n`` is 1 to :data:`MAX_SAMPLES` (every sample is held in
    memory, about 2.4 kB each: a larger set is a :class:`CellnasError` naming the limit, where it would otherwise
    fill the memory for minutes); ``seed`` is in [0, 2**32) as NumPy's. ``quirk`` only affects ``skip``/``primskip``
    (see the module docstring). ``n_nodes`` is the number of intermediate nodes (4 in the DARTS space). Progress is
    logged (INFO) every :data:`_PROGRESS_EVERY` samples of a large set.
    """
    _check_constraint(constraint)
    n = check_int(n, "n", 1, why="the number of samples")
    if n > MAX_SAMPLES:
        raise CellnasError(
            f"n (the number of samples) must be <= {MAX_SAMPLES}, got {n}: every sample is held "
            "in memory (about 2.4 kB each); draw a larger population in parts, with other seeds"
        )
    seed = check_seed(seed, "seed")
    minimum = 2 if constraint in ("skip", "primskip") else 1
    n_nodes = check_int(n_nodes, "n_nodes", minimum, why=f"intermediate nodes per {constraint!r} cell")
    rs = np.random.RandomState(seed)
    concat = list(range(2, 2 + n_nodes))
    out = []
    for i in range(n):
        if constraint in ("none", "prim"):
            normal, reduce = _sample_pair_random(rs, DARTS_OPS if constraint == "none" else PRIM_OPS, n_nodes)
        else:
            ops = DARTS_OPS if constraint == "skip" else SEP_OPS
            normal = _sample_skip_cell(rs, ops, n_nodes, quirk)
            reduce = _sample_skip_cell(rs, ops, n_nodes, quirk)
        out.append(Genotype.from_darts(normal, concat, reduce, concat))
        if (i + 1) % _PROGRESS_EVERY == 0:
            log.info("sampled %d of %d %s genotypes", i + 1, n, constraint)
    return out


# -- constraint sets and edit distance --------------------------------------------------------


def _is_residual(pair: Pair) -> bool:
    return pair[0] == "skip_connect" and pair[1] < 2


def _edge_ops(constraint: str) -> tuple[str, ...]:
    """Ops a non-fixed edge may carry (a residual skip is added separately for primskip/'any')."""
    if constraint == "prim":
        return PRIM_OPS
    if constraint == "primskip":
        return SEP_OPS
    return DARTS_OPS


def _node_targets(dst: int, constraint: str, residual: str) -> Iterable[tuple[Pair, Pair]]:
    """Every admissible (unordered) 2-input configuration of node ``dst``."""
    if dst == 2 and constraint in ("skip", "primskip") and residual == "node2":
        yield _RESIDUAL_NODE
        return
    ops = _edge_ops(constraint)
    for a, b in itertools.combinations(range(dst), 2):
        for op_a in ops:
            for op_b in ops:
                yield (op_a, a), (op_b, b)
    if constraint == "primskip" and residual == "any":
        # a residual skip may replace a separable conv on an edge leaving an input node
        for a, b in itertools.combinations(range(dst), 2):
            for op_a, op_b in itertools.product(("skip_connect",) + ops, repeat=2):
                if "skip_connect" in (op_a, op_b) and all(
                    op != "skip_connect" or src < 2 for op, src in ((op_a, a), (op_b, b))
                ):
                    yield (op_a, a), (op_b, b)


def _match(node: tuple[Pair, ...], target: tuple[Pair, Pair]) -> tuple[tuple[int, int], tuple[Pair, Pair]]:
    """(edits, input changes) to turn ``node`` into ``target``, and the target aligned with ``node``.

    Input changes only break ties between equally near targets (an op swap beats a re-wiring).
    """

    def cost(order: tuple[Pair, Pair]) -> tuple[int, int]:
        edits = sum(a != b for a, b in zip(node, order))
        rewired = sum(a[1] != b[1] for a, b in zip(node, order))
        return edits, rewired

    straight, crossed = cost(target), cost((target[1], target[0]))
    if crossed < straight:
        return crossed, (target[1], target[0])
    return straight, target


def _check_query(genotype: Genotype, constraint: str, residual: str, cells: Iterable[str], n_nodes: int,
                 function: str) -> tuple[Genotype, tuple[str, ...], int]:  # fmt: skip
    """The arguments of :func:`edit_distance` and :func:`satisfies` checked: ``(genotype, cells, n_nodes)``, the
    genotype read by :func:`cellnas.analysis.topology.as_genotype` (a zoo name works), ``cells`` as a tuple without
    repeats (one name alone is accepted), else a :class:`CellnasError` naming the argument and the valid values."""
    from cellnas.analysis.topology import as_genotype

    _check_constraint(constraint)
    if residual not in RESIDUAL_READINGS:
        raise unknown_name("residual reading", residual, RESIDUAL_READINGS)
    if isinstance(cells, str):
        cells = (cells,)
    try:
        cells = tuple(dict.fromkeys(cells))  # each cell type counted once
    except TypeError:
        raise CellnasError(f"cells must be cell type names from {', '.join(CELL_TYPES)}, got {cells!r}") from None
    for name in cells:
        if name not in CELL_TYPES:
            raise unknown_name("cell type", name, CELL_TYPES)
    n_nodes = check_int(n_nodes, "n_nodes", 1, why="intermediate nodes per cell")
    return as_genotype(genotype, function), cells, n_nodes


def _check_space(genotype: Genotype, n_nodes: int) -> None:
    """Refuse a genotype outside the sampler's space: ``n_nodes`` intermediate nodes with 2 inputs each."""
    counts = {name: genotype.cell(name).n_nodes for name in CELL_TYPES}
    if any(count != n_nodes for count in counts.values()):
        have = " and ".join(f"{name} cell has {count}" for name, count in counts.items())
        raise GenotypeError(
            f"the constrained sampler's space has {n_nodes} intermediate nodes per cell, but this genotype's {have}: "
            "no sample has its nodes, so its edit distance to the constraint set is not defined"
        )
    for name in CELL_TYPES:
        k = len(genotype.cell(name).nodes[0])
        if k != 2:
            raise GenotypeError(f"{name} cell: constraints are defined for 2 inputs per node, got {k}")


def _cell_distance(cell: Cell, constraint: str, residual: str) -> tuple[int, Cell]:
    need_residual = constraint in ("skip", "primskip") and residual == "any"
    # best[has_residual] = (edits, pairs so far); a dynamic programme over the nodes
    Cost = tuple[int, int]
    best: dict[bool, tuple[Cost, list[Pair]]] = {False: ((0, 0), [])}
    for j, node in enumerate(cell.nodes):
        node_best: dict[bool, tuple[Cost, tuple[Pair, Pair]]] = {}
        for target in _node_targets(j + 2, constraint, residual):
            cost, aligned = _match(node, target)
            has = any(_is_residual(p) for p in target)
            if has not in node_best or cost < node_best[has][0]:
                node_best[has] = (cost, aligned)
        nxt: dict[bool, tuple[Cost, list[Pair]]] = {}
        for had, (c0, pairs) in best.items():
            for has, (c1, aligned) in node_best.items():
                key, c = had or has, (c0[0] + c1[0], c0[1] + c1[1])
                if key not in nxt or c < nxt[key][0]:
                    nxt[key] = (c, pairs + list(aligned))
        best = nxt
    options = [best[True]] if need_residual else list(best.values())
    cost, pairs = min(options, key=lambda cp: cp[0])
    return cost[0], Cell.from_pairs(pairs, cell.concat)


def edit_distance(
    genotype: Genotype,
    constraint: str,
    residual: str = DEFAULT_RESIDUAL,
    cells: Iterable[str] = DEFAULT_DISTANCE_CELLS,
    n_nodes: int = 4,
) -> tuple[int, Genotype]:
    """Minimum number of edge edits that make ``genotype`` satisfy ``constraint``, and the
    nearest such genotype (SPEC 5.4/5.5; unit and readings in the module docstring).

    ``n_nodes`` is the sampler's number of intermediate nodes (4, the DARTS space, as in :func:`sample`);
    a genotype with another number, or not 2 inputs per node, raises :class:`GenotypeError`.

    Defaults: ``residual="any"`` on the normal cell only, the reading under which DARTS_V2 and
    BANANAS are 1 edit from PrimSkip as in Table 2 of Wan et al. (SPEC 5.5); pass
    ``residual="node2", cells=("normal", "reduce")`` for the distance to the sampler's own set.
    ``cells`` chooses the cell types that are edited and counted (one name or several); the others are kept as they
    are. ``genotype`` may also be a zoo name, genotype text or file, as in :func:`cellnas.analysis.topology.topology`.
    Among equally near cells the one with fewer input changes wins (an op swap beats a re-wiring),
    then the lowest op index (PRIMITIVES order) and the lowest input.
    """
    genotype, cells, n_nodes = _check_query(genotype, constraint, residual, cells, n_nodes, "edit_distance")
    _check_space(genotype, n_nodes)
    total = 0
    edited = {name: genotype.cell(name) for name in CELL_TYPES}
    for name in cells:
        cost, edited[name] = _cell_distance(genotype.cell(name), constraint, residual)
        total += cost
    return total, Genotype(normal=edited["normal"], reduce=edited["reduce"])


def _cell_satisfies(cell: Cell, constraint: str, residual: str, n_nodes: int) -> bool:
    if cell.n_nodes != n_nodes or len(cell.nodes[0]) != 2:
        return False
    ops = _edge_ops(constraint)
    for j, node in enumerate(cell.nodes):
        if node[0][1] == node[1][1]:
            return False
        if j == 0 and constraint in ("skip", "primskip") and residual == "node2":
            if sorted(node) != sorted(_RESIDUAL_NODE):
                return False
            continue
        for pair in node:
            if pair[0] not in ops and not (constraint == "primskip" and residual == "any" and _is_residual(pair)):
                return False
    if constraint in ("skip", "primskip") and residual == "any":
        return any(_is_residual(p) for p in cell.pairs)
    return True


def satisfies(genotype: Genotype, constraint: str, residual: str = "node2", cells: Iterable[str] = CELL_TYPES,
              n_nodes: int = 4) -> bool:  # fmt: skip
    """Whether ``genotype`` lies in the constraint set of ``n_nodes``-node cells, i.e. its edit distance is 0
    (``concat`` is not checked). ``genotype`` may also be a zoo name, genotype text or file, as in
    :func:`cellnas.analysis.topology.topology`; ``cells`` one cell type name or several."""
    genotype, cells, n_nodes = _check_query(genotype, constraint, residual, cells, n_nodes, "satisfies")
    return all(_cell_satisfies(genotype.cell(name), constraint, residual, n_nodes) for name in cells)
