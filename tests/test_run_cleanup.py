"""What a run leaves on disk when it cannot go on: a start that fails before training takes back every directory it
created (``runs/`` and the missing parents of ``--out`` included) and keeps the ones the user made; a finished search
resumed without more epochs reads its result and writes nothing, so a read-only copy of it works too."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from cellnas import runs
from cellnas.cli import main
from cellnas.search import loop as search_loop

NET = ["-C", "4", "-L", "3", "--threads", "1", "--no-progress", "--no-plots"]
CIFAR_TRAIN = ["train", "DARTS_V2", "--preset", "darts-cifar10", *NET]
CIFAR_SEARCH = ["search", "--dataset", "cifar10", "--nodes", "2", "--batch-size", "8", *NET]
SEARCH = ["search", "--nodes", "2", "--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "2", *NET]

CALLERS = {
    "train": CIFAR_TRAIN,
    "train-seeds": [*CIFAR_TRAIN, "--seeds", "0,1"],
    "search": CIFAR_SEARCH,
}


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv", CALLERS.values(), ids=CALLERS.keys())
def test_a_start_that_cannot_find_its_data_takes_back_the_directories_it_made(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    missing = ["--data-dir", str(tmp_path / "nowhere")]
    assert main([*argv, *missing]) == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err
    assert _tree(tmp_path) == []  # neither runs/<kind>-<time> nor runs/
    assert main([*argv, *missing, "--out", "a/b/run"]) == 2  # every missing parent of --out it made
    assert _tree(tmp_path) == []
    # an empty --out the user made beforehand is kept (and left empty), as is what is already in runs/
    (tmp_path / "mine").mkdir()
    (tmp_path / "runs" / "old").mkdir(parents=True)
    assert main([*argv, *missing, "--out", "mine"]) == 2
    assert main([*argv, *missing]) == 2
    assert _tree(tmp_path) == ["mine", "runs", "runs/old"]


@pytest.mark.parametrize("argv", CALLERS.values(), ids=CALLERS.keys())
def test_a_run_directory_that_cannot_be_made_leaves_none_of_its_parents(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    too_long = "x" * 300  # longer than a file name may be (255 bytes on the usual Linux and macOS file systems)
    assert main([*argv, "--out", f"a/b/{too_long}"]) == 2
    assert "cannot create run directory a/b/" in capsys.readouterr().err
    assert _tree(tmp_path) == []


def test_a_search_that_cannot_write_its_meta_takes_back_its_config_and_directories(tmp_path, monkeypatch, capsys):
    def full(run_dir, *args, **kwargs):
        raise runs.WriteFailed(Path(run_dir) / "meta.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(search_loop, "write_meta", full)
    assert main([*SEARCH, "--out", "a/run"]) == 2  # config.json is written by then, and the lock file
    assert "No space left on device" in capsys.readouterr().err
    assert main(SEARCH) == 2
    assert _tree(tmp_path) == []
    (tmp_path / "mine").mkdir()
    assert main([*SEARCH, "--out", "mine"]) == 2
    assert _tree(tmp_path) == ["mine"]


# ---------------------------------------------------------------------- a finished search resumed in a read-only place


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished one-epoch search and the lines `cellnas search` printed about it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*SEARCH, "--out", str(run)]) == 0
    return run, out.getvalue().splitlines()


def _state(run: Path) -> dict:
    """Every file of ``run`` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.iterdir())}


def _read_only(monkeypatch, run: Path) -> None:
    """Writes into ``run`` fail as in a read-only directory (root ignores chmod): opening a file for writing there
    (a lock file, a temporary file of an atomic write), replacing or removing one."""
    real_open, real_replace, real_unlink = os.open, os.replace, os.unlink
    inside = str(run.resolve())

    def denied(path) -> bool:
        return str(Path(path).resolve()).startswith(inside)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def open_(path, flags, *args, **kwargs):
        if denied(path) and flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        return refuse(dst) if denied(dst) else real_replace(src, dst, *args, **kwargs)

    def unlink(path, *args, **kwargs):
        return refuse(path) if denied(path) else real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)


def test_resuming_a_finished_search_in_a_read_only_directory_reports_it(finished_search, tmp_path, monkeypatch,
                                                                        capsys):  # fmt: skip
    original, printed = finished_search
    run = tmp_path / "run"
    shutil.copytree(original, run)
    before = _state(run)
    capsys.readouterr()
    _read_only(monkeypatch, run)
    assert main(["search", "--resume", str(run)]) == 0
    out = capsys.readouterr().out.replace(str(run), str(original)).splitlines()
    # the same report as when it finished (but for its times, which say this session was a resume)
    assert [line for line in out if not line.startswith("search time")] == [
        line for line in printed if not line.startswith("search time")
    ]
    assert "all sessions" in next(line for line in out if line.startswith("search time"))
    assert _state(run) == before
    assert main(["search", "--resume", str(run), "--epochs", "1", "--json"]) == 0  # its own epochs: the same
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] is True and summary["epochs"] == 1 and summary["run_dir"] == str(run)
    assert summary["search_seconds"] == round(json.loads((run / "meta.json").read_text())["search_seconds"], 1)
    assert _state(run) == before


def test_extending_a_finished_search_in_a_read_only_directory_names_it(finished_search, tmp_path, monkeypatch,
                                                                       capsys):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(finished_search[0], run)
    before = _state(run)
    capsys.readouterr()
    _read_only(monkeypatch, run)
    assert main(["search", "--resume", str(run), "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{run} is read-only" in err and "cp -r" in err, err
    assert _state(run) == before


def test_a_search_whose_last_session_did_not_finish_is_resumed_not_read(finished_search, tmp_path, capsys):
    # the last epoch is checkpointed but the final files were not written (killed in between): the resume writes them
    run = tmp_path / "run"
    shutil.copytree(finished_search[0], run)
    meta = json.loads((run / "meta.json").read_text())
    meta["end_time"] = None
    (run / "meta.json").write_text(json.dumps(meta))
    assert main(["search", "--resume", str(run)]) == 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["end_time"] and len(meta["sessions"]) == 2


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
def test_resuming_a_finished_search_without_write_permission(finished_search, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_search[0], run)
    run.chmod(0o555)
    try:
        assert main(["search", "--resume", str(run)]) == 0
        assert main(["search", "--resume", str(run), "--epochs", "2"]) == 2
        assert f"{run} is read-only" in capsys.readouterr().err
    finally:
        run.chmod(0o755)
