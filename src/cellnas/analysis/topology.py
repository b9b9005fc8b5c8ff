"""Width and depth of a cell (Shu, Wang, Cai, ICLR 2020, Sec. 3; SPEC 3.1).

Let c be the width of one intermediate node.

* **depth**: number of edges on the longest path from an input node to the output
  node, where the output node is fed by every node in ``concat`` (that edge counts);
* **width**: c times the sum, over intermediate nodes j, of the fraction of j's
  input edges that come from the input nodes 0/1. Every intermediate node counts,
  in ``concat`` or not (AmoebaNet only matches the paper under this reading).

>>> from cellnas.zoo import get_genotype
>>> cell = get_genotype("DARTS_V2").normal
>>> cell_width(cell), cell_depth(cell)
(3.5, 3)
"""

from __future__ import annotations

from cellnas.genotype import Cell, Genotype

__all__ = ["cell_width", "cell_depth", "topology"]


def cell_width(cell: Cell) -> float:
    """Width in units of c (SPEC 3.1)."""
    width = 0.0
    for node in cell.nodes:
        from_inputs = sum(1 for _, src in node if src < 2)
        width += from_inputs / len(node)
    return width


def cell_depth(cell: Cell) -> int:
    """Edges on the longest input-to-output path, the edge into the output node included."""
    level = {0: 0, 1: 0}
    for j, node in enumerate(cell.nodes):
        level[j + 2] = 1 + max(level[src] for _, src in node)
    return 1 + max(level[c] for c in cell.concat)


def topology(genotype: Genotype) -> dict:
    """``{'normal': {'width': w, 'depth': d}, 'reduce': {...}}`` for a genotype."""
    return {
        name: {"width": cell_width(genotype.cell(name)), "depth": cell_depth(genotype.cell(name))}
        for name in ("normal", "reduce")
    }
