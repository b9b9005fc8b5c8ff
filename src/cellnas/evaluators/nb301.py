"""Optional adapter to the NAS-Bench-301 surrogate ensemble (SPEC 6), the evaluator Wan et al. (ICLR 2022)
used for operation importance (SPEC 5.1: ``y = 1 - acc/100``, ``with_noise=False``).

cellnas does not depend on NAS-Bench-301: the ``nasbench301`` package (PyPI 0.3, code only) is imported
only when this evaluator is built without a predictor, and the model folder (e.g. ``nb_models_0.9/xgb_v0.9``,
downloaded separately; Wan et al. used xgb_v0.9) must already be on disk. Its dependencies are old and heavy
(torch_geometric, ConfigSpace 0.4.12, a compatible xgboost; SPEC 6): whether they install next to cellnas
is up to your environment. **This adapter is tested only with a stand-in predictor object**; nothing here
has been run against the real ensemble.

Each genotype is first checked with :func:`cellnas.formats.to_nb301`, which refuses what NB301 cannot encode
(two edges of a node from the same input, ``none`` ops, other cell shapes) with a one-line error, then
passed to ``predictor.predict(config=<DARTS Genotype namedtuple>, representation="genotype",
with_noise=False)``. NB301 predicts CIFAR-10 **validation** accuracy in %; as in Wan et al. the adapter reports
``test_error = 1 - acc/100`` and keeps the raw prediction as ``nb301_accuracy``.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from pathlib import Path

from cellnas.errors import CellnasError, DataError
from cellnas.evaluators import Evaluator
from cellnas.formats import to_nb301
from cellnas.genotype import Genotype

__all__ = ["NB301Evaluator", "load_ensemble", "nb301_genotype", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "NAS-Bench-301 is not available: `pip install nasbench301` (and its dependencies, see SPEC 6) and pass the "
    "downloaded model folder, e.g. --nb301-models nb_models_0.9/xgb_v0.9"
)

_Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")


def load_ensemble(model_dir: str | Path):
    """``nasbench301.load_ensemble(model_dir)``, imported lazily; one-line errors when it cannot work."""
    if model_dir is None:
        raise CellnasError(INSTALL_HINT)
    path = Path(model_dir)
    try:
        import nasbench301
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken dependency raising anything at import
        raise CellnasError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from None
    if not path.is_dir():
        raise DataError(f"NAS-Bench-301 model folder {path} does not exist (download e.g. nb_models_0.9/xgb_v0.9)")
    try:
        return nasbench301.load_ensemble(str(path))
    except Exception as exc:  # noqa: BLE001 - version mismatches surface as anything
        raise DataError(f"cannot load the NAS-Bench-301 ensemble from {path}: {type(exc).__name__}: {exc}") from None


def nb301_genotype(genotype: Genotype):
    """The DARTS ``Genotype`` namedtuple NB301's ``representation="genotype"`` expects (its own class when
    ``nasbench301`` is importable), after :func:`~cellnas.formats.to_nb301` has checked that NB301 can encode it."""
    to_nb301(genotype)  # raises FormatError naming the cell, node and reason
    try:
        from nasbench301.representations import Genotype as NBGenotype  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - not installed: a namedtuple with the same fields
        NBGenotype = _Genotype
    return NBGenotype(
        normal=list(genotype.normal.pairs), normal_concat=list(genotype.normal.concat),
        reduce=list(genotype.reduce.pairs), reduce_concat=list(genotype.reduce.concat),
    )  # fmt: skip


class NB301Evaluator(Evaluator):
    """NAS-Bench-301 predictions (see the module docstring). Give ``model_dir`` (loads the ensemble) or a
    ``predictor`` with NB301's ``predict(config=..., representation=..., with_noise=...)`` method."""

    name = "nb301"
    parallel = False

    def __init__(self, model_dir: str | Path | None = None, predictor=None, name: str | None = None) -> None:
        self.model_dir = None if model_dir is None else str(model_dir)
        self.predictor = predictor if predictor is not None else load_ensemble(model_dir)
        label = name or (Path(model_dir).name if model_dir is not None else type(predictor).__name__)
        self.protocol = f"nb301:{label}"

    def config(self) -> dict:
        return {"evaluator": self.name, "model_dir": self.model_dir, "with_noise": False,
                "y": "1 - predicted CIFAR-10 validation accuracy / 100"}  # fmt: skip

    def evaluate(self, genotype: Genotype, seed: int = 0) -> dict:
        config = nb301_genotype(genotype)
        acc = float(self.predictor.predict(config=config, representation="genotype", with_noise=False))
        return {"test_error": 1.0 - acc / 100.0, "nb301_accuracy": acc}
