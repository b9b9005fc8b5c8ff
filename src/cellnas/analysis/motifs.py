"""Frequent subgraph (motif) mining over labelled cell graphs (Wan, Ru, Esperança, Li,
ICLR 2022, Sec. 4; SPEC 5.3).

The reference mines with gSpan (Yan & Han 2002). Cells are tiny (at most 8 edges, 6 nodes), so
this module mines **exhaustively** instead: it enumerates every weakly connected edge subset of
every graph, reduces each to a canonical form, and counts the graphs containing it. The support
counts are exact (a pattern occurs in G, in gSpan's sense of a subgraph monomorphism, iff some
connected edge subset of G is isomorphic to it).

**Which shapes.** The reference runs gSpan in directed mode (``gspan-mining``, ``is_undirected=False``), which
stores each edge at its source only and so grows a pattern along out-edges only: its DFS trees follow edge
directions, and the only other edges it can add are backward edges from the newest vertex to an ancestor, which a
DAG does not have. In cell graphs it therefore finds exactly the **out-trees**, the motifs in which every vertex has
at most one incoming edge (for instance ``input1 -skip-> op -sep-> op``, but not a node fed by two ops).
``shapes="gspan"`` (the default) keeps those, so the motif list is the reference's; ``shapes="connected"``
keeps every weakly connected subgraph (checked against a transcription of the reference's gSpan: the same motifs and
supports with the default, and 13 more, all with a vertex of in-degree 2, with ``"connected"``, on 12 PrimSkip cells).

* :func:`cell_graph`: the edge-labelled DiGraph of one cell, as ``to_networkx_edge(no_concat=True)``
  of the reference: nodes 0, 1 labelled ``input1``, ``input2``; intermediate nodes all ``op``;
  no output node; edge src -> 2 + index//2 labelled with the op name, ``weight`` = its OI.
  An OI threshold drops edges with OI < threshold and then isolated nodes (``--weight_thres``).
* :func:`mine`: frequent connected subgraphs with support >= ``min_support`` (a fraction in (0, 1]: at
  least ``round(min_support * T)`` of the T graphs, as the reference converts it), or in at least ``min_count``
  graphs.
* :func:`reference_subgraphs` and :func:`rank`: the "ratio of supports" ranking of Table 1:
  for every architecture a random subgraph with as many edges as its important subgraph (SPEC 5.3; the
  reference code's ``--normal_only`` run draws a uniform number of edges in 0..n-1 instead, ``edges="randint"``);
  ``ref_incidence`` = how many of them contain the motif; ``norm_support = support / ref_incidence``.
  A motif that no reference subgraph contains has ``ref_incidence = 0`` and ``norm_support = inf``
  (support / 0); such motifs rank first, by support.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np

from cellnas.errors import GenotypeError
from cellnas.genotype import Genotype

__all__ = [
    "NODE_LABEL",
    "EDGE_LABEL",
    "cell_graph",
    "canonical_form",
    "node_names",
    "Motif",
    "support_count",
    "mine",
    "contains",
    "reference_subgraphs",
    "rank",
]

log = logging.getLogger(__name__)

#: Attribute names of the labels, as in the reference (``node_name``, ``op_name``).
NODE_LABEL = "node_name"
EDGE_LABEL = "op_name"

_INPUT_NAMES = ("input1", "input2")

Key = tuple[tuple[str, ...], tuple[tuple[int, int, str], ...]]


# -- cell graphs ------------------------------------------------------------------------------


def cell_graph(
    genotype: Genotype,
    oi: dict[int, float] | None = None,
    threshold: float | None = None,
    cell_type: str = "normal",
) -> nx.DiGraph:
    """The labelled graph of one cell (SPEC 5.3).

    ``oi`` maps edge positions (as in :mod:`cellnas.analysis.importance`: the normal cell's pairs
    first, then the reduction cell's) to OI; it becomes each edge's ``weight``. With ``threshold``,
    edges whose OI is below it are dropped, then isolated nodes. Two edges of one node with the
    same input (possible only outside the NB301 space) are one DiGraph edge: the later pair wins,
    as in the reference. Edges also carry ``position`` (the pair index within the cell).
    """
    cell = genotype.cell(cell_type)
    offset = 0 if cell_type == "normal" else len(genotype.normal.pairs)
    if threshold is not None and oi is None:
        raise ValueError("an OI threshold needs the OI values (oi=...)")
    g = nx.DiGraph(cell_type=cell_type)
    for v in range(cell.n_nodes + 2):
        g.add_node(v, **{NODE_LABEL: _INPUT_NAMES[v] if v < 2 else "op"})
    k = len(cell.nodes[0])
    for index, (op, src) in enumerate(cell.pairs):
        dst = 2 + index // k
        if g.has_edge(src, dst):
            log.warning("%s cell: node %d reads node %d twice; the graph keeps the later edge", cell_type, dst, src)
        weight = None if oi is None else oi.get(offset + index)
        g.add_edge(src, dst, **{EDGE_LABEL: op, "weight": weight, "position": index})
    if threshold is not None:
        missing = [d["position"] for _, _, d in g.edges(data=True) if d["weight"] is None]
        if missing:
            raise GenotypeError(f"{cell_type} cell: no OI for edge positions {[offset + p for p in missing]}")
        g.remove_edges_from([(u, v) for u, v, d in g.edges(data=True) if d["weight"] < threshold])
        g.remove_nodes_from(list(nx.isolates(g)))
    return g


# -- canonical forms --------------------------------------------------------------------------


def _canonical(labels: dict, edges: Sequence[tuple]) -> Key:
    """Canonical form of a small labelled digraph given as node labels and (u, v, label) edges.

    Nodes are first split into classes by an isomorphism-invariant colour refinement (label, then
    the multisets of labelled in- and out-neighbour colours); the form is the minimum, over all
    orderings that permute nodes only within a class, of (node labels, sorted edge list).
    """
    nodes = sorted(labels, key=repr)
    ins: dict = {v: [] for v in nodes}
    outs: dict = {v: [] for v in nodes}
    for u, w, lab in edges:
        outs[u].append((str(lab), w))
        ins[w].append((str(lab), u))
    colour = {v: str(labels[v]) for v in nodes}
    n_classes = len(set(colour.values()))
    while True:
        signature = {
            v: (
                colour[v],
                tuple(sorted((lab, colour[u]) for lab, u in ins[v])),
                tuple(sorted((lab, colour[w]) for lab, w in outs[v])),
            )
            for v in nodes
        }
        ranks = {sig: i for i, sig in enumerate(sorted(set(signature.values())))}
        refined = {v: f"{ranks[signature[v]]:03d}" for v in nodes}
        if len(ranks) == n_classes or len(ranks) == len(nodes):
            break
        colour, n_classes = refined, len(ranks)
    classes: dict[str, list] = {}
    for v in nodes:
        classes.setdefault(refined[v], []).append(v)
    ordered = [classes[c] for c in sorted(classes)]
    node_labels = tuple(str(labels[members[0]]) for members in ordered for _ in members)
    best = None
    for perms in itertools.product(*(itertools.permutations(m) for m in ordered)):
        index = {v: i for i, v in enumerate(itertools.chain.from_iterable(perms))}
        form = tuple(sorted((index[u], index[w], str(lab)) for u, w, lab in edges))
        if best is None or form < best:
            best = form
    return node_labels, best


def canonical_form(g: nx.DiGraph, node_label: str = NODE_LABEL, edge_label: str = EDGE_LABEL) -> Key:
    """A canonical form of a labelled DiGraph: equal iff the graphs are label-isomorphic."""
    labels = {v: d.get(node_label) for v, d in g.nodes(data=True)}
    edges = [(u, v, d.get(edge_label)) for u, v, d in g.edges(data=True)]
    return _canonical(labels, edges)


def _graph_of(key: Key, node_label: str = NODE_LABEL, edge_label: str = EDGE_LABEL) -> nx.DiGraph:
    node_labels, edges = key
    g = nx.DiGraph()
    for i, lab in enumerate(node_labels):
        g.add_node(i, **{node_label: lab})
    for u, v, lab in edges:
        g.add_edge(u, v, **{edge_label: lab})
    return g


def node_names(labels: Sequence[str]) -> list[str]:
    """The names of a motif's nodes (labels in canonical node order) in its description: the label, numbered when
    several nodes share it (``op1``, ``op2``). The motif drawings name nodes the same way."""
    counts = Counter(labels)
    seen: Counter = Counter()
    names = []
    for lab in labels:
        seen[lab] += 1
        names.append(lab if counts[lab] == 1 else f"{lab}{seen[lab]}")
    return names


def _describe(key: Key) -> str:
    """e.g. ``sep_conv_3x3(input1)->op; skip_connect(input2)->op``; repeated labels get numbers."""
    node_labels, edges = key
    names = node_names(node_labels)
    return "; ".join(f"{lab}({names[u]})->{names[v]}" for u, v, lab in edges)


# -- mining -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motif:
    """A frequent connected subgraph. ``graph`` has nodes 0..n-1 in canonical order with the
    ``node_name``/``op_name`` labels; ``support`` counts the mined graphs that contain it."""

    key: Key
    graph: nx.DiGraph
    support: int
    support_fraction: float
    description: str
    ref_incidence: int | None = None
    norm_support: float | None = None

    @property
    def n_nodes(self) -> int:
        return len(self.key[0])

    @property
    def n_edges(self) -> int:
        return len(self.key[1])


def _connected_edge_subsets(g: nx.DiGraph, max_nodes: int, max_edges: int | None) -> set[frozenset]:
    """Every weakly connected, non-empty edge subset spanning at most ``max_nodes`` nodes."""
    edges = list(g.edges())
    incident: dict = {v: [] for v in g.nodes}
    for i, (u, v) in enumerate(edges):
        incident[u].append(i)
        incident[v].append(i)
    found: set[frozenset] = set()
    frontier = {frozenset([i]) for i, (u, v) in enumerate(edges) if len({u, v}) <= max_nodes}
    while frontier:
        found |= frontier
        grown = set()
        for subset in frontier:
            if max_edges is not None and len(subset) >= max_edges:
                continue
            nodes = {x for i in subset for x in edges[i]}
            for x in nodes:
                for i in incident[x]:
                    if i in subset:
                        continue
                    bigger = subset | {i}
                    if bigger not in found and len(nodes | set(edges[i])) <= max_nodes:
                        grown.add(bigger)
        frontier = grown
    return found


#: The motif shapes :func:`mine` keeps: ``gspan`` the out-trees the reference's directed gSpan grows (every vertex
#: with at most one incoming edge), ``connected`` every weakly connected subgraph (see the module docstring).
SHAPES = ("gspan", "connected")


def _keys_of(g: nx.DiGraph, max_nodes: int, max_edges: int | None, cache: dict, shapes: str = "gspan") -> set[Key]:
    labels = {v: d.get(NODE_LABEL) for v, d in g.nodes(data=True)}
    edges = [(u, v, d.get(EDGE_LABEL)) for u, v, d in g.edges(data=True)]
    keys = set()
    for subset in _connected_edge_subsets(g, max_nodes, max_edges):
        if shapes == "gspan" and len({edges[i][1] for i in subset}) < len(subset):  # a vertex fed twice
            continue
        sub_edges = tuple(sorted((edges[i] for i in subset), key=repr))
        sub_nodes = {x for u, v, _ in sub_edges for x in (u, v)}
        raw = (tuple(sorted(((v, labels[v]) for v in sub_nodes), key=repr)), sub_edges)
        if raw not in cache:
            cache[raw] = _canonical({v: labels[v] for v in sub_nodes}, sub_edges)
        keys.add(cache[raw])
    return keys


def support_count(n_graphs: int, min_support: float = 0.05, min_count: int | None = None) -> int:
    """The smallest number of graphs a motif must occur in (SPEC 5.3: support S(g) = count / T >= sigma).

    ``min_count`` (an integer >= 1), when given, is that number. Otherwise ``min_support`` is a fraction in
    (0, 1] converted as the reference converts it: ``round(min_support * n_graphs)`` (half to even, as
    ``np.round``; never below 1), e.g. 129 for 0.05 of T = 2589. Rounding down can admit a support just
    below the fraction (129 / 2589 = 4.98 %), so callers should report the count they used.
    """
    if min_count is not None:
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        return int(min_count)
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be a fraction in (0, 1], got {min_support!r}; use min_count for a count")
    return max(1, int(np.round(min_support * n_graphs)))


def mine(
    graphs: Sequence[nx.DiGraph],
    min_support: float = 0.05,
    min_nodes: int = 2,
    max_nodes: int = 6,
    max_edges: int | None = None,
    *,
    min_count: int | None = None,
    shapes: str = "gspan",
) -> list[Motif]:
    """Frequent connected subgraphs of ``graphs`` (SPEC 5.3), most frequent first.

    ``shapes``: ``"gspan"`` (default) the out-trees the reference's directed gSpan finds, ``"connected"`` every
    weakly connected subgraph (:data:`SHAPES`, module docstring).

    A motif is kept when it occurs in at least :func:`support_count` graphs: ``min_count`` graphs when given,
    else ``round(min_support * len(graphs))`` for the fraction ``min_support`` in (0, 1] (129 for 0.05 of
    T = 2589, as in the reference). Patterns have between ``min_nodes`` and
    ``max_nodes`` nodes (and at most ``max_edges`` edges if given); labels are the
    ``node_name``/``op_name`` attributes of :func:`cell_graph`. The enumeration is exponential in the
    edge count of a graph: meant for cells (<= 8 edges), fine up to about 15 edges per graph.
    Ties are ordered by fewer nodes, then the canonical form, so the output is deterministic.
    """
    if min_nodes > max_nodes:
        raise ValueError(f"min_nodes={min_nodes} > max_nodes={max_nodes}")
    if shapes not in SHAPES:
        raise ValueError(f"shapes must be one of {', '.join(SHAPES)}, got {shapes!r}")
    n = len(graphs)
    threshold = support_count(n, min_support, min_count)
    if n == 0:
        return []
    cache: dict = {}
    counts: Counter = Counter()
    for g in graphs:
        counts.update(_keys_of(g, max_nodes, max_edges, cache, shapes))
    motifs = [
        Motif(key, _graph_of(key), c, c / n, _describe(key))
        for key, c in counts.items()
        if c >= threshold and min_nodes <= len(key[0]) <= max_nodes
    ]
    motifs.sort(key=lambda m: (-m.support, m.n_nodes, m.key))
    log.info("mined %d motifs with support >= %d of %d graphs", len(motifs), threshold, n)
    return motifs


# -- reference ranking ------------------------------------------------------------------------


#: How many edges a reference subgraph gets (:func:`reference_subgraphs`).
REF_EDGES = ("same", "randint")


def reference_subgraphs(graphs: Sequence[nx.DiGraph], n_edges: Sequence[int], seed: int,
                        edges: str = "same") -> list[nx.DiGraph]:  # fmt: skip
    """For every full cell graph, a random subgraph with ``n_edges[i]`` edges chosen uniformly
    without replacement, isolated nodes dropped (the reference's ``sample_random_subgraph``).

    ``edges="same"`` (default): ``n_edges[i]`` edges, as SPEC 5.3 and the paper describe the reference subgraph.
    ``edges="randint"``: ``randint(n_edges[i])`` edges (0 .. n-1; none when n is 0), what the reference's
    ``mine_motifs.py --normal_only`` draws: it calls ``sample_random_subgraph`` without the reduce cell's count,
    which then splits the n edges at random between the two cells and keeps the normal cell's share.
    """
    if len(graphs) != len(n_edges):
        raise ValueError(f"{len(graphs)} graphs but {len(n_edges)} edge counts")
    if edges not in REF_EDGES:
        raise ValueError(f"edges must be one of {', '.join(REF_EDGES)}, got {edges!r}")
    rs = np.random.RandomState(seed)
    out = []
    for g, m in zip(graphs, n_edges):
        if edges == "randint":
            m = int(rs.randint(m)) if m > 0 else 0
        if m <= 0:
            out.append(nx.DiGraph())
            continue
        all_edges = list(g.edges())
        if m > len(all_edges):
            raise ValueError(f"cannot keep {m} edges of a graph with {len(all_edges)}")
        keep = {all_edges[i] for i in rs.choice(len(all_edges), size=m, replace=False)}
        sub = g.edge_subgraph(keep).copy()
        out.append(sub)
    return out


def _label_match(a: dict, b: dict, attr: str) -> bool:
    return a.get(attr) == b.get(attr)


def contains(g: nx.DiGraph, motif: nx.DiGraph, induced: bool = False) -> bool:
    """Whether ``g`` contains ``motif`` with matching labels: as a subgraph monomorphism (gSpan's
    sense) or, with ``induced=True``, a node-induced subgraph isomorphism (the reference's
    ``DiGraphMatcher.subgraph_is_isomorphic`` used for ``ref_incidence``)."""
    matcher = nx.algorithms.isomorphism.DiGraphMatcher(
        g,
        motif,
        node_match=lambda a, b: _label_match(a, b, NODE_LABEL),
        edge_match=lambda a, b: _label_match(a, b, EDGE_LABEL),
    )
    return matcher.subgraph_is_isomorphic() if induced else matcher.subgraph_is_monomorphic()


def rank(motifs: Sequence[Motif], reference: Sequence[nx.DiGraph], induced: bool = True) -> list[Motif]:
    """Motifs with ``ref_incidence`` and ``norm_support = support / ref_incidence`` (SPEC 5.3),
    highest ``norm_support`` first (ties: higher support first).

    ``ref_incidence`` counts the reference graphs that contain the motif; ``induced=True`` (the
    default) uses node-induced matching as the reference code does, ``False`` the monomorphism
    that defines ``support``. A motif absent from every reference graph gets ``norm_support = inf``.
    """
    cache: dict = {}
    max_nodes = max((m.n_nodes for m in motifs), default=0)
    ref_keys = [_keys_of(g, max_nodes, None, cache, shapes="connected") for g in reference]  # any motif's shape
    out = []
    for m in motifs:
        # an induced match is also a monomorphism, so only graphs holding the key need the matcher
        holders = [g for g, keys in zip(reference, ref_keys) if m.key in keys]
        incidence = sum(contains(g, m.graph, induced=True) for g in holders) if induced else len(holders)
        norm = m.support / incidence if incidence else float("inf")
        out.append(replace(m, ref_incidence=incidence, norm_support=norm))
    out.sort(key=lambda m: (-m.norm_support, -m.support, m.n_nodes, m.key))
    return out
