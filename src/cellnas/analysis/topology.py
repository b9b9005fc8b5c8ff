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

from cellnas.errors import CellnasError
from cellnas.genotype import CELL_TYPES, Cell, Genotype

__all__ = ["cell_width", "cell_depth", "topology"]


def _check_cell(cell: object, function: str) -> Cell:
    """``cell`` when it is a :class:`Cell`, else a :class:`CellnasError` saying what to pass instead. A whole
    :class:`Genotype` is refused rather than measured on its normal cell: it holds two cells, and the reduction
    cell's width and depth are as meaningful as the normal cell's."""
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, Genotype):
        raise CellnasError(
            f"{function}() measures one cell, got a whole Genotype (two cells): pass genotype.normal or "
            f"genotype.reduce, or call topology(genotype) for both"
        )
    raise CellnasError(
        f"{function}() needs a Cell (e.g. get_genotype('DARTS_V2').normal), got {type(cell).__name__} {cell!r:.60}"
    )


def cell_width(cell: Cell) -> float:
    """Width in units of c (SPEC 3.1). ``cell`` is one :class:`Cell` (``genotype.normal`` or ``genotype.reduce``);
    a whole :class:`Genotype` is a :class:`CellnasError` (use :func:`topology`)."""
    width = 0.0
    for node in _check_cell(cell, "cell_width").nodes:
        from_inputs = sum(1 for _, src in node if src < 2)
        width += from_inputs / len(node)
    return width


def cell_depth(cell: Cell) -> int:
    """Edges on the longest input-to-output path, the edge into the output node included. ``cell`` is one
    :class:`Cell`, as in :func:`cell_width`."""
    level = {0: 0, 1: 0}
    for j, node in enumerate(_check_cell(cell, "cell_depth").nodes):
        level[j + 2] = 1 + max(level[src] for _, src in node)
    return 1 + max(level[c] for c in cell.concat)


def topology(genotype: Genotype | str) -> dict:
    """``{'normal': {'width': w, 'depth': d}, 'reduce': {...}}`` for a genotype.

    ``genotype`` is a :class:`Genotype` or anything :func:`cellnas.formats.load_genotype` reads (a zoo name such as
    ``"DARTS_V2"``, DARTS ``Genotype(...)`` text, cellnas/NB301/NNabla JSON text or its parsed ``dict``, a genotype
    file or a run directory); a single :class:`Cell` or anything else is a :class:`CellnasError`.

    >>> topology("DARTS_V2")["normal"]
    {'width': 3.5, 'depth': 3}
    """
    genotype = as_genotype(genotype, "topology")
    return {
        name: {"width": cell_width(genotype.cell(name)), "depth": cell_depth(genotype.cell(name))}
        for name in CELL_TYPES
    }


def as_genotype(genotype: object, function: str) -> Genotype:
    """A :class:`Genotype` from what :func:`topology` accepts: anything :func:`cellnas.formats.load_genotype` reads
    (a Genotype, a zoo name, genotype text, a file or run directory, a parsed JSON dict, a search result); a lone
    :class:`Cell` or anything else is a :class:`CellnasError` that names ``function`` (the public function given
    ``genotype``) and what it accepts."""
    from cellnas.formats import load_genotype

    if isinstance(genotype, Cell):
        raise CellnasError(
            f"{function}() takes a whole genotype (both cells), got one Cell: pass the Genotype"
            + (", or call cell_width(cell) and cell_depth(cell)" if function == "topology" else "")
        )
    if genotype is None or isinstance(genotype, (bool, int, float)):  # no genotype at all: say what is taken here
        raise CellnasError(f"{function}() needs a Genotype, a zoo name, genotype text or a genotype file, got "
                           f"{type(genotype).__name__} {genotype!r:.60}")  # fmt: skip
    return load_genotype(genotype)
