"""Run-control defects found by a new-user review: where a run's data is, full disks and read-only directories,
divergence, option checks, what a resume records, --seeds, --config with --preset, and wording."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cellnas import runs
from cellnas.cli import main
from cellnas.errors import FormatError, RunError
from cellnas.train import TrainInterrupted, train
from cellnas.train import loop as loop_mod

TINY = dict(dataset="digits", channels=4, layers=3, batch_size=64, progress=False, plots=False)
NET = ["-C", "4", "-L", "3", "--steps-per-epoch", "2", "--no-progress", "--no-plots"]
DIGITS = ["--dataset", "digits", *NET]
CIFAR_NET = [*NET, "--batch-size", "8"]
SEARCH = ["-C", "4", "-L", "3", "--batch-size", "8", "--steps-per-epoch", "2", "--epochs", "1", "--no-progress",
          "--no-plots"]  # fmt: skip


def _write_tiny_cifar10(root: Path, seed: int = 0) -> Path:
    """CIFAR-10 in the real pickle layout: 5 training batches and a test batch of 20 random images each."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"labels": rng.integers(0, 10, 20).tolist(), b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != runs.LOCK_FILE}


# ------------------------------------------------------------------------------------------ 1. the data folder


def test_a_run_started_without_data_dir_records_the_folder_it_read_and_finds_it_from_elsewhere(tmp_path, monkeypatch):
    here = tmp_path / "here"
    _write_tiny_cifar10(here / "data")
    monkeypatch.chdir(here)
    assert main(["search", "--dataset", "cifar10", *SEARCH, "--out", "s"]) == 0
    assert main(["train", "DARTS_V2", "--dataset", "cifar10", *CIFAR_NET, "--epochs", "1", "--out", "t"]) == 0
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", "d"]) == 0
    assert _config(here / "s")["data_dir"] == _config(here / "t")["data_dir"] == str(here / "data")
    assert _config(here / "d")["data_dir"] is None  # digits reads no files
    (tmp_path / "else" / "data").mkdir(parents=True)  # another ./data, empty: never read in place of the runs' own
    monkeypatch.chdir(tmp_path / "else")
    assert main(["train", str(here / "s"), *CIFAR_NET, "--epochs", "1", "--out", "from-search"]) == 0
    assert _config(tmp_path / "else" / "from-search")["data_dir"] == str(here / "data")
    assert main(["train", "--resume", str(here / "t"), "--epochs", "2"]) == 0
    assert main(["search", "--resume", str(here / "s"), "--epochs", "2", "--no-progress", "--no-plots"]) == 0


def test_an_image_folder_dataset_is_recorded_with_an_absolute_path(tmp_path, monkeypatch):
    from cellnas.search.config import SearchConfig
    from cellnas.train.config import TrainConfig

    monkeypatch.chdir(tmp_path)
    for cfg in (TrainConfig(dataset="imagefolder:pets"), SearchConfig(dataset="imagefolder:pets")):
        cfg.validate()
        assert (cfg.dataset, cfg.data_dir) == (f"imagefolder:{tmp_path / 'pets'}", None)


def test_help_states_the_real_default_data_folder():
    from cellnas.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in ("search", "train"):
        (action,) = [a for a in commands[name]._actions if "--data-dir" in a.option_strings]
        assert "./data in the current directory" in action.help and "default: none" not in action.help


# ------------------------------------------------------------------------------------------ 2. full disk, read-only


def _fail_writes_of(monkeypatch, name: str, when=lambda: True) -> None:
    """``os.fsync`` of a file whose name holds ``name`` fails with ENOSPC while ``when()``, as on a full disk."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to tell which file is synced")
    real = os.fsync

    def fsync(fd):
        if when() and name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(runs.os, "fsync", fsync)


def test_a_full_disk_stops_training_with_one_line_and_the_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    argv = ["train", "DARTS_V2", *DIGITS, "--epochs", "2"]
    assert main([*argv, "--out", str(tmp_path / "straight")]) == 0
    out = tmp_path / "run"
    real_step, steps = loop_mod._Training.step, []
    monkeypatch.setattr(loop_mod._Training, "step", lambda self: (steps.append(1), real_step(self)))
    _fail_writes_of(monkeypatch, "checkpoint.pt", when=lambda: len(steps) > 2)  # epoch 2's checkpoint
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot write {out / 'checkpoint.pt'}: No space left on device" in err
    assert "the last checkpoint (after epoch 1/2) is kept" in err and f"cellnas train --resume {out}" in err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0
    a = torch.load(tmp_path / "straight" / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_at_the_start_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    _fail_writes_of(monkeypatch, "checkpoint.pt")
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device; the run had not started, nothing is kept" in err and "Traceback" not in err
    assert not out.exists()


def test_a_full_disk_stops_a_search_with_one_line(tmp_path, monkeypatch, capsys):
    _fail_writes_of(monkeypatch, "checkpoint.pt")
    out = tmp_path / "run"
    assert main(["search", *SEARCH, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {out / 'checkpoint.pt'}: No space left on device" in err
    assert "no checkpoint yet" in err and "free some space" in err


def test_a_full_disk_mid_search_says_how_to_continue(tmp_path, monkeypatch, capsys):
    import cellnas.search.loop as search_loop

    out = tmp_path / "run"
    real_step, steps = search_loop._Search.step, []
    monkeypatch.setattr(search_loop._Search, "step", lambda self, lr: (steps.append(1), real_step(self, lr)))
    _fail_writes_of(monkeypatch, "checkpoint.pt", when=lambda: len(steps) > 2)  # epoch 2's checkpoint
    assert main(["search", *SEARCH, "--epochs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the last checkpoint is kept" in err
    assert f"cellnas search --resume {out}" in err
    monkeypatch.undo()
    assert main(["search", "--resume", str(out), "--no-progress", "--no-plots"]) == 0


def test_a_failed_torch_save_keeps_the_previous_file_and_names_the_reason(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    runs.atomic_torch_save({"good": torch.ones(3)}, path)
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

        def fileno(self):
            return self.fh.fileno()

    monkeypatch.setattr(runs.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(runs.WriteFailed, match="No space left on device; the last checkpoint is kept"):
        runs.atomic_torch_save({"w": torch.randn(100_000)}, path)  # never torch's "unexpected pos" RuntimeError
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def _read_only_lock(monkeypatch) -> None:
    """Opening a lock file for writing fails as on a read-only mount (root ignores chmod)."""
    real = os.open

    def open_(path, flags, *args, **kwargs):
        if str(path).endswith(runs.LOCK_FILE) and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(runs.os, "open", open_)


def test_resuming_a_run_in_a_read_only_directory(tmp_path, monkeypatch, capsys):
    train_run, search_run = tmp_path / "train", tmp_path / "search"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(train_run)]) == 0
    assert main(["search", *SEARCH, "--out", str(search_run)]) == 0
    before = {run: _snapshot(run) for run in (train_run, search_run)}
    capsys.readouterr()
    _read_only_lock(monkeypatch)
    assert main(["train", "--resume", str(train_run)]) == 0  # finished: its summary, nothing to write
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"run          {train_run}"
    assert main(["search", "--resume", str(search_run)]) == 0  # likewise
    assert str(search_run) in capsys.readouterr().out
    for argv in (["train", "--resume", str(train_run), "--epochs", "2"],
                 ["search", "--resume", str(search_run), "--epochs", "2"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is read-only (Read-only file system)" in err and "cp -r" in err, err
    assert {run: _snapshot(run) for run in (train_run, search_run)} == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_resuming_a_run_in_a_directory_without_write_permission(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(run)]) == 0
    run.chmod(0o555)
    try:
        assert main(["train", "--resume", str(run)]) == 0
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
        assert "is read-only" in capsys.readouterr().err
    finally:
        run.chmod(0o755)


# ------------------------------------------------------------------------------------------ 3. search --resume options


def test_search_resume_takes_data_dir_device_and_download(tmp_path, monkeypatch):
    data = _write_tiny_cifar10(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["search", "--dataset", "cifar10", "--data-dir", str(data), *SEARCH, "--out", str(out)]) == 0
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    argv = ["search", "--resume", str(out), "--epochs", "2", "--device", "cpu", "--no-progress", "--no-plots"]
    assert main([*argv, "--data-dir", str(moved)]) == 0
    assert _config(out)["data_dir"] == str(moved)
    sessions = json.loads((out / "meta.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["resumed_from"]["epoch"] == 1


def test_search_resume_refuses_other_images_of_the_same_shape(tmp_path, capsys):
    data = _write_tiny_cifar10(tmp_path / "data")
    out = tmp_path / "run"
    assert main(["search", "--dataset", "cifar10", "--data-dir", str(data), *SEARCH, "--out", str(out)]) == 0
    other = _write_tiny_cifar10(tmp_path / "other", seed=1)
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--epochs", "2", "--data-dir", str(other), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "differ from the data" in err and f"--data-dir {data}" in err
    assert _config(out)["data_dir"] == str(data)  # nothing rewritten


def test_a_search_checkpoint_is_written_only_when_every_buffer_is_finite(tmp_path, monkeypatch, capsys):
    import cellnas.search.loop as search_loop

    real_step = search_loop._Search.step

    def poisoning_step(self, lr):
        real_step(self, lr)
        if self.global_step == 1:  # the second step: a batch-norm running variance goes bad, the losses stay finite
            next(b for n, b in self.model.named_buffers() if n.endswith("running_var")).fill_(float("nan"))

    monkeypatch.setattr(search_loop._Search, "step", poisoning_step)
    out = tmp_path / "run"
    assert main(["search", *SEARCH, "--checkpoint-every", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "running_var (a buffer)" in err and "diverged" in err
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["global_step"] == 1 and all(torch.isfinite(b).all() for b in state["model"].values()
                                              if b.is_floating_point())  # fmt: skip


def test_search_resume_names_what_may_change(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *SEARCH, "--out", str(out)]) == 0
    assert main(["search", "--resume", str(out), "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "only --epochs" in err and "(got --lr)" in err


# ------------------------------------------------------------------------------------------ 4. divergence


def test_a_checkpoint_is_written_only_when_every_buffer_is_finite(tmp_path, monkeypatch):
    real_step = loop_mod._Training.step

    def poisoning_step(self):
        real_step(self)
        if self.global_step == 4:  # the 5th step, the 2nd of epoch 2: batch norm's running variance overflows
            name = next(n for n, _ in self.model.named_buffers() if n.endswith("running_var"))
            dict(self.model.named_buffers())[name].fill_(float("inf"))

    monkeypatch.setattr(loop_mod._Training, "step", poisoning_step)
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r"non-finite .*running_var \(a buffer\) at epoch 2 step 3") as err:
        train("DARTS_V2", out=out, epochs=3, steps_per_epoch=3, checkpoint_every=2, **TINY)
    assert "the last good checkpoint (after step 1/3 of epoch 2/3) is kept" in str(err.value)
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)
    assert runs.non_finite_tensor(state["model"]) is None
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1  # the diverged epoch is not recorded


def test_an_absurdly_large_loss_is_warned_about_once(tmp_path, monkeypatch, caplog):
    real = loop_mod.mixed_cross_entropy
    monkeypatch.setattr(loop_mod, "mixed_cross_entropy", lambda *a, **k: real(*a, **k) * 1e4)
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        train("DARTS_V2", out=tmp_path / "run", epochs=2, steps_per_epoch=2, auxiliary=False, **TINY)
    warned = [r.getMessage() for r in caplog.records if "diverging" in r.getMessage()]
    assert len(warned) == 1 and "epoch 1" in warned[0] and "ln(10 classes)" in warned[0], warned
    caplog.clear()
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        train("DARTS_V2", out=tmp_path / "sane", epochs=1, steps_per_epoch=2, **TINY)
    assert "diverging" not in caplog.text


# ------------------------------------------------------------------------------------------ 5. non-finite options


@pytest.mark.parametrize("flag", ["--lr", "--lr-min", "--lr-gamma", "--momentum", "--weight-decay",
                                  "--label-smoothing", "--mixup", "--auxiliary-weight", "--drop-path"])  # fmt: skip
@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-inf"])
def test_every_float_option_of_train_must_be_finite(flag, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert f"{flag} must be a finite number" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before any run directory


@pytest.mark.parametrize("value", ["nan", "-inf", "0"])
def test_grad_clip_takes_inf_as_no_clipping_and_refuses_the_rest(value, tmp_path, monkeypatch, capsys):
    """--grad-clip inf (no clipping) was accepted before, and runs saved with it must resume."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", f"--grad-clip={value}"]) == 2
    assert "--grad-clip must be positive (inf: no clipping)" in capsys.readouterr().err
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--grad-clip=inf", "--out", "ok"]) == 0


# ------------------------------------------------------------------------------------------ 6. a train run as GENOTYPE


def test_training_a_train_run_directory_uses_its_dataset_and_says_so(tmp_path, caplog):
    data = _write_tiny_cifar10(tmp_path / "data")
    first = tmp_path / "first"
    assert main(["train", "DARTS_V2", "--dataset", "cifar10", "--data-dir", str(data), *CIFAR_NET, "--epochs", "1",
                 "--out", str(first)]) == 0  # fmt: skip
    with caplog.at_level(logging.INFO, logger="cellnas"):
        assert main(["train", str(first), *CIFAR_NET, "--epochs", "1", "--out", str(tmp_path / "again")]) == 0
    cfg = _config(tmp_path / "again")
    assert (cfg["dataset"], cfg["data_dir"], cfg["preset"]) == ("cifar10", str(data), "darts-cifar10")
    assert f"the dataset of the training run {first}" in caplog.text
    assert main(["train", str(first), *DIGITS, "--epochs", "1", "--out", str(tmp_path / "digits")]) == 0
    assert _config(tmp_path / "digits")["dataset"] == "digits"  # a dataset given wins


# ------------------------------------------------------------------------------------------ 7. resume bookkeeping


def test_a_resume_with_other_epochs_says_what_changes_and_is_recorded(tmp_path, caplog, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "2", "--drop-path", "0.2", "--out", str(out)]) == 0
    argv = ["train", "--resume", str(out), "--epochs", "3"]
    monkeypatch.setattr(sys, "argv", ["cellnas", *argv])  # meta.json records the command line of each session
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert main(argv) == 0
    assert "changes" in caplog.text and "from 2 to 3 epochs (config.json now says 3)" in caplog.text
    assert "cosine learning rate is recomputed over 3 epochs" in caplog.text and "drop-path now ramps" in caplog.text
    assert _config(out)["epochs"] == 3
    meta = json.loads((out / "meta.json").read_text())
    assert [s["resumed_from"] and s["resumed_from"]["epoch"] for s in meta["sessions"]] == [None, 2]
    assert "--resume" in meta["sessions"][1]["command_line"] and meta["sessions"][1]["device"] == meta["device"]
    assert meta["end_time"] is not None


def test_a_resume_refuses_other_data_and_says_when_the_folder_moved(tmp_path, capsys, caplog):
    data = _write_tiny_cifar10(tmp_path / "data")
    other = _write_tiny_cifar10(tmp_path / "other", seed=1)  # other images of the same shape
    out = tmp_path / "run"
    assert main(["train", "DARTS_V2", "--dataset", "cifar10", "--data-dir", str(data), *CIFAR_NET, "--epochs", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2", "--data-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert "differ from the data" in err and f"--data-dir {data}" in err
    assert _snapshot(out) == before
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    with caplog.at_level(logging.INFO, logger="cellnas"):
        assert main(["train", "--resume", str(out), "--epochs", "2", "--data-dir", str(copy)]) == 0
    assert f"now reads its data from {copy} (before: {data})" in caplog.text
    assert _config(out)["data_dir"] == str(copy)


def test_a_resumed_epoch_counts_the_time_of_every_session(tmp_path, monkeypatch):
    real_step = loop_mod._Training.step

    def slow_step(self):
        time.sleep(0.2)
        real_step(self)
        if self.global_step == 1:  # Ctrl-C during the 2nd of 4 steps
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop_mod._Training, "step", slow_step)
    kw = dict(TINY, epochs=1, steps_per_epoch=4)
    for name in ("run", "old"):
        with pytest.raises(TrainInterrupted):
            train("DARTS_V2", out=tmp_path / name, **kw)
    old = tmp_path / "old" / "checkpoint.pt"
    state = torch.load(old, weights_only=False)
    del state["epoch_start_elapsed"]  # as a checkpoint written before it was recorded
    torch.save(state, old)
    monkeypatch.setattr(loop_mod._Training, "step", lambda self: (time.sleep(0.2), real_step(self)))
    (record,) = train(resume=tmp_path / "run").metrics
    assert record["epoch_time_s"] >= 0.75  # four steps of 0.2 s, two in each session
    assert record["epoch_time_s"] == pytest.approx(record["time_s"])
    assert train(resume=tmp_path / "old").metrics[0]["epoch_time_s"] >= 0.35  # still resumes: this session's


def test_a_resume_refuses_fewer_epochs_than_it_started(tmp_path, monkeypatch, capsys):
    real_step = loop_mod._Training.step

    def interrupted_step(self):
        real_step(self)
        if self.global_step == 2:  # the first step of epoch 2
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop_mod._Training, "step", interrupted_step)
    with pytest.raises(TrainInterrupted):
        train("DARTS_V2", out=tmp_path / "run", epochs=3, steps_per_epoch=2, **TINY)
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "1"]) == 2
    assert "--epochs 1 is fewer than the 2 epochs" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ 8. --seeds


def test_one_seed_has_no_standard_deviation_and_seed_with_seeds_is_refused(tmp_path, capsys):
    out = tmp_path / "one"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--seeds", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one seed" in printed and "+-" not in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_error"]["std"] is None and summary["test_error"]["n"] == 1 and "null" in summary["std"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["device"] == json.loads((out / "seed-3" / "meta.json").read_text())["device"] != "auto"
    assert "seed" not in json.loads((out / "seeds.json").read_text())["config"]
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0  # evaluate of the one-seed parent: null std there too
    assert json.loads(capsys.readouterr().out)["test_error"]["std"] is None
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "one seed: no std" in printed and "+-" not in printed
    both = tmp_path / "both"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--seeds", "0,1", "--seed", "5", "--out",
                 str(both)]) == 2  # fmt: skip
    assert "--seed 5 cannot be combined with --seeds" in capsys.readouterr().err and not both.exists()


# ------------------------------------------------------------------------------------------ 9. --config with --preset


def test_a_complete_config_file_refuses_another_preset_and_a_partial_one_applies_over_it(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(first)]) == 0
    capsys.readouterr()
    refused = tmp_path / "refused"
    argv = ["train", "DARTS_V2", "--config", str(first / "config.json"), "--epochs", "1", "--out", str(refused)]
    assert main([*argv, "--preset", "darts-cifar10"]) == 2
    err = capsys.readouterr().err
    assert "names its own preset (digits" in err and "drop --preset" in err and not refused.exists()
    assert main([*argv, "--preset", "digits"]) == 0  # the preset it names: nothing is contradicted
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"channels": 4, "layers": 3, "steps_per_epoch": 1, "epochs": 1, "plots": False}))
    out = tmp_path / "partial"
    assert main(["train", "DARTS_V2", "--config", str(partial), "--preset", "digits", "--no-progress", "--out",
                 str(out)]) == 0  # fmt: skip
    cfg = _config(out)
    assert (cfg["preset"], cfg["channels"], cfg["epochs"], cfg["dataset"]) == ("digits", 4, 1, "digits")


# ------------------------------------------------------------------------------------------ 10. wording


def test_the_busy_warning_does_not_ask_for_the_thread_count_already_given():
    from cellnas.cpu import busy_warning

    message = busy_warning(1, others=2, cores=2)
    assert message is not None and "--threads" not in message and "idle" in message
    assert "Use --threads 1" in busy_warning(2, others=1, cores=2)


def test_sigterm_stops_a_training_naming_the_signal_and_exits_143(tmp_path, monkeypatch, capsys, caplog):
    real_step = loop_mod._Training.step

    def terminated_step(self):
        real_step(self)
        if self.global_step == 0:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(loop_mod._Training, "step", terminated_step)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert main(["train", "DARTS_V2", *DIGITS, "--epochs", "1", "--out", str(out)]) == 143
    assert "SIGTERM received; another SIGTERM or Ctrl-C aborts at once" in caplog.text
    assert "Ctrl-C again" not in caplog.text
    err = capsys.readouterr().err
    assert err.startswith("cellnas train: SIGTERM received; interrupted") and f"--resume {out}" in err


def test_search_curves_have_an_integer_epoch_axis(tmp_path, monkeypatch):
    import cellnas.plots.search as plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    metrics = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "search_loss": 1.0, "search_acc": 0.5}
               for e in range(3)]  # fmt: skip
    plots.plot_curves(metrics, tmp_path / "curves.png")
    for ax in figures[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


@pytest.mark.parametrize("content, kind", [(b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
                                           (b"PK\x03\x04" + bytes(64), "a PyTorch .pt file"),
                                           (b"\x00\x01\x02", "NUL bytes")])  # fmt: skip
def test_a_binary_file_given_as_a_genotype_is_named_as_such(content, kind, tmp_path, capsys):
    from cellnas.formats import load_genotype

    path = tmp_path / "cell.png"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=f"{path} is a binary file .*{kind}.*not a genotype"):
        load_genotype(path)
    assert main(["info", str(path)]) == 2
    assert "codec" not in capsys.readouterr().err


@pytest.mark.parametrize("which, key", [("a_optimizer", "exp_avg_sq"), ("w_optimizer", "momentum_buffer")])
def test_a_search_checkpoint_needs_finite_optimizer_state(tmp_path, monkeypatch, which, key):
    from cellnas.search import loop as search_loop

    real_step = search_loop._Search.step

    def poisoning_step(self, lr):
        real_step(self, lr)
        if self.global_step == 2:  # the 3rd step, the 1st of epoch 2: an optimizer's state overflows
            opt = getattr(self, which)
            first = next(iter(opt.state.values()))
            first[key].fill_(float("inf"))

    monkeypatch.setattr(search_loop._Search, "step", poisoning_step)
    out = tmp_path / "run"
    with pytest.raises(RunError, match=rf"non-finite {key} in the .* state .* at epoch 2 step 1: the search diverged"):
        search_loop.search(channels=4, layers=3, batch_size=8, steps_per_epoch=2, epochs=2, checkpoint_every=1,
                           progress=False, plots=False, out=out)  # fmt: skip
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1  # the checkpoint of epoch 1 is kept
    assert all(runs.non_finite_tensor(st) is None for st in state[which]["state"].values())
