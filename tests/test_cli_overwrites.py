"""Commands that write into a directory or file the user already has, and analyses given a run of the wrong kind:
each refuses in one line that names what is there and what to do, and nothing already written is lost or mixed."""

import json
from pathlib import Path

import pytest

from cellnas.analysis.sampling import sample
from cellnas.cli import main
from cellnas.formats import load_genotype

TINY_SEARCH = dict(all_normal=True, nodes=2, channels=4, layers=2, batch_size=16, steps_per_epoch=1, progress=False,
                   plots=False)  # fmt: skip


@pytest.fixture(scope="module")
def train_run(tmp_path_factory) -> Path:
    """A finished one-epoch `cellnas train` run (meta.json kind "train", checkpoint.pt and final.pt)."""
    from cellnas.train import train

    out = tmp_path_factory.mktemp("overwrites") / "t1"
    train("DARTS_V2", dataset="digits", epochs=1, channels=4, layers=3, steps_per_epoch=1, progress=False, plots=False,
          out=out)  # fmt: skip
    assert json.loads((out / "meta.json").read_text())["kind"] == "train"
    return out


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A finished one-epoch `cellnas search` run (meta.json kind "search")."""
    from cellnas.search import search

    out = tmp_path_factory.mktemp("overwrites") / "s1"
    search(out=out, epochs=1, **TINY_SEARCH)
    assert json.loads((out / "meta.json").read_text())["kind"] == "search"
    return out


def _seeds_parent(root: Path) -> Path:
    """The parent directory of a `cellnas train --seeds 0,1` run, as far as its kind goes."""
    parent = root / "seeds"
    for seed in (0, 1):
        (parent / f"seed-{seed}").mkdir(parents=True)
    (parent / "meta.json").write_text(json.dumps({"kind": "train-seeds", "seeds": [0, 1]}))
    return parent


def _one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"cellnas {command}: error: "), err
    return err


# ------------------------------------------------------------------------------------- analyses of the wrong run


def test_analyze_wiring_of_a_train_run_says_it_is_a_train_run_not_an_unfinished_search(train_run, capsys):
    assert main(["analyze", "wiring", str(train_run)]) == 2
    err = _one_line_error(capsys, "analyze")
    assert f"{train_run} is a `cellnas train` run" in err and "`cellnas search` run" in err
    assert "--resume" not in err and "not finished an epoch" not in err
    assert not (train_run / "wiring").exists()


def test_analyze_wiring_of_a_train_seeds_parent_says_what_it_is(tmp_path, capsys):
    parent = _seeds_parent(tmp_path)
    assert main(["analyze", "wiring", str(parent)]) == 2
    err = _one_line_error(capsys, "analyze")
    assert "is a `cellnas train --seeds` run" in err and "--resume" not in err


def test_analyze_wiring_of_a_directory_that_is_no_run_asks_for_a_search_run(tmp_path, capsys):
    assert main(["analyze", "wiring", str(tmp_path)]) == 2
    err = _one_line_error(capsys, "analyze")
    assert "is not a search run directory (no alphas_history.npz)" in err and "`cellnas search` run" in err


@pytest.mark.parametrize("argv", [["landscape"], ["gradvar"], ["landscape", "TRAIN", "--compare"],
                                  ["landscape", "TRAIN", "--interpolate"]])  # fmt: skip
def test_landscape_and_gradvar_of_a_search_run_say_to_train_its_cell(train_run, search_run, capsys, argv):
    argv = [str(train_run) if a == "TRAIN" else a for a in argv]
    assert main(["analyze", *argv, str(search_run)]) == 2
    err = _one_line_error(capsys, "analyze")
    assert f"{search_run} is a `cellnas search` run, which holds no trained network" in err
    assert f"cellnas train {search_run}" in err


@pytest.mark.parametrize("study", ["landscape", "gradvar"])
def test_landscape_and_gradvar_of_a_train_seeds_parent_name_its_seed_runs(tmp_path, capsys, study):
    parent = _seeds_parent(tmp_path)
    assert main(["analyze", study, str(parent)]) == 2
    err = _one_line_error(capsys, "analyze")
    assert "is a `cellnas train --seeds` run" in err and str(parent / "seed-0") in err and "holds neither" not in err


# ------------------------------------------------------------------------------------------- cellnas sample -o


def test_sample_refuses_a_directory_holding_samples_and_keeps_them(tmp_path, capsys):
    out = tmp_path / "smp"
    assert main(["sample", "-n", "2", "--seed", "0", "-o", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["sample", "-n", "1", "--seed", "5", "-o", str(out)]) == 2
    err = _one_line_error(capsys, "sample")
    assert str(out) in err and "2 none samples (none_000.json .. none_001.json)" in err and "--replace" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a set in another format, or of another width of numbers, is the same constraint's set all the same
    assert main(["sample", "-n", "1", "--seed", "5", "--format", "darts", "-o", str(out)]) == 2
    assert main(["sample", "-n", "1000", "--seed", "5", "-o", str(out)]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sample_replace_leaves_only_the_new_set(tmp_path, capsys):
    out = tmp_path / "smp"
    assert main(["sample", "-n", "2", "--seed", "0", "-o", str(out)]) == 0
    assert main(["sample", "-n", "1", "--seed", "5", "-o", str(out), "--replace"]) == 0
    assert "replacing 2 none samples" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["none_000.json"]
    assert load_genotype(out / "none_000.json") == sample("none", 1, 5)[0]


def test_sample_writes_another_constraint_beside_earlier_samples(tmp_path):
    out = tmp_path / "smp"
    assert main(["sample", "-n", "1", "--seed", "0", "-o", str(out)]) == 0
    kept = (out / "none_000.json").read_bytes()
    assert main(["sample", "--constraint", "prim", "-n", "1", "--seed", "5", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["none_000.json", "prim_000.json"]
    assert (out / "none_000.json").read_bytes() == kept


def test_sample_replace_with_distance_is_refused(capsys):
    assert main(["sample", "--distance", "DARTS_V2", "--replace"]) == 2
    assert "--replace" in _one_line_error(capsys, "sample")


@pytest.mark.parametrize("cells", ["normal,normal", "normal, reduce,normal", "reduce,reduce"])
def test_sample_distance_refuses_a_cell_type_named_twice(capsys, cells):
    assert main(["sample", "--distance", "DARTS_V2", "--cells", cells]) == 2
    err = _one_line_error(capsys, "sample")
    assert "more than once" in err and "valid choices: normal, reduce" in err


# ------------------------------------------------------------------------------------ cellnas analyze variants


def test_variants_refuses_a_directory_holding_a_family_before_searching(tmp_path, capsys):
    out = tmp_path / "variants"
    out.mkdir()
    index = {"kind": "family", "base": {"name": "DARTS_V2", "file": "DARTS_V2.json"},
             "variants": [{"name": "c1", "file": "c1.json"}, {"name": "c2", "file": "c2.json"}]}  # fmt: skip
    (out / "index.json").write_text(json.dumps(index))
    (out / "c1.json").write_text("seed 0's c1\n")
    argv = ["analyze", "variants", "DARTS_V2", "-o", str(out), "--seed", "100", "--per-bin", "1", "--widths", "2"]
    assert main(argv) == 2
    err = _one_line_error(capsys, "analyze")
    assert str(out) in err and "family variants of DARTS_V2" in err and "--replace" in err
    assert (out / "c1.json").read_text() == "seed 0's c1\n" and json.loads((out / "index.json").read_text()) == index


def test_variants_refuses_to_overwrite_files_without_an_index(tmp_path, capsys):
    (tmp_path / "DARTS_V2_OPS1.json").write_text("mine\n")
    assert main(["analyze", "variants", "DARTS_V2", "-o", str(tmp_path), "--kind", "random_ops", "--seeds", "1"]) == 2
    assert "DARTS_V2_OPS1.json" in _one_line_error(capsys, "analyze")
    assert (tmp_path / "DARTS_V2_OPS1.json").read_text() == "mine\n"


def test_variants_replace_removes_the_earlier_variants(tmp_path, monkeypatch):
    from cellnas.plots import variants as P

    monkeypatch.setattr(P, "plot_cell_grid", lambda cells, path, title=None: Path(path).write_bytes(b"png"))
    argv = ["analyze", "variants", "DARTS_V2", "-o", str(tmp_path), "--kind", "random_ops", "--seeds"]
    assert main([*argv, "1-2"]) == 0
    assert main([*argv, "3"]) == 2
    assert main([*argv, "3", "--replace"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DARTS_V2.json", "DARTS_V2_OPS3.json", "index.json",
                                                          "variants.png"]  # fmt: skip
    assert [e["name"] for e in json.loads((tmp_path / "index.json").read_text())["variants"]] == ["DARTS_V2_OPS3"]


# ---------------------------------------------------------------------------------------------- cellnas convert


@pytest.mark.parametrize("same", ["plain", "dot", "link"])
def test_convert_refuses_to_write_over_its_input(tmp_path, monkeypatch, capsys, same):
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "DARTS_V2", "--to", "darts", "-o", "keep.darts"]) == 0
    text = Path("keep.darts").read_text()
    if same == "link":
        Path("link.darts").symlink_to("keep.darts")
    source = {"plain": "keep.darts", "dot": "./keep.darts", "link": "link.darts"}[same]
    capsys.readouterr()
    assert main(["convert", source, "--to", "nnabla", "-o", "keep.darts"]) == 2
    err = _one_line_error(capsys, "convert")
    assert "is the input file" in err and "keep.darts" in err
    assert Path("keep.darts").read_text() == text


def test_convert_refuses_to_write_over_a_run_directorys_genotype(search_run, capsys):
    before = (search_run / "genotype.json").read_bytes()
    assert main(["convert", str(search_run), "--to", "darts", "-o", str(search_run / "genotype.json")]) == 2
    assert "is the input file" in _one_line_error(capsys, "convert")
    assert (search_run / "genotype.json").read_bytes() == before


def test_convert_replaces_another_existing_file_as_before(tmp_path, capsys):
    out = tmp_path / "other.json"
    out.write_text("old\n")
    assert main(["convert", "DARTS_V2", "--to", "nnabla", "-o", str(out)]) == 0
    assert "arch_normal" in out.read_text()
    capsys.readouterr()
    assert main(["convert", "DARTS_V2", "--to", "nnabla", "-o", ""]) == 2
    assert "-o is empty" in _one_line_error(capsys, "convert")


@pytest.mark.parametrize("command", [["sample"], ["archive", "evaluate", "--sample", "none", "--evaluator",
                                                  "synthetic"]])  # fmt: skip
@pytest.mark.parametrize("n", ["0", "1000001"])
def test_the_sample_count_is_refused_outside_its_range_naming_the_flag(tmp_path, monkeypatch, capsys, command, n):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "-n", n]) == 2
    err = capsys.readouterr().err
    assert f"-n must be from 1 to 1000000 (every sample is held in memory), got {n}" in err, err
    assert not any(tmp_path.iterdir())  # no archive created
