"""Mixup (Zhang et al., ICLR 2018) as the NAS-Bench-301 pipeline uses it (SPEC 5.6, 6), and the training loss.

One λ ~ Beta(α, α) per batch; the batch is mixed with a random permutation of itself,
x̃ = λ x + (1 - λ) x[π], and the loss is the same mixture of the two cross-entropies,
λ CE(f(x̃), y) + (1 - λ) CE(f(x̃), y[π]), as in ``automl/nasbench301``'s ``mixup_data``/``mixup_criterion``.
λ and π come from the run's own :class:`torch.Generator` (STYLE 6), so a seed fixes them and a checkpoint
restores them. Everything is a batched tensor op.

>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x, y = torch.ones(4, 1, 2, 2), torch.arange(4)
>>> xm, ya, yb, lam = mixup_batch(x, y, 0.2, g)
>>> bool(torch.allclose(xm, x)), ya.tolist(), 0.0 <= lam <= 1.0
(True, [0, 1, 2, 3], True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sample_lambda", "mixup_batch", "mixed_cross_entropy"]


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """λ ~ Beta(α, α) from ``generator``, as X / (X + Y) with X, Y ~ Gamma(α, 1) drawn in float64.

    ``torch.distributions.Beta`` cannot take a generator, so the two Gamma draws use the sampler
    behind it (``torch._standard_gamma``) with ours. ``alpha <= 0`` means no mixup: λ = 1.
    """
    if alpha <= 0:
        return 1.0
    conc = torch.full((2,), float(alpha), dtype=torch.float64, device=generator.device)
    xy = torch._standard_gamma(conc, generator=generator)
    total = float(xy.sum())
    return float(xy[0]) / total if total > 0 else 0.5


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a permutation of itself: returns ``(λ x + (1-λ) x[π], y, y[π], λ)``.

    Draws λ, then π (``randperm`` of the batch), both from ``generator``.
    """
    lam = sample_lambda(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device).to(x.device)
    x_mixed = lam * x + (1.0 - lam) * x.index_select(0, perm)  # (B, C, H, W)
    return x_mixed, y, y.index_select(0, perm), lam


def mixed_cross_entropy(
    logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor | None = None, lam: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:  # fmt: skip
    """λ CE(logits, y_a) + (1 - λ) CE(logits, y_b), with optional label smoothing (SPEC 2.3); plain CE when
    ``y_b`` is ``None`` or λ = 1. The loss is computed in float32 whatever the logits' dtype."""
    logits = logits.float()
    loss = F.cross_entropy(logits, y_a, label_smoothing=label_smoothing)
    if y_b is None or lam == 1.0:
        return loss
    return lam * loss + (1.0 - lam) * F.cross_entropy(logits, y_b, label_smoothing=label_smoothing)
