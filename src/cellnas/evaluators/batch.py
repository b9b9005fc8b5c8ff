"""Evaluate many genotypes with one evaluator, through the archive (SPEC 5.1, 5.4: populations of hundreds to
tens of thousands of architectures).

:func:`evaluate_batch`:

1. drops duplicates (by :meth:`~cellnas.genotype.Genotype.content_hash`), and evaluates two listings of one
   architecture (:meth:`~cellnas.genotype.Genotype.architecture_hash`: a node's inputs in another order) once;
2. **resumes**: every (architecture, protocol, seed) already in the archive is reused, not re-evaluated, so an
   interrupted batch run again evaluates only what is missing;
3. runs the rest: expensive evaluators (``evaluator.parallel``, e.g. the proxy trainer) through an
   :class:`~cellnas.evaluators.executor.Executor` (worker processes with ``workers > 1``), each result
   **committed to the archive in the parent as soon as it arrives** (one short transaction; the workers never
   touch the database); cheap evaluators (surrogate, synthetic) in this process, vectorised over chunks and
   committed per chunk;
4. reports failures per architecture (the batch goes on; the archive's ``failures`` table keeps them, and
   a re-run retries them);
5. stops on Ctrl-C or SIGTERM (:class:`BatchInterrupted`, which the CLI turns into exit status 130 or 143, as an
   interrupted ``cellnas train``): what finished is committed, the evaluations in flight are dropped (a training
   stops after its step, worker processes are ended), never recorded as failures, and a re-run evaluates only what
   is missing. An evaluation stopped so must raise :class:`KeyboardInterrupt` or a
   :class:`~cellnas.runs.RunInterrupted` (as :func:`cellnas.train.train` does): any other exception is a failure.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

from cellnas.archive import Archive
from cellnas.errors import CellnasError, check_seed
from cellnas.evaluators.executor import Executor, make_executor
from cellnas.genotype import Genotype
from cellnas.runs import RunInterrupted

__all__ = ["BatchReport", "BatchInterrupted", "evaluate_batch"]

log = logging.getLogger(__name__)

_CHUNK = 256


@dataclass
class BatchReport:
    """What :func:`evaluate_batch` did. ``results`` maps every requested hash that has metrics (reused or new)
    to them; ``order`` lists the unique requested hashes in request order."""

    protocol: str
    seed: int
    genotypes: dict[str, Genotype] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    eval_seconds: list[float] = field(default_factory=list)

    @property
    def order(self) -> list[str]:
        return list(self.genotypes)

    def error_of(self, genotype: Genotype) -> float | None:
        m = self.results.get(genotype.content_hash())
        return None if m is None or m.get("test_error") is None else float(m["test_error"])

    @property
    def all_failed(self) -> bool:
        """True when something was requested and every evaluation of it failed (no result, new or reused)."""
        return bool(self.failed) and not self.results

    def raise_if_all_failed(self) -> None:
        """:class:`~cellnas.errors.CellnasError` naming the first failure when :attr:`all_failed`: a study with no
        result at all must not exit 0 with empty figures."""
        if self.all_failed:
            first = next(iter(self.failed.values()))
            raise CellnasError(f"all {len(self.failed)} evaluations with {self.protocol} failed (the first: {first}); "
                               "nothing written")  # fmt: skip

    def summary(self) -> dict:
        per = self.eval_seconds
        return {
            "protocol": self.protocol, "seed": self.seed, "requested": len(self.genotypes),
            "evaluated": len(self.new), "reused": len(self.reused), "failed": len(self.failed),
            "wall_seconds": round(self.seconds, 3),
            "mean_seconds_per_evaluation": round(sum(per) / len(per), 3) if per else None,
        }  # fmt: skip


class BatchInterrupted(RunInterrupted):
    """Raised by :func:`evaluate_batch` after Ctrl-C or SIGTERM, once the finished results are committed; the
    message says what is stored and how to continue. Carries the partial :class:`BatchReport` as ``report``."""

    def __init__(self, message: str, report: BatchReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@contextmanager
def _interruptible():
    """Within the block, Ctrl-C raises :class:`KeyboardInterrupt` even in a process that started with SIGINT ignored
    (a background job of a script), as ``cellnas train`` and ``search`` stop on it; SIGTERM follows, through the
    CLI's :func:`~cellnas.runs.sigterm_as_sigint`. A handler installed by the caller is kept. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if callable(previous):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_one(evaluator, seed: int, item: tuple[str, Genotype]) -> dict:
    """Worker side: one evaluation, its wall time added as ``seconds`` when the evaluator gives none, and for
    expensive evaluators the worker's CPU time as ``cpu_seconds``. An evaluation stopped by Ctrl-C (a training that
    raised :class:`~cellnas.runs.RunInterrupted` after its step) raises :class:`KeyboardInterrupt`, which executors
    pass on instead of reporting a failure: the batch stops."""
    _, genotype = item
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        metrics = dict(evaluator.evaluate(genotype, seed))
    except RunInterrupted:
        raise KeyboardInterrupt from None  # its resume hint names a directory the batch does not resume from
    metrics.setdefault("seconds", time.perf_counter() - t0)
    if evaluator.parallel:  # CPU time of the worker: comparable across loaded and idle machines
        metrics.setdefault("cpu_seconds", time.process_time() - c0)
    metrics["_wall"] = time.perf_counter() - t0
    return metrics


def evaluate_batch(
    evaluator,
    genotypes: Iterable[Genotype],
    *,
    archive: Archive | None = None,
    seed: int = 0,
    workers: int = 1,
    executor: Executor | None = None,
    context: str = "spawn",
    progress: bool = False,
    source: str | None = None,
) -> BatchReport:
    """Evaluate ``genotypes`` with ``evaluator`` (see the module docstring); return a :class:`BatchReport`.

    ``workers`` > 1 starts a process pool for ``parallel`` evaluators (ignored for cheap ones); pass your own
    ``executor`` to run elsewhere. ``source`` is stored with each new archive row (e.g. ``"sample:prim"``).
    Ctrl-C (or SIGTERM, in the CLI) raises :class:`BatchInterrupted` once the finished results are committed.
    """
    t_start = time.perf_counter()
    seed = check_seed(seed, "the evaluation seed (--eval-seed)")
    report = BatchReport(protocol=evaluator.protocol, seed=int(seed))
    for g in genotypes:
        report.genotypes.setdefault(g.content_hash(), g)
    listings: dict[str, list[str]] = {}  # architecture hash -> the requested hashes of its listings
    for h, g in report.genotypes.items():
        listings.setdefault(g.architecture_hash(), []).append(h)
    if archive is not None:
        for rec in archive.records(protocol=evaluator.protocol, seed=seed):
            for h in listings.get(rec.arch, ()):
                if h not in report.results:
                    report.results[h] = rec.metrics()
                    report.reused.append(h)
    same = {h: hs for hs in listings.values() for h in hs}
    todo = [(h, g) for h, g in report.genotypes.items() if h not in report.results and same[h][0] == h]
    if report.reused:
        log.info("%s: %d of %d architectures already in the archive, %d to evaluate", evaluator.protocol,
                 len(report.reused), len(report.genotypes), len(todo))  # fmt: skip
    config = evaluator.config()
    bar = _bar(progress, len(todo), evaluator.protocol)
    pending: list[tuple[Genotype, dict]] = []

    def commit() -> None:
        if archive is not None and pending:
            archive.put_many([(g, evaluator.protocol, m, seed) for g, m in pending], config=config, source=source)
        pending.clear()

    finished: list[str] = []  # the architectures of ``todo`` done (a result or a failure)

    def accept(h: str, g: Genotype, metrics: dict | None, error: str | None) -> None:
        finished.append(h)
        others = same[h][1:]  # other listings of the architecture: the same result
        if error is not None:
            report.failed[h] = error
            report.failed.update(dict.fromkeys(others, error))
            log.warning("%s: evaluation of %s failed: %s", evaluator.protocol, h, error)
            if archive is not None:
                archive.record_failure(g, evaluator.protocol, error, seed=seed)
        else:
            wall = metrics.pop("_wall", None)
            if wall is not None:
                report.eval_seconds.append(float(wall))
            report.results[h] = metrics
            report.results.update(dict.fromkeys(others, metrics))
            report.new.append(h)
            pending.append((g, metrics))
        if bar is not None:
            bar.update(1)

    own_executor = None
    try:
        with _interruptible():
            if todo and (evaluator.parallel or executor is not None):
                if executor is None:
                    executor = own_executor = make_executor(workers, context=context)
                fn = functools.partial(_run_one, evaluator, int(seed))
                for done in executor.map_unordered(fn, todo):
                    h, g = done.item
                    accept(h, g, done.value, done.error)
                    commit()  # expensive results: each one durable as soon as it arrives
            else:
                for start in range(0, len(todo), _CHUNK):
                    chunk = todo[start : start + _CHUNK]
                    t0 = time.perf_counter()
                    try:
                        outs = evaluator.evaluate_many([g for _, g in chunk], seed)
                        per = (time.perf_counter() - t0) / max(1, len(chunk))
                        for (h, g), m in zip(chunk, outs):
                            accept(h, g, {**m, "_wall": per}, None)
                    except Exception:  # noqa: BLE001 - find the culprits one by one
                        for h, g in chunk:
                            try:
                                accept(h, g, _run_one(evaluator, seed, (h, g)), None)
                            except Exception as exc:  # noqa: BLE001 - reported per architecture
                                accept(h, g, None, f"{type(exc).__name__}: {exc}")
                    commit()
    except BaseException as exc:
        commit()
        if own_executor is not None:
            own_executor.close(wait=False)  # ends the workers: their evaluations in flight are dropped
            own_executor = None
        if isinstance(exc, KeyboardInterrupt):
            report.seconds = time.perf_counter() - t_start
            raise _interrupted(report, len(todo) - len(finished), len(todo), archive) from None
        raise
    finally:
        if own_executor is not None:
            own_executor.close()
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - t_start
    log.debug("%s: %d evaluated, %d reused, %d failed in %.1f s", evaluator.protocol, len(report.new),
             len(report.reused), len(report.failed), report.seconds)  # fmt: skip
    return report


def _interrupted(report: BatchReport, left: int, n_todo: int, archive: Archive | None) -> BatchInterrupted:
    """The :class:`BatchInterrupted` of a batch stopped with ``left`` of its ``n_todo`` evaluations not done."""
    where = f"committed to {archive.path}" if archive is not None else "not stored (no archive)"
    rerun = "; the same command evaluates only what is missing" if archive is not None else ""
    return BatchInterrupted(
        f"interrupted: {len(report.new)} new evaluations with {report.protocol} {where}, {left} of {n_todo} not "
        f"evaluated (the ones in flight dropped, not recorded as failures){rerun}",
        report,
    )


def _bar(progress: bool, total: int, what: str):
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=what, unit="arch", dynamic_ncols=True, leave=False)
