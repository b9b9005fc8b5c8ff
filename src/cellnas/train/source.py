"""A search run directory given as GENOTYPE: its dataset, and whether the search finished.

``cellnas search`` ends by printing ``retrain it: cellnas train RUN_DIR``. The search's run directory holds
``meta.json`` (``"kind": "search"``, ``end_time`` once finished), ``config.json`` (the search config: ``dataset``,
``data_dir``, ``epochs``), ``metrics.jsonl`` (one line per finished epoch) and ``genotype.json``, rewritten after
every epoch. So training it should use the search's dataset unless told otherwise, and training the genotype of
a search that stopped early (its cell after epoch 2 of 4) deserves a warning.
"""

from __future__ import annotations

import logging

from cellnas.runs import SearchRun, search_run

__all__ = ["SearchRun", "search_run", "dataset_values", "with_search_dataset"]

log = logging.getLogger(__name__)


def dataset_values(run: SearchRun, overrides: dict) -> dict:
    """``overrides`` (config values given, none of them ``dataset``) with the search's dataset, and its
    ``data_dir`` unless one is given; the preset then follows the dataset (:data:`DATASET_PRESETS`). Logs
    one line saying so."""
    from cellnas.train.config import DATASET_PRESETS

    values = dict(overrides, dataset=run.dataset)
    if values.get("data_dir") is None and run.data_dir is not None:
        values["data_dir"] = run.data_dir
    preset = DATASET_PRESETS.get(run.dataset)
    log.info(
        "training on %s, the dataset of the search %s%s, with %s; give --dataset or --preset for another",
        run.dataset, run.path, f" (data in {values['data_dir']})" if values.get("data_dir") else "",
        f"its preset {preset}" if preset else "the default settings",
    )  # fmt: skip
    return values


def with_search_dataset(genotype, overrides: dict, *, chosen: bool, warn: bool = True) -> dict:
    """``overrides`` for training ``genotype``: when it is a search run directory, with the search's dataset (and
    data folder) unless a config, preset or dataset was ``chosen``; and, with ``warn``, a warning when that search
    did not finish (:meth:`SearchRun.warn_if_unfinished`). Anything else: ``overrides`` unchanged."""
    source = search_run(genotype)
    if source is None:
        return overrides
    if warn:
        source.warn_if_unfinished()
    return overrides if chosen else dataset_values(source, overrides)
