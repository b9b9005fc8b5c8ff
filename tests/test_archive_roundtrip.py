"""`archive export` -> `archive import` -> `archive export` gives the same file (times included), and the archive
commands refuse values no row can have (filters, seeds, params) and export file names that name no format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cellnas.archive
from cellnas.archive import Archive
from cellnas.zoo import get_genotype

T0 = "2020-01-02T03:04:05+00:00"  # times no test run stamps: an import that wrote its own time would show
T1 = "2020-06-07T08:09:10+00:00"
T2 = "2021-02-03T04:05:06+00:00"


def _cli(*argv: str) -> int:
    from cellnas.cli import main

    return main(list(argv))


def _one_line_error(capsys, *needles: str) -> str:
    """The error a refused command printed: one line, no traceback, containing each of ``needles``."""
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("cellnas archive: error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def clock(monkeypatch):
    """Set the archive's clock: ``clock("2020-...")`` makes the next writes carry that time."""

    def set_time(stamp: str) -> None:
        monkeypatch.setattr(cellnas.archive, "now_iso", lambda: stamp)

    return set_time


@pytest.fixture
def populated(tmp_path, clock, monkeypatch) -> Path:
    """An archive written at T0 and T1 (not now): rows with extras (an int like the proxy's ``epochs``), a config,
    several sources, seeds and protocols, a missing metric, and a row updated after it was created."""
    db = tmp_path / "a.sqlite"
    clock(T0)
    with Archive(db) as a:
        a.put(get_genotype("DARTS_V2"), "proxy:x", {"test_error": 0.0276, "params": 3349342, "seconds": 12.5,
                                                    "epochs": 3, "best_test_error": 0.025},
              config={"epochs": 3, "preset": "tiny"}, source="evaluate")  # fmt: skip
        a.put(get_genotype("DARTS_V1"), "proxy:x", {"test_error": 0.1, "epochs": 3}, seed=2, source="sample:none")
        a.put(get_genotype("BANANAS"), "paper", {"test_error": 0.0239, "val_error": 0.03}, source="add")
        clock(T1)
        a.put(get_genotype("DARTS_V1"), "paper", {"test_error": 0.03}, source="add")
        a.put(get_genotype("BANANAS"), "paper", {"test_error": 0.0241, "val_error": 0.03}, source="add")  # updated
    monkeypatch.undo()  # the imports below run on the real clock
    return db


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_export_import_export_gives_the_same_file(tmp_path, capsys, populated, suffix):
    first, second, copy = tmp_path / f"first{suffix}", tmp_path / f"second{suffix}", tmp_path / "b.sqlite"
    assert _cli("archive", "export", str(first), "--archive", str(populated)) == 0
    assert _cli("archive", "import", str(first), "--archive", str(copy)) == 0
    assert _cli("archive", "export", str(second), "--archive", str(copy)) == 0
    # byte for byte: the hash column is recomputed from the genotype, every other value (times, sources, config,
    # integer extras) is read back as written
    assert second.read_text() == first.read_text()
    with Archive(copy) as b:
        rec = b.get(get_genotype("BANANAS"), "paper")
        assert (rec.created_at, rec.updated_at, rec.test_error) == (T0, T1, 0.0241)
        assert b.get(get_genotype("DARTS_V2"), "proxy:x").extra["epochs"] == 3


def test_import_keeps_a_stored_row_and_its_times_unless_replace(tmp_path, capsys, clock):
    g = get_genotype("DARTS_V2")
    src, dst = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    clock(T0)
    with Archive(src) as a:
        a.put(g, "p", {"test_error": 0.05}, source="add")
    clock(T1)
    with Archive(dst) as b:
        b.put(g, "p", {"test_error": 0.04}, source="add")
    clock(T2)  # the time of the imports: no row may take it
    out = tmp_path / "a.csv"
    assert _cli("archive", "export", str(out), "--archive", str(src)) == 0
    assert _cli("archive", "import", str(out), "--archive", str(dst)) == 0
    assert "1 already present, kept" in capsys.readouterr().out
    with Archive(dst) as b:
        rec = b.get(g, "p")
        assert (rec.test_error, rec.created_at, rec.updated_at) == (0.04, T1, T1)  # kept as it was
    assert _cli("archive", "import", str(out), "--replace", "--archive", str(dst)) == 0
    with Archive(dst) as b:
        rec = b.get(g, "p")
        # the file's values and update time; created at the earlier of the two (the file's row is older)
        assert (rec.test_error, rec.created_at, rec.updated_at) == (0.05, T0, T0)


def test_import_replace_keeps_an_earlier_stored_creation_time(tmp_path, clock):
    g = get_genotype("DARTS_V2")
    clock(T2)
    (tmp_path / "in.csv").write_text(f"genotype,protocol,test_error,created_at,updated_at\nDARTS_V2,p,0.05,{T1},{T1}\n")
    with Archive(tmp_path / "b.sqlite") as b:
        clock(T0)
        b.put(g, "p", {"test_error": 0.04})
        clock(T2)
        assert b.import_csv(tmp_path / "in.csv", replace=True).written == 1
        rec = b.get(g, "p")
        assert (rec.test_error, rec.created_at, rec.updated_at) == (0.05, T0, T1)


def test_import_fills_a_missing_time_from_the_other_and_refuses_a_bad_one(tmp_path, capsys, clock):
    clock(T2)
    (tmp_path / "in.csv").write_text(f"genotype,protocol,test_error,created_at,updated_at\nDARTS_V2,p,0.05,,{T1}\n"
                                     "BANANAS,p,0.04,,\n")  # fmt: skip
    with Archive(tmp_path / "b.sqlite") as b:
        b.import_csv(tmp_path / "in.csv")
        rec = b.get(get_genotype("DARTS_V2"), "p")
        assert (rec.created_at, rec.updated_at) == (T1, T1)
        rec = b.get(get_genotype("BANANAS"), "p")
        assert (rec.created_at, rec.updated_at) == (T2, T2)  # no time in the file: the import's
    db = str(tmp_path / "c.sqlite")
    for bad, needle in ((f"yesterday,{T1}", "created_at 'yesterday' is not an ISO 8601 time"),
                        (f"{T2},{T1}", f"created_at {T2} is after updated_at {T1}")):  # fmt: skip
        (tmp_path / "bad.csv").write_text(f"genotype,protocol,test_error,created_at,updated_at\nBANANAS,p,0.1,,\n"
                                          f"DARTS_V2,p,0.05,{bad}\n")  # fmt: skip
        assert _cli("archive", "import", str(tmp_path / "bad.csv"), "--archive", db) == 2
        _one_line_error(capsys, "line 3", needle)
        assert Archive(db).count() == 0  # one transaction: nothing imported


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_oi_vectors_export_import_export_gives_the_same_file(tmp_path, capsys, clock, suffix):
    a = tmp_path / "a.sqlite"
    clock(T0)
    with Archive(a) as archive:
        archive.put_importance(get_genotype("DARTS_V2"), "synthetic", {p: p / 1000 for p in range(16)}, 0.03)
        clock(T1)
        archive.put_importance(get_genotype("BANANAS"), "surrogate:x", {0: -0.002, 15: 0.004}, None)
    clock(T2)
    first, second = tmp_path / f"first{suffix}", tmp_path / f"second{suffix}"
    assert _cli("archive", "export", str(first), "--importance", "--archive", str(a)) == 0
    assert _cli("archive", "import", str(first), "--importance", "--archive", str(tmp_path / "b.sqlite")) == 0
    assert _cli("archive", "export", str(second), "--importance", "--archive", str(tmp_path / "b.sqlite")) == 0
    assert second.read_text() == first.read_text()


@pytest.mark.parametrize("action", ["list", "export"])
@pytest.mark.parametrize("flags,needle", [
    (["--max-error", "-1"], "--max-error must be a test error fraction in [0, 1], got -1"),
    (["--max-error", "5"], "in [0, 1], got 5 (a percentage? divide by 100)"),
    (["--max-error", "nan"], "in [0, 1], got nan"),
    (["--seed", "-1"], "--seed must be >= 0 and < 2**32, got -1"),
    (["--seed", str(2**70)], f"--seed must be >= 0 and < 2**32, got {2**70}"),
])  # fmt: skip
def test_list_and_export_refuse_filter_values_no_row_can_have(tmp_path, capsys, populated, action, flags, needle):
    out = tmp_path / "out.csv"
    argv = ["archive", action, *([str(out)] if action == "export" else []), *flags, "--archive", str(populated)]
    assert _cli(*argv) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def test_list_accepts_the_ends_of_the_ranges_and_a_limit_beyond_any_row_count(tmp_path, capsys, populated):
    for flags in (["--max-error", "1"], ["--max-error", "0"], ["--seed", "0"], ["--limit", str(2**70)]):
        assert _cli("archive", "list", *flags, "--archive", str(populated)) == 0, flags
    counts = re.findall(r"\((\d+) of 4 rows\)", capsys.readouterr().err)
    assert counts == ["4", "0", "3", "4"]


@pytest.mark.parametrize("flags,needle", [
    (["--seed", str(2**70), "--test-error", "0.1"], f"seed {2**70} is too large; a seed is an integer >= 0"),
    (["--seed", "-1", "--test-error", "0.1"], "seed -1 is negative; a seed is an integer >= 0 and < 2**32"),
    (["--params", "1e30"], "params = 1e+30 must be a count >= 0 and < 2**63"),
    (["--test-error", "-0.5"], "test_error = -0.5 is not an error fraction in [0, 1]"),
])  # fmt: skip
def test_archive_add_refuses_values_the_archive_cannot_store(tmp_path, capsys, flags, needle):
    db = tmp_path / "a.sqlite"
    assert _cli("archive", "add", "DARTS_V2", "--protocol", "p", *flags, "--archive", str(db)) == 2
    _one_line_error(capsys, needle)
    assert not db.exists() or Archive(db).count() == 0


def test_import_refuses_a_seed_the_archive_cannot_store(tmp_path, capsys):
    (tmp_path / "in.csv").write_text(f"genotype,protocol,seed,test_error\nDARTS_V2,p,{2**70},0.1\n")
    db = tmp_path / "a.sqlite"
    assert _cli("archive", "import", str(tmp_path / "in.csv"), "--archive", str(db)) == 2
    _one_line_error(capsys, "line 2", "is too large; a seed is an integer >= 0 and < 2**32")
    assert not db.exists() or Archive(db).count() == 0


@pytest.mark.parametrize("name", ["e.txt", "e", "e.csv.gz"])
@pytest.mark.parametrize("importance", [False, True])
def test_export_refuses_a_file_name_that_names_no_format(tmp_path, capsys, populated, name, importance):
    out = tmp_path / name
    assert _cli("archive", "export", str(out), *(["--importance"] if importance else []),
                "--archive", str(populated)) == 2  # fmt: skip
    _one_line_error(capsys, f"cannot export to {out}: the file name must end in .csv or .json")
    assert not out.exists()


def test_export_reads_the_suffix_whatever_its_case(tmp_path, capsys, populated):
    assert _cli("archive", "export", str(tmp_path / "e.JSON"), "--archive", str(populated)) == 0
    assert (tmp_path / "e.JSON").read_text().startswith("[")
    with Archive(populated) as a, pytest.raises(cellnas.archive.CellnasError, match="valid: csv, json"):
        a.export(tmp_path / "e.csv", a.records(), fmt="xml")
