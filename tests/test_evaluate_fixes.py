"""`cellnas evaluate`: warnings when an image folder's test split is not the one held out at training, and a
checkpoint.pt answered with what to do instead of an unpickling error."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import torch
from PIL import Image

from cellnas.cli import main

TINY = ["--image-size", "8", "-C", "4", "-L", "3", "--epochs", "1", "--steps-per-epoch", "1", "--no-progress",
        "--no-plots"]  # fmt: skip


def _tested(key: str) -> bool:
    """Whether rule hash-v1 (seed 0, 20 %) puts the file ``key`` (``<class>/<name>``) in the test set by its hash."""
    return int.from_bytes(hashlib.sha256(f"0:{key}".encode()).digest()[:8], "big") / 2**64 < 0.2


def _names(cls: str, tested: bool, n: int, prefix: str = "new") -> list[str]:
    names = (f"{prefix}{i}.png" for i in range(1000))
    return [name for name in names if _tested(f"{cls}/{name}") == tested][:n]


def _pets(root) -> None:
    """cat/ and dog/, each with one file that the hash puts in the test set and four in the training set (a class
    whose hashes give no test file has its lowest-hash file tested, which files added later may take over)."""
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for name in _names(c, True, 1, "img") + _names(c, False, 4, "img"):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / c / name)


def _train(folder, out) -> None:
    assert main(["train", "DARTS_V2", "--dataset", f"imagefolder:{folder}", *TINY, "--out", str(out)]) == 0


def _evaluate(run, caplog, capsys) -> tuple[dict, list[str]]:
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert main(["evaluate", str(run), "--json"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return json.loads(capsys.readouterr().out), warned


def test_evaluate_warns_when_images_added_to_the_folder_change_its_test_split(tmp_path, caplog,
                                                                              capsys):  # fmt: skip
    """The reviewer's case: images added to cat/ after training; evaluate said nothing."""
    folder, run = tmp_path / "imgsA", tmp_path / "tA"
    _pets(folder)
    _train(folder, run)
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "unchanged" and not warned, warned
    for name in _names("cat", tested=False, n=4):  # training files only: the test set is the same
        Image.new("RGB", (8, 8), 40).save(folder / "cat" / name)
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "unchanged" and not warned, warned
    for name in _names("cat", tested=True, n=2):
        Image.new("RGB", (8, 8), 90).save(folder / "cat" / name)
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "changed" and len(warned) == 1, warned
    assert str(folder) in warned[0] and str(run / "final.pt") in warned[0] and "trained with" in warned[0]
    assert "\n" not in warned[0]


def test_evaluate_of_a_seeds_run_checks_the_split_once(tmp_path, caplog, capsys):
    folder, run = tmp_path / "imgs", tmp_path / "seeds"
    _pets(folder)
    assert main(["train", "DARTS_V2", "--dataset", f"imagefolder:{folder}", *TINY, "--seeds", "0,1",
                 "--out", str(run)]) == 0  # fmt: skip
    Image.new("RGB", (8, 8), 7).save(folder / "dog" / _names("dog", tested=True, n=1)[0])
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "changed" and len(warned) == 1, warned


def test_evaluate_warns_when_final_pt_records_no_split(tmp_path, caplog, capsys, monkeypatch):
    """A final.pt written before the split was recorded: the folder was then split by another rule."""
    folder, run = tmp_path / "imgs", tmp_path / "run"
    _pets(folder)
    _train(folder, run)
    doc = torch.load(run / "final.pt", weights_only=True)
    doc["dataset"].pop("split", None)
    torch.save(doc, run / "final.pt")
    import cellnas.data.imagefolder as imagefolder

    rules = []
    real = imagefolder.load_imagefolder
    monkeypatch.setattr(imagefolder, "load_imagefolder",
                        lambda *a, **k: rules.append(k.get("split_rule")) or real(*a, **k))  # fmt: skip
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "unrecorded" and len(warned) == 1, warned
    assert "records no test split" in warned[0] and str(folder) in warned[0]
    assert rules == [imagefolder.LEGACY_SPLIT_RULE]  # tested on the split of that time, the one it was trained with
    other = tmp_path / "other"  # another dataset, chosen on purpose: nothing to compare, nothing said
    _pets(other)
    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="cellnas"):
        assert main(["evaluate", str(run), "--dataset", f"imagefolder:{other}", "--json"]) == 0
    assert "test_split" not in json.loads(capsys.readouterr().out)
    assert not [r for r in caplog.records if "split" in r.getMessage()]


def test_final_pt_records_the_image_folder_split(tmp_path):
    from cellnas.data import imagefolder_split

    folder, run = tmp_path / "imgs", tmp_path / "run"
    _pets(folder)
    _train(folder, run)
    doc = torch.load(run / "final.pt", weights_only=True)
    assert doc["dataset"]["split"] == imagefolder_split(folder)


# --------------------------------------------------------------------------------------------- checkpoints


def _error(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_evaluate_of_a_checkpoint_says_how_to_get_a_final_pt(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "DARTS_V2", "--dataset", "digits", *TINY[2:], "--out", str(run)]) == 0
    err = _error(["evaluate", str(run / "checkpoint.pt")], capsys)
    assert "training checkpoint, not a final.pt" in err and f"evaluate {run / 'final.pt'}" in err
    (run / "final.pt").unlink()  # as if the run had stopped before its end
    for given in (run / "checkpoint.pt", run):
        err = _error(["evaluate", str(given)], capsys)
        assert "has not finished" in err and f"cellnas train --resume {run}" in err and "Unpickling" not in err
    search = tmp_path / "search"
    search.mkdir()
    torch.save({"kind": "search", "version": 1, "config": {}, "train_loader": {}}, search / "checkpoint.pt")
    err = _error(["evaluate", str(search / "checkpoint.pt")], capsys)
    assert "search checkpoint" in err and f"cellnas train {search}" in err


def test_an_old_final_pt_of_a_train_test_layout_is_not_warned_about(tmp_path, caplog, capsys):
    """PATH/train beside PATH/test was used as given before splits were recorded too: nothing to warn about."""
    folder, run = tmp_path / "imgs", tmp_path / "run"
    rng = np.random.default_rng(0)
    for part, n in (("train", 4), ("test", 2)):
        for c in ("cat", "dog"):
            (folder / part / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / part / c / f"{i}.png")
    _train(folder, run)
    doc = torch.load(run / "final.pt", weights_only=True)
    doc["dataset"].pop("split", None)
    torch.save(doc, run / "final.pt")
    report, warned = _evaluate(run, caplog, capsys)
    assert report["test_split"] == "unchanged" and not warned, warned
