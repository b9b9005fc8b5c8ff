"""Constrained sampling and edit distances of Wan et al. (ICLR 2022), SPEC 5.4/5.5."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cellnas.analysis.sampling import (
    CONSTRAINTS,
    DARTS_OPS,
    PRIM_OPS,
    SEP_OPS,
    edit_distance,
    sample,
    satisfies,
)
from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.genotype import Genotype
from cellnas.zoo import get_genotype

# -- the reference samplers, on the legacy global RNG (notebooks/sample_archs.ipynb, nas301.py) --


def _ref_random(ops):
    normal, reduce = [], []
    for i in range(4):
        o_n = np.random.choice(range(len(ops)), 4)
        in_n = np.random.choice(range(i + 2), 2, replace=False)
        o_r = np.random.choice(range(len(ops)), 4)
        in_r = np.random.choice(range(i + 2), 2, replace=False)
        normal += [(ops[o_n[0]], in_n[0]), (ops[o_n[1]], in_n[1])]
        reduce += [(ops[o_r[0]], in_r[0]), (ops[o_r[1]], in_r[1])]
    return normal, reduce


def _ref_skip_cell(ops):
    wiring = [0, 1]
    for order in range(2, 5):
        wiring += np.random.choice(np.arange(order), 2, replace=False).tolist()
    pairs = [("skip_connect", 0), ("skip_connect", 1)]
    for i in range(2, 8):
        pairs.append((np.random.choice(list(ops)), wiring[i]))
    return pairs


def _reference(constraint, seed, n):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        out = []
        for _ in range(n):
            if constraint in ("none", "prim"):
                normal, reduce = _ref_random(DARTS_OPS if constraint == "none" else PRIM_OPS)
            else:
                ops = DARTS_OPS if constraint == "skip" else SEP_OPS
                normal, reduce = _ref_skip_cell(ops), _ref_skip_cell(ops)
            out.append(Genotype.from_darts(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5]))
        return out
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("constraint", CONSTRAINTS)
@pytest.mark.parametrize("seed", [0, 3, 42])
def test_sample_reproduces_the_reference_sampler_stream(constraint, seed):
    assert sample(constraint, 5, seed) == _reference(constraint, seed, 5)


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_every_sample_satisfies_its_constraint_under_both_readings(constraint):
    for quirk in (True, False):
        for g in sample(constraint, 100, 7, quirk=quirk):
            assert satisfies(g, constraint)
            assert satisfies(g, constraint, residual="any")
            assert g.normal.concat == g.reduce.concat == (2, 3, 4, 5)
            for cell in (g.normal, g.reduce):
                assert all(node[0][1] != node[1][1] for node in cell.nodes)


def test_skip_sampler_quirk_never_wires_the_preceding_node_and_no_quirk_does():
    def reads_previous(genotypes):
        return any(
            src == j + 1
            for g in genotypes
            for cell in (g.normal, g.reduce)
            for j, node in enumerate(cell.nodes)
            if j >= 1
            for _, src in node
        )

    assert not reads_previous(sample("skip", 200, 0))
    assert not reads_previous(sample("primskip", 200, 0))
    assert reads_previous(sample("skip", 200, 0, quirk=False))
    quirky = sample("primskip", 50, 1)
    assert all(sorted(s for _, s in g.normal.nodes[1]) == [0, 1] for g in quirky)  # node 3 reads 0 and 1


def test_sampling_is_seeded_and_independent_of_global_state():
    np.random.seed(0)
    a = sample("primskip", 3, 11)
    np.random.seed(99)
    assert sample("primskip", 3, 11) == a
    assert sample("primskip", 3, 12) != a


BOTH = ("normal", "reduce")


def _brute_force_distance(cell, allowed):
    """Minimum edits over every cell in a brute-force enumerated constraint set (by node)."""
    total = 0
    for j, node in enumerate(cell.nodes):
        best = min(
            min(sum(a != b for a, b in zip(node, t)), sum(a != b for a, b in zip(node, t[::-1])))
            for t in allowed(j + 2)
        )
        total += best
    return total


def test_edit_distance_matches_brute_force_on_the_per_node_constraints():
    def allowed(ops, node2_fixed):
        def targets(dst):
            if node2_fixed and dst == 2:
                return [(("skip_connect", 0), ("skip_connect", 1))]
            return [
                ((a, i), (b, k))
                for i, k in itertools.combinations(range(dst), 2)
                for a, b in itertools.product(ops, repeat=2)
            ]

        return targets

    rules = {"none": (DARTS_OPS, False), "prim": (PRIM_OPS, False), "skip": (DARTS_OPS, True),
             "primskip": (SEP_OPS, True)}  # fmt: skip
    from cellnas.analysis.variants import random_conn

    genotypes = [get_genotype(n) for n in ("DARTS_V2", "DARTS_V1", "BANANAS", "ASHA200", "SNAS_MILD")]
    genotypes += [random_conn(get_genotype("DARTS_V2"), s) for s in range(5)]  # duplicate inputs included
    for g in genotypes:
        for c, (ops, fixed) in rules.items():
            expected = sum(_brute_force_distance(g.cell(n), allowed(ops, fixed)) for n in ("normal", "reduce"))
            dist, nearest = edit_distance(g, c, residual="node2", cells=BOTH)
            assert dist == expected, (g, c)
            assert satisfies(nearest, c, residual="node2")
            assert satisfies(g, c, residual="node2") == (dist == 0)
            for reading in ("node2", "any"):
                d_any = edit_distance(g, c, residual=reading, cells=BOTH)[0]
                assert satisfies(g, c, residual=reading) == (d_any == 0)
            changed = sum(a != b for n in ("normal", "reduce") for a, b in zip(g.cell(n).pairs, nearest.cell(n).pairs))
            assert changed == dist


def test_darts_v2_edit_distances_computed_by_hand():
    g = get_genotype("DARTS_V2")
    # normal: node 2 s3,s3 -> skip,skip (2); node 4 skip(0) -> sep (1); node 5 skip(0), d3(2) -> sep (2)
    # reduce: node 2 mp,mp -> skip,skip (2); nodes 3, 4, 5: both edges are pools/skips -> sep (2 each)
    assert edit_distance(g, "primskip", residual="node2", cells=BOTH)[0] == 13
    assert edit_distance(g, "primskip", residual="node2", cells=("normal",))[0] == 5
    assert edit_distance(g, "none", residual="node2", cells=BOTH)[0] == 0
    assert edit_distance(g, "prim", residual="node2", cells=("normal",))[0] == 1  # dil_conv_3x3
    assert edit_distance(g, "primskip")[0] == 1  # the default reading: Table 2


def test_any_residual_reading_gives_the_table2_distances_on_normal_cells():
    # Table 2 (SPEC 5.5): DARTSv2 1, BANANAS 1. Only under this reading, and counting the normal cell only.
    for name in ("DARTS_V2", "BANANAS"):
        dist, nearest = edit_distance(get_genotype(name), "primskip", residual="any", cells=("normal",))
        assert dist == 1
        assert nearest.reduce == get_genotype(name).reduce
    _, nearest = edit_distance(get_genotype("DARTS_V2"), "primskip", residual="any", cells=("normal",))
    assert nearest.normal.pairs[7] == ("sep_conv_3x3", 2)  # the op swap, not a re-wiring


def test_any_residual_reading_requires_at_least_one_residual_link():
    g = get_genotype("DARTS_V2")  # reduction cell: every skip reads node 2, so no residual link
    assert not satisfies(g, "skip", residual="any")
    assert satisfies(g, "skip", residual="any", cells=("normal",))
    dist, nearest = edit_distance(g, "skip", residual="any", cells=("reduce",))
    assert dist == 1
    assert any(op == "skip_connect" and src < 2 for op, src in nearest.reduce.pairs)


def test_unknown_constraint_is_rejected_with_the_valid_names():
    with pytest.raises(CellnasError, match="primskip"):
        sample("resnet", 1, 0)
    with pytest.raises(CellnasError, match="node2"):
        edit_distance(get_genotype("DARTS_V2"), "skip", residual="some")


def test_sample_command_prints_writes_and_measures(tmp_path, capsys):
    from cellnas.formats import load_genotype

    assert main(["sample", "--constraint", "prim", "-n", "2", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("Genotype(") for line in lines)
    assert main(["sample", "--constraint", "skip", "-n", "3", "--seed", "4", "-o", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("skip_*.json"))
    assert [load_genotype(f) for f in files] == sample("skip", 3, 4)
    assert main(["sample", "--distance", "DARTS_V2", "--constraint", "primskip"]) == 0
    out = capsys.readouterr().out
    assert "primskip" in out and ": 1\n" in out
    argv = ["sample", "--distance", "DARTS_V2", "--constraint", "primskip"]
    argv += ["--residual", "node2", "--cells", "normal,reduce"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "primskip" in out and ": 13\n" in out


@pytest.mark.parametrize("cells", ["", " , "])
def test_sample_distance_refuses_an_empty_cells_list(cells, capsys):
    assert main(["sample", "--distance", "DARTS_V2", "--cells", cells]) == 2
    captured = capsys.readouterr()
    assert "--cells names no cell type; valid choices: normal, reduce" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_sample_distance_refuses_a_repeated_cell_type(capsys):
    g = get_genotype("DARTS_V2")  # the library counts a repeated cell type once; the command line refuses it
    assert edit_distance(g, "primskip", cells=("normal", "normal")) == edit_distance(g, "primskip")
    assert main(["sample", "--distance", "DARTS_V2", "--constraint", "primskip", "--cells", "normal,normal"]) == 2
    assert "more than once" in capsys.readouterr().err


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_sample_refuses_a_seed_numpy_cannot_take(seed, capsys):
    assert main(["sample", "-n", "1", "--seed", seed]) == 2
    captured = capsys.readouterr()
    assert f"--seed must be >= 0 and < 2**32, got {seed}" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("name", ["NASNet", "AmoebaNet", "ENAS"])
def test_edit_distance_refuses_a_genotype_outside_the_samplers_4_node_space(name):
    with pytest.raises(CellnasError, match="4 intermediate nodes.*normal cell has 5") as info:
        edit_distance(get_genotype(name), "primskip")
    assert "\n" not in str(info.value)
    with pytest.raises(CellnasError, match="4 intermediate nodes"):
        edit_distance(get_genotype(name), "none", residual="node2", cells=("normal", "reduce"))


def test_edit_distance_measures_other_node_counts_when_asked():
    g = sample("primskip", 1, seed=1, n_nodes=5)[0]
    assert edit_distance(g, "primskip", n_nodes=5)[0] == 0
    with pytest.raises(CellnasError, match="sampler's space has 4 intermediate nodes"):
        edit_distance(g, "primskip")


def test_sample_distance_refuses_a_5_node_genotype_in_one_line(capsys):
    assert main(["sample", "--distance", "NASNet", "--constraint", "primskip"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "4 intermediate nodes" in err and "has 5" in err and "\n" not in err
    assert captured.out == "" and "Traceback" not in err


def test_satisfies_is_false_outside_the_samplers_node_count():
    g = sample("prim", 1, seed=2, n_nodes=5)[0]
    assert satisfies(g, "prim", n_nodes=5) and not satisfies(g, "prim")


@pytest.mark.parametrize("where", ["file", "under_file", "proc"])
def test_sample_output_that_cannot_be_a_directory_is_a_one_line_error(tmp_path, capsys, where):
    (tmp_path / "g.txt").write_text("")
    out = {"file": tmp_path / "g.txt", "under_file": tmp_path / "g.txt" / "sub", "proc": "/proc/cellnas-no-such"}
    assert main(["sample", "-n", "1", "-o", str(out[where])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cellnas sample: error: -o '{out[where]}'") and err.count("\n") == 1


@pytest.mark.parametrize("argv,message", [
    (["--distance", "DARTS_V2", "-n", "5"], "-n (the number of samples) does not apply with --distance"),
    (["--distance", "DARTS_V2", "--seed", "0"], "--seed (the sampling seed) does not apply with --distance"),
    (["--distance", "DARTS_V2", "--no-quirk"], "--no-quirk (a sampling option"),
    (["--distance", "DARTS_V2", "--format", "json"], "--format (the format of the samples) does not apply"),
    (["--residual", "node2"], "--residual (the Skip reading of the edit distance) needs --distance GENOTYPE"),
    (["--cells", "normal"], "--cells (the cells the edit distance counts) needs --distance GENOTYPE"),
])  # fmt: skip
def test_sample_refuses_options_of_the_other_mode(argv, message, capsys):
    assert main(["sample", *argv]) == 2
    captured = capsys.readouterr()
    assert f"cellnas sample: error: {message}" in captured.err and captured.out == ""


def test_sample_warns_about_options_without_effect_on_the_constraint(capsys):
    assert main(["sample", "--no-quirk", "--constraint", "prim", "-n", "1"]) == 0
    captured = capsys.readouterr()
    assert "warning: --no-quirk has no effect with --constraint prim" in captured.err
    assert captured.out.startswith("Genotype(")
    assert main(["sample", "--distance", "DARTS_V2", "--constraint", "none", "--residual", "node2"]) == 0
    assert "warning: --residual has no effect with --constraint none" in capsys.readouterr().err
    assert main(["sample", "--no-quirk", "--constraint", "skip", "-n", "1"]) == 0
    assert "warning" not in capsys.readouterr().err
