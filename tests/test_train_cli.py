"""``cellnas train`` and ``cellnas evaluate`` end to end on tiny data (SPEC 2.2, 2.4)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
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
