"""Shared test set-up.

One intra-op thread: the suite runs on 2-core machines where several processes compete,
and OpenMP thread pools that oversubscribe the cores are 10-30x slower there.
"""

import os

import torch

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, so a CI failure reproduces here.

    CELLNAS_TEST_SEED=N runs the suite from another state (to hunt for fragile tolerances).
    """
    torch.manual_seed(int(os.environ.get("CELLNAS_TEST_SEED", "0")))
    yield
