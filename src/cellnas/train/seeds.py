"""One training run per seed and the mean ± std of the test error, as DARTS results are reported (SPEC 2.2, 2.4).

The parent run directory holds ``seeds.json`` (the seeds, the base config and the genotype), ``genotype.json``,
``meta.json``, one sub-directory ``seed-<s>`` per seed (each a complete :func:`~cellnas.train.train` run) and,
at the end, ``summary.json``: per-seed results and the mean and sample standard deviation (ddof = 1; ``null`` for
a single seed, where it is undefined) of the last-epoch test error (what DARTS reports) and of the best-epoch test
error. The base config in ``seeds.json`` has no ``seed``: each run's seed is its own.
:func:`evaluate_seeds` tests every seed's ``final.pt`` again (on the same or another test set) and summarises
the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellnas._config import absolute_paths
from cellnas.errors import CellnasError, RunError
from cellnas.formats import load_genotype, save_genotype
from cellnas.genotype import Genotype, as_int
from cellnas.runs import (
    LOCK_FILE,
    atomic_write_json,
    missing_dirs,
    now_iso,
    record_session,
    run_lock,
    undo_start,
    write_meta,
)
from cellnas.schedule import resolve_device
from cellnas.train.config import TrainConfig
from cellnas.train.final import FINAL, evaluate
from cellnas.train.loop import (
    CHECKPOINT,
    RESUME_OVERRIDES,
    TrainInterrupted,
    TrainResult,
    as_dir,
    check_resume_arguments,
    resume_config,
    start,
    train,
)

__all__ = ["train_seeds", "evaluate_seeds", "seed_runs", "SeedsResult", "mean_std", "SEEDS_FILE", "check_seeds"]

log = logging.getLogger(__name__)

SEEDS_FILE = "seeds.json"


def mean_std(values: list[float], single: float | None = None) -> dict:
    """``{"mean", "std", "n"}`` with the sample standard deviation (ddof = 1); for n = 1, where it is undefined,
    ``single`` (``None``: JSON null).

    >>> mean_std([0.02, 0.04])
    {'mean': 0.03, 'std': 0.01414213562373095, 'n': 2}
    >>> mean_std([0.02])["std"] is None
    True
    """
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else single
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}


@dataclass
class SeedsResult:
    """What :func:`train_seeds` returns: the parent directory, each seed's result and the summary."""

    run_dir: Path
    runs: list[TrainResult]
    summary: dict


def _seed_dir(parent: Path, seed: int) -> Path:
    return parent / f"seed-{seed}"


def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of ints, or a :class:`CellnasError` saying what it takes: a non-empty sequence (list,
    tuple, ``range``, numpy array) of distinct integers, each a valid seed (0 <= s < 2**32). A bare integer is
    refused with a hint: it could mean that many seeds or that one seed.

    >>> check_seeds(range(3))
    [0, 1, 2]
    """
    usage = "seeds must be a sequence of distinct integers >= 0, such as [0, 1, 2] or range(3)"
    n = as_int(seeds)
    if n is not None:
        raise CellnasError(f"{usage}; got the integer {n}: give seeds=range({n}) for {n} seeds, or seeds=[{n}] for the "
                           f"seed {n} alone")  # fmt: skip
    if seeds is None:
        raise CellnasError(f"{usage}; got none")
    if isinstance(seeds, (str, bytes, Mapping)) or not isinstance(seeds, Iterable):
        raise CellnasError(f"{usage}; got {seeds!r} ({type(seeds).__name__})")
    values = list(seeds)
    if not values:
        raise CellnasError(f"{usage}; got none")
    for value in values:
        i = as_int(value)
        if i is None or not 0 <= i < 2**32:
            what = (f"not an integer ({type(value).__name__})" if i is None
                    else "below 0" if i < 0 else "2**32 or more (NumPy's limit)")  # fmt: skip
            raise CellnasError(f"{usage}; got {values!r}, where {value!r} is {what}")
    ints = [int(as_int(v)) for v in values]
    twice = sorted({i for i in ints if ints.count(i) > 1})
    if twice:
        raise CellnasError(f"{usage}; got {ints}, where {', '.join(map(str, twice))} comes more than once")
    return ints


def train_seeds(
    genotype: Genotype | str | None,
    seeds: Iterable[int] | None = None,
    config: TrainConfig | Mapping | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    preset: str | None = None,
    **overrides,
) -> SeedsResult:
    """Train ``genotype`` once per seed under ``out/seed-<s>`` and summarise (see the module docstring).

    ``seeds``: distinct integers >= 0 (``[0, 1, 2]``, ``range(3)``; :func:`check_seeds`). The config
    (``config``, ``preset``, ``overrides``) is resolved as in :func:`~cellnas.train.train`, on a copy; only its
    ``seed`` differs between the runs, and a ``seed`` keyword is refused. ``resume``: a parent directory, continued
    with its own config and seeds (``seeds`` may be omitted, or ``[]``, or the same seeds; ``config``, ``preset``,
    another ``out`` and keys outside :data:`~cellnas.train.loop.RESUME_OVERRIDES` are refused); finished seeds are
    re-read, interrupted ones resumed, missing ones started. Returns a :class:`SeedsResult`; raises
    :class:`~cellnas.errors.CellnasError` for anything the caller can fix.
    """
    if resume is not None:
        parent = as_dir(resume, "resume")
        check_resume_arguments(parent, config, preset, out)
        try:
            doc = json.loads((parent / SEEDS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            raise RunError(f"cannot resume: {parent} holds no readable {SEEDS_FILE} (was it a --seeds run?)") from None
        g = Genotype.from_dict(doc["genotype"])
        if genotype is not None and load_genotype(genotype) != g:
            raise CellnasError(f"the genotype given differs from the one {parent} was trained with; omit it")
        saved_seeds = [int(s) for s in doc["seeds"]]
        _check_resume_seeds(parent, seeds, saved_seeds)
        seeds = saved_seeds
        base = TrainConfig.from_dict(doc["config"])  # without "seed" (the default; each run sets its own)
        refused = sorted(k for k, v in overrides.items() if v is not None and k not in RESUME_OVERRIDES)
        if refused:
            raise CellnasError(f"--resume continues {parent} with its own config; {', '.join(refused)} cannot be "
                               f"changed (only {', '.join(RESUME_OVERRIDES)})")  # fmt: skip
        changes = {k: v for k, v in overrides.items() if v is not None}
        # a bad value (--epochs 0) is refused before anything is written, naming the flag and the parent
        resume_config(parent, {"config": base.to_dict()}, changes)
        with run_lock(parent):
            finished = sum((_seed_dir(parent, s) / FINAL).is_file() for s in seeds)
            device = str(resolve_device(changes.get("device", base.device)))
            record_session(parent, device, {"seeds_finished": finished, "position": f"{finished} of {len(seeds)} "
                                            "seeds finished"})  # fmt: skip
            return _train_seeds(parent, g, seeds, base, changes)
    if genotype is None:
        raise CellnasError("train needs a genotype (a zoo name such as DARTS_V2, a file or a run directory)")
    seeds = check_seeds(seeds)
    if overrides.get("seed") is not None:
        raise CellnasError(f"--seed {overrides['seed']} cannot be combined with --seeds: each run takes its seed from "
                           "--seeds; drop --seed")  # fmt: skip
    out = None if out is None else as_dir(out, "out")
    new_dirs = missing_dirs(out)
    g, base, parent = start(genotype, config, preset, overrides, out)
    fresh = out is None or parent in new_dirs
    with run_lock(parent):
        try:
            config_doc = {k: v for k, v in base.to_dict().items() if k != "seed"}  # each run's seed is its own
            atomic_write_json(parent / SEEDS_FILE, {"seeds": seeds, "config": config_doc, "genotype": g.to_dict()})
            save_genotype(g, parent / "genotype.json")
            write_meta(parent, str(resolve_device(base.device)), {"kind": "train-seeds", "seeds": seeds,
                                                                  "genotype_hash": g.content_hash()})  # fmt: skip
            return _train_seeds(parent, g, seeds, base, {})
        except BaseException:
            # no seed got as far as its first checkpoint (a missing data set, a bad config): nothing to resume, so
            # leave no directory behind; once a seed-<s> folder is there, everything is kept for --resume
            if parent.is_dir() and {p.name for p in parent.iterdir()} <= {*_START_FILES, LOCK_FILE}:
                undo_start(parent, new_dirs, _START_FILES, fresh=fresh)
            raise


def _check_resume_seeds(parent: Path, seeds, saved: list[int]) -> None:
    """Refuse ``seeds`` given to a resume of ``parent`` other than none (``None``, ``[]``, as the CLI passes) or the
    run's own: it goes on with the seeds it was started with."""
    if seeds is None:
        return
    if as_int(seeds) is None and isinstance(seeds, Iterable) and not isinstance(seeds, (str, bytes, Mapping)):
        seeds = list(seeds)
        if not seeds:
            return
    given = check_seeds(seeds)
    if given != saved:
        raise CellnasError(f"--resume continues {parent} with its own seeds ({', '.join(map(str, saved))}); seeds "
                           f"{given} cannot be given: omit seeds")  # fmt: skip


#: The files :func:`train_seeds` writes into the parent directory before the first seed starts.
_START_FILES = (SEEDS_FILE, "genotype.json", "meta.json")


def _train_seeds(parent: Path, g: Genotype, seeds: list[int], base: TrainConfig, changes: dict) -> SeedsResult:
    """Each seed's run under ``parent`` (finished ones re-read, interrupted ones resumed), then the summary."""
    runs: list[TrainResult] = []
    for i, seed in enumerate(seeds):
        sub = _seed_dir(parent, seed)
        log.info("seed %d (%d of %d): %s", seed, i + 1, len(seeds), sub)
        try:
            if (sub / CHECKPOINT).is_file():
                runs.append(train(resume=sub, **changes))
            else:
                runs.append(train(g, dataclasses.replace(base, seed=seed, **absolute_paths(changes)), out=sub))
        except TrainInterrupted:
            raise TrainInterrupted(
                f"interrupted during seed {seed}; its checkpoint is kept, continue all seeds with: "
                f"cellnas train --resume {parent}"
            ) from None
    summary = _summary(parent, seeds, runs)
    atomic_write_json(parent / "summary.json", summary)
    _finish_meta(parent)
    return SeedsResult(parent, runs, summary)


def seed_runs(parent: str | Path) -> list[tuple[int, Path]]:
    """``(seed, run directory)`` of each run under a :func:`train_seeds` parent directory, in its seeds order.

    The seeds come from ``seeds.json``, or, when that is missing or unreadable, from the ``seed-<s>``
    sub-directories. An empty list means ``parent`` is not such a directory.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    try:
        seeds = [int(s) for s in json.loads((parent / SEEDS_FILE).read_text())["seeds"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        found = (d.name.removeprefix("seed-") for d in parent.glob("seed-*") if d.is_dir())
        seeds = sorted(int(s) for s in found if s.isdigit())
    return [(seed, _seed_dir(parent, seed)) for seed in seeds]


def evaluate_seeds(
    parent: str | Path,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    *,
    batch_size: int | None = None,
    device: str = "auto",
    download: bool = False,
) -> dict:
    """Test the ``final.pt`` of every seed of a :func:`train_seeds` run; per-seed reports and mean ± std.

    Each seed is tested by :func:`~cellnas.train.final.evaluate` (same arguments and defaults). Returns
    ``runs`` (each seed's report, with its ``seed``) and ``test_error``, ``test_acc``, ``test_loss`` as
    :func:`mean_std` dicts (sample standard deviation, ddof = 1; ``None`` for one seed), plus what was tested.
    Every seed must have finished: a missing ``final.pt`` raises :class:`~cellnas.errors.RunError` naming the seed
    folders.
    """
    parent = Path(parent)
    runs = seed_runs(parent)
    if not runs:
        raise RunError(f"{parent} is not the parent directory of a --seeds run (no {SEEDS_FILE}, no seed-<s> folders)")
    unfinished = [d.name for _, d in runs if not (d / FINAL).is_file()]
    if unfinished:
        verb = "has" if len(unfinished) == 1 else "have"
        raise RunError(f"cannot evaluate the --seeds run {parent}: {', '.join(unfinished)} {verb} no {FINAL} (not "
                       f"finished); finish the run with `cellnas train --resume {parent}`, or evaluate finished "
                       "seed folders one at a time")  # fmt: skip
    reports, datasets = [], {}  # the seeds share one test set: read it once
    for i, (seed, run_dir) in enumerate(runs):
        log.info("seed %d (%d of %d): %s", seed, i + 1, len(runs), run_dir)
        report = evaluate(run_dir, dataset, data_dir, batch_size=batch_size, device=device, download=download,
                          datasets=datasets)  # fmt: skip
        reports.append({"seed": seed, **report})
    first = reports[0]
    return {
        "path": str(parent),
        "dataset": first["dataset"],
        "n_test": first["n_test"],
        "trained_on": first["trained_on"],
        "params": first["params"],
        "seeds": [seed for seed, _ in runs],
        "test_error": mean_std([r["test_error"] for r in reports]),
        "test_acc": mean_std([r["test_acc"] for r in reports]),
        "test_loss": mean_std([r["test_loss"] for r in reports]),
        "std": "sample standard deviation (ddof=1) over seeds, null for one seed; errors and accuracies are fractions",
        "runs": reports,
    }


def _summary(parent: Path, seeds: list[int], runs: list[TrainResult]) -> dict:
    return {
        "run_dir": str(parent),
        "seeds": seeds,
        "genotype_hash": runs[0].genotype.content_hash(),
        "params": runs[0].params,
        "test_error": mean_std([r.last_test_error for r in runs]),
        "best_test_error": mean_std([r.best_test_error for r in runs]),
        "std": "sample standard deviation (ddof=1) over seeds, null for one seed; errors are fractions; test_error is "
               "the last epoch's",
        "runs": [r.summary() for r in runs],
    }


def _finish_meta(parent: Path) -> None:
    path = parent / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    meta["end_time"] = now_iso()
    atomic_write_json(path, meta)
