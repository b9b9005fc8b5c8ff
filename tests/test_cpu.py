"""The allocator setting of cellnas.cpu: freed blocks stay in the process for reuse (no page faults when the
next step allocates them again), and CELLNAS_MALLOC=default leaves the allocator alone."""

import importlib
import os
import subprocess
import sys

import pytest

import cellnas.cpu

# a 24 MiB block (an activation of a large batch) allocated, written and freed five times, as a training step
# does; the page faults of cycles 2-5 are printed
_CYCLES = """
import ctypes, resource
from cellnas.cpu import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 24 << 20
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(applied), sum(faults[1:]))
"""


def _faults(setting: str) -> tuple[bool, int]:
    env = dict(os.environ, CELLNAS_MALLOC=setting)
    out = subprocess.run([sys.executable, "-c", _CYCLES], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


@pytest.fixture
def fresh_cpu_module():
    yield importlib.reload(cellnas.cpu)
    importlib.reload(cellnas.cpu)


def test_environment_switch_leaves_the_allocator_alone(monkeypatch, fresh_cpu_module):
    monkeypatch.setenv("CELLNAS_MALLOC", "default")
    assert fresh_cpu_module.keep_freed_memory() is False
    assert fresh_cpu_module.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_freed_block_is_reused_without_page_faults():
    applied, kept = _faults("keep")
    if not applied:
        pytest.skip("no glibc mallopt here")
    # one 24 MiB block faulted in again is 6,144 pages; glibc's defaults (CELLNAS_MALLOC=default) hand it
    # back and fault it in again (measured here: 6,138 faults over cycles 2-5)
    assert kept < 100, kept
    default_applied, _ = _faults("default")
    assert not default_applied


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_die_with_parent_sets_the_parent_death_signal():
    code = """
import ctypes, signal
from cellnas.cpu import die_with_parent
libc = ctypes.CDLL("libc.so.6")
sig = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(sig))  # PR_GET_PDEATHSIG
before = sig.value
die_with_parent()
libc.prctl(2, ctypes.byref(sig))
print(before, sig.value, int(signal.SIGTERM))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    before, after, sigterm = map(int, out)
    assert before == 0 and after == sigterm


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux only")
def test_trim_heap_hands_kept_memory_back():
    code = """
import ctypes, os
from cellnas.cpu import keep_freed_memory, trim_heap
keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
blocks = [libc.malloc(4 << 20) for _ in range(50)]
for b in blocks:
    ctypes.memset(b, 1, 4 << 20)
for b in reversed(blocks):
    libc.free(b)
kept = rss()
trim_heap()
print(kept - rss())
"""
    freed = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert freed > 100 << 20  # of the 200 MiB kept by keep_freed_memory
