"""A surrogate evaluator: gradient boosting fitted on the archive, scoring unseen cells in microseconds
(the role NAS-Bench-301's XGB ensemble plays in Wan et al., ICLR 2022; SPEC 5.1, 6).

**Encoding** (:func:`encode`, NB301-style): for each cell type and each edge slot ``e = offset(node) + input``
(offsets 0, 2, 5, 9 for the DARTS cell, so e in 0..13, SPEC 6), a one-hot over the 8 DARTS ops (``none``
included, so op-disabled variants can be encoded; a model fitted without ``none`` simply never splits on
it). Two edges of one node from the same input add up (NB301 cannot encode them at all). With
``features="edges+counts"`` (the default) the number of edges of each op per cell type is appended:
an aggregate a tree model otherwise has to rebuild from 14 slots, which helps with a few hundred rows.

**Fit** (:func:`fit_surrogate`): one row per architecture (the metric averaged over the archive's seeds),
a seeded random hold-out split (``test_fraction``), ``GradientBoostingRegressor`` (``model="gbr"``) or
``HistGradientBoostingRegressor`` (``"hgb"``). Reported on the held-out rows: Kendall tau
(``scipy.stats.kendalltau``), Spearman rho and RMSE. With ``refit=True`` (default) the returned model is then
refitted on all rows: the held-out numbers describe the procedure, the saved model uses every row.

**Files**: :meth:`SurrogateModel.save` / :meth:`SurrogateModel.load` use joblib (a pickle: load only files you
trust). The evaluator's protocol is ``surrogate:<trained-on protocol>:<fingerprint>``, the fingerprint a
hash of the training rows and settings, so refitting on the same data gives the same archive key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cellnas.errors import CellnasError, DataError, GenotypeError
from cellnas.evaluators import Evaluator
from cellnas.genotype import CELL_TYPES, PRIMITIVES, Genotype
from cellnas.runs import now_iso

__all__ = [
    "FEATURES",
    "MODELS",
    "MIN_ROWS",
    "encode",
    "feature_names",
    "split_encodable",
    "SurrogateModel",
    "fit_surrogate",
    "SurrogateEvaluator",
]

log = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("edges", "edges+counts")
MODELS: tuple[str, ...] = ("gbr", "hgb")
#: The fewest architectures :func:`fit_surrogate` fits on.
MIN_ROWS = 10
_FILE_FORMAT = "cellnas.surrogate"
_FILE_VERSION = 1
_OP_INDEX = {op: i for i, op in enumerate(PRIMITIVES)}


def _slots(n_nodes: int) -> int:
    return sum(range(2, n_nodes + 2))


def feature_names(n_nodes: int = 4, features: str = "edges+counts") -> list[str]:
    """Column names: ``edge_{cell}_{e}={op}`` (NB301 slot numbering), then ``count_{cell}={op}``."""
    names = [f"edge_{c}_{e}={op}" for c in CELL_TYPES for e in range(_slots(n_nodes)) for op in PRIMITIVES]
    if features == "edges+counts":
        names += [f"count_{c}={op}" for c in CELL_TYPES for op in PRIMITIVES]
    return names


def encode(genotypes: Sequence[Genotype], n_nodes: int = 4, features: str = "edges+counts") -> np.ndarray:
    """The ``(len(genotypes), n_features)`` float matrix of the encoding in the module docstring."""
    if features not in FEATURES:
        raise CellnasError(f"unknown surrogate features {features!r}; valid: {', '.join(FEATURES)}")
    slots = _slots(n_nodes)
    n_ops = len(PRIMITIVES)
    width = 2 * slots * n_ops + (2 * n_ops if features == "edges+counts" else 0)
    X = np.zeros((len(genotypes), width), dtype=np.float32)
    for row, g in enumerate(genotypes):
        for c, cell_type in enumerate(CELL_TYPES):
            cell = g.cell(cell_type)
            if cell.n_nodes != n_nodes:
                raise GenotypeError(
                    f"{cell_type} cell has {cell.n_nodes} intermediate nodes; this surrogate encodes {n_nodes}"
                )
            offset = 0
            for j, node in enumerate(cell.nodes):
                for op, src in node:
                    if op not in _OP_INDEX:
                        raise GenotypeError(f"{cell_type} cell uses op {op!r}, which the surrogate cannot encode")
                    k = _OP_INDEX[op]
                    X[row, (c * slots + offset + src) * n_ops + k] += 1.0
                    if features == "edges+counts":
                        X[row, 2 * slots * n_ops + c * n_ops + k] += 1.0
                offset += j + 2
    return X


def split_encodable(
    genotypes: Sequence[Genotype], features: str = "edges+counts", n_nodes: int | None = None
) -> tuple[int, list[int], dict[int, str]]:
    """Which of ``genotypes`` one surrogate can encode: ``(n_nodes, indices it encodes, {index: why not})``.

    ``n_nodes``: given, or the most common number of intermediate nodes of the normal cells (ties: the fewest), so
    that a few cells of another size (e.g. NASNet's 5 nodes among DARTS cells) are the ones left out.
    """
    from collections import Counter

    if n_nodes is None:
        counts = Counter(g.normal.n_nodes for g in genotypes)
        n_nodes = min(counts, key=lambda n: (-counts[n], n)) if counts else 4
    ok: list[int] = []
    refused: dict[int, str] = {}
    for i, g in enumerate(genotypes):
        try:
            encode([g], n_nodes, features)
        except GenotypeError as exc:
            refused[i] = str(exc)
        else:
            ok.append(i)
    return n_nodes, ok, refused


def _file_kind(path: Path) -> str | None:
    """What ``path`` holds when it is a known kind of file that is not a surrogate ("JSON", "an SQLite file
    (an archive?)"), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head.startswith(b"SQLite format 3\x00"):
            return "an SQLite file (an archive?)"
        if path.stat().st_size <= 16 * 2**20:  # a genotype or an archive export, say
            json.loads(path.read_text(encoding="utf-8-sig"))
            return "JSON"
    except (OSError, ValueError):
        pass
    return None


@dataclass
class SurrogateModel:
    """A fitted surrogate and how well it ranked held-out architectures."""

    estimator: object
    trained_on: str
    metric: str = "test_error"
    model: str = "gbr"
    features: str = "edges+counts"
    n_nodes: int = 4
    seed: int = 0
    n_train: int = 0
    n_test: int = 0
    kendall_tau: float | None = None
    spearman: float | None = None
    rmse: float | None = None
    refit: bool = True
    fingerprint: str = ""
    created_at: str = field(default_factory=now_iso)

    @property
    def protocol(self) -> str:
        return f"surrogate:{self.trained_on}:{self.fingerprint[:8]}"

    def predict(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        if len(genotypes) == 0:
            return np.zeros(0)
        X = encode(genotypes, self.n_nodes, self.features)
        with _threads(1):
            return np.asarray(self.estimator.predict(X), dtype=float)

    def is_constant(self, genotypes: Sequence[Genotype]) -> bool:
        """Whether the model predicts one value for all of ``genotypes`` (too little data to learn anything)."""
        pred = self.predict(genotypes)
        return bool(pred.size) and float(np.ptp(pred)) == 0.0

    def summary(self) -> dict:
        return {
            "protocol": self.protocol, "trained_on": self.trained_on, "metric": self.metric, "model": self.model,
            "features": self.features, "seed": self.seed, "n_train": self.n_train, "n_test": self.n_test,
            "kendall_tau": self.kendall_tau, "spearman": self.spearman, "rmse": self.rmse, "refit": self.refit,
            "created_at": self.created_at,
        }  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """joblib file written atomically (temporary file, then rename)."""
        import io

        import joblib

        from cellnas.runs import atomic_write_bytes

        if Path(path).is_dir():
            raise CellnasError(f"{path} is a directory; give the surrogate file's name, "
                               f"e.g. {Path(path) / 'surrogate.joblib'}")  # fmt: skip
        buf = io.BytesIO()
        joblib.dump({"format": _FILE_FORMAT, "version": _FILE_VERSION, "model": self}, buf)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> SurrogateModel:
        """Load a file written by :meth:`save` (a pickle: only load files you trust)."""
        import joblib

        path = Path(path)
        if not path.is_file():
            raise DataError(f"surrogate file {path} does not exist (fit one with `cellnas archive fit-surrogate`)")
        expected = "a surrogate written by `cellnas archive fit-surrogate` (a joblib file)"
        try:
            doc = joblib.load(path)
        except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file for the user
            kind = _file_kind(path)
            if kind is not None:
                raise DataError(f"{path} is {kind}, not {expected}") from None
            raise DataError(f"{path} is not a readable surrogate file (expected {expected}; loading it failed: "
                            f"{type(exc).__name__}: {exc})") from None  # fmt: skip
        if not isinstance(doc, dict) or doc.get("format") != _FILE_FORMAT or not isinstance(doc.get("model"), cls):
            held = type(doc.get("model") if isinstance(doc, dict) and doc.get("format") == _FILE_FORMAT else doc)
            raise DataError(f"{path} is a joblib file holding a {held.__name__}, not {expected}")
        if doc.get("version") != _FILE_VERSION:
            raise DataError(f"{path}: surrogate file version {doc.get('version')} is not supported")
        return doc["model"]


def _threads(n: int | None):
    """Limit OpenMP/BLAS threads: HistGradientBoosting on a small, shared machine is about 10x slower with
    oversubscribed OpenMP pools than with one thread (threadpoolctl comes with scikit-learn)."""
    from contextlib import nullcontext

    if n is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=int(n))


def _estimator(model: str, seed: int):
    if model == "gbr":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(n_estimators=400, learning_rate=0.03, max_depth=3, subsample=0.8,
                                         random_state=seed)  # fmt: skip
    if model == "hgb":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15,
                                             l2_regularization=1.0, random_state=seed)  # fmt: skip
    raise CellnasError(f"unknown surrogate model {model!r}; valid: {', '.join(MODELS)}")


def fit_surrogate(
    data: Sequence[tuple[Genotype, float]],
    trained_on: str,
    *,
    metric: str = "test_error",
    model: str = "gbr",
    features: str = "edges+counts",
    test_fraction: float = 0.2,
    seed: int = 0,
    refit: bool = True,
    threads: int | None = 1,
) -> SurrogateModel:
    """Fit on ``(genotype, metric value)`` pairs (e.g. ``archive.ranked(protocol)`` stripped to 2 fields);
    see the module docstring. Needs at least 10 rows, and 5 held-out ones when ``test_fraction > 0``.
    ``threads`` limits OpenMP threads while fitting (None: the library default)."""
    from scipy.stats import kendalltau, spearmanr

    if model not in MODELS:
        raise CellnasError(f"unknown surrogate model {model!r}; valid: {', '.join(MODELS)}")
    if not 0 <= test_fraction < 1:
        raise CellnasError(f"test fraction must be in [0, 1), got {test_fraction}")
    genotypes = [g for g, _ in data]
    y = np.asarray([float(v) for _, v in data], dtype=float)
    if len(genotypes) < MIN_ROWS:
        raise DataError(f"a surrogate needs at least {MIN_ROWS} evaluated architectures, got {len(genotypes)}")
    n_nodes = genotypes[0].normal.n_nodes
    X = encode(genotypes, n_nodes, features)
    fp = hashlib.sha256(
        json.dumps([sorted((g.content_hash(), round(v, 10)) for g, v in zip(genotypes, y.tolist())), metric, model,
                    features, seed, test_fraction, refit]).encode()  # fmt: skip
    ).hexdigest()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(genotypes))
    n_test = int(round(test_fraction * len(genotypes)))
    if test_fraction > 0 and n_test < 5:
        raise DataError(f"{len(genotypes)} rows leave only {n_test} held out; use more data or --test-fraction 0")
    test, train = order[:n_test], order[n_test:]
    if len(train) < 5:
        raise DataError(f"test fraction {test_fraction} of {len(genotypes)} rows holds out {n_test} and leaves "
                        f"{len(train)} to fit on; at least 5 are needed: use a smaller --test-fraction")  # fmt: skip
    with _threads(threads):
        est = _estimator(model, seed).fit(X[train], y[train])
    tau = rho = rmse = None
    if n_test:
        pred = est.predict(X[test])
        rmse = float(np.sqrt(np.mean((pred - y[test]) ** 2)))
        if np.ptp(pred) > 0 and np.ptp(y[test]) > 0:  # else the rank correlations are undefined (None)
            tau = float(kendalltau(pred, y[test])[0])
            rho = float(spearmanr(pred, y[test])[0])
        else:
            log.warning("the held-out %s are constant: Kendall tau and Spearman are undefined",
                        "predictions" if np.ptp(pred) == 0 else "targets")  # fmt: skip
        log.debug("surrogate on %d held-out architectures: Kendall tau %s, Spearman %s, RMSE %.4g",
                 n_test, tau, rho, rmse)  # fmt: skip
    if refit and n_test:
        with _threads(threads):
            est = _estimator(model, seed).fit(X, y)
    return SurrogateModel(
        estimator=est, trained_on=trained_on, metric=metric, model=model, features=features, n_nodes=n_nodes,
        seed=seed, n_train=len(genotypes) if refit else len(train), n_test=n_test, kendall_tau=tau, spearman=rho,
        rmse=rmse, refit=refit, fingerprint=fp,
    )  # fmt: skip


class SurrogateEvaluator(Evaluator):
    """Scores with a :class:`SurrogateModel` (a fitted ``model`` or a ``path`` to its file). The seed is ignored:
    predictions are deterministic."""

    name = "surrogate"
    parallel = False

    def __init__(self, path: str | Path | None = None, model: SurrogateModel | None = None) -> None:
        if (path is None) == (model is None):
            raise CellnasError("the surrogate evaluator needs a model file (--surrogate FILE)")
        self.path = None if path is None else str(path)
        self.model = model if model is not None else SurrogateModel.load(path)
        self.protocol = self.model.protocol

    def config(self) -> dict:
        return {"evaluator": self.name, "file": self.path, **self.model.summary()}

    def check(self, genotype: Genotype) -> None:
        try:
            encode([genotype], self.model.n_nodes, self.model.features)
        except GenotypeError as exc:
            raise GenotypeError(f"the surrogate {self.path or self.protocol} cannot score {genotype.content_hash()}: "
                                f"{exc}") from None  # fmt: skip

    def evaluate(self, genotype: Genotype, seed: int = 0) -> dict:
        return self.evaluate_many([genotype], seed)[0]

    def evaluate_many(self, genotypes: Sequence[Genotype], seed: int = 0) -> list[dict]:
        # reported as test_error whatever metric it was fitted on (the y of OI); config() names that metric
        return [{"test_error": float(p), "seconds": 0.0} for p in self.model.predict(list(genotypes))]
