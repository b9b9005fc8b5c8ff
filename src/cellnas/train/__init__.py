"""Retraining and evaluating a genotype with the standard protocols (SPEC 2.1-2.4, 5.6, 6).

* :func:`train` trains one run (resumable run directory, ``final.pt``); :func:`train_seeds` one run per seed
  with mean ± std of the test error, the way DARTS results are reported (SPEC 2.2, 2.4);
* :func:`evaluate` tests a ``final.pt`` on a dataset's test set; :func:`evaluate_seeds` every seed of a
  :func:`train_seeds` run, with mean ± std;
* :class:`TrainConfig`, :data:`PRESETS` (``darts-cifar10``, ``darts-cifar100``, ``darts-imagenet``,
  ``nb301-proxy``, ``digits``) and :func:`resolve_config`.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on first use (cellnas._callable.lazy_exports): the config alone needs no torch
    from cellnas.train.config import DATASET_PRESETS, PRESETS, TrainConfig, resolve_config
    from cellnas.train.final import evaluate, load_final
    from cellnas.train.loop import TrainInterrupted, TrainResult, train
    from cellnas.train.seeds import SeedsResult, evaluate_seeds, train_seeds

__all__ = [
    "train",
    "train_seeds",
    "evaluate",
    "evaluate_seeds",
    "load_final",
    "TrainResult",
    "SeedsResult",
    "TrainInterrupted",
    "TrainConfig",
    "PRESETS",
    "DATASET_PRESETS",
    "resolve_config",
]

from cellnas._callable import lazy_exports, make_callable  # noqa: E402

lazy_exports(__name__, {
    "DATASET_PRESETS": "config", "PRESETS": "config", "TrainConfig": "config", "resolve_config": "config",
    "evaluate": "final", "load_final": "final", "TrainInterrupted": "loop", "TrainResult": "loop", "train": "loop",
    "SeedsResult": "seeds", "evaluate_seeds": "seeds", "train_seeds": "seeds",
})  # fmt: skip
make_callable(__name__, "train")  # cellnas.train(...) trains a genotype
