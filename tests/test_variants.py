"""Shu et al. (ICLR 2020) variants: parity with the reference random_ops/random_conn, the *_ADAPT
rule, and the re-created c1..c12 width family (SPEC 3.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cellnas.analysis.topology import cell_depth, cell_width
from cellnas.analysis.variants import random_conn, random_ops, widest, width_family
from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.genotype import PRIMITIVES
from cellnas.zoo import ZOO, get_genotype


def _legacy(fn):
    """Run ``fn`` with the global legacy RNG as the reference does, restoring its state after."""
    state = np.random.get_state()
    try:
        return fn()
    finally:
        np.random.set_state(state)


def _reference_random_ops(normal, reduce, num_ops, seed):
    """The reference algorithm (shuyao95/Understanding-NAS genotypes.py) on the global RNG."""
    np.random.seed(seed)
    idx_n = np.random.choice(len(PRIMITIVES) - 1, num_ops)
    idx_r = np.random.choice(len(PRIMITIVES) - 1, num_ops)
    new_n = [(PRIMITIVES[1 + idx_n[i]], normal[i][1]) for i in range(num_ops)]
    new_r = [(PRIMITIVES[1 + idx_r[i]], reduce[i][1]) for i in range(num_ops)]
    return new_n, new_r


def _reference_random_conn(normal, reduce, num_ops, seed):
    states = [0, 1]
    new_n, new_r = list(normal), list(reduce)
    np.random.seed(seed)
    for i in range(num_ops):
        new_n[i] = (normal[i][0], np.random.choice(states, 1).item())
        new_r[i] = (reduce[i][0], np.random.choice(states, 1).item())
        if i % 2 == 1:
            states.append(states[-1] + 1)
    return new_n, new_r


@pytest.mark.parametrize("name", ["DARTS_V2", "SNAS_MILD", "ENAS", "NASNet", "AmoebaNet"])
@pytest.mark.parametrize("seed", [1, 2, 7, 10])
def test_random_ops_and_conn_reproduce_the_reference_draws(name, seed):
    g = get_genotype(name)
    n, r = g.normal.pairs, g.reduce.pairs
    ref_ops = _legacy(lambda: _reference_random_ops(n, r, len(n), seed))
    ref_conn = _legacy(lambda: _reference_random_conn(n, r, len(n), seed))
    ours_ops, ours_conn = random_ops(g, seed), random_conn(g, seed)
    assert (ours_ops.normal.pairs, ours_ops.reduce.pairs) == ref_ops
    assert (ours_conn.normal.pairs, ours_conn.reduce.pairs) == ref_conn
    assert ours_ops.normal.concat == g.normal.concat and ours_conn.reduce.concat == g.reduce.concat


def test_random_variants_leave_the_global_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    random_ops(get_genotype("DARTS_V2"), 5)
    random_conn(get_genotype("DARTS_V2"), 5)
    width_family(get_genotype("DARTS_V2"), max_tries=200)
    assert np.random.rand() == expected


def test_random_ops_keeps_wiring_and_never_draws_none():
    g = get_genotype("NASNet")
    for seed in range(1, 11):
        v = random_ops(g, seed)
        for name in ("normal", "reduce"):
            assert [s for _, s in v.cell(name).pairs] == [s for _, s in g.cell(name).pairs]
            assert all(op in PRIMITIVES[1:] for op in v.cell(name).ops)


def test_random_conn_keeps_ops_and_draws_only_earlier_nodes():
    g = get_genotype("DARTS_V2")
    seen_duplicate = False
    for seed in range(1, 51):
        v = random_conn(g, seed)
        assert v.normal.ops == g.normal.ops and v.reduce.ops == g.reduce.ops
        for cell in (v.normal, v.reduce):
            for j, node in enumerate(cell.nodes):
                assert all(0 <= s < j + 2 for _, s in node)
                seen_duplicate |= node[0][1] == node[1][1]
    assert seen_duplicate, "random_conn may give a node the same input twice (SPEC 3.2)"


@pytest.mark.parametrize("base", ["NASNet", "AmoebaNet", "SNAS_MILD", "ENAS"])
def test_widest_reproduces_the_published_adapt_cells(base):
    adapt = ZOO[base.replace("_MILD", "") + "_ADAPT"]
    ours = widest(ZOO[base])
    assert ours.reduce == adapt.reduce
    if base == "ENAS":
        # the published ENAS_ADAPT node 3 reads input 0 twice; the rule reads one edge from each input
        diff = [i for i, (a, b) in enumerate(zip(ours.normal.pairs, adapt.normal.pairs)) if a != b]
        assert diff == [3]
        assert ours.normal.pairs[3] == ("skip_connect", 1) and adapt.normal.pairs[3] == ("skip_connect", 0)
    else:
        assert ours.normal == adapt.normal


@pytest.mark.parametrize("name", list(ZOO))
def test_widest_cell_is_n_nodes_wide_and_two_deep(name):
    g = widest(ZOO[name])
    for cell in (g.normal, g.reduce):
        assert cell_width(cell) == cell.n_nodes
        assert cell_depth(cell) == 2
        assert all(sorted(s for _, s in node) == [0, 1] for node in cell.nodes)


def test_width_family_bins_by_width_with_depth_decreasing_inside_a_bin():
    base = get_genotype("DARTS_V2")
    family = width_family(base)
    assert [v.name for v in family] == [f"c{i}" for i in range(1, 13)]
    assert [v.width for v in family] == [2.0] * 3 + [2.5] * 3 + [3.0] * 3 + [3.5] * 3
    for b in range(4):
        depths = [v.depth for v in family[3 * b : 3 * b + 3]]
        assert depths == sorted(depths, reverse=True)
    assert family[0].depth > family[-1].depth
    assert len({v.genotype.normal for v in family}) == 12
    for v in family:
        assert v.genotype == random_conn(base, v.seed)  # each member is a reference CONN variant
        assert v.genotype.normal.ops == base.normal.ops
        assert (cell_width(v.genotype.normal), cell_depth(v.genotype.normal)) == (v.width, v.depth)


def test_width_family_covers_distinct_depths_when_the_bin_offers_them():
    family = width_family(get_genotype("DARTS_V2"))
    assert [v.depth for v in family[:3]] == [5, 4, 3]  # 2c cells can be 5, 4 or 3 deep


def test_width_family_can_keep_the_reduction_cell():
    base = get_genotype("DARTS_V2")
    family = width_family(base, rewire_reduce=False, seed=5)
    assert all(v.genotype.reduce == base.reduce for v in family)
    assert all(v.genotype.normal == random_conn(base, v.seed).normal for v in family)


def test_width_family_reports_a_bin_it_cannot_fill():
    # 1c is a possible width (144 wirings) but rare: 50 candidates do not hold 3 of them
    with pytest.raises(CellnasError, match=r"distinct re-wirings? of width 1c among 50 candidates"):
        width_family(get_genotype("DARTS_V2"), widths=(2.0, 1.0), max_tries=50)


def test_width_family_refuses_a_width_no_rewiring_has_before_drawing():
    with pytest.raises(CellnasError, match="4.5 is not a possible width.*1, 1.5, 2, 2.5, 3, 3.5, 4"):
        width_family(get_genotype("DARTS_V2"), widths=(2.0, 4.5), max_tries=300)


def test_analyze_variants_command_writes_genotypes_index_and_figure(tmp_path):
    from cellnas.formats import load_genotype

    out = tmp_path / "conn"
    assert main(["analyze", "variants", "DARTS_V2", "-o", str(out), "--kind", "random_conn", "--seeds", "1-3"]) == 0
    index = json.loads((out / "index.json").read_text())
    names = [e["name"] for e in index["variants"]]
    assert names == ["DARTS_V2_CONN1", "DARTS_V2_CONN2", "DARTS_V2_CONN3"]
    for e, seed in zip(index["variants"], (1, 2, 3)):
        g = load_genotype(out / e["file"])
        assert g == random_conn(get_genotype("DARTS_V2"), seed)
        assert (e["width"], e["depth"]) == (cell_width(g.normal), cell_depth(g.normal))
    assert index["base"]["name"] == "DARTS_V2"
    assert (out / "variants.png").stat().st_size > 0


def test_analyze_variants_family_command_writes_twelve_cells(tmp_path):
    out = tmp_path / "family"
    assert main(["analyze", "variants", "DARTS_V2", "-o", str(out), "--per-bin", "1"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["width"] for e in index["variants"]] == [2.0, 2.5, 3.0, 3.5]
    assert "re-creation" in index["note"]


def test_seed_ranges_parse_and_bad_ones_are_rejected():
    from cellnas.commands.analyze_cmds.variants import parse_seeds

    assert parse_seeds("1-3,8") == [1, 2, 3, 8]
    assert parse_seeds("4") == [4]
    for bad in ("3-1", "a", "", "-2"):
        with pytest.raises(CellnasError):
            parse_seeds(bad)


def test_analyze_variants_help_says_depth_decreases_only_within_a_width_bin(capsys):
    depths = [v.depth for v in width_family(get_genotype("DARTS_V2"))]
    assert depths != sorted(depths, reverse=True)  # not decreasing over c1..c12 (c3 depth 3, c4 depth 5)
    with pytest.raises(SystemExit):
        main(["analyze", "variants", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "width increasing and depth decreasing" not in text
    assert "within a width bin depth does not increase" in text and "c3 depth 3, c4 depth 5" in text


def test_analyze_variants_output_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "g.txt").write_text("")
    assert main(["analyze", "variants", "DARTS_V2", "--kind", "widest", "-o", str(tmp_path / "g.txt")]) == 2
    assert "cellnas analyze: error: -o" in capsys.readouterr().err


@pytest.mark.parametrize("base,label,differs", [
    ("NASNet", "NASNet_ADAPT", []),
    ("SNAS_MILD", "SNAS_ADAPT", []),  # the zoo's name of the published cell
    ("ENAS", "ENAS_WIDEST", ["normal node 3"]),  # the published ENAS_ADAPT reads input 0 twice at node 3
    ("DARTS_V2", "DARTS_V2_WIDEST", None),  # no published cell
])  # fmt: skip
def test_analyze_variants_widest_is_named_adapt_only_when_it_is_the_published_cell(tmp_path, base, label, differs):
    assert main(["analyze", "variants", base, "--kind", "widest", "-o", str(tmp_path)]) == 0
    index = json.loads((tmp_path / "index.json").read_text())
    assert [v["name"] for v in index["variants"]] == [label] and (tmp_path / f"{label}.json").is_file()
    if differs is None:
        assert "published" not in index
    else:
        assert index["published"]["differs_in"] == differs and index["published"]["same"] == (not differs)
