"""Genotypes: the discrete description of a cell-based architecture, as pure data.

A cell (Liu et al., ICLR 2019, Sec. 2.1) is a DAG with two input nodes
(node 0 = output of cell k-2, node 1 = output of cell k-1), ``n`` intermediate
nodes (2 .. n+1) and one output node that concatenates the nodes in ``concat``.
Each intermediate node reads ``k`` (op, input) pairs; DARTS keeps k=2.

This module imports no torch: networks are built *from* a genotype.

>>> g = Genotype.from_darts(normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
...                         normal_concat=[2],
...                         reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
...                         reduce_concat=[2])
>>> g.normal.n_nodes, g.normal.edges()[0]
(1, ('sep_conv_3x3', 0, 2))
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cellnas.errors import GenotypeError

__all__ = [
    "searched_cell_types",
    "PRIMITIVES",
    "EXTRA_PRIMITIVES",
    "known_ops",
    "register_op_name",
    "Cell",
    "Genotype",
    "CELL_TYPES",
    "infer_k",
    "edge_pairs",
    "parse_edge",
    "as_int",
]

def edge_pairs(n_nodes: int) -> list[tuple[int, int]]:
    """The edges ``(source, destination)`` of a supernet cell in α-row order (SPEC 1.3: node j reads nodes
    0 .. j-1; rows 0-1 lead to node 2, rows 2-4 to node 3, ...)."""
    return [(i, j) for j in range(2, n_nodes + 2) for i in range(j)]


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
            raise GenotypeError(
                f"edge {text!r} must be an index 0..{n_edges - 1} or 'i-j' (source-destination)"
            ) from None
        if not (2 <= j < n_nodes + 2 and 0 <= i < j):
            raise GenotypeError(f"edge {text!r}: no such edge in a cell with {n_nodes} intermediate nodes")
        e = pairs.index((i, j))
    if not 0 <= e < n_edges:
        raise GenotypeError(f"edge {text!r} out of range 0..{n_edges - 1}")
    return e


#: The 8 DARTS candidate operations, in the canonical order of quark0/darts (SPEC 1.1).
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

#: Ops that appear only in published non-DARTS cells (NASNet, AmoebaNet).
EXTRA_PRIMITIVES: tuple[str, ...] = ("sep_conv_7x7", "conv_7x1_1x7")

CELL_TYPES: tuple[str, ...] = ("normal", "reduce")


def searched_cell_types(all_normal: bool) -> tuple[str, ...]:
    """The cell types a search actually learns: only ``normal`` in an all-normal supernet (Xie et al.'s
    analysis set-up, SPEC 4), whose ``reduce`` cell is derived from untouched α and means nothing."""
    return CELL_TYPES[:1] if all_normal else CELL_TYPES

_OP_NAMES: set[str] = set(PRIMITIVES) | set(EXTRA_PRIMITIVES)


def known_ops() -> tuple[str, ...]:
    """Every op name a genotype may use (the built-ins plus user-registered ones)."""
    return tuple(sorted(_OP_NAMES))


def register_op_name(name: str) -> None:
    """Make ``name`` a valid op in genotypes (``cellnas.ops.register_op`` calls this)."""
    if not name or not isinstance(name, str):
        raise GenotypeError(f"op names must be non-empty strings, got {name!r}")
    _OP_NAMES.add(name)


Pair = tuple[str, int]


@dataclass(frozen=True)
class Cell:
    """One cell type: ``nodes[j]`` holds the (op, input) pairs of intermediate node j+2.

    ``concat`` lists the nodes whose outputs are concatenated into the cell output.
    Instances are immutable and hashable; build them with :meth:`from_pairs` or the constructor.

    The constructor converts lists to tuples (and NumPy ints to ints) and checks the cell's shape: at least one
    node, every node with at least one (op, input) pair, and a non-empty ``concat`` of distinct existing nodes
    (0 .. n+1); anything else raises :class:`~cellnas.errors.GenotypeError`. The op names, that every input is an
    earlier node and that every node has the same number of inputs are checked by :meth:`validate`, which
    :class:`Genotype` calls for both its cells: a cell does not know whether it is the normal or the reduction cell,
    and those messages name it (``reduce cell, node 3, edge 0: ...``). So a :class:`Genotype` is always fully valid;
    a lone cell may still hold an unknown op, a bad input or, from
    :func:`~cellnas.supernet.derive_cell` with ``k > 2``, a node 2 with fewer inputs than the others.

    >>> Cell(nodes=[], concat=[2])
    Traceback (most recent call last):
    ...
    cellnas.errors.GenotypeError: cell has no intermediate nodes (a cell needs at least one node of (op, input) pairs)
    """

    nodes: tuple[tuple[Pair, ...], ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", _as_nodes(self.nodes))
        object.__setattr__(self, "concat", _as_concat(self.concat))
        self._check_shape("cell")

    def _check_shape(self, where: str) -> None:
        """The checks that need no cell type (``where`` starts every message): nodes and concat."""
        if not self.nodes:
            raise GenotypeError(f"{where} has no intermediate nodes (a cell needs at least one node of (op, input) "
                                "pairs)")  # fmt: skip
        for j, node in enumerate(self.nodes):
            if not node:
                raise GenotypeError(f"{where}, node {j + 2}: has no (op, input) pairs (every node needs an input)")
        if not self.concat:
            raise GenotypeError(f"{where}: concat list is empty")
        last = self.n_nodes + 1
        for c in self.concat:
            if not 0 <= c <= last:
                raise GenotypeError(f"{where}: concat names node {c}, which does not exist (nodes 0 .. {last})")
        if len(set(self.concat)) != len(self.concat):
            raise GenotypeError(f"{where}: concat {list(self.concat)} repeats a node")

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_pairs(cls, pairs: Sequence[Sequence], concat: Iterable[int], k: int = 2) -> Cell:
        """Build a cell from the flat DARTS pair list (``k`` consecutive pairs per node)."""
        if not isinstance(pairs, list | tuple):
            raise GenotypeError(f"expected a list of (op, input) pairs, got {pairs!r}")
        pairs = [_as_pair(p) for p in pairs]
        k = _as_k(k)
        if len(pairs) == 0 or len(pairs) % k:
            raise GenotypeError(
                f"a cell with k={k} inputs per node needs a positive multiple of {k} (op, input) pairs, "
                f"got {len(pairs)}"
            )
        nodes = tuple(tuple(pairs[j : j + k]) for j in range(0, len(pairs), k))
        return cls(nodes=nodes, concat=_as_concat(concat))

    # -- views ----------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        """Number of intermediate nodes."""
        return len(self.nodes)

    @property
    def pairs(self) -> list[Pair]:
        """The flat (op, input) list, node by node, as DARTS writes it."""
        return [p for node in self.nodes for p in node]

    @property
    def ops(self) -> list[str]:
        return [op for op, _ in self.pairs]

    def edges(self) -> list[tuple[str, int, int]]:
        """Every edge as (op, source node, destination node), node by node."""
        return [(op, i, j + 2) for j, node in enumerate(self.nodes) for op, i in node]

    def validate(self, name: str = "cell") -> None:
        """Raise :class:`GenotypeError` naming the cell, node and edge at fault."""
        self._check_shape(f"{name} cell")
        k = len(self.nodes[0])
        for j, node in enumerate(self.nodes):
            dst = j + 2
            if len(node) != k:
                raise GenotypeError(
                    f"{name} cell, node {dst}: has {len(node)} (op, input) pairs but node 2 has {k}; "
                    "every node needs the same number of inputs"
                )
            for e, (op, src) in enumerate(node):
                where = f"{name} cell, node {dst}, edge {e}"
                if op not in _OP_NAMES:
                    raise GenotypeError(f"{where}: unknown op {op!r}; valid ops: {', '.join(known_ops())}")
                if not 0 <= src < dst:
                    raise GenotypeError(
                        f"{where}: input {src} must be an earlier node (0 .. {dst - 1})"
                    )

    def reaches_output(self, inputs: Iterable[int] = (0, 1)) -> bool:
        """Whether the cell's output depends on the input nodes ``inputs`` (those that carry a signal): some
        node of ``concat`` is reached from one of them along edges other than ``none``.

        A ``none`` edge multiplies by 0 (SPEC 1.1), so a node reached only through ``none`` edges is
        constant: zero, or after a conv op the constant its BatchNorm makes of zero.
        """
        live = {i for i in inputs if i in (0, 1)}
        for j, node in enumerate(self.nodes):
            if any(op != "none" and src in live for op, src in node):
                live.add(j + 2)
        return any(c in live for c in self.concat)

    def signal_problem(self, name: str = "cell") -> str | None:
        """Why the cell's output is constant whatever its inputs, or None when it is not.

        Such a cell is valid data (it may be read, written and converted); :mod:`cellnas.network` builds a
        network from it with a warning (the louder when the network's output then does not depend on its input).
        """
        if all(op == "none" for op in self.ops):
            return f"cell {name!r} has only 'none' edges: its output is constant zero"
        if not self.reaches_output():
            return (
                f"cell {name!r} reaches its output only through 'none' edges: its output is constant "
                f"(concat {list(self.concat)})"
            )
        return None

    def canonical(self) -> Cell:
        """The same architecture listed in one order: each node's (op, input) pairs sorted by (input, op), and
        ``concat`` sorted. A node sums its inputs and the output concatenates its nodes, so the order is only how
        the cell is written (and the order the ops are built in); NAS-Bench-301 configs do not store it."""
        nodes = tuple(tuple(sorted(node, key=lambda p: (p[1], p[0]))) for node in self.nodes)
        return Cell(nodes=nodes, concat=tuple(sorted(self.concat)))

    def to_dict(self) -> dict:
        return {"nodes": [[[op, i] for op, i in node] for node in self.nodes], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, d: dict, name: str = "cell") -> Cell:
        """The cell of :meth:`to_dict`'s ``{"nodes": [[[op, input], ...], ...], "concat": [...]}``."""
        if not isinstance(d, Mapping):
            raise GenotypeError(f"{name} cell must be an object with 'nodes' and 'concat', got {d!r}")
        for key in ("nodes", "concat"):
            if key not in d:
                raise GenotypeError(f"{name} cell: missing key {key!r} (a cell needs 'nodes' and 'concat')")
        return _named(cls, name, d["nodes"], d["concat"])


def as_int(value) -> int | None:
    """``value`` as an int if it is one (numpy ints included); ``None`` for bools, floats, strings and the rest."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _as_pair(p) -> Pair:
    if not isinstance(p, list | tuple) or len(p) != 2:
        raise GenotypeError(f"expected an (op, input) pair, got {p!r}")
    op, i = p
    if not isinstance(op, str):
        raise GenotypeError(f"op name must be a string, got {op!r} in pair {p!r}")
    index = as_int(i)
    if index is None:
        raise GenotypeError(f"input index must be an integer, got {i!r} in pair {p!r}")
    return (str(op), index)


def _as_nodes(nodes) -> tuple[tuple[Pair, ...], ...]:
    if not isinstance(nodes, list | tuple) or not all(isinstance(node, list | tuple) for node in nodes):
        raise GenotypeError(f"nodes must be a list of nodes, each a list of (op, input) pairs, got {nodes!r}")
    return tuple(tuple(_as_pair(p) for p in node) for node in nodes)


def _as_k(k) -> int:
    """``k`` (inputs per node) as an int >= 1, or a :class:`GenotypeError`."""
    value = as_int(k)
    if value is None or value < 1:
        raise GenotypeError(f"inputs per node k must be an integer >= 1, got {k!r}")
    return value


def _as_concat(concat) -> tuple[int, ...]:
    if isinstance(concat, str | bytes | Mapping) or not isinstance(concat, Iterable):
        raise GenotypeError(f"concat must be a list of node numbers, got {concat!r}")
    concat = tuple(concat)
    out = []
    for c in concat:
        node = as_int(c)
        if node is None:
            raise GenotypeError(f"concat must be a list of node numbers (integers), got {c!r} in {list(concat)!r}")
        out.append(node)
    return tuple(out)


def _k_from_concat(pairs, concat) -> int | None:
    """The k that makes the last node of ``concat`` the cell's last intermediate node, if it is a whole number."""
    try:
        ends = [as_int(c) for c in concat]
        n_pairs = len(pairs)
    except TypeError:
        return None
    if not ends or None in ends or max(ends) < 2 or n_pairs == 0 or n_pairs % (max(ends) - 1):
        return None
    return n_pairs // (max(ends) - 1)


def infer_k(normal: Sequence, normal_concat: Iterable[int], reduce: Sequence, reduce_concat: Iterable[int]) -> int:
    """The inputs per node ``k`` of DARTS pair lists, which do not state it (DARTS text has no k field).

    A cell's last intermediate node feeds only the output, so it is in ``concat`` unless it is dead: every cell a
    search derives (any k, any node count), samples, the zoo's published cells (SPEC 1.8) and NNabla/NB301 cells
    have it there. So a cell of P pairs whose concat ends at node m has n = m - 1 nodes of k = P / n pairs each.
    When the cells give one such k, it is the answer, valid or not (building the cells then says what is wrong).
    When they give two, a :class:`GenotypeError` names both (one genotype has one k; reading one cell with the
    other's k would invent or drop nodes). When neither does (P does not divide; a concat of input nodes only) it
    is DARTS's k = 2. A cell whose last node is dead needs its k given.
    """
    normal_concat, reduce_concat = _materialise(normal_concat), _materialise(reduce_concat)
    found = {"normal": _k_from_concat(normal, normal_concat), "reduce": _k_from_concat(reduce, reduce_concat)}
    ks = set(found.values()) - {None}
    if len(ks) <= 1:
        return ks.pop() if ks else 2
    raise GenotypeError(
        f"the normal cell has {len(normal)} (op, input) pairs for nodes 2 .. {max(normal_concat)}, so "
        f"k={found['normal']} inputs per node, but the reduce cell has {len(reduce)} pairs for nodes 2 .. "
        f"{max(reduce_concat)}, so k={found['reduce']}: both cells of a genotype need the same k (when a cell's "
        "last node is not in its concat, give k)"
    )


def _materialise(concat):
    """``concat`` as a list when it is a one-shot iterable (a generator), so that it can be read twice."""
    if isinstance(concat, str | bytes | Mapping) or not isinstance(concat, Iterable):
        return concat
    return list(concat)


def _not_a_cell(name: str, value) -> str:
    """Why ``Genotype(name=value)`` is refused, and what to call instead."""
    return (
        f"Genotype({name}=...) takes a Cell, got {type(value).__name__} {value!r:.80}; build a genotype from DARTS "
        f"pair lists with Genotype.from_darts(normal=[(op, input), ...], normal_concat=[...], reduce=[...], "
        f"reduce_concat=[...]), from a dict with Genotype.from_dict, or a cell with Cell.from_pairs(pairs, concat, k)"
    )


@dataclass(frozen=True)
class Genotype:
    """A normal and a reduction cell (Liu et al. 2019, Sec. 2.4, the derived architecture).

    Both cells are validated (:meth:`Cell.validate`) and must have the same number ``k`` of inputs per node: the
    DARTS text writes each cell as one flat pair list, read back with one k, and the analyses take one k.
    """

    normal: Cell
    reduce: Cell

    def __post_init__(self) -> None:
        for name in CELL_TYPES:
            if not isinstance(getattr(self, name), Cell):
                raise GenotypeError(_not_a_cell(name, getattr(self, name)))
        self.normal.validate("normal")
        self.reduce.validate("reduce")
        k_normal, k_reduce = len(self.normal.nodes[0]), len(self.reduce.nodes[0])
        if k_normal != k_reduce:
            raise GenotypeError(
                f"the normal cell has k={k_normal} inputs per node but the reduce cell has k={k_reduce}: both cells "
                "of a genotype need the same k (its DARTS text is read back with one k)"
            )

    @classmethod
    def from_darts(
        cls,
        normal: Sequence,
        normal_concat: Iterable[int],
        reduce: Sequence,
        reduce_concat: Iterable[int],
        k: int | None = None,
    ) -> Genotype:
        """Build from the DARTS namedtuple fields (flat pair lists, ``k`` pairs per node).

        ``k=None`` reads k off the pair counts and concat lists (:func:`infer_k`: 2 for DARTS cells, 1 for a
        ``--k 1`` search's)."""
        normal_concat, reduce_concat = _materialise(normal_concat), _materialise(reduce_concat)
        if k is None:
            k = infer_k(normal, normal_concat, reduce, reduce_concat)
        return cls(
            normal=_named(Cell.from_pairs, "normal", normal, normal_concat, k),
            reduce=_named(Cell.from_pairs, "reduce", reduce, reduce_concat, k),
        )

    def cell(self, cell_type: str) -> Cell:
        if cell_type not in CELL_TYPES:
            raise GenotypeError(f"unknown cell type {cell_type!r}; valid: normal, reduce")
        return getattr(self, cell_type)

    @property
    def k(self) -> int:
        """Inputs per intermediate node."""
        return len(self.normal.nodes[0])

    def signal_problems(self) -> list[str]:
        """:meth:`Cell.signal_problem` of each cell type that has one (an empty list for a healthy genotype)."""
        return [p for name in CELL_TYPES if (p := self.cell(name).signal_problem(name)) is not None]

    def to_dict(self) -> dict:
        return {"normal": self.normal.to_dict(), "reduce": self.reduce.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Genotype:
        """The genotype of :meth:`to_dict`'s ``{"normal": {"nodes": ..., "concat": ...}, "reduce": ...}``, or of the
        DARTS fields as a dict (``{"normal": [[op, input], ...], "normal_concat": [...], "reduce": ...,
        "reduce_concat": ...}``, e.g. a DARTS namedtuple's ``_asdict()``; an optional ``"k"``, else inferred as
        :meth:`from_darts` does)."""
        if not isinstance(d, Mapping):
            raise GenotypeError(f"a genotype dict needs 'normal' and 'reduce' cells, got {type(d).__name__} {d!r:.80}")
        missing = [key for key in CELL_TYPES if key not in d]
        if missing:
            raise GenotypeError(f"a genotype needs 'normal' and 'reduce' cells; this dict lacks {' and '.join(missing)}"
                                f" (its keys: {', '.join(map(str, d)) or 'none'})")  # fmt: skip
        if all(isinstance(d[key], list | tuple) for key in CELL_TYPES):  # the DARTS fields
            lacking = [f"{key}_concat" for key in CELL_TYPES if f"{key}_concat" not in d]
            if lacking:
                raise GenotypeError(f"a genotype dict of DARTS pair lists needs {' and '.join(lacking)} too")
            return cls.from_darts(d["normal"], d["normal_concat"], d["reduce"], d["reduce_concat"], k=d.get("k"))
        return cls(normal=Cell.from_dict(d["normal"], "normal"), reduce=Cell.from_dict(d["reduce"], "reduce"))

    def content_hash(self) -> str:
        """A stable 16-hex-digit hash of the cells as listed (same listing -> same hash on any machine).

        The listing order of a node's inputs enters it: it fixes the order the network's ops are built (and
        initialised) in. :meth:`architecture_hash` ignores it."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def canonical(self) -> Genotype:
        """The same architecture with both cells in :meth:`Cell.canonical` order."""
        return Genotype(normal=self.normal.canonical(), reduce=self.reduce.canonical())

    def architecture_hash(self) -> str:
        """:meth:`content_hash` of :meth:`canonical`: equal for two listings of one architecture (a cell read back
        from a NAS-Bench-301 config, whose inputs come sorted, has the hash of the DARTS text it was written from)."""
        return self.canonical().content_hash()

    def to_networkx(self, cell_type: str = "normal"):
        """The cell as a ``networkx.DiGraph``.

        Nodes: ``c_{k-2}``, ``c_{k-1}``, the intermediate nodes ``2 .. n+1`` (as ints),
        and ``c_{k}`` (the output). Edges carry ``op``; edges into the output carry ``op='concat'``.
        Parallel edges with the same source (allowed in Shu et al.'s random_conn variants)
        are kept as a list in ``ops``.
        """
        import networkx as nx

        cell = self.cell(cell_type)
        g = nx.DiGraph(cell_type=cell_type)
        names = {0: "c_{k-2}", 1: "c_{k-1}"}
        g.add_node(names[0], kind="input")
        g.add_node(names[1], kind="input")
        for j in range(cell.n_nodes):
            g.add_node(j + 2, kind="intermediate")
        g.add_node("c_{k}", kind="output")
        for op, src, dst in cell.edges():
            u = names.get(src, src)
            if g.has_edge(u, dst):
                g.edges[u, dst]["ops"].append(op)
            else:
                g.add_edge(u, dst, op=op, ops=[op])
        for c in cell.concat:
            g.add_edge(names.get(c, c), "c_{k}", op="concat", ops=["concat"])
        return g

    def __str__(self) -> str:
        from cellnas.formats import to_darts_text

        return to_darts_text(self)


def _named(fn, name, *args):
    """``fn(*args)``, its :class:`GenotypeError` naming the cell type ``name``."""
    try:
        return fn(*args)
    except GenotypeError as exc:
        text = str(exc)
        # the constructor's shape messages start with "cell": make that "normal cell", not "normal cell: cell"
        raise GenotypeError(f"{name} {text}" if text.startswith("cell") else f"{name} cell: {text}") from None
