"""Small C kernels compiled on first use, with a pure-PyTorch path wherever they are unavailable.

:func:`depthwise_weight_grad` is the weight gradient of a stride-1 depthwise convolution on channels_last float32
maps (``depthwise_wgrad.c``). oneDNN's kernel for it is slow for 5x5 and dilated kernels on CPU (see
:mod:`cellnas.ops`); measured alone on the 2-core AMD EPYC of benchmarks/RESULTS.md (batch 64, 2 threads), a
5x5 kernel at C=16, 32x32 takes 0.5 ms here against 3.3 ms for the previous re-expression through oneDNN's 3x3
kernels and 4.1 ms for oneDNN's own 5x5 one.

The source ships with the package and is compiled once per machine with the system C compiler (``$CC``, else
``cc``, ``gcc`` or ``clang``; ``-O3 -march=native``, retried without ``-march=native``; with ``-fopenmp`` first
where PyTorch runs on GNU OpenMP, so that the kernel uses PyTorch's own worker threads, see :func:`_flag_sets`) into
``$CELLNAS_CACHE/native`` (default ``$XDG_CACHE_HOME/cellnas/native``, i.e. ``~/.cache/cellnas/native``), named
by a hash of the source, compiler, flags and the CPU's instruction-set flags, and written atomically, so
concurrent processes can compile at the same time. A compile that fails is remembered beside it (``*.failed``,
holding the compiler's message) and not repeated by later processes: delete the file (or the directory) after
fixing the compiler. Without a compiler, on platforms without POSIX threads, or
with ``CELLNAS_NATIVE=0``, :func:`available` is False and callers keep their PyTorch path; the reason is logged
once (``cellnas.native`` logger, INFO).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["available", "depthwise_weight_grad", "library_path", "threading_model", "unavailable_reason"]

log = logging.getLogger(__name__)

try:
    from torch.utils._python_dispatch import _get_current_dispatch_mode
except ImportError:  # pragma: no cover - older torch

    def _get_current_dispatch_mode():
        return None

_SOURCE = Path(__file__).with_name("depthwise_wgrad.c")
_FLAG_SETS = (["-O3", "-march=native"], ["-O3"])
_OPENMP = "-fopenmp"
_MAX_K = 7  # MAXK in the C source
_lib: ctypes.CDLL | None = None
_reason: str | None = None  # why the kernels are unavailable (None: not tried yet, or available)
_tried = False
_lock = threading.Lock()


def _cache_dir() -> Path:
    root = os.environ.get("CELLNAS_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "cellnas")
    return Path(root).expanduser() / "native"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc and shutil.which(cc):
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    return None


def _cpu_identity() -> str:
    """The machine and its CPU's instruction-set flags: a library built with ``-march=native`` on one CPU may not run
    on another (a shared home directory on a cluster), so they are part of the cache key."""
    ident = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return ident + ":" + " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ident + ":" + platform.processor()


def _torch_libgomp() -> ctypes.CDLL | None:
    """PyTorch's GNU OpenMP runtime, where ATen's parallel backend is OpenMP and ``libgomp.so.1`` is already loaded
    in this process (``RTLD_NOLOAD``: nothing is loaded by asking); ``None`` otherwise."""
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        return ctypes.CDLL("libgomp.so.1", mode=getattr(os, "RTLD_NOLOAD", 4) | os.RTLD_LAZY)
    except (OSError, AttributeError):
        return None


def _uses_torch_openmp(lib: ctypes.CDLL) -> bool:
    """Whether the OpenMP calls of a loaded ``-fopenmp`` build go to PyTorch's own libgomp (not a second runtime)."""
    gomp = _torch_libgomp()
    if gomp is None:
        return False
    symbol = lib.cellnas_omp_symbol
    symbol.restype = ctypes.c_void_p
    ours = symbol()
    return ours is not None and ours == ctypes.cast(gomp.omp_get_thread_num, ctypes.c_void_p).value


def _flag_sets() -> list[list[str]]:
    """Compiler flags to try in turn. With OpenMP first where PyTorch runs on GNU OpenMP (its ``libgomp.so.1`` is
    already in the process, so the kernel's ``-fopenmp`` build binds to it and shares its worker threads; checked
    after loading by :func:`_uses_torch_openmp`); with POSIX threads otherwise.

    Why: after each parallel region, libgomp's worker threads spin for a while waiting for the next one. Threads the
    kernel starts itself then compete with them for the cores; measured in the search network on 2 cores (batch 64,
    C=16), the kernel's calls took 0.51 s per weights pass with its own threads and 0.23 s on torch's.
    """
    gnu = _torch_libgomp() is not None
    return ([[*flags, _OPENMP] for flags in _FLAG_SETS] if gnu else []) + [list(f) for f in _FLAG_SETS]


def library_path(cc: str, flags: list[str]) -> Path:
    """Where the library compiled from the current source with ``cc`` and ``flags`` on this CPU is cached."""
    ident = repr((shutil.which(cc) or cc, flags, sys.platform, _cpu_identity()))
    key = hashlib.sha256(_SOURCE.read_bytes() + ident.encode()).hexdigest()[:16]
    return _cache_dir() / f"depthwise_wgrad-{key}.so"


def _build(cc: str, flags: list[str]) -> Path:
    """The cached library for ``flags``, compiled if missing. A failed compile is remembered next to it (``.failed``,
    holding the error), so that later processes do not pay for it again; delete the file to retry."""
    out = library_path(cc, flags)
    if out.is_file():
        return out
    failed = out.with_suffix(".failed")
    if failed.is_file():
        raise OSError(f"{failed.read_text().strip()} (remembered in {failed}; delete it to try again)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [cc, *flags, "-shared", "-fPIC", "-pthread", "-o", tmp, str(_SOURCE)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            error = f"{' '.join(cmd)} failed: {proc.stderr.strip()[-400:]}"
            with open(tmp, "w") as f:
                f.write(error)
            os.replace(tmp, failed)  # atomic, like the library
            raise OSError(error)
        os.chmod(tmp, 0o755)  # others sharing a cache directory can load it
        os.replace(tmp, out)  # atomic: a concurrent compile of the same source writes the same library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _load() -> ctypes.CDLL | None:
    with _lock:  # one compile per process; other threads wait for its outcome
        if not _tried:
            _try_load()
        return _lib


def _try_load() -> None:
    """Sets ``_lib`` or ``_reason``; ``_tried`` only once that is decided (an interrupted compile is tried again)."""
    global _lib, _reason, _tried
    if os.environ.get("CELLNAS_NATIVE", "1").lower() in ("0", "false", "no", "off"):
        _reason = "turned off by CELLNAS_NATIVE=0"
    elif os.name != "posix":
        _reason = f"not built on {os.name} (needs POSIX threads)"
    elif (cc := _compiler()) is None:
        _reason = "no C compiler found ($CC, cc, gcc or clang)"
    else:
        errors = []
        openmp_rejected = False
        for flags in _flag_sets():
            openmp = _OPENMP in flags
            if openmp and openmp_rejected:
                continue
            try:
                lib = ctypes.CDLL(str(_build(cc, flags)))
                fn = lib.cellnas_dw_weight_grad
            except (OSError, AttributeError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
                continue
            if openmp and not _uses_torch_openmp(lib):  # it would start a second thread pool beside torch's
                errors.append(f"{' '.join(flags)}: the build's OpenMP calls do not go to PyTorch's libgomp")
                openmp_rejected = True
                continue
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 4 + [ctypes.c_int] * 4
            fn.restype = ctypes.c_int
            lib.cellnas_openmp.restype = ctypes.c_int
            _lib, _reason, _tried = lib, None, True
            if errors:
                log.info("cellnas.native: built with %s after: %s", " ".join(flags), " | ".join(errors))
            return
        _reason = "compiling the C kernels failed: " + " | ".join(errors)
    _tried = True
    log.info("cellnas.native: using the PyTorch paths (%s)", _reason)


def available() -> bool:
    """Whether the C kernels are compiled and loaded (compiles them on the first call)."""
    return _load() is not None


def threading_model() -> str | None:
    """``"openmp"`` (the kernel runs on PyTorch's OpenMP threads), ``"pthreads"`` (threads started per call), or
    ``None`` when the kernels are unavailable."""
    lib = _load()
    if lib is None:
        return None
    return "openmp" if lib.cellnas_openmp() else "pthreads"


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (``None`` when it is True)."""
    _load()
    return _reason


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, k: int, dilation: int) -> torch.Tensor | None:
    """dL/dW, shape (C, 1, k, k), of ``F.conv2d(x, W, None, 1, dilation * (k - 1) // 2, dilation, groups=C)``.

    ``x`` and ``grad`` must be channels_last-dense float32 CPU tensors of one shape (N, C, H, W), k odd and at most
    7, the dilation at most max(H, W). Returns ``None`` (the caller computes it another way) when the kernels are
    unavailable, the inputs do not qualify, or a Python dispatch mode is active (``FlopCounterMode``, tracing): such a
    mode sees ATen ops only, so the caller's ATen path computes the same gradient where the mode counts it (and fake
    tensors have no data to hand to C). The batch is split over ``torch.get_num_threads()`` threads.
    """
    if _get_current_dispatch_mode() is not None or not (
        x.device.type == grad.device.type == "cpu"
        and x.dtype == grad.dtype == torch.float32
        and x.dim() == 4
        and x.shape == grad.shape
        and x.shape[0] > 0
        and k % 2 == 1
        and 1 <= k <= _MAX_K
        and 1 <= dilation <= max(x.shape[-2:])  # larger: every tap but the centre reads padding only
        and x.is_contiguous(memory_format=torch.channels_last)
        and grad.is_contiguous(memory_format=torch.channels_last)
    ):
        return None
    lib = _load()
    if lib is None:
        return None
    N, C, H, W = x.shape
    out = torch.empty(k * k, C, dtype=torch.float32)
    status = lib.cellnas_dw_weight_grad(x.data_ptr(), grad.data_ptr(), out.data_ptr(), N, H, W, C, k, dilation,
                                        dilation * (k - 1) // 2, torch.get_num_threads())  # fmt: skip
    if status != 0:
        return None  # out of memory in the kernel: the caller's path
    return out.t().contiguous().view(C, 1, k, k)
