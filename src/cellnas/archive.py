"""The evaluation archive: one SQLite file of (genotype, protocol, seed) -> metrics (Wan et al., ICLR 2022,
Sec. 3-5 work on a population of evaluated architectures; SPEC 5.1, 5.4, 6).

One row per ``(genotype hash, protocol name, seed)`` holding the genotype (native cellnas JSON), the
metrics (``test_error``, ``val_error`` as fractions, ``params``, ``seconds`` of training, anything else as
JSON in ``extra``), the protocol's configuration (JSON), where the row came from (``source``) and its
creation/update times. One row per *architecture*: a genotype whose nodes list their inputs in another order
than a stored row's (a cell read back from a NAS-Bench-301 config comes sorted) is the same architecture
(``arch``, :meth:`~cellnas.genotype.Genotype.architecture_hash`, schema 2), and its result goes to (or is kept
as) that row, which keeps its listing and hash (:attr:`Archive.merged` says which). Two side tables keep the
failures of evaluations (so a batch reports them and a re-run retries them) and operation-importance vectors
(SPEC 5.1) for the motif pre-filter (SPEC 5.3).

Several processes may write at once (several ``cellnas`` commands on one file, or one per machine on a
shared disk that supports SQLite locking): the file is in WAL mode, every write is one short
``BEGIN IMMEDIATE`` transaction, and a busy timeout makes writers queue instead of failing. Upserts are
``INSERT ... ON CONFLICT(hash, protocol, seed) DO UPDATE`` (or ``DO NOTHING`` with ``replace=False``).
``synchronous=FULL``: a row is on disk when :meth:`Archive.put` returns, so a crash (even of the
machine) loses nothing committed, and an interrupted batch resumes from :meth:`Archive.done`.

>>> import tempfile, os
>>> from cellnas.zoo import get_genotype
>>> with tempfile.TemporaryDirectory() as d:
...     a = Archive(os.path.join(d, "a.sqlite"))
...     _ = a.put(get_genotype("DARTS_V2"), "by-hand", {"test_error": 0.0276, "params": 3349342})
...     rec = a.get(get_genotype("DARTS_V2"), "by-hand")
...     a.close()
>>> rec.test_error, rec.params
(0.0276, 3349342)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import operator
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cellnas.errors import CellnasError, DataError, FormatError, GenotypeError
from cellnas.formats import from_json, load_genotype, to_darts_text, to_json
from cellnas.genotype import Genotype
from cellnas.runs import now_iso

__all__ = [
    "DEFAULT_PATH",
    "DERIVED_SOURCES",
    "EXPORT_SUFFIXES",
    "METRIC_COLUMNS",
    "SORT_KEYS",
    "Record",
    "Archive",
    "ImportResult",
    "check_result",
    "export_format",
    "metric_value",
]

log = logging.getLogger(__name__)

DEFAULT_PATH = "archive.sqlite"
SCHEMA_VERSION = 2

#: Metrics with their own column (errors are fractions: 0.0276 = 2.76 %); others go to ``extra``.
METRIC_COLUMNS: tuple[str, ...] = ("test_error", "val_error", "params", "seconds")
#: Sources (prefixes) of the rows that ``cellnas analyze importance`` and ``cellnas analyze ablate`` store: OI
#: neighbours, ablation variants (and the cells those commands were given). They are perturbations of a population,
#: not members of it (SPEC 5.1: the population is the evaluated set), so ``ranked``/``top`` can leave them out
#: (``include_derived=False``): otherwise every OI study would add its neighbours to the next study's population.
DERIVED_SOURCES: tuple[str, ...] = ("analyze-importance", "analyze-ablate")
#: The SQL condition "not a derived row" (parameters: the length and text of each of :data:`DERIVED_SOURCES`).
_NOT_DERIVED = "(source IS NULL OR NOT (" + " OR ".join(["substr(source, 1, ?) = ?"] * len(DERIVED_SOURCES)) + "))"
#: The largest integer an SQLite INTEGER column holds (a larger Python int is an OverflowError).
_MAX_SQL_INT = 2**63 - 1
#: Seeds are what NumPy and torch accept (:func:`cellnas.errors.check_seed`).
_SEED_LIMIT = 2**32
#: The file name suffixes of :meth:`Archive.export` and :meth:`Archive.export_importance`, and their formats.
EXPORT_SUFFIXES: dict[str, str] = {".csv": "csv", ".json": "json"}
#: What ``records(sort=...)`` accepts (``-key`` or ``key:desc`` for descending).
SORT_KEYS: tuple[str, ...] = METRIC_COLUMNS + ("hash", "protocol", "seed", "created_at", "updated_at")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evaluations (
    hash        TEXT    NOT NULL,
    protocol    TEXT    NOT NULL,
    seed        INTEGER NOT NULL DEFAULT 0,
    genotype    TEXT    NOT NULL,
    test_error  REAL,
    val_error   REAL,
    params      INTEGER,
    seconds     REAL,
    extra       TEXT    NOT NULL DEFAULT '{}',
    config      TEXT    NOT NULL DEFAULT '{}',
    source      TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    arch        TEXT,
    PRIMARY KEY (hash, protocol, seed)
);
CREATE INDEX IF NOT EXISTS evaluations_by_protocol ON evaluations (protocol, test_error);
CREATE INDEX IF NOT EXISTS evaluations_by_arch ON evaluations (arch, protocol, seed);
CREATE TABLE IF NOT EXISTS failures (
    hash        TEXT    NOT NULL,
    protocol    TEXT    NOT NULL,
    seed        INTEGER NOT NULL DEFAULT 0,
    genotype    TEXT    NOT NULL,
    error       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (hash, protocol, seed)
);
CREATE TABLE IF NOT EXISTS importance (
    hash        TEXT    NOT NULL,
    protocol    TEXT    NOT NULL,
    genotype    TEXT    NOT NULL,
    base_error  REAL,
    oi          TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (hash, protocol)
);
"""


def _json(obj: Any) -> str:
    return json.dumps(obj if obj is not None else {}, sort_keys=True, default=_default)


def _default(o):
    if hasattr(o, "item"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise CellnasError(f"metric {name!r} must be a number, got {value!r:.40}") from None
    if math.isnan(x):
        return None
    return x


@dataclass(frozen=True)
class Record:
    """One archived evaluation. Errors are fractions; ``extra`` holds any other metric."""

    hash: str
    protocol: str
    seed: int
    genotype: Genotype
    test_error: float | None = None
    val_error: float | None = None
    params: int | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    source: str | None = None
    created_at: str = ""
    updated_at: str = ""
    arch: str = ""  # the architecture hash (:meth:`Genotype.architecture_hash`), as the archive stores it

    def metrics(self) -> dict:
        """Every metric: the column ones that are set, then ``extra``."""
        out = {k: getattr(self, k) for k in METRIC_COLUMNS if getattr(self, k) is not None}
        out.update(self.extra)
        return out

    def flat(self, genotype_format: str = "darts") -> dict:
        """A flat dict for CSV/JSON export; the genotype as DARTS text (or the native JSON document)."""
        g = to_darts_text(self.genotype) if genotype_format == "darts" else to_json(self.genotype)
        row = {"hash": self.hash, "protocol": self.protocol, "seed": self.seed, "genotype": g}
        row.update({k: getattr(self, k) for k in METRIC_COLUMNS})
        row.update({k: v for k, v in self.extra.items() if k not in row})
        row.update({"source": self.source, "config": self.config, "created_at": self.created_at,
                    "updated_at": self.updated_at})  # fmt: skip
        return row


def metric_value(record: Record, metric: str) -> float | None:
    """``record``'s value of ``metric`` (a column or a key of ``extra``), or None."""
    if metric in METRIC_COLUMNS:
        return getattr(record, metric)
    value = record.extra.get(metric)
    return None if value is None else float(value)


class ImportResult(NamedTuple):
    """What :meth:`Archive.import_csv` did: rows ``written``, rows ``kept`` (already in the archive and
    ``replace=False``), and the hashes of ``duplicates`` (rows repeating an earlier row of the same file, same
    values: ignored), in file order."""

    written: int
    kept: int
    duplicates: tuple[str, ...] = ()
    #: ``(hash in the file, stored hash)`` of rows that landed on a stored row of the same architecture listed in
    #: another order (:attr:`Archive.merged`)
    merged: tuple[tuple[str, str], ...] = ()


def _architecture_hashes(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """``(architecture hash, rowid)`` of every evaluation row (schema 1 -> 2); a row whose genotype no longer reads
    keeps its listing hash, so that it matches only itself."""
    out = []
    for rowid, h, text in conn.execute("SELECT rowid, hash, genotype FROM evaluations").fetchall():
        try:
            out.append((from_json(json.loads(text)).architecture_hash(), rowid))
        except (ValueError, FormatError, GenotypeError):
            out.append((h, rowid))
    return out


def _row(g: Genotype, protocol: str, metrics: dict, seed: int, config: dict | None, source: str | None,
         created: str, updated: str | None = None) -> list:  # fmt: skip
    """The column values of one evaluation row, in the order of :meth:`Archive._write_rows`' INSERT; ``updated``
    defaults to ``created``."""
    if not isinstance(g, Genotype):
        raise CellnasError(f"archive rows need a Genotype, got {type(g).__name__}")
    if not protocol:
        raise CellnasError("archive rows need a protocol name")
    _check_metrics_dict(metrics)
    cols, extra = _split_metrics(metrics)
    return [g.content_hash(), str(protocol), _seed(seed), json.dumps(to_json(g), sort_keys=True),
            cols.get("test_error"), cols.get("val_error"), cols.get("params"), cols.get("seconds"),
            _json(extra), _json(config), source, created, updated or created, g.architecture_hash()]  # fmt: skip


def _check_metrics_dict(metrics: Any) -> None:
    """Refuse ``metrics`` that are not a dict ``{name: value}`` (None: no metric) with a :class:`CellnasError`."""
    if metrics is not None and not isinstance(metrics, Mapping):
        raise CellnasError(f"metrics must be a dict {{name: value}}, e.g. {{'test_error': 0.0276}}, got "
                           f"{type(metrics).__name__} {metrics!r:.60}")  # fmt: skip
    for key in metrics or {}:
        if not isinstance(key, str):
            raise CellnasError(f"metric names must be strings, e.g. 'test_error', got {key!r}")


def _seed(value: Any) -> int:
    """``value`` as the integer seed of an archive row, else a :class:`CellnasError` (the range is checked by
    :func:`check_result`)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise CellnasError(f"seed must be an integer >= 0 and < 2**32, got {value!r}") from None


def _split_metrics(metrics: dict) -> tuple[dict, dict]:
    cols: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in (metrics or {}).items():
        if k in METRIC_COLUMNS:
            x = _number(v, k)
            cols[k] = None if x is None else (int(round(x)) if k == "params" else x)
        else:
            extra[k] = v
    return cols, extra


class Archive:
    """An evaluation archive in one SQLite file (see the module docstring).

    The connection is opened lazily and per process, so an :class:`Archive` may be pickled into a worker
    process, which then opens its own connection. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, *, timeout: float = 60.0, create: bool = True) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self.create = create
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        #: ``(hash given, stored hash)`` of the rows the last :meth:`put_many` wrote onto (or kept as) a stored row of
        #: the same architecture listed in another order
        self.merged: list[tuple[str, str]] = []

    # -- connection -----------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"path": self.path, "timeout": self.timeout, "create": self.create, "_conn": None, "_pid": None,
                "merged": []}

    def __enter__(self) -> Archive:
        self.connection()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        self._pid = None

    def _journal_mode_wal(self, conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, retried for up to ``timeout`` s while another process holds the file.

        Switching the journal mode does not wait on the busy timeout: when several processes open a new archive
        at once, some get "database is locked" at once (measured: 11 of 480 opens, 8 processes at a time).
        """
        deadline, pause = time.monotonic() + self.timeout, 0.005
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def connection(self) -> sqlite3.Connection:
        """This process's connection (opened, configured and migrated on first use)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self.path.is_dir():
            raise DataError(f"archive {self.path} is a directory; give the archive file, "
                            f"e.g. {self.path / DEFAULT_PATH}")  # fmt: skip
        if not self.create and not self.path.is_file():
            raise DataError(f"archive {self.path} does not exist")
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise DataError(f"cannot open archive {self.path}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = self._journal_mode_wal(conn)
            if str(mode).lower() != "wal":
                log.warning("archive %s: WAL mode unavailable (journal_mode=%s); concurrent writers will wait longer",
                            self.path, mode)  # fmt: skip
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"archive {self.path} has schema version {version}; this cellnas reads up to "
                    f"{SCHEMA_VERSION}: upgrade cellnas"
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:  # another process may have migrated the file meanwhile: read the version under the write lock
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version == 1:  # version 2 added the architecture hash of each row
                        conn.execute("ALTER TABLE evaluations ADD COLUMN arch TEXT")
                        conn.executemany("UPDATE evaluations SET arch=? WHERE rowid=?",
                                         _architecture_hashes(conn))  # fmt: skip
                    for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise DataError(f"{self.path} is not a usable cellnas archive: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, so two writers
        queue on the busy timeout instead of deadlocking on a lock upgrade)."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DataError(
                f"archive {self.path} is locked by another writer for over {self.timeout:g} s: {exc}"
            ) from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        conn = self.connection()
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"archive {self.path}: {exc}") from None

    # -- evaluations ------------------------------------------------------------------------------
    def put(
        self,
        genotype: Genotype,
        protocol: str,
        metrics: dict,
        *,
        seed: int = 0,
        config: dict | None = None,
        source: str | None = None,
        replace: bool = True,
    ) -> bool:
        """Store one evaluation; return whether a row was written (``replace=False`` keeps an existing row).

        ``metrics`` is a dict ``{name: value}`` with at least one value (``None`` counts as not given); it is checked
        as ``cellnas archive add`` and ``import`` check a result (:func:`check_result`, same messages): errors are
        fractions in [0, 1] (NaN included; ``2.89`` is refused as a likely percentage), ``params`` and ``seconds``
        finite and >= 0, ``seed`` an integer in [0, 2**32). A refused value raises :class:`CellnasError` and writes
        nothing.
        """
        return self.put_many([(genotype, protocol, metrics)], seed=seed, config=config, source=source,
                             replace=replace, check=True) == 1  # fmt: skip

    def put_many(
        self,
        items: Iterable[tuple[Genotype, str, dict] | tuple[Genotype, str, dict, int]],
        *,
        seed: int = 0,
        config: dict | None = None,
        source: str | None = None,
        replace: bool = True,
        check: bool = False,
    ) -> int:
        """Store ``(genotype, protocol, metrics[, seed])`` items in one transaction; return the rows written.

        The items' shape is always checked (a :class:`CellnasError` names the item at fault, and nothing is written).
        The values are checked as :meth:`put` checks them (:func:`check_result`) only with ``check=True``: by
        default the metrics are stored as an evaluator reports them (a surrogate fitted on another metric reports
        it as ``test_error``, outside [0, 1]; a NaN metric is stored as no value).
        """
        now = now_iso()
        rows = []
        for number, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (3, 4):
                raise CellnasError(f"put_many: item {number} must be (genotype, protocol, metrics) or (genotype, "
                                   f"protocol, metrics, seed), got {item!r:.80}")  # fmt: skip
            g, protocol, metrics = item[0], item[1], item[2]
            s = _seed(item[3] if len(item) > 3 else seed)
            if check:
                check_result(metrics, s)
            rows.append(_row(g, protocol, metrics, s, config, source, now))
        return self._write_rows(rows, replace)

    def _write_rows(self, rows: list[list], replace: bool) -> int:
        """Write rows built by :func:`_row` in one transaction (see :meth:`put_many`); return the rows written."""
        conflict = (
            "DO UPDATE SET genotype=excluded.genotype, test_error=excluded.test_error, val_error=excluded.val_error, "
            "params=excluded.params, seconds=excluded.seconds, extra=excluded.extra, config=excluded.config, "
            "source=excluded.source, updated_at=excluded.updated_at, "
            # an imported row carries its own times: the result existed since the earlier of the two (julianday reads
            # the UTC offset; a time it cannot read keeps the stored one)
            "created_at=CASE WHEN julianday(excluded.created_at) < julianday(evaluations.created_at) "
            "THEN excluded.created_at ELSE evaluations.created_at END"
            if replace
            else "DO NOTHING"
        )
        sql = (
            "INSERT INTO evaluations (hash, protocol, seed, genotype, test_error, val_error, params, seconds, extra, "
            "config, source, created_at, updated_at, arch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            f"ON CONFLICT(hash, protocol, seed) {conflict}"
        )
        self.merged = []
        if not rows:
            return 0
        with self._write() as conn:
            before = conn.total_changes
            given = []  # (hash, protocol, seed) as given, whose failures a result clears too
            for row in rows:
                given.append((row[0], row[1], row[2]))
                stored = self._same_architecture(conn, row[0], row[1], row[2], row[13])
                if stored is not None:  # one row per architecture: the stored listing (hash, genotype) stays
                    self.merged.append((row[0], stored[0]))
                    row[0], row[3] = stored
                conn.execute(sql, row)
            written = conn.total_changes - before
            conn.executemany(
                "DELETE FROM failures WHERE hash=? AND protocol=? AND seed=?",
                given + [(r[0], r[1], r[2]) for r in rows],
            )
        return written

    @staticmethod
    def _same_architecture(conn: sqlite3.Connection, h: str, protocol: str, seed: int,
                           arch: str) -> tuple[str, str] | None:  # fmt: skip
        """``(hash, genotype JSON)`` of the listing the archive already keeps for ``arch`` under ``protocol`` (under any
        seed, so that every seed of an architecture is one listing) when it is not ``h``, else ``None``."""
        if conn.execute("SELECT 1 FROM evaluations WHERE hash=? AND protocol=? AND seed=?", (h, protocol, seed)
                        ).fetchone():  # fmt: skip
            return None
        row = conn.execute("SELECT hash, genotype FROM evaluations WHERE arch=? AND protocol=? "
                           "ORDER BY created_at, hash LIMIT 1", (arch, protocol)).fetchone()  # fmt: skip
        return None if row is None or row[0] == h else (row[0], row[1])

    def _record(self, row: sqlite3.Row) -> Record:
        try:
            g = from_json(json.loads(row["genotype"]))
        except (ValueError, FormatError, GenotypeError) as exc:
            raise DataError(f"archive {self.path}: row {row['hash']} holds an unreadable genotype ({exc})") from None
        return Record(
            hash=row["hash"], protocol=row["protocol"], seed=row["seed"], genotype=g, test_error=row["test_error"],
            val_error=row["val_error"], params=row["params"], seconds=row["seconds"],
            extra=json.loads(row["extra"] or "{}"), config=json.loads(row["config"] or "{}"), source=row["source"],
            created_at=row["created_at"], updated_at=row["updated_at"], arch=row["arch"] or g.architecture_hash(),
        )  # fmt: skip

    def get(self, genotype: Genotype | str, protocol: str, seed: int = 0) -> Record | None:
        """The record of ``genotype`` (or its hash) under ``protocol`` and ``seed``, or None. A genotype also finds
        the row of its architecture listed in another order (:meth:`~cellnas.genotype.Genotype.architecture_hash`)."""
        h = genotype.content_hash() if isinstance(genotype, Genotype) else str(genotype)
        rows = self._query("SELECT * FROM evaluations WHERE hash=? AND protocol=? AND seed=?", (h, protocol, seed))
        if not rows and isinstance(genotype, Genotype):
            rows = self._query("SELECT * FROM evaluations WHERE arch=? AND protocol=? AND seed=? ORDER BY created_at, "
                               "hash LIMIT 1", (genotype.architecture_hash(), protocol, seed))  # fmt: skip
        return self._record(rows[0]) if rows else None

    def done(self, protocol: str, seed: int | None = None) -> set[str] | set[tuple[str, int]]:
        """The hashes evaluated under ``protocol`` (and ``seed``); with ``seed=None`` (hash, seed) pairs."""
        if seed is None:
            rows = self._query("SELECT hash, seed FROM evaluations WHERE protocol=?", (protocol,))
            return {(r["hash"], r["seed"]) for r in rows}
        rows = self._query("SELECT hash FROM evaluations WHERE protocol=? AND seed=?", (protocol, int(seed)))
        return {r["hash"] for r in rows}

    def lookup(self, protocol: str, seed: int = 0, metric: str = "test_error") -> dict[str, float]:
        """``{hash: metric}`` for every row of ``protocol`` and ``seed`` that has the metric."""
        return {
            r.hash: v
            for r in self.records(protocol=protocol, seed=seed)
            if (v := metric_value(r, metric)) is not None
        }

    def protocols(self, include_derived: bool = True) -> list[tuple[str, int]]:
        """``(protocol, number of rows)``, most rows first; ``include_derived=False`` counts only the rows whose
        source is not one of :data:`DERIVED_SOURCES` (and leaves out protocols without such rows)."""
        where, params = "", []
        if not include_derived:
            where = " WHERE " + _NOT_DERIVED
            params = [x for prefix in DERIVED_SOURCES for x in (len(prefix), prefix)]
        rows = self._query(
            f"SELECT protocol, COUNT(*) AS n FROM evaluations{where} GROUP BY protocol ORDER BY n DESC, protocol",
            params,
        )
        return [(r["protocol"], r["n"]) for r in rows]

    def sources(self, protocol: str | None = None) -> list[tuple[str | None, int]]:
        """``(source, number of rows)`` (of ``protocol`` if given), most rows first."""
        sql, params = "SELECT source, COUNT(*) AS n FROM evaluations", ()
        if protocol is not None:
            sql, params = sql + " WHERE protocol=?", (protocol,)
        rows = self._query(sql + " GROUP BY source ORDER BY n DESC, source", params)
        return [(r["source"], r["n"]) for r in rows]

    def count(self, protocol: str | None = None) -> int:
        if protocol is None:
            return self._query("SELECT COUNT(*) AS n FROM evaluations")[0]["n"]
        return self._query("SELECT COUNT(*) AS n FROM evaluations WHERE protocol=?", (protocol,))[0]["n"]

    def records(
        self,
        protocol: str | None = None,
        seed: int | None = None,
        *,
        hash_prefix: str | None = None,
        sort: str | None = None,
        limit: int | None = None,
        max_test_error: float | None = None,
        source: str | None = None,
        include_derived: bool = True,
    ) -> list[Record]:
        """Rows matching the filters; ``sort`` is one of :data:`SORT_KEYS`, ``-key`` for descending
        (missing values last either way). ``source`` keeps rows whose source starts with it (e.g.
        ``"sample"`` for the sampled population, not the neighbours an OI study added);
        ``include_derived=False`` leaves out the rows whose source starts with one of :data:`DERIVED_SOURCES`."""
        where, params = [], []
        if protocol is not None:
            where.append("protocol = ?")
            params.append(protocol)
        if seed is not None:
            where.append("seed = ?")
            params.append(int(seed))
        if hash_prefix:
            where.append("hash LIKE ?")
            params.append(hash_prefix.replace("%", "").replace("_", "") + "%")
        if max_test_error is not None:
            where.append("test_error <= ?")
            params.append(float(max_test_error))
        if source:
            where.append("substr(source, 1, ?) = ?")
            params += [len(source), source]
        if not include_derived:
            where.append(_NOT_DERIVED)
            params += [x for prefix in DERIVED_SOURCES for x in (len(prefix), prefix)]
        sql = "SELECT * FROM evaluations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if sort:
            key, desc = (sort[1:], True) if sort.startswith("-") else (sort, False)
            key, _, direction = key.partition(":")
            if direction not in ("", "asc", "desc"):
                raise CellnasError(f"cannot sort by {sort!r}: the direction is :asc or :desc, e.g. test_error:desc")
            desc = desc or direction == "desc"
            if key not in SORT_KEYS:
                raise CellnasError(f"cannot sort by {key!r}; valid keys: {', '.join(SORT_KEYS)}")
            sql += f" ORDER BY {key} IS NULL, {key} {'DESC' if desc else 'ASC'}, hash, protocol, seed"
        else:
            sql += " ORDER BY created_at, hash, protocol, seed"
        if limit is not None:  # SQLite's LIMIT is a 64-bit integer: a larger one means every row anyway
            sql += f" LIMIT {min(int(limit), _MAX_SQL_INT)}"
        return [self._record(r) for r in self._query(sql, params)]

    def ranked(self, protocol: str, metric: str = "test_error", source: str | None = None,
               include_derived: bool = True) -> list[tuple[Genotype, float, int]]:  # fmt: skip
        """``(genotype, mean metric over seeds, number of seeds)`` per architecture, best (lowest) first.

        Ties are broken by hash, so the order is deterministic. ``source``, ``include_derived``: as in
        :meth:`records`.
        """
        groups: dict[str, list] = {}
        for r in self.records(protocol=protocol, source=source, include_derived=include_derived):
            v = metric_value(r, metric)
            if v is None:
                continue
            # one entry per architecture (a schema-1 archive may hold two listings of one): the first listing stored
            groups.setdefault(r.arch, [r.genotype, []])[1].append(v)
        out = [(g, sum(vs) / len(vs), len(vs), h) for h, (g, vs) in groups.items()]
        out.sort(key=lambda t: (t[1], t[3]))
        return [(g, v, n) for g, v, n, _ in out]

    def top(self, protocol: str, fraction: float | None = None, n: int | None = None, metric: str = "test_error",
            source: str | None = None, include_derived: bool = True) -> list[tuple[Genotype, float, int]]:  # fmt: skip
        """The best ``round(fraction * N)`` architectures (at least 1), or the best ``n``, of :meth:`ranked`
        (SPEC 5.1: the top 5 % of the population ranked by error; ``include_derived=False`` keeps OI neighbours and
        ablation variants out of the population, :data:`DERIVED_SOURCES`)."""
        ranked = self.ranked(protocol, metric, source, include_derived)
        if not ranked:
            known = ", ".join(f"{p} ({c})" for p, c in self.protocols()) or "none"
            which = f" from source {source!r}*" if source else ""
            derived = 0 if include_derived else len(self.ranked(protocol, metric, source, True))
            left_out = ""
            if derived:
                left_out = (f" outside the {derived} rows derived by `analyze importance`/`analyze ablate` (OI "
                            "neighbours, ablation variants), which are ranked only when asked (--include-derived)")
            raise DataError(f"archive {self.path} has no {metric}{which} under protocol {protocol!r}{left_out}; "
                            f"protocols: {known}")  # fmt: skip
        if (fraction is None) == (n is None):
            raise CellnasError("give either a fraction or a number of architectures")
        if fraction is not None:
            if not 0 < fraction <= 1:
                raise CellnasError(f"the top fraction must be in (0, 1], got {fraction}")
            n = max(1, int(round(fraction * len(ranked))))
        return ranked[: max(1, int(n))]

    def delete(self, protocol: str, hashes: Iterable[str] | None = None) -> int:
        """Delete the rows of ``protocol`` (only those of ``hashes`` if given); return how many."""
        with self._write() as conn:
            before = conn.total_changes
            if hashes is None:
                conn.execute("DELETE FROM evaluations WHERE protocol=?", (protocol,))
            else:
                conn.executemany("DELETE FROM evaluations WHERE protocol=? AND hash=?", [(protocol, h) for h in hashes])
            return conn.total_changes - before

    # -- failures ---------------------------------------------------------------------------------
    def record_failure(self, genotype: Genotype, protocol: str, error: str, seed: int = 0) -> None:
        """Remember that evaluating ``genotype`` failed (a later success removes the entry)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO failures (hash, protocol, seed, genotype, error, attempts, updated_at) "
                "VALUES (?,?,?,?,?,1,?) ON CONFLICT(hash, protocol, seed) DO UPDATE SET error=excluded.error, "
                "attempts=failures.attempts+1, updated_at=excluded.updated_at",
                (genotype.content_hash(), protocol, int(seed), json.dumps(to_json(genotype), sort_keys=True),
                 str(error), now_iso()),
            )  # fmt: skip

    def failures(self, protocol: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM failures", ()
        if protocol is not None:
            sql, params = sql + " WHERE protocol=?", (protocol,)
        return [
            {"hash": r["hash"], "protocol": r["protocol"], "seed": r["seed"], "error": r["error"],
             "attempts": r["attempts"], "updated_at": r["updated_at"]}  # fmt: skip
            for r in self._query(sql + " ORDER BY updated_at", params)
        ]

    # -- operation importance (SPEC 5.1) -------------------------------------------------------
    def put_importance(self, genotype: Genotype, protocol: str, oi: dict[int, float], base_error: float | None) -> None:
        """Store the OI vector ``{edge position: OI}`` of ``genotype`` computed with ``protocol``'s evaluator."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO importance (hash, protocol, genotype, base_error, oi, updated_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(hash, protocol) DO UPDATE SET genotype=excluded.genotype, base_error=excluded.base_error,"
                " oi=excluded.oi, updated_at=excluded.updated_at",
                (genotype.content_hash(), protocol, json.dumps(to_json(genotype), sort_keys=True), base_error,
                 json.dumps({str(k): float(v) for k, v in oi.items()}), now_iso()),
            )  # fmt: skip

    def importance(self, protocol: str | None = None,
                   prefer: str | None = None) -> dict[str, tuple[str, dict[int, float]]]:  # fmt: skip
        """``{hash: (protocol, {position: OI})}``: the vectors computed with ``protocol``; without it, each hash's
        vector under ``prefer`` when it has one, else its most recent (vectors of several protocols then mix: the
        first element of each value says which one it is)."""
        sql, params = "SELECT hash, protocol, oi, updated_at FROM importance", ()
        if protocol is not None:
            sql, params = sql + " WHERE protocol=?", (protocol,)
        out: dict[str, tuple[str, dict[int, float]]] = {}
        for r in self._query(sql + " ORDER BY updated_at, protocol", params):
            if prefer is not None and r["protocol"] != prefer and out.get(r["hash"], ("",))[0] == prefer:
                continue
            out[r["hash"]] = (r["protocol"], {int(k): float(v) for k, v in json.loads(r["oi"]).items()})
        return out

    def importance_rows(self, protocol: str | None = None, hash_prefix: str | None = None) -> list[dict]:
        """The stored OI vectors (of ``protocol``, of hashes starting with ``hash_prefix``) as rows: ``hash``,
        ``protocol``, ``genotype``, ``base_error``, ``oi`` ``{position: OI}``, ``updated_at`` (for
        :meth:`export_importance`)."""
        where, params = [], []
        if protocol is not None:
            where.append("protocol = ?")
            params.append(protocol)
        if hash_prefix:
            where.append("hash LIKE ?")
            params.append(hash_prefix.replace("%", "").replace("_", "") + "%")
        sql = "SELECT * FROM importance" + (" WHERE " + " AND ".join(where) if where else "")
        out = []
        for r in self._query(sql + " ORDER BY protocol, hash", params):
            try:
                g = from_json(json.loads(r["genotype"]))
            except (ValueError, FormatError, GenotypeError) as exc:
                raise DataError(f"archive {self.path}: OI vector {r['hash']} holds an unreadable genotype ({exc})") \
                    from None  # fmt: skip
            oi = {int(k): float(v) for k, v in json.loads(r["oi"]).items()}
            out.append({"hash": r["hash"], "protocol": r["protocol"], "genotype": g, "base_error": r["base_error"],
                        "oi": dict(sorted(oi.items())), "updated_at": r["updated_at"]})  # fmt: skip
        return out

    def export_importance(self, path: str | os.PathLike, rows: Sequence[dict], fmt: str | None = None) -> Path:
        """Write OI vectors (:meth:`importance_rows`) to ``path``: JSON (a list of objects, the native genotype
        document) or CSV (the genotype as DARTS text, ``oi`` as a JSON object); ``fmt`` defaults to the suffix
        (:func:`export_format`). :meth:`import_importance` reads both back, ``updated_at`` included."""
        from cellnas.runs import atomic_write_text

        path = Path(path)
        fmt = export_format(path, fmt)
        if fmt == "json":
            doc = [{**r, "genotype": to_json(r["genotype"]), "oi": {str(k): v for k, v in r["oi"].items()}}
                   for r in rows]  # fmt: skip
            return atomic_write_text(path, json.dumps(doc, indent=1, default=_default) + "\n")
        import io

        buf = io.StringIO()
        columns = ["hash", "protocol", "genotype", "base_error", "oi", "updated_at"]
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "genotype": to_darts_text(r["genotype"]), "base_error": _blank(r["base_error"]),
                             "oi": json.dumps({str(k): v for k, v in r["oi"].items()})})  # fmt: skip
        return atomic_write_text(path, buf.getvalue())

    def import_importance(self, path: str | os.PathLike, *, replace: bool = False) -> ImportResult:
        """Import OI vectors written by :meth:`export_importance` (CSV or JSON) in one transaction.

        Columns: ``genotype``, ``protocol``, ``oi`` (a JSON object ``{position: OI}``; positions 0 .. P-1 of the
        cell as listed, so a ``hash`` column, when present, must be the genotype's), optional ``base_error`` and
        ``updated_at`` (ISO 8601, kept as written, else the import's time). A bad row imports nothing and is named.
        A vector already stored for the same hash and protocol is kept unless ``replace`` (then it takes the file's
        values and ``updated_at``). Returns an :class:`ImportResult` (written, kept, duplicates in the file)."""
        path = Path(path)
        fields, rows, first, unit = _read_rows(path)
        missing = [c for c in ("genotype", "protocol", "oi") if c not in fields]
        if missing:
            raise FormatError(f"{path}: OI vectors need the columns genotype, protocol and oi (missing: "
                              f"{', '.join(missing)}), as `archive export --importance` writes them")  # fmt: skip
        items: dict[tuple[str, str], tuple[int, Genotype, dict[int, float], float | None, str]] = {}
        duplicates: list[str] = []
        now = now_iso()
        for line, row in enumerate(rows, start=first):
            where = f"{path}, {unit} {line}"
            try:
                g = load_genotype((row.get("genotype") or "").strip())
            except (FormatError, GenotypeError, CellnasError) as exc:
                raise FormatError(f"{where}: {exc}") from None
            h = g.content_hash()
            if (row.get("hash") or "").strip() not in ("", h):
                raise FormatError(f"{where}: hash {row['hash'].strip()} is not the genotype's ({h}); the OI positions "
                                  "follow the cell as listed, so the two must agree")  # fmt: skip
            prot = (row.get("protocol") or "").strip()
            if not prot:
                raise FormatError(f"{where}: no protocol")
            oi = _oi_vector(row.get("oi") or "", len(g.normal.pairs) + len(g.reduce.pairs), where)
            base = None
            if (row.get("base_error") or "").strip():
                try:
                    base = float(row["base_error"])
                except ValueError:
                    raise FormatError(f"{where}: base_error {row['base_error']!r} is not a number") from None
                problem = _metric_problem("test_error", base)
                if problem:
                    raise FormatError(f"{where}: base_error = {base} {problem}")
            if (h, prot) in items:
                before = items[(h, prot)]
                if (before[2], before[3]) != (oi, base):
                    raise FormatError(f"{where}: the OI vector of {h} under {prot} repeats {unit} {before[0]} with "
                                      f"other values; keep one of the two {unit}s")  # fmt: skip
                duplicates.append(h)
                continue
            updated = _times({"updated_at": row.get("updated_at") or ""}, where, now)[1]  # an OI file has no created_at
            items[(h, prot)] = (line, g, oi, base, updated)
        conflict = ("DO UPDATE SET genotype=excluded.genotype, base_error=excluded.base_error, oi=excluded.oi, "
                    "updated_at=excluded.updated_at") if replace else "DO NOTHING"  # fmt: skip
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO importance (hash, protocol, genotype, base_error, oi, updated_at) VALUES (?,?,?,?,?,?) "
                f"ON CONFLICT(hash, protocol) {conflict}",
                [(h, prot, json.dumps(to_json(g), sort_keys=True), base,
                  json.dumps({str(k): v for k, v in oi.items()}), updated)
                 for (h, prot), (_, g, oi, base, updated) in items.items()],
            )  # fmt: skip
            written = conn.total_changes - before
        return ImportResult(written, len(items) - written, tuple(duplicates))

    def importance_protocols(self) -> list[tuple[str, int]]:
        rows = self._query("SELECT protocol, COUNT(*) AS n FROM importance GROUP BY protocol ORDER BY n DESC")
        return [(r["protocol"], r["n"]) for r in rows]

    # -- import / export --------------------------------------------------------------------------
    def export(self, path: str | os.PathLike, records: Sequence[Record], fmt: str | None = None) -> Path:
        """Write ``records`` to ``path`` as CSV (genotype as DARTS text, one column per metric) or JSON
        (a list of flat rows with the native genotype document). ``fmt`` (csv or json) defaults to the suffix, which
        must then be ``.csv`` or ``.json`` (:func:`export_format`). Each row keeps its source, config and times, which
        :meth:`import_csv` reads back."""
        from cellnas.runs import atomic_write_text

        path = Path(path)
        fmt = export_format(path, fmt)
        if fmt == "json":
            rows = [r.flat("json") for r in records]
            return atomic_write_text(path, json.dumps(rows, indent=1, default=_default) + "\n")
        return atomic_write_text(path, records_to_csv(records))

    def import_csv(
        self,
        path: str | os.PathLike,
        protocol: str | None = None,
        *,
        seed: int = 0,
        replace: bool = False,
        source: str | None = None,
    ) -> ImportResult:
        """Import a CSV with a ``genotype`` column (anything :func:`~cellnas.formats.load_genotype` accepts:
        DARTS ``Genotype(...)`` text, a zoo name, cellnas/NB301/NNabla JSON, a file path) and metric columns.

        Optional columns: ``protocol`` (else ``protocol``), ``seed`` (else ``seed``), ``config`` (JSON),
        ``source`` (else ``source``, else ``import:<file name>``), ``created_at`` and ``updated_at`` (ISO 8601, kept
        as written; a missing one is the other, both missing are the import's time); ``hash`` is ignored (recomputed
        from the genotype). ``test_error``/``val_error``/``params``/``seconds`` are the metric columns, every other
        non-empty column goes to ``extra`` (as a number when it parses as one, an int when it is an integer).

        A file written by :meth:`export` imports as is, its sources and times included, so that export -> import ->
        export gives the same file. A row already stored (same genotype, protocol and seed, or the same architecture
        listed in another order: :attr:`Archive.merged`) is kept as it is, times included; with ``replace`` it takes
        the file's values and ``updated_at``, and keeps the earlier of the two ``created_at``.

        One transaction: a bad row imports nothing and names its line; a row without any metric is a bad row. A row
        repeating an earlier row of the file (same genotype hash, protocol and seed) is ignored and reported in
        ``duplicates`` when its metrics and config are the same (whatever its times: the first row's are kept), and
        refused (naming both lines) when they differ. Returns an :class:`ImportResult`: rows written, rows kept
        (already present and ``replace=False``), duplicates in the file.
        """
        path = Path(path)
        fields, rows, first, unit = _read_rows(path)
        if "genotype" not in fields:
            raise FormatError(f"{path}: needs a 'genotype' column (found: {', '.join(fields) or 'no header'})")
        if "oi" in fields and not set(fields) & set(METRIC_COLUMNS):
            raise FormatError(f"{path} holds OI vectors (an 'oi' column, no metric), as `cellnas archive export "
                              "--importance` writes them: import it with --importance")  # fmt: skip
        if protocol is None and "protocol" not in fields:
            raise CellnasError(f"{path} has no 'protocol' column: name the protocol of these results")
        ignored = {"genotype", "protocol", "seed", "config", "hash", "source", "created_at", "updated_at"}
        rows_out: list[list] = []
        now = now_iso()
        seen: dict[tuple[str, str, int], tuple[int, dict, dict]] = {}  # key -> (line, metrics, config)
        duplicates: list[str] = []
        for line, row in enumerate(rows, start=first):
            where = f"{path}, {unit} {line}"
            text = (row.get("genotype") or "").strip()
            if not text:
                raise FormatError(f"{where}: empty genotype")
            try:
                g = load_genotype(text)
            except (FormatError, GenotypeError, CellnasError) as exc:
                raise FormatError(f"{where}: {exc}") from None
            prot = (row.get("protocol") or "").strip() or protocol
            if not prot:
                raise CellnasError(f"{where}: no protocol")
            try:
                s = int(row["seed"]) if (row.get("seed") or "").strip() else int(seed)
            except ValueError:
                raise FormatError(f"{where}: seed {row.get('seed')!r} is not an integer") from None
            metrics: dict[str, Any] = {}
            for key, value in row.items():
                if key is None or key in ignored or value is None or not str(value).strip():
                    continue
                metrics[key] = _parse_value(str(value).strip())
                if key in METRIC_COLUMNS and isinstance(metrics[key], str):
                    raise FormatError(f"{where}: {key} = {metrics[key]!r} is not a number")
            if not metrics:
                named = ", ".join(k for k in fields if k and k not in ignored) or "none"
                raise FormatError(f"{where}: no metric (every metric column is empty: {named}); a result needs "
                                  "at least one value, e.g. test_error")  # fmt: skip
            try:
                check_result(metrics, s)
            except CellnasError as exc:
                raise FormatError(f"{where}: {exc}") from None
            cfg = {}
            if (row.get("config") or "").strip():
                try:
                    cfg = json.loads(row["config"])
                except json.JSONDecodeError:
                    raise FormatError(f"{where}: the config column is not JSON") from None
            same = (g.architecture_hash(), prot, s)  # two listings of one architecture are one row
            if same in seen:
                before, old_metrics, old_cfg = seen[same]
                if (old_metrics, old_cfg) != (metrics, cfg):
                    diff = _difference(metrics, old_metrics) if old_metrics != metrics else "config differs"
                    raise FormatError(
                        f"{where}: {g.content_hash()} under {prot} (seed {s}) repeats {unit} {before} with other "
                        f"values ({diff}); keep one of the two {unit}s"
                    )
                duplicates.append(g.content_hash())
                continue
            seen[same] = (line, metrics, cfg)
            origin = (row.get("source") or "").strip() or source or f"import:{path.name}"
            rows_out.append(_row(g, prot, metrics, s, cfg, origin, *_times(row, where, now)))
        written = self._write_rows(rows_out, replace)
        return ImportResult(written, len(rows_out) - written, tuple(duplicates), tuple(self.merged))


def export_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format (``csv`` or ``json``) of an export to ``path``: ``fmt`` when given, else the one its suffix names
    (:data:`EXPORT_SUFFIXES`). Any other suffix or format is a :class:`CellnasError` naming the valid ones, raised
    before anything is written."""
    if fmt is not None:
        if fmt not in EXPORT_SUFFIXES.values():
            raise CellnasError(f"unknown export format {fmt!r}; valid: {', '.join(EXPORT_SUFFIXES.values())}")
        return fmt
    path = Path(path)
    found = EXPORT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise CellnasError(f"cannot export to {path}: the file name must end in {' or '.join(EXPORT_SUFFIXES)} "
                           "(the format it is written in)")  # fmt: skip
    return found


def _parse_value(text: str) -> Any:
    """A metric cell read back: an ``int`` when ``text`` is an integer literal (an exported ``epochs`` of 3 stays 3,
    not 3.0), else a ``float`` when it parses as one, else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _times(row: dict[str, str], where: str, now: str) -> tuple[str, str]:
    """``(created_at, updated_at)`` of an imported row: the row's own (an :meth:`Archive.export` file carries them),
    kept as written; a missing one is the other one, both missing are ``now``. A time that is not ISO 8601, or a
    creation after the update, is a :class:`FormatError` naming ``where``."""
    import datetime as _dt

    given: dict[str, _dt.datetime] = {}
    texts = {}
    for key in ("created_at", "updated_at"):
        text = (row.get(key) or "").strip()
        if not text:
            continue
        try:
            given[key] = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise FormatError(f"{where}: {key} {text!r} is not an ISO 8601 time (e.g. {now})") from None
        texts[key] = text
    created = texts.get("created_at") or texts.get("updated_at") or now
    updated = texts.get("updated_at") or created
    if len(given) == 2 and (given["created_at"].tzinfo is None) == (given["updated_at"].tzinfo is None) \
            and given["created_at"] > given["updated_at"]:  # fmt: skip
        raise FormatError(f"{where}: created_at {created} is after updated_at {updated}")
    return created, updated


def _difference(new: dict[str, Any], old: dict[str, Any]) -> str:
    """``"test_error 0.05 vs 0.03"`` for each metric whose value differs between two rows (``-``: absent)."""

    def shown(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return "-" if v is None else str(v)

    keys = [k for k in dict.fromkeys([*new, *old]) if new.get(k) != old.get(k)]
    return ", ".join(f"{k} {shown(new.get(k))} vs {shown(old.get(k))}" for k in keys)


def check_result(metrics: dict[str, Any], seed: int) -> None:
    """Refuse a result given by hand (``cellnas archive add`` and ``import`` both call this) whose values cannot
    be right: a seed outside [0, 2**32), a metric column that is not a number, an error that is not a fraction in [0, 1]
    (NaN and infinities included), params or seconds that are negative or not finite. Other metrics are not
    checked; ``None`` is a value not given, and a result needs at least one value. Raises :class:`CellnasError`
    naming the value. :meth:`Archive.put` applies the same checks."""
    _check_metrics_dict(metrics)
    if not any(v is not None for v in (metrics or {}).values()):
        raise CellnasError("no metric: a result needs at least one value, e.g. test_error")
    seed = _seed(seed)
    if not 0 <= seed < _SEED_LIMIT:
        why = "is negative" if seed < 0 else "is too large"
        raise CellnasError(f"seed {seed} {why}; a seed is an integer >= 0 and < 2**32")
    for key, value in metrics.items():
        if key not in METRIC_COLUMNS or value is None:
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise CellnasError(f"{key} = {value!r:.40} is not a number") from None
        except OverflowError:
            raise CellnasError(f"{key} = {value!r:.40} is too large") from None
        problem = _metric_problem(key, x)
        if problem:
            shown = str(int(x)) if x.is_integer() and abs(x) < 1e16 else str(x)
            raise CellnasError(f"{key} = {shown} {problem}")


def _metric_problem(key: str, x: float) -> str | None:
    """Why ``x`` cannot be the value of metric ``key`` (None when it can): errors are fractions in [0, 1];
    params and seconds are finite and >= 0 (params < 2**63, the largest SQLite integer); other metrics are not
    checked."""
    if key in ("test_error", "val_error"):
        if not (math.isfinite(x) and 0 <= x <= 1):
            return "is not an error fraction in [0, 1]" + (" (a percentage? divide by 100)" if 1 < x <= 100 else "")
    elif key in ("params", "seconds"):
        if not (math.isfinite(x) and x >= 0):
            return "must be a finite number >= 0"
        if key == "params" and x >= _MAX_SQL_INT:  # an INTEGER column
            return "must be a count >= 0 and < 2**63"
    return None


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]], int, str]:
    """``(fields, rows, number of the first row, "line" or "row")`` of a CSV file, or of a JSON list of objects
    (``.json``, :func:`_json_rows`)."""
    if path.suffix.lower() == ".json":
        fields, rows = _json_rows(path)
        return fields, rows, 1, "row"
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a readable CSV file: {exc}") from None
    return fields, rows, 2, "line"


def _oi_vector(text: str, n_edges: int, where: str) -> dict[int, float]:
    """The ``{position: OI}`` of an ``oi`` cell (a JSON object), each position in 0 .. ``n_edges`` - 1 and each OI a
    finite number, else a :class:`FormatError` naming ``where``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not doc:
        raise FormatError(f"{where}: oi must be a non-empty JSON object {{position: OI}}, got {text[:40]!r}")
    out = {}
    for k, v in doc.items():
        try:
            position, value = int(k), float(v)
        except (TypeError, ValueError):
            raise FormatError(f"{where}: oi entry {k!r}: {v!r} is not a position and a number") from None
        if not 0 <= position < n_edges or not math.isfinite(value):
            raise FormatError(f"{where}: oi entry {k!r}: {v!r} needs a position in 0..{n_edges - 1} and a finite OI")
        out[position] = value
    return dict(sorted(out.items()))


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _json_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The rows of a JSON file written by :meth:`Archive.export` (a list of flat objects), as the CSV reader gives
    them: every value a string (objects such as the genotype document and the config as JSON text, null empty)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a readable JSON file: {exc}") from None
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise FormatError(f"{path}: expected a list of rows (objects), as `cellnas archive export FILE.json` writes")

    def text(v: Any) -> str:
        if v is None:
            return ""
        return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)

    fields = list(dict.fromkeys(k for r in doc for k in r))
    return fields, [{str(k): text(v) for k, v in r.items()} for r in doc]


def records_to_csv(records: Sequence[Record]) -> str:
    """CSV text of ``records``: fixed columns, then the union of the ``extra`` keys (sorted)."""
    import io

    extras = sorted({k for r in records for k in r.extra} - set(METRIC_COLUMNS) - {"hash", "protocol", "seed"})
    columns = ["hash", "protocol", "seed", "genotype", *METRIC_COLUMNS, *extras, "source", "config",
               "created_at", "updated_at"]  # fmt: skip
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = r.flat("darts")
        row["config"] = json.dumps(r.config, sort_keys=True)
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()
