"""A search run directory given as GENOTYPE: its dataset, and whether the search finished.

``cellnas search`` ends by printing ``retrain it: cellnas train RUN_DIR``. The search's run directory holds
``meta.json`` (``"kind": "search"``, ``end_time`` once finished), ``config.json`` (the search config: ``dataset``,
``data_dir``, ``epochs``), ``metrics.jsonl`` (one line per finished epoch) and ``genotype.json``, rewritten after
every epoch. So training it should use the search's dataset unless told otherwise, and training the genotype of
a search that stopped early (its cell after epoch 2 of 4) deserves a warning.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cellnas.runs import read_metrics

__all__ = ["SearchRun", "search_run", "with_search_dataset"]

log = logging.getLogger(__name__)

#: Keys of a search config that a training config lacks: a config.json with them is a search's.
_SEARCH_KEYS = ("arch_lr", "train_portion")


@dataclass(frozen=True)
class SearchRun:
    """What a search run directory says about itself (see the module docstring)."""

    path: Path
    dataset: str
    data_dir: str | None
    epochs: int
    epochs_done: int

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs

    def warn_if_unfinished(self) -> None:
        """Warn (once per call) that ``genotype.json`` is the cell of an unfinished search, and how to finish it."""
        if self.finished:
            return
        log.warning(
            "%s is an unfinished search (epoch %d of %d): its genotype.json is the cell derived after epoch %d, "
            "not the search's result; finish it with `cellnas search --resume %s`, then train it",
            self.path, self.epochs_done, self.epochs, self.epochs_done, self.path,
        )  # fmt: skip

    def dataset_values(self, overrides: dict) -> dict:
        """``overrides`` (config values given, none of them ``dataset``) with the search's dataset, and its
        ``data_dir`` unless one is given; the preset then follows the dataset (:data:`DATASET_PRESETS`). Logs
        one line saying so."""
        from cellnas.train.config import DATASET_PRESETS

        values = dict(overrides, dataset=self.dataset)
        if values.get("data_dir") is None and self.data_dir is not None:
            values["data_dir"] = self.data_dir
        preset = DATASET_PRESETS.get(self.dataset)
        log.info(
            "training on %s, the dataset of the search %s%s, with %s; give --dataset or --preset for another",
            self.dataset, self.path, f" (data in {values['data_dir']})" if values.get("data_dir") else "",
            f"its preset {preset}" if preset else "the default settings",
        )  # fmt: skip
        return values


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def search_run(genotype) -> SearchRun | None:
    """The :class:`SearchRun` of ``genotype`` when it names a search run directory, else ``None``.

    A directory is a search's when its ``meta.json`` says ``"kind": "search"``, or (without a readable
    ``meta.json``) when its ``config.json`` is a search config.
    """
    if not isinstance(genotype, (str, os.PathLike)):
        return None
    path = Path(genotype)
    try:
        if not path.is_dir():
            return None
    except (OSError, ValueError):  # DARTS text too long for a path, and the like
        return None
    config = _read_json(path / "config.json")
    meta = _read_json(path / "meta.json")
    if config is None or not isinstance(config.get("dataset"), str):
        return None
    if meta is not None and meta.get("kind") != "search":
        return None
    if meta is None and not all(k in config for k in _SEARCH_KEYS):
        return None
    epochs_done = 1 + max((int(r["epoch"]) for r in read_metrics(path) if isinstance(r.get("epoch"), int)),
                          default=-1)  # fmt: skip
    epochs = config.get("epochs")
    epochs = int(epochs) if isinstance(epochs, int) else epochs_done
    data_dir = config.get("data_dir")
    return SearchRun(path, config["dataset"], data_dir if isinstance(data_dir, str) else None, epochs, epochs_done)


def with_search_dataset(genotype, overrides: dict, *, chosen: bool, warn: bool = True) -> dict:
    """``overrides`` for training ``genotype``: when it is a search run directory, with the search's dataset (and
    data folder) unless a config, preset or dataset was ``chosen``; and, with ``warn``, a warning when that search
    did not finish (:meth:`SearchRun.warn_if_unfinished`). Anything else: ``overrides`` unchanged."""
    source = search_run(genotype)
    if source is None:
        return overrides
    if warn:
        source.warn_if_unfinished()
    return overrides if chosen else source.dataset_values(overrides)
