"""Where evaluations run: a small executor interface so that a distributed backend can plug in later.

An :class:`Executor` runs ``fn(item)`` for every item and yields :class:`Done` records **as they finish**
(in any order). A task that raises an :class:`Exception` is reported in its own :class:`Done` (``error`` set), never
fatal to the others; a task that raises :class:`KeyboardInterrupt` (stopped by Ctrl-C) is no failure: the map
stops and raises it in the caller; a worker process that dies (killed, out of memory) fails the tasks it took
down, and the pool is restarted for the rest.

* :class:`SerialExecutor`: in this process, in order (tests, cheap evaluators, ``--workers 1``);
* :class:`ProcessExecutor`: ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` (default) or
  ``forkserver`` context (never ``fork``: torch and SQLite connections do not survive it). Each worker sets
  ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)`` before any work, since oversubscribed OpenMP pools
  are many times slower on small machines.

A distributed executor (Ray, Dask, a job queue) only has to implement :meth:`Executor.map_unordered` with the
same contract; results are committed to the archive by the caller, in the parent, as they arrive.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Done", "Executor", "SerialExecutor", "ProcessExecutor", "make_executor", "init_worker"]

log = logging.getLogger(__name__)


@dataclass
class Done:
    """One finished task: ``index`` into the submitted items, the item, and its value or its error."""

    index: int
    item: Any
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(exc: BaseException) -> str:
    """One line for the report; the traceback goes to the debug log."""
    log.debug("task failed:\n%s", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class Executor(ABC):
    """Runs ``fn`` over items; see the module docstring for the contract."""

    workers: int = 1

    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Done]:
        """Yield a :class:`Done` per item as each finishes. ``fn`` must be picklable for process executors."""

    def close(self, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Release workers (no-op by default); ``wait=False`` stops running tasks where possible."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(wait=exc_type is None)


class SerialExecutor(Executor):
    """Runs every task in this process, in order."""

    def map_unordered(self, fn, items):
        for i, item in enumerate(items):
            try:
                value = fn(item)
            except Exception as exc:  # noqa: BLE001 - reported per task
                yield Done(i, item, error=_describe(exc))
            else:
                yield Done(i, item, value=value)


def init_worker(log_level: int = logging.WARNING, parent: int | None = None) -> None:
    """Worker set-up: SIGINT ignored, one intra-op thread, quiet logs. ``OMP_NUM_THREADS=1`` is read by torch (and by
    OpenMP-based libraries) when they are first imported, which in a spawned worker happens after this;
    torch is not imported here, so workers of torch-free tasks start fast."""
    import signal

    from cellnas.cpu import die_with_parent, keep_freed_memory

    # Ctrl-C is the parent's to handle: it commits what finished and terminates the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()  # an idle worker of a killed parent would wait on its task queue for ever, adopted by init
    if parent is not None and os.getppid() != parent:  # the parent died before the line above (we were adopted)
        os._exit(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    logging.basicConfig(level=log_level, format="%(message)s")
    logging.getLogger("cellnas").setLevel(log_level)
    keep_freed_memory()  # as the CLI does in its own process: trainings reuse freed activation memory
    torch = sys.modules.get("torch")  # imported already (forkserver preload): set it directly
    if torch is not None:
        torch.set_num_threads(1)


def _call(fn, item):
    """Run in the worker: errors come back as text so that any exception type crosses the process border."""
    try:
        return True, fn(item)
    except Exception as exc:  # noqa: BLE001 - reported per task
        return False, _describe(exc)


class ProcessExecutor(Executor):
    """A pool of ``workers`` processes (``spawn`` or ``forkserver`` start method).

    At most ``workers`` tasks are in flight, so an interrupted batch has started few tasks it will not
    finish. The pool starts on first use and is reused by later :meth:`map_unordered` calls until
    :meth:`close`.
    """

    def __init__(self, workers: int, context: str = "spawn", log_level: int = logging.WARNING) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if context not in ("spawn", "forkserver"):
            raise ValueError(f"context must be 'spawn' or 'forkserver', got {context!r} (fork is unsafe with torch)")
        self.workers = int(workers)
        self.context = context
        self.log_level = log_level
        self._pool = None

    def _ensure_pool(self):
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=mp.get_context(self.context),
                initializer=init_worker,
                # a spawned worker's parent is this process; a forkserver's worker's is the fork server
                initargs=(self.log_level, os.getpid() if self.context == "spawn" else None),
            )  # fmt: skip
        return self._pool

    def map_unordered(self, fn, items):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = list(enumerate(items))
        pending.reverse()  # pop() from the end keeps submission order
        # Tasks lost together when a worker died: a dying worker breaks the whole pool, so any task in flight (or
        # submitted before the break was noticed) is lost with it. They are run again one at a time, so that only
        # the task that kills its worker when run alone is reported as dead.
        suspects: list = []
        running: dict = {}
        died = "worker process died (killed or out of memory)"
        try:
            while pending or suspects or running:
                while (suspects or pending) and len(running) < (1 if suspects else self.workers):
                    i, item = suspects.pop() if suspects else pending.pop()
                    try:
                        running[self._ensure_pool().submit(_call, fn, item)] = (i, item)
                    except BrokenProcessPool:
                        self._restart()
                        running[self._ensure_pool().submit(_call, fn, item)] = (i, item)
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                lost = []
                for fut in finished:
                    i, item = running.pop(fut)
                    try:
                        ok, value = fut.result()
                    except BrokenProcessPool:
                        lost.append((i, item))
                        continue
                    except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                        yield Done(i, item, error=_describe(exc))
                        continue
                    yield Done(i, item, value=value) if ok else Done(i, item, error=value)
                if lost:
                    for fut, (i, item) in list(running.items()):  # the others in flight went down with the pool
                        try:
                            ok, value = fut.result(timeout=0)
                        except Exception:  # noqa: BLE001 - lost with the pool
                            lost.append((i, item))
                        else:
                            yield Done(i, item, value=value) if ok else Done(i, item, error=value)
                    running.clear()
                    self._restart()
                    if len(lost) == 1:  # it was the only task in the pool: it killed its worker
                        yield Done(*lost[0], error=died)
                    else:
                        suspects.extend(reversed(lost))
        finally:
            for fut in running:
                fut.cancel()

    def _restart(self) -> None:
        log.warning("a worker process died; restarting the pool")
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def close(self, wait: bool = True) -> None:
        """Shut the pool down; ``wait=False`` (after Ctrl-C) also terminates the workers still running."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if wait:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        processes = list(getattr(pool, "_processes", {}).values())  # our own workers, ended by their ids
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
        for proc in processes:
            proc.join(timeout=5)


def make_executor(workers: int = 1, context: str = "spawn") -> Executor:
    """A :class:`SerialExecutor` for ``workers <= 1``, else a :class:`ProcessExecutor`."""
    return SerialExecutor() if workers <= 1 else ProcessExecutor(workers, context=context)
