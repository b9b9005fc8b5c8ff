"""The verification experiments of Wan, Ru, Esperança, Li (ICLR 2022), SPEC 5.2, as genotype edits.

* **Reduce-cell ablation** (Finding 2, :func:`reduce_variants`): four variants per architecture:

  - ``red<-nor``: the reduction cell := the normal cell's genotype;
  - ``nor<-red``: the normal cell := the reduction cell's genotype;
  - ``red<-skip``: the reduction cell := **all skip_connect, with the reduction cell's own wiring** (every
    edge keeps its input, its op becomes ``skip_connect``);
  - ``nor<-skip``: the normal cell := all skip_connect with the normal cell's own wiring.

  The paper does not say how its "all skip connections" cells are wired (SPEC 5.2: UNKNOWN); keeping the
  cell's own wiring changes only the ops, the smallest edit that matches the description. Note that in a
  DARTS network a stride-2 ``skip_connect`` (an edge from an input node of a reduction cell) is a
  FactorizedReduce (two 1x1 convolutions), not an identity (SPEC 1.1), so ``red<-skip`` still has a few
  parameters.

* **Disabling operations** (Finding 1, :func:`disabling_sequence`): the 16 ops sorted by OI, the first k
  replaced by ``none`` (the edge keeps its position, :func:`cellnas.analysis.importance.disable_ops`) for
  k = 1 .. ``max_ops`` (8 in the reference), once lowest-OI first (``ascending``) and once highest first
  (``descending``). Headline of the paper: disabling about 6 low-OI ops costs about as much as 2 high-OI ones.

:func:`paired_comparison` summarises a variant against the originals (mean difference, paired t-test and
Wilcoxon signed-rank test; the paper reports "no statistically significant deterioration" without naming its
test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from cellnas.analysis.importance import disable_ops
from cellnas.genotype import Cell, Genotype

__all__ = [
    "REDUCE_VARIANTS",
    "ORDERS",
    "all_skip",
    "reduce_variants",
    "oi_order",
    "disabling_sequence",
    "paired_comparison",
]

REDUCE_VARIANTS: tuple[str, ...] = ("red<-nor", "nor<-red", "red<-skip", "nor<-skip")
ORDERS: tuple[str, ...] = ("ascending", "descending")


def all_skip(cell: Cell) -> Cell:
    """``cell`` with every op replaced by ``skip_connect`` (same inputs, same concat)."""
    return Cell(nodes=tuple(tuple(("skip_connect", src) for _, src in node) for node in cell.nodes), concat=cell.concat)


def reduce_variants(genotype: Genotype) -> dict[str, Genotype]:
    """The four Finding-2 variants of ``genotype``, keyed by :data:`REDUCE_VARIANTS` (see the module docstring)."""
    n, r = genotype.normal, genotype.reduce
    return {
        "red<-nor": Genotype(normal=n, reduce=n),
        "nor<-red": Genotype(normal=r, reduce=r),
        "red<-skip": Genotype(normal=n, reduce=all_skip(r)),
        "nor<-skip": Genotype(normal=all_skip(n), reduce=r),
    }


def oi_order(oi: dict[int, float], order: str = "ascending") -> list[int]:
    """Edge positions sorted by OI (``ascending``: lowest first); ties by position; NaN OI last in both orders."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    sign = 1.0 if order == "ascending" else -1.0
    return sorted(oi, key=lambda p: (math.isnan(oi[p]), sign * oi[p] if not math.isnan(oi[p]) else 0.0, p))


def disabling_sequence(genotype: Genotype, oi: dict[int, float], order: str = "ascending",
                       max_ops: int = 8) -> list[tuple[list[int], Genotype]]:  # fmt: skip
    """``[(disabled positions, genotype)]`` for k = 1 .. ``max_ops``: the first k ops of :func:`oi_order`
    replaced by ``none`` (SPEC 5.2, Finding 1)."""
    positions = oi_order(oi, order)
    max_ops = min(max_ops, len(positions))
    return [(positions[:k], disable_ops(genotype, positions[:k])) for k in range(1, max_ops + 1)]


def paired_comparison(original: Sequence[float | None], variant: Sequence[float | None]) -> dict:
    """Variant minus original over the architectures where both exist: n, mean and std of the difference,
    paired t-test and Wilcoxon signed-rank p-values (None when undefined: n < 2, all differences 0, or, for the
    t-test, all differences equal, so that their std is 0)."""
    import numpy as np
    from scipy.stats import ttest_rel, wilcoxon

    pairs = [(a, b) for a, b in zip(original, variant)
             if a is not None and b is not None and not (math.isnan(a) or math.isnan(b))]  # fmt: skip
    out: dict = {"n": len(pairs), "mean_difference": None, "std_difference": None, "t_test_p": None,
                 "wilcoxon_p": None}  # fmt: skip
    if not pairs:
        return out
    a = np.asarray([p[0] for p in pairs])
    b = np.asarray([p[1] for p in pairs])
    d = b - a
    out["mean_difference"] = float(d.mean())
    out["std_difference"] = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    if len(d) > 1 and np.any(d != 0):
        if np.ptp(d) > 0:  # identical differences (e.g. duplicate architectures): the t statistic is undefined
            out["t_test_p"] = float(ttest_rel(b, a).pvalue)
        try:
            out["wilcoxon_p"] = float(wilcoxon(b, a).pvalue)
        except ValueError:
            pass
    return out
