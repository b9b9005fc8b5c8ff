"""Published cells (SPEC 1.8), as data.

Sources:
* DARTS_V1, DARTS_V2, NASNet, AmoebaNet: quark0/darts ``cnn/genotypes.py``.
* ENAS, SNAS_MILD and the *_ADAPT cells: shuyao95/Understanding-NAS ``genotypes.py``
  (the *_ADAPT cells are the widest/shallowest re-wirings of Shu et al. 2020; an
  earlier commit calls them *_IMP).
* BANANAS, ASHA200: xingchenwan/cell-based-NAS-analysis ``darts_cnn/genotypes.py``.

>>> get_genotype("DARTS").content_hash() == get_genotype("DARTS_V2").content_hash()
True
"""

from __future__ import annotations

from cellnas.errors import CellnasError, unknown_name
from cellnas.genotype import Genotype

__all__ = ["ZOO", "ALIASES", "get_genotype", "list_genotypes"]

_ABBR = {
    "s3": "sep_conv_3x3", "s5": "sep_conv_5x5", "s7": "sep_conv_7x7",
    "d3": "dil_conv_3x3", "d5": "dil_conv_5x5", "mp": "max_pool_3x3",
    "ap": "avg_pool_3x3", "sk": "skip_connect", "c71": "conv_7x1_1x7", "no": "none",
}  # fmt: skip


def _g(normal: str, normal_concat, reduce: str, reduce_concat) -> Genotype:
    """Compact notation: 's3 0, sk 1, ...' -> [('sep_conv_3x3', 0), ('skip_connect', 1), ...]."""

    def pairs(text):
        out = []
        for item in text.split(","):
            op, src = item.split()
            out.append((_ABBR[op], int(src)))
        return out

    return Genotype.from_darts(pairs(normal), normal_concat, pairs(reduce), reduce_concat)


_C4 = [2, 3, 4, 5]

ZOO: dict[str, Genotype] = {
    # quark0/darts cnn/genotypes.py (Liu et al., ICLR 2019, Fig. 4/5)
    "DARTS_V1": _g("s3 1, s3 0, sk 0, s3 1, sk 0, s3 1, s3 0, sk 2", _C4,
                   "mp 0, mp 1, sk 2, mp 0, mp 0, sk 2, sk 2, ap 0", _C4),
    "DARTS_V2": _g("s3 0, s3 1, s3 0, s3 1, s3 1, sk 0, sk 0, d3 2", _C4,
                   "mp 0, mp 1, sk 2, mp 1, mp 0, sk 2, sk 2, mp 1", _C4),
    "NASNet": _g("s5 1, s3 0, s5 0, s3 0, ap 1, sk 0, ap 0, ap 0, s3 1, sk 1", [2, 3, 4, 5, 6],
                 "s5 1, s7 0, mp 1, s7 0, ap 1, s5 0, sk 3, ap 2, s3 2, mp 1", [4, 5, 6]),
    "AmoebaNet": _g("ap 0, mp 1, s3 0, s5 2, s3 0, ap 3, s3 1, sk 1, sk 0, ap 1", [4, 5, 6],
                    "ap 0, s3 1, mp 0, s7 2, s7 0, ap 1, mp 0, mp 1, c71 0, s3 5", [3, 4, 6]),
    # shuyao95/Understanding-NAS genotypes.py (Shu et al., ICLR 2020)
    "ENAS": _g("s3 1, sk 1, s5 1, sk 0, ap 0, s3 1, s3 0, ap 1, s5 1, ap 0", [2, 3, 4, 5, 6],
               "s5 0, ap 1, s3 1, ap 1, s3 1, ap 1, s5 4, ap 1, s3 5, s5 0", [2, 3, 6]),
    "SNAS_MILD": _g("s3 0, s3 1, sk 0, d3 1, sk 0, sk 1, sk 0, s3 1", _C4,
                    "mp 0, mp 1, sk 2, mp 1, mp 1, sk 2, d5 2, mp 0", _C4),
    "NASNet_ADAPT": _g("s5 1, s3 0, s5 1, s3 0, ap 1, sk 0, ap 1, ap 0, s3 1, sk 0", [2, 3, 4, 5, 6],
                       "s5 1, s7 0, mp 1, s7 0, ap 1, s5 0, sk 1, ap 0, s3 1, mp 0", [4, 5, 6]),
    "AmoebaNet_ADAPT": _g("ap 0, mp 1, s3 0, s5 1, s3 0, ap 1, s3 0, sk 1, sk 0, ap 1", [4, 5, 6],
                          "ap 0, s3 1, mp 0, s7 1, s7 0, ap 1, mp 0, mp 1, c71 0, s3 1", [3, 4, 6]),
    "SNAS_ADAPT": _g("s3 0, s3 1, sk 0, d3 1, sk 0, sk 1, sk 0, s3 1", _C4,
                     "mp 0, mp 1, sk 0, mp 1, mp 0, sk 1, d5 0, mp 1", _C4),
    "ENAS_ADAPT": _g("s3 0, sk 1, s5 0, sk 0, ap 0, s3 1, s3 0, ap 1, s5 0, ap 1", [2, 3, 4, 5, 6],
                     "s5 0, ap 1, s3 0, ap 1, s3 0, ap 1, s5 0, ap 1, s3 0, s5 1", [2, 3, 6]),
    # xingchenwan/cell-based-NAS-analysis darts_cnn/genotypes.py (Wan et al., ICLR 2022)
    "BANANAS": _g("s3 1, sk 0, s5 2, s5 0, sk 0, s5 2, s3 0, sk 2", _C4,
                  "s3 1, mp 0, mp 0, no 1, d3 2, s5 3, s5 4, s3 1", _C4),
    "ASHA200": _g("sk 1, d3 0, s3 1, sk 0, no 1, mp 0, sk 1, d3 0", _C4,
                  "mp 1, ap 0, s5 1, sk 2, mp 3, no 1, sk 0, s5 4", _C4),
}  # fmt: skip

#: Other names under which the same cells are known.
ALIASES: dict[str, str] = {"DARTS": "DARTS_V2"}


def list_genotypes() -> list[str]:
    """Names of the published cells, in the zoo's order."""
    return list(ZOO)


def get_genotype(name: str) -> Genotype:
    """The published genotype called ``name`` (case-insensitive; ``DARTS`` is ``DARTS_V2``).

    An unknown name, or one that is not a string, raises :class:`~cellnas.errors.CellnasError` listing the names."""
    if not isinstance(name, str):
        valid = ", ".join(sorted(list(ZOO) + list(ALIASES)))
        raise CellnasError(f"a zoo genotype name must be a string, got {type(name).__name__} {name!r:.80}; "
                           f"valid choices: {valid}")  # fmt: skip
    lookup = {k.lower(): k for k in list(ZOO) + list(ALIASES)}
    key = lookup.get(name.lower())
    if key is None:
        raise unknown_name("zoo genotype", name, list(ZOO) + list(ALIASES))
    return ZOO[ALIASES.get(key, key)]
