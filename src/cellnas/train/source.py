"""A run directory given as GENOTYPE: the dataset to train on, and whether a search finished.

``cellnas search`` ends by printing ``retrain it: cellnas train RUN_DIR``. The search's run directory holds
``meta.json`` (``"kind": "search"``, ``end_time`` once finished), ``config.json`` (the search config: ``dataset``,
``data_dir``, ``epochs``), ``metrics.jsonl`` (one line per finished epoch) and ``genotype.json``, rewritten after
every epoch. So training it should use the search's dataset unless told otherwise, and training the genotype of
a search that stopped early (its cell after epoch 2 of 4) deserves a warning.

A ``cellnas train`` run directory (``meta.json`` ``"kind": "train"``, or ``"train-seeds"`` for the parent of a
``--seeds`` run, whose config is in ``seeds.json``) is treated the same way: training its genotype again uses the
dataset (and data folder) it was trained on, and says so, unless a dataset, preset or config is given.
"""

from __future__ import annotations

import logging

from cellnas.runs import SearchRun, TrainRun, search_run, train_run

__all__ = ["SearchRun", "search_run", "TrainRun", "train_run", "dataset_values", "with_run_dataset",
           "with_search_dataset"]  # fmt: skip

log = logging.getLogger(__name__)


def dataset_values(run: SearchRun | TrainRun, overrides: dict) -> dict:
    """``overrides`` (config values given, none of them ``dataset``) with the run's dataset, and its ``data_dir``
    unless one is given; the preset then follows the dataset (:data:`DATASET_PRESETS`). Logs one line saying so."""
    from cellnas.train.config import DATASET_PRESETS

    values = dict(overrides, dataset=run.dataset)
    if values.get("data_dir") is None and run.data_dir is not None:
        values["data_dir"] = run.data_dir
    preset = DATASET_PRESETS.get(run.dataset)
    what = "search" if isinstance(run, SearchRun) else "training run"
    log.info(
        "training on %s, the dataset of the %s %s%s, with %s; give --dataset or --preset for another",
        run.dataset, what, run.path, f" (data in {values['data_dir']})" if values.get("data_dir") else "",
        f"its preset {preset}" if preset else "the default settings",
    )  # fmt: skip
    return values


def with_run_dataset(genotype, overrides: dict, *, chosen: bool, warn: bool = True) -> dict:
    """``overrides`` for training ``genotype``: when it is a search or training run directory, with that run's
    dataset (and data folder) unless a config, preset or dataset was ``chosen``; and, with ``warn``, a warning when
    a search did not finish (:meth:`SearchRun.warn_if_unfinished`). Anything else: ``overrides`` unchanged."""
    source = search_run(genotype)
    if source is not None and warn:
        source.warn_if_unfinished()
    if source is None:
        source = train_run(genotype)
    if source is None or chosen:
        return overrides
    return dataset_values(source, overrides)


#: The name this function had when only search run directories lent their dataset.
with_search_dataset = with_run_dataset
