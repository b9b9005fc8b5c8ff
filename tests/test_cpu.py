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
