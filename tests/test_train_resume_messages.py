"""What ``cellnas train --resume`` (and its neighbours) say when asked the wrong thing: a flag a fresh run refuses,
a search run given to train and a train run to search, a directory that already holds a run, a search config given
to train, and a damaged ``final.pt``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from cellnas import runs
from cellnas.cli import main

NET = ["-C", "4", "-L", "3", "--steps-per-epoch", "1", "--no-progress", "--no-plots", "--threads", "1"]
SEARCH = ["-C", "4", "-L", "3", "--batch-size", "8", "--steps-per-epoch", "1", "--epochs", "1", "--no-progress",
          "--no-plots", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """One finished 2-epoch training run and one finished 1-epoch search, shared (copy one before changing it)."""
    root = tmp_path_factory.mktemp("runs")
    train_run, search_run = root / "t1", root / "s1"
    assert main(["train", "DARTS_V2", "--dataset", "digits", *NET, "--epochs", "2", "--out", str(train_run)]) == 0
    assert main(["search", *SEARCH, "--out", str(search_run)]) == 0
    return train_run, search_run


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != runs.LOCK_FILE}


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------ 1, 2. --epochs on a resume


@pytest.mark.parametrize("epochs", ["-1", "0"])
def test_a_bad_epochs_on_resume_blames_the_flag_not_the_saved_config(finished, capsys, epochs):
    train_run, _ = finished
    before = _files(train_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(train_run), "--epochs", epochs, "--threads", "1"]) == 2
    err = _error(capsys)
    assert err == f"cellnas train: error: cannot resume {train_run}: --epochs must be >= 1, got {epochs}", err
    assert "saved config" not in err
    assert _files(train_run) == before  # refused before anything is written


def test_fewer_epochs_than_a_finished_run_has_run_are_refused(finished, capsys):
    train_run, _ = finished
    before = _files(train_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(train_run), "--epochs", "1", "--threads", "1"]) == 2
    err = _error(capsys)
    assert f"--epochs 1 is fewer than the 2 epochs {train_run} has already run" in err, err
    assert _files(train_run) == before


def test_a_saved_config_refused_now_is_still_blamed_on_the_saved_config(finished, tmp_path, capsys):
    """The other side of the check: a value in the checkpoint that this cellnas refuses (an earlier one accepted)."""
    run = tmp_path / "t"
    shutil.copytree(finished[0], run)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    state["config"]["grad_clip"] = -1.0
    torch.save(state, run / "checkpoint.pt")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "grad_clip": -1.0}))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--threads", "1"]) == 2
    err = _error(capsys)
    assert "its saved config is refused now (--grad-clip must be positive" in err, err


# ------------------------------------------------------------------------------------------ 3. the kind of a run


def test_train_resume_of_a_search_run_names_the_search_command(finished, capsys):
    _, search_run = finished
    capsys.readouterr()
    assert main(["train", "--resume", str(search_run), "--threads", "1"]) == 2
    err = _error(capsys)
    assert f"{search_run}: it is a `cellnas search` run" in err, err
    assert f"`cellnas search --resume {search_run}`" in err


def test_search_resume_of_a_train_run_names_the_train_command(finished, capsys):
    train_run, _ = finished
    capsys.readouterr()
    assert main(["search", "--resume", str(train_run), "--no-progress", "--threads", "1"]) == 2
    err = _error(capsys)
    assert f"{train_run}: it is a `cellnas train` run" in err, err
    assert f"`cellnas train --resume {train_run}`" in err


def test_a_checkpoint_of_the_other_kind_is_named_without_meta_json(finished, tmp_path, capsys):
    run = tmp_path / "s"
    shutil.copytree(finished[1], run)
    (run / "meta.json").unlink()
    (run / "config.json").write_text("{}")  # nothing but the checkpoint says what it is
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--threads", "1"]) == 2
    assert f"`cellnas search --resume {run}`" in _error(capsys)


def test_out_of_an_existing_run_names_the_command_that_resumes_it(finished, tmp_path, capsys):
    train_run, search_run = finished
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    cases = [(["train", "DARTS_V2", "--dataset", "digits"], search_run, f"`cellnas search --resume {search_run}`"),
             (["search"], train_run, f"`cellnas train --resume {train_run}`"),
             (["train", "DARTS_V2", "--dataset", "digits"], train_run, f"`cellnas train --resume {train_run}`")]
    for argv, out, hint in cases:
        capsys.readouterr()
        assert main([*argv, "--out", str(out), "--threads", "1"]) == 2
        err = _error(capsys)
        assert hint in err, err
    assert main(["train", "DARTS_V2", "--dataset", "digits", "--out", str(junk), "--threads", "1"]) == 2
    err = _error(capsys)
    assert "already exists and is not empty" in err and "resume" not in err, err
    assert (junk / "notes.txt").read_text() == "mine"


def test_a_search_config_given_to_train_is_named_in_one_short_line(finished, tmp_path, capsys):
    _, search_run = finished
    capsys.readouterr()
    assert main(["train", "DARTS_V2", "--config", str(search_run / "config.json"), "--threads", "1"]) == 2
    err = _error(capsys)
    assert "is a `cellnas search` config" in err and f"`cellnas train {search_run}`" in err, err
    assert len(err.replace(str(search_run), "DIR")) < 300 and "arch_lr" not in err  # paths vary in length
    loose = tmp_path / "search-config.json"  # outside its run directory: no run to name
    shutil.copy(search_run / "config.json", loose)
    assert main(["train", "DARTS_V2", "--config", str(loose), "--threads", "1"]) == 2
    err = _error(capsys)
    assert "is a `cellnas search` config" in err and len(err.replace(str(loose), "FILE")) < 300, err


# ------------------------------------------------------------------------------------------ 4. a damaged final.pt


def test_a_damaged_final_pt_is_written_again_on_resume_and_evaluate_says_how(finished, tmp_path, capsys, caplog):
    train_run, _ = finished
    run = tmp_path / "t2"
    shutil.copytree(train_run, run)
    (run / "final.pt").write_bytes((train_run / "final.pt").read_bytes()[:3000])
    capsys.readouterr()
    assert main(["evaluate", str(run), "--threads", "1"]) == 2
    err = _error(capsys)
    assert f"cannot read {run / 'final.pt'}" in err and f"`cellnas train --resume {run}`" in err, err
    with caplog.at_level(logging.WARNING):
        assert main(["train", "--resume", str(run), "--threads", "1"]) == 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "final.pt" in r.getMessage()]
    assert len(said) == 1 and "writing it again" in said[0], said
    original = torch.load(train_run / "final.pt", weights_only=True)
    rebuilt = torch.load(run / "final.pt", weights_only=True)
    assert original["test"] == rebuilt["test"]
    assert all(torch.equal(original["state_dict"][k], v) for k, v in rebuilt["state_dict"].items())
    capsys.readouterr()
    assert main(["evaluate", str(run), "--threads", "1"]) == 0
    assert "test error" in capsys.readouterr().out


def test_resuming_an_intact_finished_run_reads_and_writes_nothing(finished, capsys):
    train_run, _ = finished
    before = _files(train_run)
    assert main(["train", "--resume", str(train_run), "--threads", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run          {train_run}"
    assert _files(train_run) == before
    summary = json.loads((train_run / "summary.json").read_text())
    assert summary["epochs"] == 2


def test_a_bad_epochs_on_a_seeds_resume_names_the_parent_and_writes_nothing(tmp_path, capsys):
    parent = tmp_path / "seeds"
    argv = ["train", "DARTS_V2", "--dataset", "digits", *NET, "--epochs", "1", "--seeds", "0", "--out", str(parent)]
    assert main(argv) == 0
    before = _files(parent)
    capsys.readouterr()
    assert main(["train", "--resume", str(parent), "--epochs", "0", "--threads", "1"]) == 2
    assert _error(capsys) == f"cellnas train: error: cannot resume {parent}: --epochs must be >= 1, got 0"
    assert _files(parent) == before  # no session recorded for a resume refused


def test_a_training_config_given_to_search_is_named_in_one_short_line(finished, capsys):
    train_run, search_run = finished
    capsys.readouterr()
    assert main(["search", "--config", str(train_run / "config.json"), "--threads", "1"]) == 2
    err = _error(capsys)
    assert "is a `cellnas train` config, not a search one" in err, err
    assert len(err.replace(str(train_run), "DIR")) < 300 and "drop_path" not in err
