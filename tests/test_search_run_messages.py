"""What `cellnas search` says when a run cannot go on: a divergence before the first checkpoint, a bad --epochs on
--resume, a resume that fails while setting up, a read-only new --out, an empty --out."""

from __future__ import annotations

import errno
import json
import logging
import os

import pytest
import torch

from cellnas import runs
from cellnas.cli import main

SEARCH = ["--threads", "1", "-C", "4", "-L", "3", "--nodes", "2", "--batch-size", "8", "--no-progress", "--no-plots"]
SHORT = [*SEARCH, "--epochs", "1", "--steps-per-epoch", "2"]


def _snapshot(run) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def _err(capsys, caplog) -> str:
    return capsys.readouterr().err + caplog.text


@pytest.fixture
def diverged(tmp_path, capsys, caplog):
    """A dsnas search that diverges in its first epoch, before its first checkpoint, and what it said."""
    out = tmp_path / "d1"
    argv = ["search", *SEARCH, "--mode", "dsnas", "--epochs", "2", "--steps-per-epoch", "5", "--lr", "1e8",
            "--grad-clip", "1e30", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = _err(capsys, caplog)
    caplog.clear()
    return out, argv, err


def test_divergence_before_the_first_checkpoint_says_there_is_nothing_to_resume(diverged):
    out, _, err = diverged
    assert not (out / "checkpoint.pt").exists()
    assert "diverged before its first checkpoint" in err and "nothing to resume" in err, err
    assert "another --out" in err and f"removing {out}" in err and "--lr" in err, err
    assert "is kept" not in err, err
    assert json.loads((out / "meta.json").read_text())["stopped"]["reason"].startswith("non-finite"), err


def test_resume_of_a_run_without_checkpoint_says_it_stopped_before_it(diverged, capsys, caplog):
    out, argv, _ = diverged
    before = _snapshot(out)
    assert main(["search", "--resume", str(out)]) == 2
    err = _err(capsys, caplog).strip()
    assert len(err.splitlines()) == 1, err
    assert "stopped before its first checkpoint (non-finite" in err and "nothing to resume" in err, err
    assert "was it a cellnas" not in err and "another --out" in err, err
    caplog.clear()
    assert main(argv) == 2  # the same command again: refused, saying why and what to do
    err = _err(capsys, caplog)
    assert "stopped before its first checkpoint" in err and "choose another --out" in err, err
    assert "--resume" not in err, err
    assert _snapshot(out) == before  # nothing lost


def test_resume_without_a_recorded_reason_invents_none(diverged, capsys, caplog):
    out, _, _ = diverged
    meta = json.loads((out / "meta.json").read_text())
    del meta["stopped"]
    (out / "meta.json").write_text(json.dumps(meta))
    assert main(["search", "--resume", str(out)]) == 2
    err = _err(capsys, caplog)
    assert "stopped before its first checkpoint (no reason was recorded)" in err, err


@pytest.fixture
def finished(tmp_path, capsys, caplog):
    out = tmp_path / "am"
    assert main(["search", *SHORT, "--out", str(out)]) == 0
    capsys.readouterr()
    caplog.clear()
    return out


@pytest.mark.parametrize("epochs", ["0", "-5"])
def test_resume_with_a_bad_epochs_blames_the_command_line(finished, capsys, caplog, epochs):
    assert main(["search", "--resume", str(finished), "--epochs", epochs]) == 2
    err = _err(capsys, caplog)
    assert f"--epochs must be >= 1, got {epochs}" in err and "saved config" not in err, err
    assert "that version" not in err, err


def test_resume_that_cannot_set_up_announces_no_new_epochs(finished, capsys, caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    before = _snapshot(finished)
    with caplog.at_level(logging.INFO):
        assert main(["search", "--resume", str(finished), "--device", "cuda", "--epochs", "3"]) == 2
    err = _err(capsys, caplog)
    assert "no CUDA device is available" in err and "changes" not in err, err
    assert json.loads((finished / "config.json").read_text())["epochs"] == 1
    assert _snapshot(finished) == before
    caplog.clear()
    with caplog.at_level(logging.INFO):  # a resume that goes on still says so, once config.json does
        assert main(["search", "--resume", str(finished), "--epochs", "2"]) == 0
    assert "--epochs 2 changes" in caplog.text and "config.json now says 2" in caplog.text


def test_new_run_into_a_read_only_empty_directory_asks_for_a_writable_out(tmp_path, capsys, caplog, monkeypatch):
    out = tmp_path / "ro555"
    out.mkdir()
    real = os.open

    def open_(path, flags, *args, **kwargs):  # as for a non-root user in a 555 directory (root ignores chmod)
        if str(path).endswith(runs.LOCK_FILE) and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(runs.os, "open", open_)
    assert main(["search", *SHORT, "--out", str(out)]) == 2
    err = _err(capsys, caplog).strip()
    assert len(err.splitlines()) == 1 and "read-only" in err and "choose a writable --out" in err, err
    assert "resume" not in err and "cp -r" not in err, err
    assert out.is_dir() and not any(out.iterdir())


def test_empty_out_is_refused(tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SHORT, "--out", ""]) == 2
    err = _err(capsys, caplog)
    assert "--out is empty" in err and "--resume" not in err, err
    assert not any(tmp_path.iterdir())


def test_resume_with_a_config_file_is_refused_in_one_short_line(tmp_path, capsys, caplog):
    config = tmp_path / "c.json"
    config.write_text('{"lr": 0.1, "channels": 8}')
    assert main(["search", "--resume", str(tmp_path / "run"), "--config", str(config)]) == 2
    err = _err(capsys, caplog)
    assert "--resume takes the run's own config; drop --config" in err and "--channels" not in err, err
