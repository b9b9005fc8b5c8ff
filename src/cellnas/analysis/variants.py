"""Topology and operation variants of a cell (Shu, Wang, Cai, ICLR 2020, Sec. 4; SPEC 3.2).

* :func:`random_ops` and :func:`random_conn` reproduce ``random_ops`` / ``random_conn`` of
  shuyao95/Understanding-NAS ``genotypes.py`` draw for draw. The reference seeds the legacy
  global NumPy RNG (``np.random.seed(seed)``); a local ``np.random.RandomState(seed)`` yields the
  identical stream without touching global state, so ``random_conn(get_genotype("DARTS_V2"), 1)``
  is the paper's ``DARTS_CONN1``.
* :func:`widest` is the widest-and-shallowest re-wiring of the published ``*_ADAPT`` cells.
* :func:`width_family` **re-creates** the c1..c12 family of DARTS variants used in the
  convergence, loss-contour and gradient-variance figures. The paper's exact twelve genotypes
  are unpublished (SPEC 3.2, [UNKNOWN]); only the binning (4 width groups of 3: 2c, 2.5c, 3c,
  3.5c) and the README's ordering (width up, depth down from c1 to c12) are known. The re-creation
  orders width up across bins and depth down (non-increasing) within each bin only: a narrow bin
  ends shallower than the next, wider bin may start (DARTS_V2 depths 5,4,3, 5,4,3, 4,4,3, 3,3,3).

>>> from cellnas.zoo import get_genotype
>>> from cellnas.analysis.topology import cell_depth, cell_width
>>> w = widest(get_genotype("DARTS_V2"))
>>> cell_width(w.normal), cell_depth(w.normal)
(4.0, 2)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cellnas.analysis.topology import as_genotype, cell_depth, cell_width
from cellnas.errors import CellnasError, GenotypeError, check_int, check_seed
from cellnas.genotype import CELL_TYPES, PRIMITIVES, Cell, Genotype

__all__ = ["random_ops", "random_conn", "widest", "width_family", "possible_widths", "wirings_of_width", "Variant",
           "DEFAULT_WIDTHS"]  # fmt: skip

log = logging.getLogger(__name__)

#: The four width groups of Shu et al.'s DARTS variants (in units of c), SPEC 3.2.
DEFAULT_WIDTHS: tuple[float, ...] = (2.0, 2.5, 3.0, 3.5)


def _with_pairs(cell: Cell, pairs: list[tuple[str, int]], k: int) -> Cell:
    return Cell.from_pairs(pairs, cell.concat, k=k)


def random_ops(genotype: Genotype, seed: int) -> Genotype:
    """Same wiring, ops redrawn uniformly from the 7 non-``none`` DARTS primitives (SPEC 3.2).

    Reference: ``np.random.seed(seed)``; ``choice(7, num_ops)`` for the normal cell, then
    ``choice(7, num_ops)`` for the reduction cell; op := ``PRIMITIVES[1 + idx]``. ``num_ops`` is
    the number of (op, input) pairs of the cell (8 for DARTS/SNAS, 10 for ENAS/NASNet/AmoebaNet).
    Seeds 1..10 give the paper's ``*_OPS1..10``; a seed must be an integer in [0, 2**32) as NumPy's. ``genotype``
    may also be a zoo name, genotype text or file (as :func:`cellnas.analysis.topology.topology` accepts).
    """
    genotype = as_genotype(genotype, "random_ops")
    rs = np.random.RandomState(check_seed(seed, "seed"))
    k = genotype.k
    draws = {name: rs.choice(len(PRIMITIVES) - 1, len(genotype.cell(name).pairs)) for name in CELL_TYPES}
    cells = {}
    for name in CELL_TYPES:
        cell = genotype.cell(name)
        pairs = [(PRIMITIVES[1 + int(idx)], src) for idx, (_, src) in zip(draws[name], cell.pairs)]
        cells[name] = _with_pairs(cell, pairs, k)
    return Genotype(normal=cells["normal"], reduce=cells["reduce"])


def _conn_draws(rs: np.random.RandomState, n_normal: int, n_reduce: int, k: int) -> tuple[list[int], list[int]]:
    """The input draws of ``random_conn``: interleaved normal/reduce, node ids grow after each node."""
    states = [0, 1]
    normal: list[int] = []
    reduce: list[int] = []
    for i in range(max(n_normal, n_reduce)):
        # the reference's ``choice(states, 1).item()`` is one ``randint(len(states))`` draw (same stream)
        if i < n_normal:
            normal.append(states[rs.randint(len(states))])
        if i < n_reduce:
            reduce.append(states[rs.randint(len(states))])
        if i % k == k - 1:
            states.append(states[-1] + 1)
    return normal, reduce


def random_conn(genotype: Genotype, seed: int) -> Genotype:
    """Same ops, inputs redrawn at random (SPEC 3.2).

    Reference: ``np.random.seed(seed)``; ``states = [0, 1]``; for pair i = 0, 1, ...: the normal
    cell's input := ``choice(states)``, then the reduction cell's input := ``choice(states)``
    (interleaved); after every odd i (every k-th pair in general) the next node id joins
    ``states``. The two inputs of a node **may coincide** (valid for training, not encodable in
    NAS-Bench-301). Seeds 1..10 give the paper's ``*_CONN1..10``; a seed must be an integer in [0, 2**32) as
    NumPy's. ``genotype`` may also be a zoo name, genotype text or file, as in :func:`random_ops`.
    """
    genotype = as_genotype(genotype, "random_conn")
    rs = np.random.RandomState(check_seed(seed, "seed"))
    k = genotype.k
    n, r = genotype.normal, genotype.reduce
    src_n, src_r = _conn_draws(rs, len(n.pairs), len(r.pairs), k)
    return Genotype(
        normal=_with_pairs(n, [(op, s) for (op, _), s in zip(n.pairs, src_n)], k),
        reduce=_with_pairs(r, [(op, s) for (op, _), s in zip(r.pairs, src_r)], k),
    )


def _widest_cell(cell: Cell) -> Cell:
    first = [src for _, src in cell.nodes[0]]
    order = first if sorted(first) == [0, 1] else [0, 1]
    pairs = [(op, order[e]) for node in cell.nodes for e, (op, _) in enumerate(node)]
    return _with_pairs(cell, pairs, 2)


def widest(genotype: Genotype) -> Genotype:
    """The widest and shallowest re-wiring with the same ops (Shu et al.'s ``*_ADAPT`` cells).

    Every intermediate node reads one edge from each input node, so a cell with n intermediate
    nodes has width n*c and depth 2 (SPEC 3.1). The rule, read off the published cells: the
    edges of every node take the sources of node 2, in node 2's order, when node 2 reads
    inputs 0 and 1 (NASNet: (1, 0) everywhere; AmoebaNet, SNAS: (0, 1)); otherwise (0, 1).
    This reproduces NASNet_ADAPT, AmoebaNet_ADAPT, SNAS_ADAPT and ENAS_ADAPT exactly except one
    edge of ENAS_ADAPT's normal cell: the published node 3 reads input 0 twice
    (``('sep_conv_5x5', 0), ('skip_connect', 0)``), which contradicts "one edge from each
    input"; this function gives ``('skip_connect', 1)`` there. Both wirings are 5c wide and 2 deep.
    Concat lists are unchanged. Requires k = 2 inputs per node. ``genotype`` may also be a zoo name, genotype text
    or file, as in :func:`random_ops`.
    """
    genotype = as_genotype(genotype, "widest")
    if genotype.k != 2:
        raise GenotypeError(f"widest() needs cells with 2 inputs per node, got k={genotype.k}")
    return Genotype(normal=_widest_cell(genotype.normal), reduce=_widest_cell(genotype.reduce))


def wirings_of_width(n_nodes: int, k: int = 2) -> dict[float, int]:
    """How many input lists :func:`random_conn` can draw for a cell of ``n_nodes`` intermediate nodes with ``k``
    inputs each, by normal-cell width (units of c): ``{width: count}``, every possible width present.

    Node ``j`` (0-based) draws each of its ``k`` inputs from the 2 cell inputs or the ``j`` earlier nodes, and adds
    (inputs from the cell inputs) / k to the width (SPEC 3.1), so the count is the coefficient of ``x^m`` in
    ``prod_j (2x + j)^k`` for width ``m / k``. Node 0 reads only cell inputs: widths run from 1 to ``n_nodes`` in
    steps of ``1/k``.

    >>> wirings_of_width(2)
    {1.0: 4, 1.5: 16, 2.0: 16}
    """
    n_nodes, k = _check_shape(n_nodes, k)
    poly = np.array([1], dtype=object)  # exact integer coefficients, lowest power first
    for j in range(n_nodes):
        for _ in range(k):
            poly = np.convolve(poly, np.array([j, 2], dtype=object))
    return {m / k: int(c) for m, c in enumerate(poly) if c}


def possible_widths(n_nodes: int, k: int = 2) -> list[float]:
    """The normal-cell widths a re-wiring of a cell with ``n_nodes`` intermediate nodes can have: 1, 1 + 1/k, ...,
    ``n_nodes`` (units of c); see :func:`wirings_of_width`.

    >>> possible_widths(4)
    [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    """
    return sorted(wirings_of_width(n_nodes, k))


def _check_shape(n_nodes: int, k: int) -> tuple[int, int]:
    """``(n_nodes, k)`` when both are integers >= 1, else a :class:`CellnasError` naming the argument."""
    return (check_int(n_nodes, "n_nodes", 1, why="intermediate nodes per cell"),
            check_int(k, "k", 1, why="inputs per node"))  # fmt: skip


def _format_widths(widths: list[float]) -> str:
    return ", ".join(f"{w:g}" for w in widths)


def check_family(
    genotype: Genotype, widths: tuple[float, ...], per_bin: int, seed: int, max_tries: int
) -> None:
    """Refuse a :func:`width_family` request that cannot succeed, naming the valid values (CLI flag names), before
    any candidate is drawn: widths a re-wiring of this cell cannot have (or fewer distinct re-wirings than
    ``per_bin``), ``per_bin`` or ``max_tries`` below 1, seeds outside NumPy's [0, 2**32)."""
    n_nodes, k = len(genotype.normal.nodes), genotype.k
    counts = wirings_of_width(n_nodes, k)
    valid = sorted(counts)
    per_bin = check_int(per_bin, "--per-bin", why="variants per width")
    max_tries = check_int(max_tries, "--max-tries", why="candidate seeds to draw")
    if per_bin < 1:
        raise CellnasError(f"--per-bin must be >= 1 (variants per width), got {per_bin}")
    if max_tries < 1:
        raise CellnasError(f"--max-tries must be >= 1 (candidate seeds to draw), got {max_tries}")
    seed = check_seed(seed, "--seed")
    if seed + max_tries - 1 >= 2**32:
        raise CellnasError(f"--seed {seed} + --max-tries {max_tries} run past the last seed 2**32 - 1; lower one")
    if not widths:
        raise CellnasError(f"--widths names no width; possible widths: {_format_widths(valid)}")
    if len(set(widths)) != len(widths):
        raise CellnasError(f"--widths {','.join(f'{w:g}' for w in widths)} names a width twice")
    step = f"1/{k}" if k != 2 else "0.5"
    for w in widths:
        match = [v for v in valid if abs(v - w) < 1e-9]
        if not match:
            raise CellnasError(
                f"--widths: {w:g} is not a possible width of a cell with {n_nodes} intermediate nodes; possible "
                f"widths (units of c): {_format_widths(valid)} (1 to {n_nodes} in steps of {step})"
            )
        if counts[match[0]] < per_bin:
            raise CellnasError(f"--per-bin {per_bin}: a cell with {n_nodes} intermediate nodes has only "
                               f"{counts[match[0]]} distinct wirings {w:g}c wide; lower --per-bin or drop "
                               f"{w:g} from --widths")  # fmt: skip


def _check_widths(widths: object) -> tuple[float, ...]:
    """``widths`` as a tuple of floats (one number alone is accepted), else a :class:`CellnasError` naming it."""
    if isinstance(widths, (int, float)) and not isinstance(widths, bool):
        widths = (widths,)
    if isinstance(widths, (str, bytes)):
        raise CellnasError(f"widths must be numbers (units of c), e.g. (2.0, 2.5), got {widths!r}")
    try:
        items = list(widths)  # type: ignore[call-overload]
    except TypeError:
        raise CellnasError(f"widths must be numbers (units of c), e.g. (2.0, 2.5), got {widths!r}") from None
    out = []
    for w in items:
        try:
            if isinstance(w, (bool, str)):
                raise TypeError
            out.append(float(w))
        except (TypeError, ValueError):
            raise CellnasError(f"widths: {w!r} is not a number (a width in units of c, e.g. 2.5)") from None
    return tuple(out)


@dataclass(frozen=True)
class Variant:
    """One member of a :func:`width_family`: ``genotype == random_conn(base, seed)`` when
    the reduce cell is re-wired (the default)."""

    name: str
    genotype: Genotype
    seed: int
    width: float
    depth: int


def _width_depth(sources: list[int], k: int, concat: tuple[int, ...]) -> tuple[float, int]:
    """:func:`cell_width` and :func:`cell_depth` from a flat input list (no Genotype built)."""
    width = 0.0
    level = [0, 0]
    for j in range(0, len(sources), k):
        node = sources[j : j + k]
        width += sum(1 for src in node if src < 2) / k
        level.append(1 + max(level[src] for src in node))
    return width, 1 + max(level[c] for c in concat)


def width_family(
    genotype: Genotype,
    widths: tuple[float, ...] = DEFAULT_WIDTHS,
    per_bin: int = 3,
    seed: int = 0,
    max_tries: int = 2000,
    rewire_reduce: bool = True,
) -> list[Variant]:
    """A re-creation of Shu et al.'s c1..c12: random re-wirings binned by normal-cell width.

    Candidates are ``random_conn(genotype, s)`` for s = seed, seed+1, ..., seed+max_tries-1,
    i.e. each member is exactly a variant that the reference ``random_conn`` gives for its
    recorded seed (with ``seed=0`` the candidates for s = 1..10 are the paper's
    ``DARTS_CONN1..10``). The ops stay fixed; the reduction cell is re-wired by the same draws
    (as in every published ``*_CONN`` variant) unless ``rewire_reduce=False``, which keeps the
    original reduction cell. Candidates are binned by the width of their **normal** cell
    (``widths`` in units of c); duplicates of a normal cell already seen are skipped. In each bin
    ``per_bin`` members are chosen, covering as many distinct depths as the bin offers (deepest
    first, then the lowest seed), and ordered by decreasing depth; bins follow ``widths``. With
    the defaults this gives c1..c12 with width increasing and, within each width only, depth
    non-increasing; across bins depth may rise again (SPEC 3.2 quotes the README: "width and depth
    from c1 to c12 are increasing and decreasing").

    This is a **re-creation**: the paper's exact twelve genotypes are unpublished (SPEC 3.2
    UNKNOWN), so the members are not the paper's cells, only the same construction and binning.
    Raises :class:`CellnasError` for an impossible request (:func:`check_family`: a width no re-wiring has, e.g. 5c
    for 4 nodes, see :func:`possible_widths`; arguments of the wrong type) and when a bin cannot be filled within
    ``max_tries`` candidates. ``genotype`` may also be a zoo name, genotype text or file, as in :func:`random_ops`.
    """
    genotype = as_genotype(genotype, "width_family")
    widths = _check_widths(widths)
    check_family(genotype, widths, per_bin, seed, max_tries)
    per_bin, seed, max_tries = int(per_bin), int(seed), int(max_tries)
    k = genotype.k
    n_normal, n_reduce = len(genotype.normal.pairs), len(genotype.reduce.pairs)
    bins: dict[float, list[tuple[int, int]]] = {float(w): [] for w in widths}  # (seed, depth)
    seen: set[tuple[int, ...]] = set()
    rs = np.random.RandomState()
    for s in range(seed, seed + max_tries):
        rs.seed(s)  # reseeding gives the stream of RandomState(s), much faster than a new object
        sources, _ = _conn_draws(rs, n_normal, n_reduce, k)
        if tuple(sources) in seen:
            continue
        seen.add(tuple(sources))
        w, d = _width_depth(sources, k, genotype.normal.concat)
        for target, members in bins.items():
            if abs(w - target) < 1e-9:  # widths are multiples of 1/k: exact in binary for k = 2
                members.append((s, d))
    family: list[Variant] = []
    for target, members in bins.items():
        if len(members) < per_bin:
            plural = "s" if len(members) != 1 else ""
            raise CellnasError(
                f"only {len(members)} distinct re-wiring{plural} of width {target:g}c among {max_tries} candidates "
                f"(seeds {seed}..{seed + max_tries - 1}); {per_bin} needed. Raise --max-tries, or lower --per-bin"
            )
        # round-robin over depths, deepest first, lowest seed first within a depth
        by_depth: dict[int, list[int]] = {}
        for s, d in members:
            by_depth.setdefault(d, []).append(s)
        chosen: list[tuple[int, int]] = []
        while len(chosen) < per_bin:
            for d in sorted(by_depth, reverse=True):
                if by_depth[d] and len(chosen) < per_bin:
                    chosen.append((by_depth[d].pop(0), d))
        for s, _depth in sorted(chosen, key=lambda sd: (-sd[1], sd[0])):
            g = random_conn(genotype, s)
            if not rewire_reduce:
                g = Genotype(normal=g.normal, reduce=genotype.reduce)
            family.append(Variant(f"c{len(family) + 1}", g, s, cell_width(g.normal), cell_depth(g.normal)))
    log.debug("width family: %s", [(v.name, v.seed, v.width, v.depth) for v in family])
    return family
