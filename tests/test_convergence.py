"""Convergence study (Shu et al. 2020 Fig. 13; SPEC 3.3): expansion, reuse/resume of runs, curves, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellnas.analysis.convergence import (
    ConvergenceRun,
    Entry,
    curves,
    expand_genotypes,
    load_convergence,
    protocol,
    run_convergence,
    width_groups,
)
from cellnas.analysis.variants import widest
from cellnas.errors import RunError
from cellnas.formats import save_genotype
from cellnas.zoo import get_genotype

TINY = dict(channels=4, layers=3, steps_per_epoch=2)


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    from cellnas.cli import main

    out = tmp_path_factory.mktemp("conv") / "fam"
    assert main(["analyze", "variants", "DARTS_V2", "-o", str(out), "--per-bin", "1", "--widths", "2,3.5"]) == 0
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """DARTS_V2 and its widest re-wiring, one tiny epoch, one seed, through the train API."""
    root = tmp_path_factory.mktemp("study")
    save_genotype(widest(get_genotype("DARTS_V2")), root / "wide.json")
    entries = expand_genotypes(["DARTS_V2", str(root / "wide.json")])
    cfg = protocol("digits", epochs=1, progress=False, **TINY)
    result = run_convergence(entries, cfg, out=root / "out", seeds=[0])
    return root, entries, cfg, result


def test_expand_reads_a_variants_index_base_first(family):
    entries = expand_genotypes([str(family), "DARTS_V2", "darts"])
    names = [e.name for e in entries]
    assert names[:3] == ["DARTS_V2", "c1", "c2"] and len(names) == 3  # DARTS_V2 (alias too) is the base: kept once
    assert entries[0].info["base"] and not entries[1].info["base"]
    assert (entries[1].info["width"], entries[2].info["width"]) == (2.0, 3.5)
    assert width_groups(entries) == [["DARTS_V2", "c1"], ["DARTS_V2", "c2"]]


def test_expand_names_files_and_renames_clashes(tmp_path):
    a, b = tmp_path / "x" / "cell.json", tmp_path / "y" / "cell.json"
    save_genotype(get_genotype("DARTS_V2"), a)
    save_genotype(get_genotype("ENAS"), b)
    entries = expand_genotypes([str(a), str(b), "ENAS"])
    assert [e.name for e in entries] == ["cell", "cell-2", "ENAS"]
    assert entries[0].info["width"] == 3.5 and width_groups(entries) is None


def test_curves_average_over_seeds_with_sample_std():
    def metrics(losses):
        return [{"epoch": i, "test_loss": v, "train_loss": v, "test_acc": 0.5, "train_acc": 0.5}
                for i, v in enumerate(losses)]  # fmt: skip

    runs = [ConvergenceRun("a", 0, Path("."), "reused", metrics([1.0, 3.0, 9.0])),
            ConvergenceRun("a", 1, Path("."), "reused", metrics([3.0, 5.0])),
            ConvergenceRun("b", 0, Path("."), "reused", metrics([2.0]))]  # fmt: skip
    c = curves(runs)
    np.testing.assert_array_equal(c["a"]["test_loss"]["epoch"], [1, 2])  # cut to the shortest seed
    np.testing.assert_allclose(c["a"]["test_loss"]["mean"], [2.0, 4.0])
    np.testing.assert_allclose(c["a"]["test_loss"]["std"], [np.sqrt(2.0)] * 2)
    assert c["b"]["test_loss"]["n"] == 1 and c["b"]["test_loss"]["std"].tolist() == [0.0]


def test_runs_share_one_protocol_and_are_reused(study):
    root, entries, cfg, result = study
    assert [(r.name, r.seed, r.status, len(r.metrics)) for r in result.runs] == [
        ("DARTS_V2", 0, "trained", 1), ("wide", 0, "trained", 1)]  # fmt: skip
    for r in result.runs:
        saved = json.loads((r.run_dir / "config.json").read_text())
        assert (saved["drop_path"], saved["auxiliary"], saved["cutout"], saved["epochs"]) == (0.0, False, 0, 1)
    stamp = (root / "out" / "wide" / "seed-0" / "final.pt").stat().st_mtime_ns
    again = run_convergence(entries, cfg, out=root / "out", seeds=[0])
    assert [r.status for r in again.runs] == ["reused", "reused"]
    assert (root / "out" / "wide" / "seed-0" / "final.pt").stat().st_mtime_ns == stamp
    assert again.runs[1].metrics == result.runs[1].metrics
    reread = load_convergence(root / "out")
    assert [e.name for e in reread.entries] == ["DARTS_V2", "wide"] and reread.seeds == [0]


def test_an_unfinished_run_is_resumed(study, tmp_path):
    import shutil

    root, entries, cfg, _ = study
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    (out / "wide" / "seed-0" / "final.pt").unlink()
    result = run_convergence(entries, cfg, out=out, seeds=[0])
    assert [r.status for r in result.runs] == ["reused", "resumed"]
    assert (out / "wide" / "seed-0" / "final.pt").is_file()


def test_other_protocols_genotypes_and_broken_runs_are_refused(study, tmp_path):
    import dataclasses
    import shutil

    root, entries, cfg, _ = study
    with pytest.raises(RunError, match="epochs: run 1, study 2"):
        run_convergence(entries, dataclasses.replace(cfg, epochs=2), out=root / "out", seeds=[0])
    swapped = [Entry("wide", entries[0].genotype, {})]
    with pytest.raises(RunError, match="another genotype"):
        run_convergence(swapped, cfg, out=root / "out", seeds=[0])
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    for name in ("final.pt", "checkpoint.pt"):
        (out / "wide" / "seed-0" / name).unlink()
    with pytest.raises(RunError, match="remove it"):
        run_convergence(entries, cfg, out=out, seeds=[0])


def test_cli_convergence_reuses_the_study_and_plots(study, capsys):
    from cellnas.cli import main

    root, _, _, _ = study
    args = ["analyze", "convergence", "DARTS_V2", str(root / "wide.json"), "--dataset", "digits", "--epochs", "1",
            "--channels", "4", "--layers", "3", "--steps-per-epoch", "2", "--no-progress",
            "--out", str(root / "out")]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "2 runs (2 reused)" in captured.err
    assert "DARTS_V2" in captured.out and "3.5c" in captured.out
    assert "+-" not in captured.out  # one seed: no std to report (it is not a measured 0)
    for name in ("convergence.png", "curves.png", "convergence.json"):
        assert (root / "out" / name).is_file()
    assert main([*args[:-2], "--out", str(root / "out"), "--lr", "0.1"]) == 2
    assert "another protocol" in capsys.readouterr().err
    assert main(["analyze", "convergence", "DARTS_V2"]) == 2
    assert "--dataset is required" in capsys.readouterr().err


def test_cli_convergence_help_names_only_its_own_options(capsys):
    from cellnas.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", "convergence", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--resume" not in text  # train's --epochs help mentions it; this command has no --resume
    assert "(default: True)" not in text and "progress bars are shown" in text


def test_a_study_saved_with_a_relative_imagefolder_path_is_reused(study, tmp_path, monkeypatch):
    """Studies written before data paths were stored absolute hold ``imagefolder:PATH`` as typed, relative to the
    directory the study was run from: the same data is the same protocol."""
    import dataclasses
    import shutil

    root, entries, cfg, _ = study
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)

    def saved_with(dataset: str) -> None:
        for path in out.glob("*/seed-0/config.json"):
            saved = json.loads(path.read_text())
            path.write_text(json.dumps({**saved, "dataset": dataset}))

    saved_with("imagefolder:imgs")
    now = dataclasses.replace(cfg, dataset="imagefolder:" + str(tmp_path / "imgs"))
    result = run_convergence(entries, now, out=out, seeds=[0])
    assert [r.status for r in result.runs] == ["reused", "reused"]
    saved_with("imagefolder:other")
    with pytest.raises(RunError, match="another protocol.*dataset"):
        run_convergence(entries, now, out=out, seeds=[0])


def test_the_cifar_protocol_is_shus_batch_80_and_other_datasets_keep_their_preset():
    cifar = protocol("cifar10")
    assert (cifar.batch_size, cifar.epochs, cifar.lr, cifar.drop_path, cifar.auxiliary, cifar.cutout) == (
        80, 600, 0.025, 0.0, False, 0)  # fmt: skip
    assert protocol("cifar100").batch_size == 80 and protocol("cifar10", batch_size=96).batch_size == 96
    assert protocol("cifar10", preset="darts-cifar10").batch_size == 80
    assert protocol("digits").batch_size == 64
