"""Evaluators: ``genotype -> metrics`` under a named protocol, and a registry of them (Wan et al., ICLR 2022
evaluate every architecture through one predictor, NAS-Bench-301, and verify by training; SPEC 5.1, 5.6, 6).

Every evaluator returns a metrics dict with at least ``test_error`` (a fraction: 0.0276 = 2.76 %) and
usually ``params`` and ``seconds``; its :attr:`Evaluator.protocol` names what the numbers mean, and is the
key under which the :class:`~cellnas.archive.Archive` stores them (with the seed).

Registered evaluators (:func:`list_evaluators`, :func:`create_evaluator`):

* ``proxy``: trains the discrete network briefly with :func:`cellnas.train.train` (:mod:`.proxy`);
* ``surrogate``: a gradient-boosting model fitted on the archive (:mod:`.surrogate`);
* ``nb301``: the NAS-Bench-301 ensemble when the user has it installed (:mod:`.nb301`, optional);
* ``synthetic``: a cheap closed-form toy with a planted answer, for tests and dry runs (:mod:`.synthetic`).

:func:`evaluate_batch` (in :mod:`.batch`) runs one evaluator over many genotypes, in worker processes
when the evaluator is expensive, committing every result to the archive as it arrives and skipping what
the archive already holds; Ctrl-C stops it with :class:`BatchInterrupted` (what finished stays stored).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

from cellnas.errors import unknown_name
from cellnas.genotype import Genotype

__all__ = [
    "Evaluator",
    "register_evaluator",
    "list_evaluators",
    "create_evaluator",
    "evaluate_batch",
    "BatchReport",
    "BatchInterrupted",
]


class Evaluator(ABC):
    """One way to score a genotype. Subclasses set :attr:`name`, :attr:`protocol` and :meth:`evaluate`.

    Instances must be picklable when :attr:`parallel` is true: :func:`evaluate_batch` sends them to worker
    processes. Evaluators are deterministic given ``(genotype, seed)`` unless documented otherwise. An evaluation
    stopped by Ctrl-C raises :class:`KeyboardInterrupt` or a :class:`~cellnas.runs.RunInterrupted` (a training
    does): :func:`evaluate_batch` then stops, and records no failure.
    """

    #: Registry name.
    name: ClassVar[str] = "evaluator"
    #: True when one evaluation is expensive enough to be worth a worker process (training).
    parallel: ClassVar[bool] = False
    #: The protocol name: the archive key together with the genotype hash and the seed.
    protocol: str = ""

    def config(self) -> dict:
        """What the protocol is (stored with every archived result; JSON-serialisable)."""
        return {"evaluator": self.name}

    @abstractmethod
    def evaluate(self, genotype: Genotype, seed: int = 0) -> dict:
        """Metrics of ``genotype``: at least ``test_error`` as a fraction."""

    def evaluate_many(self, genotypes: Sequence[Genotype], seed: int = 0) -> list[dict]:
        """Metrics of several genotypes (vectorised by cheap evaluators such as the surrogate)."""
        return [self.evaluate(g, seed) for g in genotypes]

    def check(self, genotype: Genotype) -> None:
        """Raise :class:`~cellnas.errors.CellnasError` if this evaluator cannot score ``genotype`` at all (e.g. a
        surrogate fitted on cells of another size), so that a study stops before hundreds of failed evaluations."""
        return None  # every genotype, by default

    def error(self, genotype: Genotype, seed: int = 0) -> float:
        """``test_error`` alone: the ``y`` of operation importance (SPEC 5.1)."""
        return float(self.evaluate(genotype, seed)["test_error"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(protocol={self.protocol!r})"


_REGISTRY: dict[str, str | Callable[..., Evaluator]] = {
    "proxy": "cellnas.evaluators.proxy:ProxyEvaluator",
    "surrogate": "cellnas.evaluators.surrogate:SurrogateEvaluator",
    "nb301": "cellnas.evaluators.nb301:NB301Evaluator",
    "synthetic": "cellnas.evaluators.synthetic:SyntheticEvaluator",
}


def register_evaluator(name: str, factory: str | Callable[..., Evaluator]) -> None:
    """Add an evaluator: a callable returning an :class:`Evaluator`, or ``"module:attribute"`` (imported on use)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"evaluator names must be non-empty strings, got {name!r}")
    _REGISTRY[name] = factory


def list_evaluators() -> list[str]:
    """The registered evaluator names."""
    return sorted(_REGISTRY)


def create_evaluator(name: str, **kwargs) -> Evaluator:
    """The evaluator registered as ``name``, built with ``kwargs``; unknown names list the valid ones."""
    if name not in _REGISTRY:
        raise unknown_name("evaluator", name, _REGISTRY)
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)


from cellnas.evaluators.batch import BatchInterrupted, BatchReport, evaluate_batch  # noqa: E402
