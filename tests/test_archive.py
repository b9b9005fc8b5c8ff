"""The evaluation archive: upserts, queries, concurrent writers, crash safety, CSV/JSON import and export."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from cellnas.analysis.sampling import sample
from cellnas.archive import Archive, records_to_csv
from cellnas.errors import CellnasError, DataError, FormatError
from cellnas.formats import to_darts_text, to_json
from cellnas.genotype import Genotype
from cellnas.zoo import get_genotype


@pytest.fixture
def archive(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    yield a
    a.close()


def test_put_and_get_round_trip_the_genotype_metrics_and_config(archive):
    g = get_genotype("DARTS_V2")
    assert archive.put(g, "p", {"test_error": 0.03, "params": 3.3e6, "seconds": 12.5, "top5": 0.99},
                       config={"epochs": 3}, source="by-hand")  # fmt: skip
    rec = archive.get(g, "p")
    assert rec.genotype == g and rec.hash == g.content_hash()
    assert (rec.test_error, rec.params, rec.seconds, rec.val_error) == (0.03, 3300000, 12.5, None)
    assert rec.extra == {"top5": 0.99} and rec.config == {"epochs": 3} and rec.source == "by-hand"
    assert rec.metrics() == {"test_error": 0.03, "params": 3300000, "seconds": 12.5, "top5": 0.99}
    assert archive.get(g, "p", seed=1) is None and archive.get(g, "other") is None


def test_the_key_is_hash_protocol_seed_and_conflicts_update_or_keep(archive):
    g = get_genotype("DARTS_V2")
    archive.put(g, "p", {"test_error": 0.05})
    archive.put(g, "p", {"test_error": 0.04}, seed=1)
    archive.put(g, "q", {"test_error": 0.5})
    assert archive.count() == 3
    assert not archive.put(g, "p", {"test_error": 0.01}, replace=False)
    assert archive.get(g, "p").test_error == 0.05
    assert archive.put(g, "p", {"test_error": 0.02})
    rec = archive.get(g, "p")
    assert rec.test_error == 0.02 and rec.created_at <= rec.updated_at
    assert archive.count() == 3
    assert archive.done("p", 0) == {g.content_hash()}
    assert archive.done("p") == {(g.content_hash(), 0), (g.content_hash(), 1)}


def test_ranked_averages_seeds_and_top_takes_the_rounded_fraction(archive):
    gs = sample("none", 30, seed=0)
    archive.put_many([(g, "p", {"test_error": i / 100}) for i, g in enumerate(gs)])
    # mean of 0.29 and -0.5 makes it the best (put_many stores an evaluator's value unchecked; put refuses it)
    archive.put_many([(gs[29], "p", {"test_error": -0.5}, 1)])
    ranked = archive.ranked("p")
    assert ranked[0][0] == gs[29] and ranked[0][2] == 2 and ranked[0][1] == pytest.approx(-0.105)
    assert [g for g, _, _ in archive.top("p", 0.1)] == [gs[29], gs[0], gs[1]]  # round(0.1 * 30) = 3
    assert len(archive.top("p", 0.01)) == 1  # never empty
    with pytest.raises(DataError, match="protocols: p"):
        archive.top("missing", 0.05)


def test_records_filter_and_sort_with_missing_values_last(archive):
    gs = sample("prim", 4, seed=1)
    archive.put(gs[0], "p", {"test_error": 0.3, "params": 10})
    archive.put(gs[1], "p", {"test_error": 0.1})
    archive.put(gs[2], "p", {"params": 5})
    archive.put(gs[3], "q", {"test_error": 0.2})
    assert [r.genotype for r in archive.records("p", sort="test_error")] == [gs[1], gs[0], gs[2]]
    assert [r.genotype for r in archive.records("p", sort="-test_error")] == [gs[0], gs[1], gs[2]]
    assert [r.genotype for r in archive.records(sort="params", limit=2)] == [gs[2], gs[0]]
    assert len(archive.records(max_test_error=0.2)) == 2
    assert archive.records(hash_prefix=gs[3].content_hash()[:6])[0].protocol == "q"
    with pytest.raises(CellnasError, match="valid keys"):
        archive.records(sort="params; DROP TABLE evaluations")


def test_wal_mode_full_sync_and_schema_version(archive):
    archive.put(get_genotype("DARTS_V1"), "p", {"test_error": 0.1})
    conn = sqlite3.connect(archive.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_a_file_that_is_not_an_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DataError, match="not a usable cellnas archive"):
        Archive(bad).count()
    with pytest.raises(DataError, match="does not exist"):
        Archive(tmp_path / "missing.sqlite", create=False).count()


_WRITER = textwrap.dedent(
    """
    import sys
    from cellnas.analysis.sampling import sample
    from cellnas.archive import Archive
    worker, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    a = Archive(path, timeout=120)
    for i, g in enumerate(sample("none", n, seed=1000 + worker)):
        a.put(g, "p", {"test_error": i / n}, seed=worker)   # one transaction per row
    a.close()
    """
)


def test_several_processes_writing_at_once_lose_no_row(tmp_path):
    path = tmp_path / "shared.sqlite"
    n, workers = 40, 4
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(w), str(n), str(path)]) for w in range(workers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    a = Archive(path)
    assert a.count("p") == n * workers
    for w in range(workers):
        assert len(a.done("p", w)) == n
    a.close()


_CRASHER = textwrap.dedent(
    """
    import sys
    from cellnas.analysis.sampling import sample
    from cellnas.archive import Archive
    a = Archive(sys.argv[1])
    for i in range(100000):
        a.put(sample("skip", 1, seed=i)[0], "p", {"test_error": 0.5})
    """
)


def test_a_killed_writer_loses_nothing_it_committed(tmp_path):
    path = tmp_path / "crash.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _CRASHER, str(path)])
    deadline = time.time() + 60
    seen = 0
    while time.time() < deadline and seen < 20:
        time.sleep(0.2)
        if path.exists():
            try:
                seen = Archive(path, create=False).count("p")
            except DataError:
                seen = 0
    committed_before_kill = Archive(path).count("p")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert committed_before_kill >= 20
    a = Archive(path)
    conn = a.connection()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = a.records("p")
    assert len(rows) >= committed_before_kill
    assert all(r.test_error == 0.5 for r in rows)  # every row readable
    a.close()


def test_export_csv_then_import_gives_the_same_rows(tmp_path, archive):
    gs = sample("primskip", 5, seed=2)
    for i, g in enumerate(gs):
        archive.put(g, "proxy:x", {"test_error": 0.1 + i / 100, "params": 1000 + i, "best_test_error": 0.05},
                    seed=i % 2, config={"epochs": 3})  # fmt: skip
    archive.export(tmp_path / "out.csv", archive.records())
    archive.export(tmp_path / "out.json", archive.records())
    doc = json.loads((tmp_path / "out.json").read_text())
    assert len(doc) == 5 and doc[0]["genotype"]["format"] == "cellnas.genotype"
    other = Archive(tmp_path / "b.sqlite")
    assert other.import_csv(tmp_path / "out.csv")[:2] == (5, 0)
    assert other.import_csv(tmp_path / "out.csv")[:2] == (0, 5)  # already there: kept
    for r in archive.records():
        s = other.get(r.genotype, r.protocol, r.seed)
        assert s.metrics() == r.metrics() and s.config == r.config
    other.close()


def test_import_accepts_darts_text_and_zoo_names_and_names_a_bad_line(tmp_path, archive):
    csv_text = (
        "genotype,test_error,params,note\n"
        f"\"{to_darts_text(get_genotype('BANANAS'))}\",0.0239,,from the paper\n"
        "DARTS_V2,0.0244,3300000,\n"
    )
    (tmp_path / "mine.csv").write_text(csv_text)
    assert archive.import_csv(tmp_path / "mine.csv", protocol="wan2022-table2")[:2] == (2, 0)
    rec = archive.get(get_genotype("BANANAS"), "wan2022-table2")
    assert rec.test_error == 0.0239 and rec.extra == {"note": "from the paper"} and rec.params is None
    assert archive.get(get_genotype("DARTS_V2"), "wan2022-table2").params == 3300000
    (tmp_path / "bad.csv").write_text("genotype,test_error\nDARTS_V2,0.1\nNOT_A_CELL,0.2\n")
    with pytest.raises(FormatError, match="line 3"):
        archive.import_csv(tmp_path / "bad.csv", protocol="x")
    assert archive.count("x") == 0  # nothing half-imported
    with pytest.raises(CellnasError, match="protocol"):
        archive.import_csv(tmp_path / "mine.csv")
    (tmp_path / "nogen.csv").write_text("arch,test_error\nDARTS_V2,0.1\n")
    with pytest.raises(FormatError, match="'genotype' column"):
        archive.import_csv(tmp_path / "nogen.csv", protocol="x")


def test_failures_are_kept_until_a_success_and_importance_is_stored(archive):
    g = get_genotype("DARTS_V2")
    archive.record_failure(g, "p", "RuntimeError: boom")
    archive.record_failure(g, "p", "RuntimeError: boom again")
    (f,) = archive.failures("p")
    assert f["attempts"] == 2 and "again" in f["error"]
    archive.put(g, "p", {"test_error": 0.1})
    assert archive.failures() == []
    archive.put_importance(g, "surrogate:x", {0: 0.002, 15: -0.001}, base_error=0.1)
    assert archive.importance() == {g.content_hash(): ("surrogate:x", {0: 0.002, 15: -0.001})}
    assert archive.importance("other") == {}


def test_csv_text_has_one_column_per_extra_metric():
    from cellnas.archive import Record

    g = get_genotype("DARTS_V2")
    rows = [Record(g.content_hash(), "p", 0, g, test_error=0.1, extra={"b": 1}),
            Record(g.content_hash(), "p", 1, g, extra={"a": "x"})]  # fmt: skip
    header = records_to_csv(rows).splitlines()[0].split(",")
    assert header[:8] == ["hash", "protocol", "seed", "genotype", "test_error", "val_error", "params", "seconds"]
    assert header[8:10] == ["a", "b"]


class _LockedThenFree:
    """A connection whose journal-mode switch reports "database is locked" ``n`` times, as SQLite does without
    waiting on the busy timeout when several processes open a new archive at once."""

    def __init__(self, n: int, error: str = "database is locked") -> None:
        self.n, self.error, self.calls = n, error, 0

    def execute(self, sql: str):
        import sqlite3

        assert sql == "PRAGMA journal_mode = WAL"
        self.calls += 1
        if self.calls <= self.n:
            raise sqlite3.OperationalError(self.error)
        return self

    def fetchone(self):
        return ("wal",)


def test_journal_mode_switch_is_retried_while_another_process_holds_the_file(tmp_path):
    conn = _LockedThenFree(3)
    assert Archive(tmp_path / "a.sqlite", timeout=5)._journal_mode_wal(conn) == "wal"
    assert conn.calls == 4


def test_journal_mode_switch_gives_up_after_the_timeout_and_on_other_errors(tmp_path):
    import sqlite3
    import time

    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        Archive(tmp_path / "a.sqlite", timeout=0.2)._journal_mode_wal(_LockedThenFree(10**6))
    assert 0.2 <= time.monotonic() - t0 < 2
    other = _LockedThenFree(1, error="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        Archive(tmp_path / "a.sqlite", timeout=5)._journal_mode_wal(other)
    assert other.calls == 1


def test_export_json_then_import_gives_the_same_rows(tmp_path, archive):
    for i, g in enumerate(sample("prim", 4, seed=3)):
        archive.put(g, "proxy:x", {"test_error": 0.2 + i / 100, "params": 500 + i, "note": "n"}, seed=i,
                    config={"epochs": 3})  # fmt: skip
    archive.export(tmp_path / "out.json", archive.records())
    other = Archive(tmp_path / "b.sqlite")
    assert other.import_csv(tmp_path / "out.json")[:2] == (4, 0)
    for r in archive.records():
        s = other.get(r.genotype, r.protocol, r.seed)
        assert s.metrics() == r.metrics() and s.config == r.config
    (tmp_path / "bad.json").write_text('{"genotype": "DARTS_V2"}')
    with pytest.raises(FormatError, match="expected a list of rows"):
        other.import_csv(tmp_path / "bad.json")
    other.close()


@pytest.mark.parametrize("column,value,message", [
    ("test_error", "5", "not an error fraction in \\[0, 1\\] \\(a percentage"),
    ("test_error", "-0.1", "not an error fraction"),
    ("val_error", "inf", "not an error fraction"),
    ("test_error", "nan", "not an error fraction"),
    ("params", "-3", "must be a finite number >= 0"),
    ("seconds", "inf", "must be a finite number >= 0"),
    ("seed", "-1", "seed -1 is negative"),
])  # fmt: skip
def test_import_refuses_impossible_values_naming_the_line(tmp_path, archive, column, value, message):
    row = {"genotype": "DARTS_V2", "protocol": "p", "test_error": "0.1", "seed": "0"}
    row[column] = value
    (tmp_path / "in.csv").write_text(",".join(row) + "\nDARTS_V1,p,0.2,0" + "," * (len(row) - 4) + "\n"
                                     + ",".join(row.values()) + "\n")  # fmt: skip
    with pytest.raises(FormatError, match=f"line 3: .*{message}"):
        archive.import_csv(tmp_path / "in.csv")
    assert archive.count() == 0  # one transaction


def test_sort_accepts_key_colon_desc_and_a_directory_is_not_an_archive(tmp_path, archive):
    for i, g in enumerate(sample("none", 3, seed=0)):
        archive.put(g, "p", {"test_error": 0.1 * (i + 1)})
    errors = [r.test_error for r in archive.records(sort="test_error:desc")]
    assert errors == sorted(errors, reverse=True) == [r.test_error for r in archive.records(sort="-test_error")]
    assert [r.test_error for r in archive.records(sort="test_error:asc")] == sorted(errors)
    with pytest.raises(CellnasError, match=":asc or :desc"):
        archive.records(sort="test_error:down")
    with pytest.raises(DataError, match="is a directory"):
        Archive(tmp_path, create=False).count()


@pytest.mark.parametrize("flags,message", [
    (["--test-error", "5"], "test_error = 5 is not an error fraction in \\[0, 1\\] \\(a percentage"),
    (["--test-error", "-0.1"], "test_error = -0.1 is not an error fraction"),
    (["--val-error", "inf"], "val_error = inf is not an error fraction"),
    (["--test-error", "nan"], "test_error = nan is not an error fraction"),
    (["--params", "-3"], "params = -3 must be a finite number >= 0"),
    (["--seconds", "inf"], "seconds = inf must be a finite number >= 0"),
    (["--metric", "test_error=2"], "test_error = 2 is not an error fraction"),
    (["--test-error", "0.1", "--seed", "-1"], "seed -1 is negative"),
])  # fmt: skip
def test_archive_add_applies_the_checks_of_import(tmp_path, capsys, flags, message):
    import re

    from cellnas.cli import main

    db = tmp_path / "a.sqlite"
    assert main(["archive", "add", "DARTS_V2", "--protocol", "p", *flags, "--archive", str(db)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert re.search(message, err) and "\n" not in err and "Traceback" not in err
    assert not db.exists() or Archive(db).count() == 0


def test_archive_list_of_a_protocol_no_row_has_names_the_protocols_present(tmp_path, capsys):
    from cellnas.cli import main

    db = tmp_path / "a.sqlite"
    with Archive(db) as a:
        assert a.count() == 0  # an empty archive
    assert main(["archive", "list", "--archive", str(db), "--protocol", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no rows under protocol 'nosuch'" in err and "the archive holds no evaluations" in err
    assert "\n" not in err
    with Archive(db) as a:
        a.put(get_genotype("DARTS_V2"), "wan-table2", {"test_error": 0.0244})
        a.put(get_genotype("DARTS_V1"), "proxy:x", {"test_error": 0.1})
    for fmt in ("table", "json", "darts"):
        assert main(["archive", "list", "--archive", str(db), "--protocol", "nosuch", "--format", fmt]) == 2
        captured = capsys.readouterr()
        assert "protocols present: proxy:x, wan-table2" in captured.err and captured.out == ""
    assert main(["archive", "list", "--archive", str(db), "--protocol", "proxy:x"]) == 0
    assert "(1 of 1 rows)" in capsys.readouterr().err


def test_archive_list_keeps_its_columns_aligned_when_a_value_is_missing(tmp_path, capsys):
    from cellnas.cli import main

    db = tmp_path / "a.sqlite"
    with Archive(db) as a:
        a.put(get_genotype("DARTS_V2"), "p", {"test_error": 0.0244, "params": 3349342, "seconds": 12.5})
        a.put(get_genotype("DARTS_V1"), "p", {"test_error": 0.03})  # no params, no seconds
    assert main(["archive", "list", "--archive", str(db)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if " p " in line]
    assert len(rows) == 2
    stamps = [line.rindex("  ") for line in rows]  # where the last column (updated at) starts
    assert stamps[0] == stamps[1], rows


def _cli(*argv: str) -> int:
    from cellnas.cli import main

    return main(list(argv))


def test_archive_add_keeps_an_existing_row_unless_replace(tmp_path, capsys):
    db = str(tmp_path / "a.sqlite")
    add = ("archive", "add", "DARTS_V2", "--protocol", "t2", "--archive", db)
    assert _cli(*add, "--test-error", "0.0244") == 0
    capsys.readouterr()
    assert _cli(*add, "--test-error", "0.03") == 2
    err = capsys.readouterr().err.strip()
    assert "already" in err and "test_error=0.0244" in err and "--replace" in err and "\n" not in err
    with Archive(db) as a:
        assert a.get(get_genotype("DARTS_V2"), "t2").test_error == 0.0244
    assert _cli(*add, "--test-error", "0.03", "--replace") == 0
    out = capsys.readouterr().out
    assert "replaced" in out and "test_error=0.0244" in out
    with Archive(db) as a:
        assert a.get(get_genotype("DARTS_V2"), "t2").test_error == 0.03


def test_archive_add_refuses_two_values_of_one_metric(tmp_path, capsys):
    db = tmp_path / "a.sqlite"
    assert _cli("archive", "add", "BANANAS", "--protocol", "q3", "--test-error", "0.1", "--metric", "test_error=0.9",
                "--archive", str(db)) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "test_error" in err and "0.1" in err and "0.9" in err and "\n" not in err
    assert not db.exists() or Archive(db).count() == 0
    assert _cli("archive", "add", "BANANAS", "--protocol", "q3", "--metric", "top1=0.5", "--metric", "top1=0.6",
                "--archive", str(db)) == 2  # fmt: skip
    assert "0.5" in capsys.readouterr().err
    assert _cli("archive", "add", "BANANAS", "--protocol", "q3", "--test-error", "0.1", "--metric", "test_error=0.1",
                "--archive", str(db)) == 0  # the same value twice is no conflict  # fmt: skip


def test_fit_surrogate_skips_rows_it_cannot_encode_and_names_them(tmp_path, capsys):
    from cellnas.evaluators.synthetic import SyntheticEvaluator

    truth = SyntheticEvaluator()
    nasnet = get_genotype("NASNet")  # 5 intermediate nodes
    db = tmp_path / "a.sqlite"
    with Archive(db) as a:
        a.put(nasnet, "p", {"test_error": 0.0})  # ranked first
        a.put_many([(g, "p", {"test_error": truth.error(g)}) for g in sample("none", 12, seed=0)])
        a.put_many([(g, "few", {"test_error": truth.error(g)}) for g in [nasnet, *sample("none", 3, seed=0)]])
    out = tmp_path / "s.joblib"
    fit = ("archive", "fit-surrogate", "--test-fraction", "0", "--archive", str(db), "-o", str(out))
    assert _cli(*fit, "--protocol", "p") == 0
    err = capsys.readouterr().err
    assert "skipped 1 of 13 rows" in err and nasnet.content_hash() in err and "5 intermediate nodes" in err
    assert out.is_file()
    assert _cli(*fit, "--protocol", "few") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "only 3 of 4 rows" in err and "at least 10" in err


def test_archive_evaluate_reads_a_variants_directory_as_analyze_convergence_does(tmp_path, capsys):
    fam = tmp_path / "fam"
    assert _cli("analyze", "variants", "DARTS_V2", "-o", str(fam), "--per-bin", "1", "--widths", "2") == 0
    assert (fam / "index.json").is_file()
    db = tmp_path / "a.sqlite"
    assert _cli("archive", "evaluate", str(fam), "--evaluator", "synthetic", "--archive", str(db)) == 0
    with Archive(db) as a:
        assert a.count() == 2 and get_genotype("DARTS_V2").content_hash() in {r.hash for r in a.records()}


def test_import_reports_duplicates_within_the_file_and_refuses_conflicting_ones(tmp_path, archive, capsys):
    h = get_genotype("DARTS_V2").content_hash()
    (tmp_path / "same.csv").write_text("genotype,test_error\nDARTS_V2,0.03\nDARTS_V2,0.03\n")
    result = archive.import_csv(tmp_path / "same.csv", protocol="p")
    assert (result.written, result.kept, result.duplicates) == (1, 0, (h,))
    assert _cli("archive", "import", str(tmp_path / "same.csv"), "--protocol", "q",
                "--archive", str(archive.path)) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "imported 1 rows" in out and f"1 duplicate row in the file ignored: {h}" in out and "already" not in out
    (tmp_path / "differ.csv").write_text("genotype,test_error\nDARTS_V2,0.03\nDARTS_V2,0.05\n")
    with pytest.raises(FormatError, match="line 3: .*repeats line 2 with other values.*0.05.*0.03"):
        archive.import_csv(tmp_path / "differ.csv", protocol="r")
    assert archive.count("r") == 0


def test_import_refuses_a_row_without_any_metric_naming_it(tmp_path, archive):
    (tmp_path / "in.csv").write_text("genotype,test_error,note\nDARTS_V1,0.1,\nDARTS_V2,,\n")
    with pytest.raises(FormatError, match="line 3: no metric"):
        archive.import_csv(tmp_path / "in.csv", protocol="p")
    assert archive.count() == 0


def _listings():
    """DARTS_V2 and the same architecture with the inputs of its last normal node swapped."""
    g = get_genotype("DARTS_V2")
    pairs = g.normal.pairs
    other = Genotype.from_darts(pairs[:6] + [pairs[7], pairs[6]], g.normal.concat, g.reduce.pairs, g.reduce.concat)
    assert other.content_hash() != g.content_hash() and other.architecture_hash() == g.architecture_hash()
    return g, other


def test_two_listings_of_one_architecture_are_one_row(tmp_path, archive):
    g, other = _listings()
    assert archive.put(g, "p", {"test_error": 0.03})
    assert not archive.put(other, "p", {"test_error": 0.04}, replace=False) and archive.merged == [
        (other.content_hash(), g.content_hash())
    ]
    rec = archive.get(other, "p")
    assert archive.count("p") == 1 and rec.hash == g.content_hash() and rec.genotype == g and rec.test_error == 0.03
    assert archive.put(other, "p", {"test_error": 0.04})  # replace: the stored listing stays, the result changes
    rec = archive.get(g, "p")
    assert archive.count("p") == 1 and rec.genotype == g and rec.test_error == 0.04
    assert archive.put(other, "p", {"test_error": 0.05}, seed=1) and archive.count("p") == 2  # another seed
    assert archive.get(other, "p", seed=1).hash == g.content_hash()  # ... of the same listing
    [(best, mean, n)] = archive.ranked("p")
    assert best == g and n == 2 and mean == pytest.approx(0.045)  # one architecture, two seeds
    archive.record_failure(other, "p", "boom", seed=2)  # a failure under the other listing ...
    assert archive.put(other, "p", {"test_error": 0.06}, seed=2)
    assert not [f for f in archive.failures("p") if f["seed"] == 2]  # ... is cleared by its result
    # an import of the other listing lands on the stored row, and says so
    (tmp_path / "r.csv").write_text(f'genotype,test_error\n"{to_darts_text(other)}",0.06\n')
    result = archive.import_csv(tmp_path / "r.csv", protocol="p", replace=True)
    assert result.merged == ((other.content_hash(), g.content_hash()),) and archive.count("p") == 3
    assert _cli("archive", "import", str(tmp_path / "r.csv"), "--protocol", "p", "--archive", str(archive.path)) == 0


def test_two_listings_of_one_architecture_in_one_file_are_duplicates(tmp_path, archive):
    g, other = _listings()
    (tmp_path / "r.csv").write_text(f'genotype,test_error\nDARTS_V2,0.03\n"{to_darts_text(other)}",0.03\n')
    result = archive.import_csv(tmp_path / "r.csv", protocol="p")
    assert (result.written, result.duplicates) == (1, (other.content_hash(),)) and archive.count("p") == 1


def test_archive_add_names_the_stored_listing(tmp_path, capsys):
    g, other = _listings()
    db = str(tmp_path / "a.sqlite")
    assert _cli("archive", "add", "DARTS_V2", "--protocol", "p", "--archive", db, "--test-error", "0.03") == 0
    assert _cli("archive", "add", to_darts_text(other), "--protocol", "p", "--archive", db,
                "--test-error", "0.04") == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"stored as {g.content_hash()}" in err and "listed in another order" in err


def test_a_schema_1_archive_is_migrated_with_the_architecture_of_every_row(tmp_path):
    g, other = _listings()
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE evaluations (hash TEXT NOT NULL, protocol TEXT NOT NULL, seed INTEGER NOT NULL DEFAULT 0, "
        "genotype TEXT NOT NULL, test_error REAL, val_error REAL, params INTEGER, seconds REAL, "
        "extra TEXT NOT NULL DEFAULT '{}', config TEXT NOT NULL DEFAULT '{}', source TEXT, created_at TEXT NOT NULL, "
        "updated_at TEXT NOT NULL, PRIMARY KEY (hash, protocol, seed)); PRAGMA user_version = 1;"
    )
    conn.execute("INSERT INTO evaluations (hash, protocol, seed, genotype, test_error, created_at, updated_at) "
                 "VALUES (?, 'p', 0, ?, 0.03, 't', 't')",
                 (g.content_hash(), json.dumps(to_json(g), sort_keys=True)))  # fmt: skip
    conn.commit()
    conn.close()
    with Archive(path) as a:
        assert a.get(other, "p").test_error == 0.03 and a.records("p")[0].hash == g.content_hash()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert conn.execute("SELECT arch FROM evaluations").fetchone()[0] == g.architecture_hash()
    conn.close()
