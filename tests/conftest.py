"""Shared test set-up.

One intra-op thread: the suite runs on 2-core machines where several processes compete,
and OpenMP thread pools that oversubscribe the cores are 10-30x slower there.
"""

import torch

torch.set_num_threads(1)
