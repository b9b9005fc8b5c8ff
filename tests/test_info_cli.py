"""``cellnas info`` end to end through ``cellnas.cli.main``."""

from __future__ import annotations

import json

import pytest

from cellnas.cli import main


def run_json(capsys, *argv) -> dict:
    assert main(["info", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_darts_v2_json(capsys):
    r = run_json(capsys, "DARTS_V2")
    assert r["genotype"]["name"] == "DARTS_V2" and len(r["genotype"]["hash"]) == 16
    assert (r["dataset"], r["channels"], r["layers"]) == ("cifar10", 36, 20)
    assert round(r["params"] / 1e6, 1) == 3.3  # the published figure (SPEC 2.4), auxiliary head excluded
    assert r["params_with_aux"] > r["params"]
    assert r["macs"] > 0
    # Shu et al. width/depth of the DARTS_V2 normal cell (SPEC 3.1)
    assert r["cells"]["normal"] == {"width": 3.5, "depth": 3}
    assert set(r["cells"]["reduce"]) == {"width", "depth"}


def test_info_digits_uses_grey_input_and_small_defaults(capsys):
    r = run_json(capsys, "darts", "--dataset", "digits")
    assert r["genotype"]["name"] == "DARTS_V2"
    assert r["input_shape"] == [1, 8, 8] and (r["channels"], r["layers"]) == (16, 8)
    r2 = run_json(capsys, "DARTS_V2", "--dataset", "digits", "--channels", "8", "--layers", "5")
    assert (r2["channels"], r2["layers"]) == (8, 5) and r2["params"] < r["params"]


def test_info_supernet_json(capsys):
    r = run_json(capsys, "--supernet", "--dataset", "digits", "--layers", "3", "--channels", "4")
    assert r["alphas"] == 2 * 14 * 8
    assert r["space"]["n_nodes"] == 4 and r["space"]["k"] == 2 and len(r["space"]["ops"]) == 8
    assert r["params"] > 0
    # SPEC 1.9: 7^8 x 180 discrete cells per cell type (node j+2 picks 2 of its j+2 predecessors, 7 ops each)
    assert r["space"]["cells"] == 7**8 * 180 == 1_037_664_180 and r["space"]["genotypes"] == 1_037_664_180**2


def test_search_space_size_counts_k_distinct_predecessors_and_the_ops_other_than_none():
    from cellnas.supernet import SearchSpace

    assert SearchSpace(n_nodes=2).cell_count() == (1 * 49) * (3 * 49)
    assert SearchSpace(n_nodes=2, k=1).cell_count() == (2 * 7) * (3 * 7)
    assert SearchSpace(ops=("none", "skip_connect", "sep_conv_3x3"), n_nodes=1).cell_count() == 4


def test_info_human_output_states_mac_rule(capsys):
    assert main(["info", "DARTS_V2", "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "conv + linear" in out and "auxiliary head excluded" in out and "width 3.5c" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["NOT_A_CELL"], "NOT_A_CELL"),
        ([], "GENOTYPE"),
        (["DARTS_V2", "--supernet"], "not both"),
        (["DARTS_V2", "--channels", "0"], "--channels"),
    ],
)
def test_info_bad_input_is_one_line_error(capsys, argv, needle):
    assert main(["info", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err


def test_info_help_mentions_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = capsys.readouterr().out
    for word in ("--dataset", "--channels", "--layers", "--supernet", "--json", "C=36", "C=48", "digits"):
        assert word in out


def test_info_warns_that_a_cell_with_only_none_edges_has_a_constant_output(tmp_path, capsys):
    from cellnas.formats import save_genotype
    from cellnas.genotype import Genotype

    none_cell = [("none", 0), ("none", 1)] * 4
    g = Genotype.from_darts(none_cell, [2, 3, 4, 5], [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, [2, 3, 4, 5])
    path = save_genotype(g, tmp_path / "dead.json")
    argv = [str(path), "--dataset", "digits", "--channels", "4", "--layers", "5"]
    r = run_json(capsys, *argv)
    message = "cell 'normal' has only 'none' edges: its output is constant zero"
    assert any(message in w for w in r["warnings"])
    assert main(["info", *argv]) == 0
    captured = capsys.readouterr()
    assert f"warning: {message}" in captured.err and "does not depend on its input" in captured.err
    assert "width" in captured.out and "Traceback" not in captured.err


def test_info_of_a_healthy_genotype_has_no_warnings(capsys):
    assert main(["info", "DARTS_V2", "--dataset", "digits", "--channels", "4", "--layers", "3", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"] == [] and captured.err == ""


def test_info_describes_a_pc_darts_supernet(capsys):
    from cellnas.cli import main

    assert main(["info", "--supernet", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["info", "--supernet", "--partial-channels", "4", "--edge-norm", "--json"]) == 0
    pc = json.loads(capsys.readouterr().out)
    assert (pc["partial_channels"], pc["edge_norm"]) == (4, True)
    assert pc["alphas"] == plain["alphas"] + 2 * 14  # one beta per edge, both cell types
    assert pc["params"] < plain["params"] / 4 < plain["params"]  # the ops hold (C/K)^2-sized 1x1 kernels
    assert pc["macs"] < plain["macs"] / 2
    assert main(["info", "--supernet", "--partial-channels", "4"]) == 0
    assert "PC-DARTS search network, C=16, 8 cells; partial channels K=4" in capsys.readouterr().out
    assert main(["info", "DARTS_V2", "--partial-channels", "4"]) == 2
    assert "add --supernet" in capsys.readouterr().err
