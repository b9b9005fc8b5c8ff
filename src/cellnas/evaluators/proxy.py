"""The proxy evaluator: train the discrete network briefly, report its test error (Wan et al., ICLR 2022
verify every finding by training from scratch, SPEC 5.2, 5.6; NAS-Bench-301's data are proxy trainings, SPEC 6).

Training is :func:`cellnas.train.train` with a named short protocol (:data:`PROTOCOLS`), plus any
overrides. The archive key is ``proxy:<protocol>`` (overrides that change the numbers are appended, e.g.
``proxy:digits-tiny[epochs=5]``); the seed is the training seed. Reported metrics: ``test_error`` = the
error on the test split **after the last epoch** (as NB301 reports final numbers; ``best_test_error`` is also
kept, but selecting on it would select on the test set), ``params``, ``seconds`` (training wall time),
``epochs``.

Run directories go to a temporary directory that is deleted after each evaluation (nothing is written to
the working directory), or, with ``keep_runs=DIR``, to ``DIR/<hash>-s<seed>`` for inspection.

Protocols (each a train preset plus overrides):

* ``digits-tiny``: the embedded 8x8 digits, C=8, 3 cells, 3 epochs, no auxiliary head, no drop-path:
  about 5 s of CPU per architecture (one thread; 4.9 s measured, 6.5 s while it still drew curves.png).
  **A plumbing protocol, not a ranking signal**: measured on 40 random cells trained with seeds 0 and 1, the two
  seeds' errors rank the cells with Kendall tau -0.21 (mean |difference| 2.2 %, spread between cells 1.4 %), so
  a surrogate fitted on it predicts nothing (held-out tau 0.03 on 300 cells). With ``epochs=8`` (``--set
  epochs=8``, about 17 s of CPU) the seed-to-seed tau was 0.41 on 12 cells. Far too short, either way, to say
  anything about CIFAR.
* ``digits-short``: digits, C=16, 5 cells, 8 epochs, no auxiliary head, no drop-path (about a minute on CPU).
* ``nb301-short``: the NAS-Bench-301 pipeline (``nb301-proxy`` preset: CIFAR-10, 8 cells, C=32, batch 96,
  cosine to 1e-8, cutout, auxiliary, drop-path 0.2, mixup 0.2; SPEC 5.6, 6) cut from 100 to 10 epochs.
  Needs CIFAR-10 on disk (``data_dir``) and, realistically, a GPU.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from cellnas.errors import unknown_name
from cellnas.evaluators import Evaluator
from cellnas.genotype import Genotype

__all__ = ["ProxyEvaluator", "PROTOCOLS"]

log = logging.getLogger(__name__)

#: Named short training protocols: a train preset and its overrides.
PROTOCOLS: dict[str, dict] = {
    "digits-tiny": dict(preset="digits", channels=8, layers=3, epochs=3, auxiliary=False, drop_path=0.0),
    "digits-short": dict(preset="digits", channels=16, layers=5, epochs=8, auxiliary=False, drop_path=0.0),
    "nb301-short": dict(preset="nb301-proxy", epochs=10),
}

#: Overrides that do not change the numbers, so they stay out of the protocol name.
_NEUTRAL = {"device", "progress", "plots", "data_dir", "download", "checkpoint_every", "compile"}


class ProxyEvaluator(Evaluator):
    """Short training of the discrete network (see the module docstring).

    ``protocol``: a name in :data:`PROTOCOLS`; ``overrides``: any :class:`~cellnas.train.TrainConfig` field
    (``epochs=5``, ``data_dir="data"``, ``device="cpu"`` ...); ``keep_runs``: keep run directories there.
    """

    name = "proxy"
    parallel = True

    def __init__(self, protocol: str = "digits-tiny", keep_runs: str | Path | None = None, **overrides) -> None:
        if protocol not in PROTOCOLS:
            raise unknown_name("proxy protocol", protocol, PROTOCOLS)
        self.protocol_name = protocol
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.keep_runs = None if keep_runs is None else Path(keep_runs)
        spec = dict(PROTOCOLS[protocol])
        self.preset = spec.pop("preset")
        # no curves.png (a quarter of a digits-tiny evaluation) unless the run directories are kept
        self.train_overrides = {"plots": keep_runs is not None, **spec, **self.overrides, "progress": False}
        changed = {k: v for k, v in sorted(self.overrides.items()) if k not in _NEUTRAL and spec.get(k) != v}
        suffix = "[" + ",".join(f"{k}={v}" for k, v in changed.items()) + "]" if changed else ""
        self.protocol = f"proxy:{protocol}{suffix}"

    def train_config(self, seed: int = 0):
        """The resolved :class:`~cellnas.train.TrainConfig` of one evaluation (validates the overrides)."""
        from cellnas.train import resolve_config

        return resolve_config(self.preset, {**self.train_overrides, "seed": int(seed)})

    def config(self) -> dict:
        cfg = self.train_config(0).to_dict()
        cfg.pop("seed", None)
        return {"evaluator": self.name, "protocol": self.protocol_name, "preset": self.preset,
                "overrides": self.overrides, "train": cfg}  # fmt: skip

    def evaluate(self, genotype: Genotype, seed: int = 0) -> dict:
        """Train ``genotype`` under the protocol (see the class docstring). Ctrl-C stops the training after its
        step and raises :class:`~cellnas.runs.RunInterrupted`; without ``keep_runs`` its message names no run
        directory (the temporary one is deleted: nothing to resume)."""
        from cellnas.runs import RunInterrupted
        from cellnas.train import TrainInterrupted, train

        cfg = self.train_config(seed)
        if self.keep_runs is not None:
            run_dir = _fresh(self.keep_runs / f"{genotype.content_hash()}-s{seed}")
            result = train(genotype, cfg, out=run_dir)
        else:
            tmp = tempfile.mkdtemp(prefix="cellnas-proxy-")
            try:
                result = train(genotype, cfg, out=Path(tmp) / "run")
            except TrainInterrupted:
                raise RunInterrupted(f"proxy evaluation of {genotype.content_hash()} interrupted; its temporary "
                                     "run directory is deleted, nothing stored") from None  # fmt: skip
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return {
            "test_error": float(result.last_test_error),
            "best_test_error": float(result.best_test_error),
            "params": int(result.params),
            "seconds": float(result.seconds),
            "epochs": len(result.metrics),
        }


def _fresh(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ... if it is taken (a run directory is never overwritten)."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
