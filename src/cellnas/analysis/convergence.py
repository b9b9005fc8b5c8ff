"""Convergence of several genotypes under one shared training protocol (Shu et al., ICLR 2020, Fig. 13; SPEC 3.3).

Every genotype is trained with the same :class:`~cellnas.train.TrainConfig` and the same seeds through
:func:`cellnas.train.train`, in ``OUT/<name>/seed-<s>``; the curves of ``metrics.jsonl`` (train/test loss and
accuracy per epoch) are then averaged over seeds (mean, with a band of ± one sample standard deviation).

* A finished run (``final.pt``) already in place is reused, an unfinished one (``checkpoint.pt`` only) resumed, so
  a study can be stopped and restarted, and extended with more genotypes or seeds.
* A run trained with another protocol or genotype is refused with the differing keys, never silently mixed.
* The default protocol is the one of Shu et al.'s random-variant runs (``tools/train_darts_rand.sh``): no
  drop-path, no auxiliary head, no cutout (:data:`SHU_OVERRIDES`), on top of the dataset's preset; every value can
  be overridden. The paper trains 600 epochs of the DARTS skeleton (20 cells, C=36, batch 80) on CIFAR-10.

Genotypes come from :func:`expand_genotypes`: zoo names, genotype files, run directories, or a directory written
by ``cellnas analyze variants`` (its ``index.json``: the base cell first, then every variant, with widths and depths).

>>> [e.name for e in expand_genotypes(["DARTS_V2", "ENAS"])]
['DARTS_V2', 'ENAS']
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellnas.errors import CellnasError, RunError
from cellnas.genotype import Genotype

__all__ = [
    "SHU_OVERRIDES",
    "SHU_CIFAR_OVERRIDES",
    "CURVE_KEYS",
    "Entry",
    "ConvergenceRun",
    "ConvergenceResult",
    "expand_genotypes",
    "protocol",
    "run_convergence",
    "load_convergence",
    "curves",
    "width_groups",
]

log = logging.getLogger(__name__)

#: Shu et al.'s random-variant runs: ``--drop_path_prob 0``, no auxiliary head, no cutout (SPEC 3.3).
SHU_OVERRIDES: dict = {"drop_path": 0.0, "auxiliary": False, "cutout": 0}
#: ... and on CIFAR their ``train.py``'s batch of 80 (DARTS's evaluation uses 96; SPEC 3.3).
SHU_CIFAR_OVERRIDES: dict = {"batch_size": 80}

#: The per-epoch metrics plotted and averaged.
CURVE_KEYS = ("train_loss", "test_loss", "train_acc", "test_acc")

#: Config keys that say where or how a run is computed, not what: they may differ between a reused run and the study.
_PLACE_KEYS = ("device", "progress", "data_dir", "download", "checkpoint_every", "compile")

INDEX = "convergence.json"


@dataclass
class Entry:
    """One genotype of the study: its directory name, the genotype and what is known of it (width, depth, source)."""

    name: str
    genotype: Genotype
    info: dict = field(default_factory=dict)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "genotype"


_SEED_DIR = re.compile(r"seed-\d+")


def _name_of(spec: str) -> str:
    """The zoo name, the file's stem or the run directory's name; a ``seed-S`` run directory (of a study or of
    ``cellnas train --seeds``) is named after the directory above it, which names the genotype (``conv/c1/seed-0`` ->
    ``c1``), since every seed of a genotype has the same ``seed-S`` names."""
    from cellnas.zoo import ALIASES, ZOO

    lookup = {k.lower(): k for k in list(ZOO) + list(ALIASES)}
    path = Path(spec)
    if spec.lower() in lookup and not path.exists():
        return ALIASES.get(lookup[spec.lower()], lookup[spec.lower()])
    if path.is_dir():
        path = path.resolve()
        return path.parent.name if _SEED_DIR.fullmatch(path.name) and path.parent.name else path.name
    if path.is_file():
        return path.stem
    return "genotype"


def _from_index(folder: Path) -> list[Entry]:
    from cellnas.formats import load_genotype

    try:
        index = json.loads((folder / "index.json").read_text())
        items = [dict(index["base"], base=True)] + [dict(v, base=False) for v in index["variants"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise CellnasError(f"{folder / 'index.json'} is not an index written by `cellnas analyze variants`") from None
    entries = []
    for item in items:
        g = load_genotype(folder / item["file"])
        info = {k: item.get(k) for k in ("width", "depth", "reduce_width", "reduce_depth", "seed")}
        entries.append(Entry(_safe(item["name"]), g, {**info, "base": item["base"], "source": str(folder)}))
    return entries


def expand_genotypes(specs: list[str]) -> list[Entry]:
    """Resolve GENOTYPE arguments into named entries (see the module docstring).

    Names are the zoo name, the file stem, the run directory's name (the parent's for a ``seed-S`` directory) or the
    variant's name; a genotype listed twice under one name is kept once, and two different genotypes with the same
    name get ``-2``, ``-3``... suffixes.
    """
    from cellnas.analysis.topology import topology
    from cellnas.formats import load_genotype

    if not specs:
        raise CellnasError("name at least one genotype (zoo name, file, run directory or variants directory)")
    entries: list[Entry] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir() and (path / "index.json").is_file():
            entries += _from_index(path)
            continue
        g = load_genotype(spec)
        topo = topology(g)["normal"]
        entries.append(Entry(_safe(_name_of(spec)), g, {"width": topo["width"], "depth": topo["depth"],
                                                        "base": False, "source": spec}))  # fmt: skip
    unique: list[Entry] = []
    for e in entries:
        if any(u.genotype == e.genotype and u.name == e.name for u in unique):
            continue
        name, n = e.name, 1
        while any(u.name == name for u in unique):
            n += 1
            name = f"{e.name}-{n}"
        unique.append(dataclasses.replace(e, name=name))
    return unique


def protocol(dataset: str, *, epochs: int | None = None, preset: str | None = None, **overrides):
    """The shared :class:`~cellnas.train.TrainConfig`: the dataset's preset (or ``preset``), then
    :data:`SHU_OVERRIDES` (and on CIFAR-10/100 :data:`SHU_CIFAR_OVERRIDES`), then ``overrides``
    (``None`` values mean "not given")."""
    from cellnas.train import resolve_config

    given = {k: v for k, v in overrides.items() if v is not None}
    shu = {**SHU_OVERRIDES, **(SHU_CIFAR_OVERRIDES if dataset in ("cifar10", "cifar100") else {})}
    return resolve_config(preset, {**shu, **given, "dataset": dataset, "epochs": epochs})


@dataclass
class ConvergenceRun:
    """One (genotype, seed) run: where it is, whether it was ``trained``, ``resumed`` or ``reused``, its metrics."""

    name: str
    seed: int
    run_dir: Path
    status: str
    metrics: list[dict]


@dataclass
class ConvergenceResult:
    """The study: its directory, the shared protocol (seed excluded), the entries and every run."""

    out: Path
    config: dict
    entries: list[Entry]
    runs: list[ConvergenceRun]
    seeds: list[int]


def _check_existing(run_dir: Path, genotype: Genotype, cfg) -> str | None:
    """``'final'``, ``'partial'`` or ``None`` (nothing there); refuses another protocol or genotype.

    A relative ``imagefolder:PATH`` in the run's config (saved before data paths were stored absolute) is resolved
    from the current directory before the protocols are compared.
    """
    from cellnas._config import absolute_paths
    from cellnas.formats import load_genotype

    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return None
    if not (run_dir / "checkpoint.pt").is_file() and not (run_dir / "final.pt").is_file():
        raise RunError(f"{run_dir} exists but holds no checkpoint.pt or final.pt (a run that crashed while "
                       "starting?); remove it to train it again")  # fmt: skip
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise RunError(f"{run_dir} has no readable config.json; remove it or use another --out") from None
    # runs trained before data paths were stored absolute hold `imagefolder:PATH` as typed, relative to the directory
    # the study ran from: read from the current directory, as they were then (and as a resumed run reads them)
    saved = absolute_paths(saved)
    wanted = cfg.to_dict()
    diff = [f"{k}: run {saved.get(k)!r}, study {wanted.get(k)!r}" for k in sorted(set(saved) | set(wanted))
            if k not in _PLACE_KEYS and saved.get(k) != wanted.get(k)]  # fmt: skip
    if diff:
        raise RunError(f"{run_dir} was trained with another protocol ({'; '.join(diff)}); use another --out "
                       "or the same options")  # fmt: skip
    if load_genotype(run_dir) != genotype:
        raise RunError(f"{run_dir} was trained with another genotype than this study's; use another --out")
    return "final" if (run_dir / "final.pt").is_file() else "partial"


def run_convergence(
    entries: list[Entry],
    config,
    *,
    out: str | Path,
    seeds: list[int] = (0,),
) -> ConvergenceResult:
    """Train (or reuse, or resume) every entry with every seed under ``config`` in ``out/<name>/seed-<s>``.

    ``config``: a :class:`~cellnas.train.TrainConfig` (see :func:`protocol`); its ``seed`` is replaced per run.
    Writes ``out/convergence.json`` (the protocol, entries and runs) before training and again at the end.
    """
    from cellnas.runs import atomic_write_json, read_metrics
    from cellnas.train import train

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise CellnasError(f"--seeds needs distinct integers, got {seeds}")
    out = Path(out)
    plan = [(e, s, out / e.name / f"seed-{s}") for e in entries for s in seeds]
    states = {d: _check_existing(d, e.genotype, dataclasses.replace(config, seed=s)) for e, s, d in plan}
    shared = {k: v for k, v in config.to_dict().items() if k != "seed"}
    _write_index(out, shared, entries, seeds, atomic_write_json)
    runs = []
    for i, (e, s, d) in enumerate(plan):
        state = states[d]
        log.info("[%d/%d] %s seed %d: %s", i + 1, len(plan), e.name, s,
                 {"final": "reusing the finished run", "partial": "resuming", None: "training"}[state])  # fmt: skip
        if state == "partial":
            train(resume=d, progress=config.progress, device=config.device, data_dir=config.data_dir)
        elif state is None:
            train(e.genotype, dataclasses.replace(config, seed=s), out=d)
        status = {"final": "reused", "partial": "resumed", None: "trained"}[state]
        runs.append(ConvergenceRun(e.name, s, d, status, read_metrics(d)))
    _write_index(out, shared, entries, seeds, atomic_write_json, runs)
    return ConvergenceResult(out, shared, entries, runs, seeds)


def _write_index(out: Path, shared: dict, entries: list[Entry], seeds: list[int], write, runs=None) -> None:
    doc = {
        "kind": "convergence",
        "protocol": shared,
        "seeds": seeds,
        "entries": [{"name": e.name, "hash": e.genotype.content_hash(), "genotype": e.genotype.to_dict(), **e.info}
                    for e in entries],  # fmt: skip
        "runs": [{"name": r.name, "seed": r.seed, "run_dir": str(r.run_dir.relative_to(out)), "status": r.status,
                  "epochs": len(r.metrics)} for r in runs or []],  # fmt: skip
    }
    write(out / INDEX, doc)


def load_convergence(out: str | Path) -> ConvergenceResult:
    """Re-read a study from its own files (``convergence.json`` and each run's ``metrics.jsonl``), e.g. to re-plot."""
    from cellnas.runs import read_metrics

    out = Path(out)
    try:
        doc = json.loads((out / INDEX).read_text())
    except (OSError, json.JSONDecodeError):
        raise RunError(f"{out} holds no readable {INDEX}; run `cellnas analyze convergence ... --out {out}`") from None
    entries = [
        Entry(e["name"], Genotype.from_dict(e["genotype"]),
              {k: v for k, v in e.items() if k not in ("name", "genotype", "hash")})
        for e in doc["entries"]
    ]  # fmt: skip
    runs = []
    for e in entries:
        for s in doc["seeds"]:
            d = out / e.name / f"seed-{s}"
            metrics = read_metrics(d)
            if metrics:
                runs.append(ConvergenceRun(e.name, int(s), d, "reused", metrics))
    return ConvergenceResult(out, doc["protocol"], entries, runs, [int(s) for s in doc["seeds"]])


def curves(runs: list[ConvergenceRun], keys: tuple[str, ...] = CURVE_KEYS) -> dict[str, dict[str, dict]]:
    """``{name: {key: {"epoch", "mean", "std", "n"}}}`` over the seeds of each name.

    Epochs are numbered from 1; runs of one name are cut to the shortest (an unfinished seed shortens the curve).
    ``std`` is the sample standard deviation (ddof = 1; 0 for a single seed).
    """
    by_name: dict[str, list[list[dict]]] = {}
    for r in runs:
        if r.metrics:
            by_name.setdefault(r.name, []).append(r.metrics)
    result: dict[str, dict[str, dict]] = {}
    for name, series in by_name.items():
        n_epochs = min(len(m) for m in series)
        result[name] = {}
        for key in keys:
            values = np.array([[float(rec.get(key, np.nan)) for rec in m[:n_epochs]] for m in series])
            std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(n_epochs)
            result[name][key] = {"epoch": np.arange(1, n_epochs + 1), "mean": values.mean(axis=0), "std": std,
                                 "n": len(series)}  # fmt: skip
    return result


def width_groups(entries: list[Entry]) -> list[list[str]] | None:
    """Fig. 13's panels: the variants grouped by normal-cell width, the base cell in every panel.

    ``None`` when there is no base cell (a variants index) or fewer than two widths among the variants.
    """
    base = [e.name for e in entries if e.info.get("base")]
    variants = [e for e in entries if not e.info.get("base") and e.info.get("width") is not None]
    widths = sorted({float(e.info["width"]) for e in variants})
    if not base or len(widths) < 2:
        return None
    return [base + [e.name for e in variants if float(e.info["width"]) == w] for w in widths]
