"""Process-level CPU settings that the command line applies before any work.

glibc's allocator hands large freed blocks back to the operating system (``mmap``/``munmap`` above a
threshold, heap trimming above another) and takes them again on the next allocation. A training step
allocates and frees the same few-megabyte activation tensors hundreds of times, and every page taken again
is a page fault: on the 2-core machine of ``benchmarks/RESULTS.md`` a chain of three 1x1 convolutions on a
(64, 16, 32, 32) batch ran 3-6x slower for it, and a DARTS evaluation-network step spent about a third of
its time in the kernel. :func:`keep_freed_memory` makes glibc keep freed memory in the process for reuse
(blocks up to 32 MiB come from the heap, the heap is not trimmed below 2 GiB of free space), so the resident
set stays at the run's peak instead of shrinking between steps.

Set ``CELLNAS_MALLOC=default`` in the environment to leave glibc's defaults alone.

Also here, the other two glibc/Linux calls the benchmarks make: :func:`trim_heap` (hand freed heap memory back,
so a resident-set measurement starts from what is live) and :func:`die_with_parent`; and :func:`busy_warning`, which
the command line prints when other work already occupies the cores its threads need.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "freed_memory_kept", "trim_heap", "die_with_parent", "other_runnable", "busy_warning"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int

_applied: bool | None = None


def _libc() -> ctypes.CDLL | None:
    """glibc, or ``None`` off Linux or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (see the module docstring). Returns whether it was applied:
    False on other C libraries and platforms, or with ``CELLNAS_MALLOC=default``. Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    libc = _libc()
    if os.environ.get("CELLNAS_MALLOC", "").lower() == "default" or libc is None:
        return False
    try:
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except AttributeError:  # musl and others: no mallopt, nothing to do
        _applied = False
    return _applied


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has been applied in this process (without applying it)."""
    return bool(_applied)


def trim_heap() -> None:
    """Hand freed heap memory back to the operating system (glibc ``malloc_trim``; elsewhere nothing)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def die_with_parent() -> None:
    """Linux: have the kernel send this process SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a
    worker of a killed command does not live on as an orphan. Elsewhere nothing."""
    libc = _libc()
    if libc is not None and hasattr(libc, "prctl"):
        import signal

        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def other_runnable(samples: int = 5, interval: float = 0.01) -> int | None:
    """Linux: how many threads other than this one are runnable right now (the median of ``samples`` reads of the
    running count in ``/proc/loadavg``, which counts the reader too). ``None`` where it cannot be read.

    Unlike the load average, this does not remember a job that ended a minute ago.
    """
    import statistics
    import time

    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(running - 1)
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, int(statistics.median(counts)))


def busy_warning(threads: int, others: int | None = None, cores: int | None = None) -> str | None:
    """A warning when ``threads`` compute threads would share the cores with ``others`` already running (read by
    :func:`other_runnable` when not given); ``None`` when they fit.

    PyTorch's OpenMP threads spin at each of the thousands of barriers in a training step; when another process
    holds one of the cores, the spinning threads wait for the operating system to schedule it. Measured on a
    2-core machine with another benchmark running: a tiny batch norm took 17.7 ms with 2 threads and 0.017 ms with
    1 thread, and a tiny search step 28-34 s against 0.11 s.
    """
    others = other_runnable() if others is None else others
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if others is None or not cores or others + threads <= cores:
        return None
    free = max(1, cores - others)
    # with as few threads as the free cores (one, at the least) already, fewer threads is no advice
    advice = (f"Use --threads {free}, or run when the machine is idle." if threads > free else
              "Run when the machine is idle, or expect this command to be slower than usual.")  # fmt: skip
    return (f"{others} other thread{'s are' if others != 1 else ' is'} already running on this machine's {cores} "
            f"cores, and this command would add {threads}: PyTorch threads that share a core with other work can run "
            f"many times slower. {advice}")  # fmt: skip
