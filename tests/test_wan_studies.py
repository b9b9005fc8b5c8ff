"""Wan et al. studies end to end on the synthetic (planted-answer) evaluator: sampling comparison, operation
importance, motifs, ablations; the archive commands; the Table 2 edit-distance default."""

import csv
import json

import numpy as np
import pytest

from cellnas.analysis.ablation import all_skip, disabling_sequence, oi_order, paired_comparison, reduce_variants
from cellnas.analysis.importance import operation_importance
from cellnas.analysis.sampling import edit_distance
from cellnas.archive import Archive
from cellnas.cli import main
from cellnas.evaluators.synthetic import SyntheticEvaluator
from cellnas.zoo import get_genotype


def test_edit_distance_default_reproduces_table2_for_darts_v2_and_bananas(capsys):
    # SPEC 5.5, Table 2: DARTSv2 1, BANANAS 1 (residual="any", normal cell: the default)
    assert edit_distance(get_genotype("DARTS_V2"), "primskip")[0] == 1
    assert edit_distance(get_genotype("BANANAS"), "primskip")[0] == 1
    # the sampler-defined reading stays available
    assert edit_distance(get_genotype("DARTS_V2"), "primskip", residual="node2", cells=("normal", "reduce"))[0] == 13
    assert main(["sample", "--distance", "BANANAS", "--constraint", "primskip"]) == 0
    assert "residual=any, cells=normal): 1" in capsys.readouterr().out


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """An archive with 30 cells per constraint scored by the synthetic evaluator (via the sampling study).
    Shared by the tests of this module: they add rows (OI neighbours, ablation variants) under other sources,
    so they select the population with ``--source analyze-sampling``."""
    root = tmp_path_factory.mktemp("population")
    path = root / "a.sqlite"
    assert main(["analyze", "sampling", "-n", "30", "--seed", "1", "--evaluator", "synthetic",
                 "--archive", str(path), "-o", str(root / "sampling")]) == 0  # fmt: skip
    return path


def test_sampling_study_compares_the_four_constraint_sets_in_one_figure(tmp_path, population, capsys):
    doc = json.loads((population.parent / "sampling" / "sampling.json").read_text())
    assert set(doc["groups"]) == {"none", "prim", "skip", "primskip"}
    assert all(g["n"] == 30 and g["failed"] == 0 for g in doc["groups"].values())
    # the planted answer: sep convs + a residual link help, so PrimSkip beats Random
    assert doc["groups"]["primskip"]["mean"] < doc["groups"]["none"]["mean"]
    assert doc["mann_whitney"]["primskip vs none"]["p_value"] < 0.01
    assert (population.parent / "sampling" / "sampling.png").stat().st_size > 10_000
    assert len(Archive(population).records("synthetic", source="analyze-sampling")) == 120
    # a re-run evaluates nothing new
    capsys.readouterr()
    assert main(["analyze", "sampling", "-n", "30", "--seed", "1", "--evaluator", "synthetic",
                 "--archive", str(population), "-o", str(tmp_path / "again")]) == 0  # fmt: skip
    assert "0 evaluated, 120 reused" in capsys.readouterr().err


def test_importance_of_one_cell_matches_the_library_and_reuses_the_archive(tmp_path, capsys):
    path = tmp_path / "a.sqlite"
    args = ["analyze", "importance", "DARTS_V2", "--evaluator", "synthetic", "--archive", str(path)]
    assert main([*args, "-o", str(tmp_path / "oi")]) == 0
    doc = json.loads((tmp_path / "oi" / "importance.json").read_text())
    (arch,) = doc["architectures"]
    expected = operation_importance(get_genotype("DARTS_V2"), SyntheticEvaluator().error)
    assert [e["oi"] for e in arch["edges"]] == pytest.approx([expected[p] for p in range(16)])
    edges = {e["position"]: e for e in arch["edges"]}
    assert edges[5]["skip_kind"] == "in0" and edges[5]["residual"]  # normal node 4: skip_connect(0)
    assert edges[7]["op"] == "dil_conv_3x3" and edges[7]["skip_kind"] is None
    assert edges[0]["important"] == (abs(edges[0]["oi"]) >= 0.001)
    assert (tmp_path / "oi" / "importance.png").exists()
    stored = Archive(path).importance("synthetic")
    assert stored[get_genotype("DARTS_V2").content_hash()][1] == pytest.approx(expected)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "oi2")]) == 0
    again = json.loads((tmp_path / "oi2" / "importance.json").read_text())
    assert again["batch"]["evaluated"] == 0 and again["batch"]["reused"] == again["batch"]["requested"]


def test_importance_of_the_top_fraction_with_a_surrogate_then_motifs(tmp_path, population, capsys):
    model = tmp_path / "s.joblib"
    assert main(["archive", "fit-surrogate", "--archive", str(population), "--protocol", "synthetic",
                 "--source", "analyze-sampling", "-o", str(model)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Kendall tau" in out and "RMSE" in out
    assert main(["analyze", "importance", "--top", "0.05", "--rank-protocol", "synthetic", "--source",
                 "analyze-sampling", "--evaluator", "surrogate", "--surrogate", str(model), "--archive",
                 str(population), "-o", str(tmp_path / "oi")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "oi" / "importance.json").read_text())
    assert doc["n_architectures"] == 6  # round(0.05 * 120)
    assert doc["protocol"].startswith("surrogate:synthetic:")
    assert main(["analyze", "motifs", "--archive", str(population), "--protocol", "synthetic", "--source",
                 "analyze-sampling", "--top", "0.05", "--oi-protocol", "any", "--min-support", "0.5",
                 "-o", str(tmp_path / "motifs")]) == 0  # fmt: skip
    motifs = json.loads((tmp_path / "motifs" / "motifs.json").read_text())
    assert motifs["n_graphs"] == 6 and motifs["oi_prefilter"]["edges_kept"] <= motifs["oi_prefilter"]["edges_total"]
    assert all(m["support"] >= 3 for m in motifs["motifs"])
    assert (tmp_path / "motifs" / "motifs.png").exists()


def test_motifs_find_the_planted_residual_link_and_need_stored_oi_when_asked(tmp_path, population, capsys):
    assert main(["analyze", "motifs", "--archive", str(population), "--protocol", "synthetic", "--top", "0.1",
                 "--source", "analyze-sampling", "--min-support", "0.5", "--max-nodes", "3",
                 "-o", str(tmp_path / "m")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "m" / "motifs.json").read_text())
    # the best cells are PrimSkip-like: a skip_connect from an input is in most of them
    assert any("skip_connect(input" in m["description"] for m in doc["motifs"])
    capsys.readouterr()
    assert main(["analyze", "motifs", "--archive", str(population), "--protocol", "synthetic",
                 "--oi-protocol", "nothing-here", "-o", str(tmp_path / "m2")]) == 2  # fmt: skip
    assert "analyze importance" in capsys.readouterr().err


def test_reduce_variants_and_disabling_sequences():
    g = get_genotype("DARTS_V2")
    v = reduce_variants(g)
    assert v["red<-nor"].reduce == g.normal and v["nor<-red"].normal == g.reduce
    assert v["red<-skip"].normal == g.normal and v["red<-skip"].reduce == all_skip(g.reduce)
    assert [src for _, src in all_skip(g.reduce).pairs] == [src for _, src in g.reduce.pairs]
    assert set(all_skip(g.normal).ops) == {"skip_connect"}
    oi = {p: float(p % 5) - 2 for p in range(16)}
    asc = oi_order(oi, "ascending")
    assert [oi[p] for p in asc] == sorted(oi.values()) and asc[:2] == [0, 5]  # ties by position
    seq = disabling_sequence(g, oi, "descending", max_ops=3)
    assert [pos for pos, _ in seq] == [[4], [4, 9], [4, 9, 14]]
    assert seq[-1][1].normal.pairs[4] == ("none", 1) and seq[-1][1].reduce.pairs[1] == ("none", 1)
    s = paired_comparison([0.1, 0.2, 0.3, None], [0.2, 0.25, 0.5, 0.4])
    assert s["n"] == 3 and s["mean_difference"] == pytest.approx(0.1166666) and s["t_test_p"] is not None


def test_ablate_study_on_the_planted_evaluator(tmp_path, population):
    assert main(["analyze", "ablate", "--random", "4", "--top", "0.2", "--rank-protocol", "synthetic",
                 "--source", "analyze-sampling", "--evaluator", "synthetic", "--archive", str(population),
                 "--max-ops", "4", "-o", str(tmp_path / "ab")]) == 0  # fmt: skip
    doc = json.loads((tmp_path / "ab" / "ablate.json").read_text())
    assert len(doc["architectures"]) == 4
    # the planted answer: the normal cell matters more than the reduction cell
    assert doc["reduce_summary"]["nor<-skip"]["mean_difference"] > doc["reduce_summary"]["red<-skip"]["mean_difference"]
    asc, desc = (np.asarray(doc["disable_summary"][o]["mean"]) for o in ("ascending", "descending"))
    assert asc[0] == desc[0] and np.all(desc[1:] >= asc[1:])  # removing important ops hurts more
    assert (tmp_path / "ab" / "ablate_reduce.png").exists() and (tmp_path / "ab" / "ablate_disable.png").exists()


def test_archive_commands_add_list_export_import_evaluate_info(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    assert main(["archive", "add", "DARTS_V2", "--protocol", "wan-table2", "--test-error", "0.0244",
                 "--metric", "note=paper", "--archive", db]) == 0  # fmt: skip
    assert main(["archive", "evaluate", "DARTS_V1", "BANANAS", "--sample", "prim", "-n", "5",
                 "--evaluator", "synthetic", "--archive", db]) == 0  # fmt: skip
    assert "7 evaluated" in capsys.readouterr().out
    assert main(["archive", "list", "--archive", db, "--protocol", "synthetic", "--sort", "test_error",
                 "--limit", "3"]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith("hash")
    assert main(["archive", "export", str(tmp_path / "x.csv"), "--archive", db]) == 0
    rows = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert len(rows) == 8 and {r["protocol"] for r in rows} == {"wan-table2", "synthetic"}
    db2 = str(tmp_path / "b.sqlite")
    assert main(["archive", "import", str(tmp_path / "x.csv"), "--archive", db2]) == 0
    assert Archive(db2).get(get_genotype("DARTS_V2"), "wan-table2").extra == {"note": "paper"}
    capsys.readouterr()
    assert main(["archive", "info", "--archive", db2]) == 0
    assert "synthetic" in capsys.readouterr().out and Archive(db2).count() == 8


def test_cli_errors_are_one_line(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    assert main(["archive", "evaluate", "DARTS_V2", "--evaluator", "nb301", "--archive", db]) == 2
    assert "pip install nasbench301" in capsys.readouterr().err
    assert main(["archive", "evaluate", "DARTS_V2", "--evaluator", "xgb", "--archive", db]) == 2
    assert "valid choices: nb301, proxy, surrogate, synthetic" in capsys.readouterr().err
    assert main(["archive", "evaluate", "DARTS_V2", "--set", "epochs=-1", "--archive", db]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(["analyze", "importance", "--evaluator", "synthetic", "--archive", db, "-o", str(tmp_path)]) == 2
    assert "GENOTYPE or --top" in capsys.readouterr().err
    assert main(["archive", "list", "--archive", str(tmp_path / "none.sqlite")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_paired_comparison_has_no_t_test_when_the_differences_do_not_vary():
    s = paired_comparison([0.1, 0.2, 0.3], [0.15, 0.25, 0.35])  # std of the differences 0: t undefined
    assert s["std_difference"] == pytest.approx(0.0, abs=1e-12) and s["t_test_p"] is None
    assert s["mean_difference"] == pytest.approx(0.05)


def test_ablate_drops_duplicates_and_refuses_a_non_positive_random(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    common = ["--evaluator", "synthetic", "--archive", db]
    assert main(["analyze", "ablate", "DARTS_V2", "DARTS_V2", "--kind", "reduce", *common,
                 "-o", str(tmp_path / "ab")]) == 0  # fmt: skip
    assert "1 duplicate architecture(s) dropped" in capsys.readouterr().err
    doc = json.loads((tmp_path / "ab" / "ablate.json").read_text())
    assert len(doc["architectures"]) == 1 and all(v["t_test_p"] is None for v in doc["reduce_summary"].values())
    assert main(["analyze", "ablate", "DARTS_V2", "--kind", "disable", "--max-ops", "99", *common,
                 "-o", str(tmp_path / "ab2")]) == 0  # fmt: skip
    assert "--max-ops 99: the cells have 16 ops" in capsys.readouterr().err
    for n in ("0", "-1"):
        assert main(["analyze", "ablate", "--random", n, *common, "-o", str(tmp_path / "x")]) == 2
        assert f"--random must be >= 1, got {n}" in capsys.readouterr().err


def test_studies_whose_evaluations_all_fail_exit_non_zero(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    assert main(["analyze", "sampling", "-n", "2", "--evaluator", "synthetic", "--eval-seed", "-1",
                 "--archive", db, "-o", str(tmp_path / "s")]) == 2  # fmt: skip
    assert "--eval-seed must be >= 0" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["archive", "evaluate", "--sample", "none", "-n", "12", "--evaluator", "synthetic",
                 "--archive", db]) == 0  # fmt: skip
    model = str(tmp_path / "s.joblib")
    assert main(["archive", "fit-surrogate", "--archive", db, "--protocol", "synthetic", "--test-fraction", "0",
                 "-o", model]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["analyze", "importance", "NASNet", "--evaluator", "surrogate", "--surrogate", model,
                 "--archive", db, "-o", str(tmp_path / "oi")]) == 2  # fmt: skip
    assert "this surrogate encodes 4" in capsys.readouterr().err and not (tmp_path / "oi").exists()


def test_fit_surrogate_refusals_and_a_constant_model_warning(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    assert main(["archive", "evaluate", "--sample", "none", "-n", "40", "--evaluator", "synthetic",
                 "--archive", db]) == 0  # fmt: skip
    fit = ["archive", "fit-surrogate", "--archive", db, "--protocol", "synthetic"]
    capsys.readouterr()
    assert main([*fit, "--test-fraction", "0.99", "-o", str(tmp_path / "s.joblib")]) == 2
    assert "leaves 0 to fit on" in capsys.readouterr().err
    assert main([*fit, "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main([*fit[:-1], "nosuch", "-o", str(tmp_path / "s.joblib")]) == 2
    assert "protocols present: synthetic" in capsys.readouterr().err
    assert main([*fit, "--model", "hgb", "-o", str(tmp_path / "h.joblib")]) == 0
    captured = capsys.readouterr()
    assert "Kendall tau and Spearman undefined" in captured.out and "nan" not in captured.out
    assert "warning: this surrogate predicts the same test_error" in captured.err
    assert "Warning" not in captured.err  # no raw Python warnings


def test_archive_list_export_info_options(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    assert main(["archive", "evaluate", "--sample", "none", "-n", "3", "--evaluator", "synthetic",
                 "--archive", db]) == 0  # fmt: skip
    capsys.readouterr()
    for sort in ("test_error:desc", "--sort=-test_error"):
        args = ["--sort", sort] if not sort.startswith("--") else [sort]
        assert main(["archive", "list", "--archive", db, *args]) == 0
        errors = [float(line.split()[3]) for line in capsys.readouterr().out.splitlines()[1:]]
        assert len(errors) == 3 and errors == sorted(errors, reverse=True)
    assert main(["archive", "list", "--archive", db, "--limit", "-1"]) == 2
    assert "--limit must be >= 0" in capsys.readouterr().err
    assert main(["archive", "export", str(tmp_path / "x.csv"), "--protocol", "nosuch", "--archive", db]) == 2
    err = capsys.readouterr().err
    assert "no rows" in err and "protocols present: synthetic" in err and not (tmp_path / "x.csv").exists()
    assert main(["archive", "info", "--archive", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["archive", "export", str(tmp_path / "x.json"), "--archive", db]) == 0
    assert main(["archive", "import", str(tmp_path / "x.json"), "--archive", str(tmp_path / "b.sqlite")]) == 0
    assert Archive(str(tmp_path / "b.sqlite")).count() == 3


@pytest.mark.parametrize("flags,message", [
    (["--min-nodes", "5", "--max-nodes", "2"], "--min-nodes 5 is above --max-nodes 2"),
    (["--max-nodes", "1"], "--max-nodes must be in 2..6, got 1"),
    (["--max-nodes", "7"], "--max-nodes must be in 2..6, got 7"),
    (["--min-support", "0"], "--min-support must be a fraction in (0, 1], got 0"),
    (["--min-count", "0"], "--min-count must be >= 1, got 0"),
    (["--show", "0"], "--show must be >= 1"),
    ([], "holds no evaluations"),
])  # fmt: skip
def test_motifs_refuse_bad_ranges_and_an_empty_archive(tmp_path, capsys, flags, message):
    db = tmp_path / "empty.sqlite"
    Archive(db).count()  # an empty archive
    assert main(["analyze", "motifs", "--archive", str(db), "-o", str(tmp_path / "m"), *flags]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def six_graphs(tmp_path):
    """An archive whose top half is 6 cells (12 synthetic evaluations)."""
    db = str(tmp_path / "six.sqlite")
    assert main(["archive", "evaluate", "--sample", "none", "-n", "12", "--evaluator", "synthetic",
                 "--archive", db]) == 0  # fmt: skip
    return ["analyze", "motifs", "--archive", db, "--protocol", "synthetic", "--top", "0.5", "--max-nodes", "3"]


def test_motifs_min_support_is_a_fraction_converted_as_the_reference_and_says_its_count(tmp_path, capsys,
                                                                                      six_graphs):
    capsys.readouterr()
    assert main([*six_graphs, "--min-support", "0.4", "-o", str(tmp_path / "a")]) == 0
    doc = json.loads((tmp_path / "a" / "motifs.json").read_text())
    assert doc["n_graphs"] == 6 and doc["min_count"] == 2  # round(0.4 * 6) = round(2.4), as the reference
    assert min(m["support"] for m in doc["motifs"]) == 2
    assert "support >= 0.4 (2 of 6) in 6 normal cells" in capsys.readouterr().out
    assert main([*six_graphs, "--min-support", "1.0", "-o", str(tmp_path / "b")]) == 0  # 100 %, not a count
    assert all(m["support"] == 6 for m in json.loads((tmp_path / "b" / "motifs.json").read_text())["motifs"])
    assert main([*six_graphs, "--min-count", "1", "-o", str(tmp_path / "c")]) == 0
    assert min(m["support"] for m in json.loads((tmp_path / "c" / "motifs.json").read_text())["motifs"]) == 1
    capsys.readouterr()
    assert main([*six_graphs, "--min-support", "200", "-o", str(tmp_path / "d")]) == 2
    assert "--min-support must be a fraction in (0, 1], got 200; for a number of graphs use --min-count 200" \
        in capsys.readouterr().err
    assert main([*six_graphs, "--min-count", "200", "-o", str(tmp_path / "d")]) == 2
    assert "--min-count 200 is above the 6 graphs mined" in capsys.readouterr().err


def test_motifs_table_says_not_in_ref_instead_of_inf(tmp_path, capsys, six_graphs):
    capsys.readouterr()
    # every shape: a node with both inputs in the motif is never node-induced in a whole cell with other edges
    assert main([*six_graphs, "--min-support", "0.3", "--shapes", "connected", "-o", str(tmp_path / "m")]) == 0
    doc = json.loads((tmp_path / "m" / "motifs.json").read_text())
    assert doc["shapes"] == "connected" and doc["ref_edges"] == "same"
    absent = [m for m in doc["motifs"] if m["ref_incidence"] == 0]
    assert absent and all(m["norm_support"] is None and not m["in_reference"] for m in absent)
    out = capsys.readouterr().out
    assert "inf" not in out and "not in ref" in out


def test_motifs_output_that_cannot_be_a_directory_is_a_one_line_error(tmp_path, capsys, six_graphs):
    (tmp_path / "g.txt").write_text("")
    capsys.readouterr()
    assert main([*six_graphs, "-o", str(tmp_path / "g.txt")]) == 2
    err = capsys.readouterr().err
    assert "cellnas analyze: error: -o" in err and "is an existing file, not a directory" in err


@pytest.mark.parametrize("argv", [
    ["sampling", "-n", "1"],
    ["importance", "DARTS_V2"],
    ["ablate", "DARTS_V2", "--kind", "reduce"],
])  # fmt: skip
def test_evaluating_studies_refuse_an_output_that_is_a_file_before_evaluating(tmp_path, capsys, argv):
    (tmp_path / "g.txt").write_text("")
    db = tmp_path / "a.sqlite"
    out = str(tmp_path / "g.txt")
    assert main(["analyze", *argv, "--evaluator", "synthetic", "--archive", str(db), "-o", out]) == 2
    assert "cellnas analyze: error: -o" in capsys.readouterr().err
    assert not db.exists() or Archive(db).count() == 0  # nothing was evaluated


def test_wiring_arguments_are_checked(tmp_path, capsys):
    assert main(["analyze", "wiring", str(tmp_path / "nonexist")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["analyze", "wiring", str(tmp_path), str(tmp_path), str(tmp_path)]) == 2
    assert "one or two search run directories, got 3" in capsys.readouterr().err
    assert main(["analyze", "wiring", str(tmp_path), str(tmp_path)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["analyze", "wiring", str(tmp_path), "--margin", "1.5"]) == 2
    assert "must be a number >= 0 and < 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", "wiring", "--help"])
    assert "(default: 0.001" in " ".join(capsys.readouterr().out.split())


def test_motifs_min_support_1_warns_that_it_now_means_every_graph(tmp_path, capsys, six_graphs):
    capsys.readouterr()
    assert main([*six_graphs, "--min-support", "1", "-o", str(tmp_path / "a")]) == 0
    assert "--min-support 1 keeps the motifs found in every graph" in capsys.readouterr().err
