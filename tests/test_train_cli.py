"""``cellnas train`` and ``cellnas evaluate`` end to end on tiny data (SPEC 2.2, 2.4)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from cellnas.cli import main
from cellnas.commands.train import CONFIG_FLAGS
from cellnas.train import TrainConfig

PER_BATCH = 20
# the darts-cifar10 preset shrunk to seconds: C=4, 3 cells, batches of 8, 3 steps per epoch
SHRINK = ["--channels", "4", "--layers", "3", "--batch-size", "8", "--steps-per-epoch", "3", "--no-progress"]
DIGITS = ["--dataset", "digits", "--channels", "4", "--layers", "3", "--steps-per-epoch", "3", "--no-progress"]


def _write_tiny_cifar10(root: Path) -> Path:
    """CIFAR-10 in the real pickle layout: 5 training batches and a test batch of 20 random images each."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, PER_BATCH).tolist(),
                 b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
                 b"filenames": [b"x.png"] * PER_BATCH}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": PER_BATCH,
            b"num_vis": 3072}  # fmt: skip
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """One shrunk darts-cifar10 run, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("cifar")
    data = _write_tiny_cifar10(root / "data")
    out = root / "run"
    rc = main(["train", "DARTS_V2", "--preset", "darts-cifar10", "--epochs", "1", "--data-dir", str(data),
               "--out", str(out), *SHRINK])  # fmt: skip
    assert rc == 0
    return data, out


def test_train_darts_cifar10_preset_end_to_end(cifar_run, capsys):
    data, out = cifar_run
    for name in ("config.json", "meta.json", "metrics.jsonl", "checkpoint.pt", "final.pt", "genotype.json",
                 "summary.json", "curves.png"):  # fmt: skip
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["preset"], cfg["dataset"], cfg["cutout"], cfg["drop_path"], cfg["auxiliary_weight"]) == (
        "darts-cifar10", "cifar10", 16, 0.2, 0.4)  # fmt: skip
    assert (cfg["channels"], cfg["layers"], cfg["batch_size"], cfg["epochs"]) == (4, 3, 8, 1)
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["steps"] == 3 and 0.0 <= record["test_acc"] <= 1.0


def test_no_plots_skips_the_curves_and_is_recorded(tmp_path):
    for flag, drawn in (([], True), (["--no-plots"], False)):
        out = tmp_path / f"run{len(flag)}"
        assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", *flag, "--out", str(out)]) == 0
        assert (out / "curves.png").is_file() == drawn
        assert json.loads((out / "config.json").read_text())["plots"] is drawn


def test_summary_is_printed_last_with_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"run          {out}"
    assert any(line.startswith("test error") for line in lines) and any("params" in line for line in lines)


def test_evaluate_reproduces_the_recorded_test_accuracy(cifar_run, capsys):
    data, out = cifar_run
    capsys.readouterr()
    assert main(["evaluate", str(out / "final.pt"), "--data-dir", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert report["test_acc"] == recorded["test_acc"]
    assert report["test_loss"] == pytest.approx(recorded["test_loss"], rel=1e-5)
    assert report["dataset"] == "cifar10" and report["n_test"] == PER_BATCH
    assert main(["evaluate", str(out), "--data-dir", str(data)]) == 0  # a run directory works too
    assert "test error" in capsys.readouterr().out


def test_resume_extends_a_run_and_refuses_config_changes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    assert "cannot be changed" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    assert [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_seeds_write_a_summary_with_mean_and_std(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--seeds", "0,1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == f"run          {out}" and any("+-" in line for line in printed)
    summary = json.loads((out / "summary.json").read_text())
    errors = [r["last_test_error"] for r in summary["runs"]]
    assert [r["seed"] for r in summary["runs"]] == [0, 1]
    assert summary["test_error"]["mean"] == pytest.approx(np.mean(errors))
    assert summary["test_error"]["std"] == pytest.approx(np.std(errors, ddof=1))
    for seed in (0, 1):
        assert json.loads((out / f"seed-{seed}" / "config.json").read_text())["seed"] == seed
    assert main(["train", "--resume", str(out)]) == 0  # finished seeds are re-read
    assert json.loads((out / "summary.json").read_text())["test_error"] == summary["test_error"]


def test_evaluate_a_seeds_parent_tests_each_seed_and_reports_mean_and_std(tmp_path, capsys, monkeypatch):
    import cellnas.data

    out = tmp_path / "seeds"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--seeds", "0,1", "--out", str(out)]) == 0
    trained = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    loads = []
    real_get_dataset = cellnas.data.get_dataset
    monkeypatch.setattr(cellnas.data, "get_dataset", lambda *a, **k: loads.append(a) or real_get_dataset(*a, **k))
    assert main(["evaluate", str(out), "--json"]) == 0
    assert len(loads) == 1  # the seeds share one test set: it is read once
    report = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in report["runs"]] == [0, 1] and report["dataset"] == "digits"
    errors = [r["test_error"] for r in report["runs"]]
    assert errors == pytest.approx([r["last_test_error"] for r in trained["runs"]], abs=1e-12)  # CPU fp32: exact
    assert report["test_error"]["mean"] == pytest.approx(np.mean(errors))
    assert report["test_error"]["std"] == pytest.approx(np.std(errors, ddof=1)) and report["test_error"]["n"] == 2
    assert main(["evaluate", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["seed", "0"], ["seed", "1"]]
    assert any(line.startswith("test error") and "+-" in line and "2 seeds" in line for line in lines)
    (out / "seed-1" / "final.pt").unlink()  # an unfinished seed: say which, and how to finish it
    assert main(["evaluate", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed-1" in err and f"cellnas train --resume {out}" in err


def test_config_file_is_overridden_by_flags(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"dataset": "digits", "channels": 4, "layers": 3, "epochs": 5, "seed": 9}))
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", "--config", str(conf), "--epochs", "1", "--steps-per-epoch", "2",
                 "--no-progress", "--out", str(out)]) == 0  # fmt: skip
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["epochs"], cfg["seed"], cfg["channels"], cfg["preset"]) == (1, 9, 4, "digits")


def test_unknown_preset_lists_the_valid_ones(capsys):
    assert main(["train", "DARTS_V2", "--preset", "darts-cifar11"]) == 2
    err = capsys.readouterr().err
    assert "darts-cifar10" in err and "nb301-proxy" in err and "Traceback" not in err


def test_non_empty_out_is_refused_and_left_intact(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("precious\n")
    assert main(["train", "DARTS_V2", *DIGITS, "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["metrics.jsonl"] and (out / "metrics.jsonl").read_text() == "precious\n"


def test_one_line_errors_for_bad_resume_and_bad_input(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"\x00garbage")
    for argv in (["train", "--resume", str(tmp_path / "missing")], ["train", "--resume", str(corrupt)],
                 ["train", "NOT_A_CELL", "--dataset", "digits"], ["train", "DARTS_V2", "--seeds", "0,x"],
                 ["evaluate", str(tmp_path / "nothing.pt")]):  # fmt: skip
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert (corrupt / "checkpoint.pt").read_bytes() == b"\x00garbage"


def test_every_config_value_has_a_flag():
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"preset", "extra"}
    assert fields == set(CONFIG_FLAGS)
    from cellnas.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    args = sub.parse_args(["G", "--no-auxiliary", "--mixup", "0.2", "--drop-path", "0.1", "--auxiliary-weight", "1"])
    assert (args.auxiliary, args.mixup, args.drop_path, args.auxiliary_weight) == (False, 0.2, 0.1, 1.0)
    assert not hasattr(args, "epochs")  # flags not given leave the preset's values


def test_plots_can_be_switched_off_on_resume(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-plots", "--no-progress"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


# ------------------------------------------------------------------------------------------ a search run as GENOTYPE


def _fake_search_run(path: Path, data_dir: Path | None, dataset: str = "cifar10", epochs: int = 2,
                     reached: int = 2) -> Path:
    """What `cellnas search` leaves in its run directory and `cellnas train` reads: config.json (a search config),
    meta.json (kind search; end_time once finished), metrics.jsonl (one line per epoch) and genotype.json."""
    from cellnas.formats import save_genotype
    from cellnas.zoo import get_genotype

    path.mkdir(parents=True)
    config = {"dataset": dataset, "data_dir": None if data_dir is None else str(data_dir), "epochs": epochs,
              "train_portion": 0.5, "order": 1, "arch_lr": 3e-4, "channels": 8, "layers": 5, "preset": None}
    (path / "config.json").write_text(json.dumps(config))
    done = reached >= epochs
    (path / "meta.json").write_text(json.dumps({"kind": "search", "start_time": "2026-01-01T00:00:00+00:00",
                                                "end_time": "2026-01-01T00:05:00+00:00" if done else None}))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "valid_acc": 0.5}) + "\n"
                                                for e in range(reached)))
    save_genotype(get_genotype("DARTS_V2"), path / "genotype.json")
    return path


def test_train_a_search_run_uses_the_searchs_dataset_and_preset(tmp_path, caplog):
    data = _write_tiny_cifar10(tmp_path / "data")
    search = _fake_search_run(tmp_path / "search", data)
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert main(["train", str(search), "--epochs", "1", "--out", str(out), *SHRINK]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["dataset"], cfg["preset"], cfg["data_dir"]) == ("cifar10", "darts-cifar10", str(data))
    assert (cfg["channels"], cfg["cutout"]) == (4, 16)  # flags still win over the preset
    said = [r.getMessage() for r in caplog.records if str(search) in r.getMessage() and "cifar10" in r.getMessage()]
    assert len(said) == 1 and "darts-cifar10" in said[0], said


def test_train_a_search_run_keeps_a_given_dataset(tmp_path):
    search = _fake_search_run(tmp_path / "search", tmp_path / "nowhere")
    out = tmp_path / "run"
    assert main(["train", str(search), *DIGITS, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["dataset"], cfg["preset"]) == ("digits", "digits")


def test_train_an_unfinished_search_run_warns_once_how_to_finish_it(tmp_path, caplog):
    search = _fake_search_run(tmp_path / "search", None, dataset="digits", epochs=4, reached=2)
    with caplog.at_level("INFO"):
        assert main(["train", str(search), *DIGITS, "--epochs", "1", "--steps-per-epoch", "1",
                     "--out", str(tmp_path / "run")]) == 0  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    assert "epoch 2 of 4" in warned[0] and f"cellnas search --resume {search}" in warned[0]
    caplog.clear()
    finished = _fake_search_run(tmp_path / "finished", None, dataset="digits", epochs=2, reached=2)
    with caplog.at_level("INFO"):
        assert main(["train", str(finished), *DIGITS, "--epochs", "1", "--steps-per-epoch", "1",
                     "--out", str(tmp_path / "run2")]) == 0  # fmt: skip
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ------------------------------------------------------------------------------------------ summaries and output


def test_best_epoch_of_the_json_summary_counts_from_zero_as_documented(tmp_path, capsys):
    from cellnas.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    text = " ".join(sub.format_help().split())
    assert "best_epoch" in text and "counts from 0" in text
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "2", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    errors = [json.loads(line)["test_error"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_epoch"] == int(np.argmin(errors))  # an index into metrics.jsonl, like its "epoch"
    assert f"(epoch {summary['best_epoch'] + 1})" in printed.split("best")[1]


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capsys):
    assert main(["train", "DARTS_V2", "--dataset", "digits", "-C", "4", "-L", "3", "--epochs", "1",
                 "--steps-per-epoch", "2", "--no-plots", "--out", str(tmp_path / "run")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "\r" not in err and "%|" not in err and "step/s" not in err, err


def test_a_cutout_that_blanks_every_image_is_refused(tmp_path, capsys, caplog):
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--cutout", "100", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cutout 100" in err and "8x8" in err, err
    assert not out.exists()  # nothing left behind
    with caplog.at_level("WARNING"):
        assert main(["train", "DARTS_V2", *DIGITS, "--cutout", "8", "--epochs", "1", "--steps-per-epoch", "1",
                     "--out", str(out)]) == 0  # fmt: skip
    assert any("--cutout 8" in r.getMessage() and "8x8" in r.getMessage() for r in caplog.records)


def test_out_naming_an_existing_file_says_it_is_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for extra in ([], ["--seeds", "0,1"]):
        assert main(["train", "DARTS_V2", *DIGITS, "--out", str(target), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is a file" in err and "--resume" not in err, err
    assert target.read_text() == "mine"


def test_evaluate_needs_only_the_cifar_test_batch(cifar_run, tmp_path, capsys):
    data, out = cifar_run
    damaged = tmp_path / "data"
    shutil.copytree(data, damaged)
    (damaged / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02 truncated")
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-dir", str(damaged), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert report["test_acc"] == recorded["test_acc"] and report["n_test"] == PER_BATCH


def test_evaluate_warns_when_the_class_names_differ_from_training(tmp_path, caplog, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for root, classes in ((tmp_path / "pets", ("cat", "dog")), (tmp_path / "letters", ("a", "b"))):
        for c in classes:
            (root / c).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", "--dataset", f"imagefolder:{tmp_path / 'pets'}", "--image-size", "8",
                 "-C", "4", "-L", "3", "--epochs", "1", "--steps-per-epoch", "1", "--no-progress", "--no-plots",
                 "--out", str(out)]) == 0  # fmt: skip
    with caplog.at_level("WARNING"):
        assert main(["evaluate", str(out), "--dataset", f"imagefolder:{tmp_path / 'pets'}"]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    with caplog.at_level("WARNING"):
        assert main(["evaluate", str(out), "--dataset", f"imagefolder:{tmp_path / 'letters'}"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "cat, dog" in warned[0] and "a, b" in warned[0], warned


# ------------------------------------------------------------------------------------------ the run directory's lock


def test_resuming_a_run_that_another_process_trains_fails_and_writes_nothing(tmp_path, capsys):
    from cellnas.runs import run_lock

    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    capsys.readouterr()
    with run_lock(out):  # held as another process's run would hold it (flock: per open file, so this conflicts)
        assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "in use by another cellnas process" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0  # once free, it resumes
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_out_left_with_only_a_lock_file_counts_as_empty(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("12345")  # a start killed before it wrote anything
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    assert (out / "final.pt").is_file()


@pytest.mark.parametrize("argv", [["info", "{run}"], ["draw", "{run}", "-o", "{tmp}/cell.png"],
                                  ["convert", "{run}", "--to", "darts"]])  # fmt: skip
def test_every_reader_of_an_unfinished_search_warns_once(tmp_path, caplog, argv):
    search = _fake_search_run(tmp_path / "search", None, dataset="digits", epochs=4, reached=2)
    with caplog.at_level("INFO"):
        assert main([a.format(run=search, tmp=tmp_path) for a in argv]) == 0
    warned = [r.getMessage() for r in caplog.records if "unfinished search" in r.getMessage()]
    assert len(warned) == 1 and "epoch 2 of 4" in warned[0], warned
