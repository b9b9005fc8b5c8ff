"""Shared test set-up.

One intra-op thread: the suite runs on 2-core machines where several processes compete,
and OpenMP thread pools that oversubscribe the cores are 10-30x slower there.
"""

import atexit
import os
import shutil
import tempfile

import torch

torch.set_num_threads(1)
# the CLI's warning about a busy machine (cellnas.cpu.busy_warning) depends on what else runs: tests call it directly
os.environ["CELLNAS_BUSY_CHECK"] = "0"

# C kernels (cellnas.native) compiled by the tests, and by the CLI processes they start, go to a fresh directory
# removed at exit: the suite does not depend on (or write to) the home directory.
os.environ["CELLNAS_CACHE"] = _cache = tempfile.mkdtemp(prefix="cellnas-test-cache-")
atexit.register(shutil.rmtree, _cache, ignore_errors=True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, so a CI failure reproduces here.

    CELLNAS_TEST_SEED=N runs the suite from another state (to hunt for fragile tolerances).
    """
    torch.manual_seed(int(os.environ.get("CELLNAS_TEST_SEED", "0")))
    yield


@pytest.fixture
def crash_search(monkeypatch):
    """``crash_search(out, crash_at, **search_kwargs)``: a ``cellnas.search`` run that crashes (a RuntimeError, as a
    killed process leaves it) when step ``crash_at`` starts; the step is restored afterwards, ready for a resume."""
    from cellnas.search import loop as search_loop
    from cellnas.search.loop import search

    def crash(out, crash_at: int, **kw) -> None:
        real_step = search_loop._Search.step

        def crashing_step(self, lr):
            if self.global_step == crash_at:
                raise RuntimeError("simulated crash")
            return real_step(self, lr)

        monkeypatch.setattr(search_loop._Search, "step", crashing_step)
        with pytest.raises(RuntimeError, match="simulated crash"):
            search(out=out, **kw)
        monkeypatch.setattr(search_loop._Search, "step", real_step)

    return crash
