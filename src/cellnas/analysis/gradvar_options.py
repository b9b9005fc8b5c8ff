"""The choices and documented defaults of the gradient-variance analysis (SPEC 3.5), apart from
:mod:`cellnas.analysis.gradvar` so that the CLI's parser reads them without importing torch."""

from __future__ import annotations

__all__ = ["NORMALIZATIONS", "BN_MODES", "DEFAULTS"]

NORMALIZATIONS = ("none", "per-parameter")
BN_MODES = ("eval", "train")

#: The documented defaults (SPEC 3.5 leaves them [UNKNOWN]).
DEFAULTS = {"batch_size": 128, "num_batches": 10, "normalize": "none", "bn": "eval", "batch_seed": 0}
