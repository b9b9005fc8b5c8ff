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
so a resident-set measurement starts from what is live) and :func:`die_with_parent`.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "freed_memory_kept", "trim_heap", "die_with_parent"]

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
