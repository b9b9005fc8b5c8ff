"""Operation importance (Wan et al., ICLR 2022, SPEC 5.1) with synthetic evaluators whose OI is known."""

from __future__ import annotations

import pytest

from cellnas.analysis.importance import (
    disable_ops,
    important,
    is_residual,
    locate,
    neighbourhood,
    operation_importance,
    skip_kind,
)
from cellnas.errors import GenotypeError
from cellnas.genotype import PRIMITIVES
from cellnas.zoo import get_genotype

PENALTY = {op: 0.001 * i for i, op in enumerate(PRIMITIVES)}  # none 0, max_pool 0.001, ..., dil_conv_5x5 0.007


def additive_error(g):
    """Error = 0.05 + per-op penalties + 0.0001 * input index of every normal-cell edge."""
    err = 0.05 + sum(PENALTY[op] for op in g.normal.ops + g.reduce.ops)
    return err + 0.0001 * sum(src for _, src in g.normal.pairs)


def test_neighbourhood_size_is_six_plus_node_offset_for_darts_cells():
    g = get_genotype("DARTS_V2")  # every node reads two distinct inputs
    for p in range(16):
        node = (p % 8) // 2 + 2
        assert len(neighbourhood(g, p)) == 6 + (node - 2)


def test_neighbourhood_lists_op_swaps_then_rewirings_in_reference_order():
    g = get_genotype("DARTS_V2")  # position 7 = dil_conv_3x3 from node 2 into node 5, sibling reads node 0
    got = [m.normal.pairs[7] for m in neighbourhood(g, 7)]
    swaps = [(op, 2) for op in PRIMITIVES[1:] if op != "dil_conv_3x3"]
    assert got == swaps + [("dil_conv_3x3", 1), ("dil_conv_3x3", 3), ("dil_conv_3x3", 4)]
    for m in neighbourhood(g, 7):
        assert m.reduce == g.reduce
        others = [i for i in range(8) if i != 7]
        assert [m.normal.pairs[i] for i in others] == [g.normal.pairs[i] for i in others]


def test_neighbourhood_of_a_reduce_position_edits_only_the_reduce_cell():
    g = get_genotype("DARTS_V2")
    assert locate(g, 10) == ("reduce", 2)
    for m in neighbourhood(g, 10):
        assert m.normal == g.normal
        assert sum(a != b for a, b in zip(m.reduce.pairs, g.reduce.pairs)) == 1


def test_neighbourhood_generalises_to_other_node_counts_and_none_ops():
    nasnet = get_genotype("NASNet")  # 5 nodes; node 6 reads node 1 twice: rewire to 0, 2, 3, 4, 5
    assert [m.normal.pairs[8][1] for m in neighbourhood(nasnet, 8)[6:]] == [0, 2, 3, 4, 5]
    asha = get_genotype("ASHA200")  # position 4 is none(1): all 7 real ops are swaps
    assert len(neighbourhood(asha, 4)) == 7 + 2
    with pytest.raises(GenotypeError, match="out of range"):
        neighbourhood(nasnet, 20)


def test_oi_of_an_additive_evaluator_matches_the_hand_computation():
    g = get_genotype("DARTS_V2")
    oi = operation_importance(g, additive_error)
    # position 7: d3 (penalty 0.006) from node 2; swaps to the 6 other ops, rewirings to 1, 3, 4
    swaps = sum(PENALTY[op] - PENALTY["dil_conv_3x3"] for op in PRIMITIVES[1:] if op != "dil_conv_3x3")
    rewires = 0.0001 * ((1 - 2) + (3 - 2) + (4 - 2))
    assert oi[7] == pytest.approx((swaps + rewires) / 9)
    # reduce position 8: max_pool (0.001) into node 2, no rewiring possible, inputs do not matter there
    assert oi[8] == pytest.approx(sum(PENALTY[op] - 0.001 for op in PRIMITIVES[2:]) / 6)
    assert oi[8] > 0  # the cheapest op is important: every perturbation raises the error
    assert set(oi) == set(range(16))


def test_oi_caches_evaluations_by_content_hash():
    calls = []

    def counting(g):
        calls.append(g.content_hash())
        return additive_error(g)

    g = get_genotype("DARTS_V2")
    cache: dict = {}
    operation_importance(g, counting, cache=cache)
    assert len(calls) == len(set(calls)) == 1 + sum(len(neighbourhood(g, p)) for p in range(16))
    calls.clear()
    operation_importance(g, counting, cache=cache)
    assert calls == []
    neighbour = neighbourhood(g, 7)[0]  # max_pool_3x3 instead of dil_conv_3x3 at position 7
    operation_importance(neighbour, counting, cache=cache)
    # cached already: the neighbour itself, g, and g's 5 other op swaps at position 7
    assert len(calls) == len(set(calls)) == 1 + sum(len(neighbourhood(neighbour, p)) for p in range(16)) - 7


def test_oi_on_selected_positions_only():
    oi = operation_importance(get_genotype("DARTS_V2"), additive_error, positions=[0, 15])
    assert list(oi) == [0, 15]


def test_important_keeps_ops_at_or_beyond_the_threshold_and_signed_ones_strictly_beyond():
    oi = {0: 0.001, 1: 0.0009, 2: -0.002, 3: -0.001, 4: 0.0, 5: 0.003}
    assert important(oi) == {0: 0.001, 2: -0.002, 3: -0.001, 5: 0.003}  # |OI| >= 0.001 (SPEC 5.1)
    assert important(oi, direction="positive") == {5: 0.003}  # OI > 0.001, the top-architecture count
    assert important(oi, direction="negative") == {2: -0.002}  # OI < -0.001, the bottom-architecture count
    with pytest.raises(ValueError):
        important(oi, direction="up")


def test_skip_kinds_and_residual_links():
    darts = get_genotype("DARTS_V2")
    assert skip_kind(darts.normal, 5) == "in0"  # skip_connect from c_{k-2}
    assert skip_kind(get_genotype("SNAS_MILD").normal, 5) == "in1"
    assert skip_kind(darts.reduce, 2) == "others"  # from node 2
    assert is_residual(darts.normal, 5) and not is_residual(darts.reduce, 2)
    assert not is_residual(darts.normal, 0)  # sep_conv from an input is not a residual link
    with pytest.raises(GenotypeError, match="not skip_connect"):
        skip_kind(darts.normal, 0)


def test_disable_ops_replaces_ops_by_none_in_place():
    g = get_genotype("DARTS_V2")
    d = disable_ops(g, [7, 8])
    assert d.normal.pairs[7] == ("none", 2) and d.reduce.pairs[0] == ("none", 0)
    assert sum(a != b for a, b in zip(d.normal.pairs + d.reduce.pairs, g.normal.pairs + g.reduce.pairs)) == 2
