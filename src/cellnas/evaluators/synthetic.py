"""A closed-form toy evaluator with a planted answer, for tests, dry runs of the studies and the CLI.

It is **not** a benchmark: the "error" is a made-up linear function of the cell that plants the findings of
Wan et al. (ICLR 2022, Sec. 3-5; SPEC 5.1, 5.3): separable convolutions and residual links (a
``skip_connect`` from an input node) in the normal cell lower the error, pooling and ``none`` raise it, and
the reduction cell matters less. A small deterministic noise term (from the genotype hash and the seed)
breaks ties. So the studies must find: sep convs and residual skips important, residual skips more important
than other skips, and motifs of sep conv + residual link.

    error = base - sum over edges of weight(cell, op, is_residual) + noise,  clipped to [0.001, 0.999]
"""

from __future__ import annotations

import numpy as np

from cellnas.evaluators import Evaluator
from cellnas.genotype import Genotype

__all__ = ["SyntheticEvaluator", "WEIGHTS"]

#: Error reduction per normal-cell edge, by op (fractions of error); reduction-cell edges count ``reduce_scale``.
WEIGHTS: dict[str, float] = {
    "sep_conv_3x3": 0.006,
    "sep_conv_5x5": 0.005,
    "dil_conv_3x3": 0.003,
    "dil_conv_5x5": 0.002,
    "skip_connect": 0.0,
    "max_pool_3x3": -0.003,
    "avg_pool_3x3": -0.002,
    "none": -0.008,
}
_RESIDUAL_BONUS = 0.012  # one residual link in the normal cell; further ones add nothing
_OTHER_SKIP_PENALTY = 0.002  # a skip that is not a residual link


class SyntheticEvaluator(Evaluator):
    """Planted-answer toy (see the module docstring). ``noise`` is the std of the per-(genotype, seed) noise."""

    name = "synthetic"
    parallel = False

    def __init__(self, noise: float = 0.001, base: float = 0.1, reduce_scale: float = 0.25) -> None:
        self.noise = float(noise)
        self.base = float(base)
        self.reduce_scale = float(reduce_scale)
        self.protocol = "synthetic" if (noise, base, reduce_scale) == (0.001, 0.1, 0.25) else (
            f"synthetic[noise={noise:g},base={base:g},reduce_scale={reduce_scale:g}]"
        )

    def config(self) -> dict:
        return {"evaluator": self.name, "noise": self.noise, "base": self.base, "reduce_scale": self.reduce_scale}

    def _gain(self, genotype: Genotype, cell_type: str) -> float:
        gain, residual = 0.0, False
        for op, src, _ in genotype.cell(cell_type).edges():
            gain += WEIGHTS.get(op, 0.0)
            if op == "skip_connect":
                if src < 2:
                    residual = True
                else:
                    gain -= _OTHER_SKIP_PENALTY
        return gain + (_RESIDUAL_BONUS if residual else 0.0)

    def evaluate(self, genotype: Genotype, seed: int = 0) -> dict:
        rng = np.random.default_rng([int(genotype.content_hash(), 16), int(seed)])
        error = self.base - self._gain(genotype, "normal") - self.reduce_scale * self._gain(genotype, "reduce")
        error += self.noise * float(rng.standard_normal())
        return {"test_error": float(min(0.999, max(0.001, error))), "seconds": 0.0}
