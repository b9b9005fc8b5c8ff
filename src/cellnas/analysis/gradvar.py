"""Gradient variance at trained weights and over the loss-landscape plane (Shu et al., ICLR 2020, Fig. 22; SPEC 3.5).

Definition (SPEC 3.5, standard and consistent with the paper [RECALLED]): at parameters ``theta``, over ``B``
mini-batches ``b`` with full parameter gradients ``g_b(theta)``,

    Var(g) = (1/B) sum_b || g_b(theta) - mean_b g_b(theta) ||^2

(the population form, 1/B). The paper leaves the batch size, the number of batches and any normalisation
[UNKNOWN]; here they are explicit settings, recorded with every result:

* ``batch_size`` (default 128) and ``num_batches`` (default 10): each mini-batch is ``batch_size`` distinct images
  drawn from the evaluation set (the test set by default, as in Fig. 22) by a generator seeded with
  ``batch_seed``; batches are drawn independently, so they may share images (this keeps the estimator valid on a
  small test set, e.g. 359 digits). The same batches serve every point of a grid (common random numbers).
* ``normalize``: ``none`` (default) or ``per-parameter`` (divided by the number of parameters that receive a
  gradient; the auxiliary head does not, since only the main logits enter the loss).
* ``bn``: ``eval`` (default) uses the loaded running statistics, so every batch differentiates the same function,
  the one whose loss the contours show, and the variance measures only the sampling of the data; ``train`` uses
  batch statistics, as SGD sees them (the function then changes with the batch). The BN running statistics are
  restored afterwards either way. The paper is silent on this [UNKNOWN].

The loss is the mean cross-entropy of the main logits over a batch (no auxiliary loss, no drop-path). Gradients
are flattened into one vector and accumulated with Welford's update in float64, so memory is O(parameters)
whatever ``B``.

>>> import torch
>>> lin = torch.nn.Linear(2, 1, bias=False)
>>> x = torch.eye(2)
>>> batches = [(x[:1], torch.zeros(1, 1)), (x[1:], torch.zeros(1, 1))]
>>> r = gradient_variance(lin, batches, loss_fn=torch.nn.functional.mse_loss)
>>> r.num_batches, r.n_params
(2, 2)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellnas.analysis.gradvar_options import BN_MODES, DEFAULTS, NORMALIZATIONS
from cellnas.analysis.landscape import DEFAULT_SEED, EvalSet, Grid, _logits, axis, plane_directions, plane_grid
from cellnas.errors import CellnasError

__all__ = [
    "NORMALIZATIONS",
    "BN_MODES",
    "GradVariance",
    "gradient_variance",
    "sample_batches",
    "gradvar_grid",
    "DEFAULTS",
]

log = logging.getLogger(__name__)



@dataclass
class GradVariance:
    """One gradient-variance measurement and the settings that produced it (SPEC 3.5)."""

    variance: float  # (1/B) sum_b ||g_b - g_mean||^2, divided by n_params when normalize == "per-parameter"
    raw_variance: float  # the same without normalisation
    mean_grad_sqnorm: float  # ||g_mean||^2 (unnormalised)
    loss: float  # mean of the B batch losses
    num_batches: int
    batch_size: int | None
    n_params: int
    normalize: str
    bn: str

    def to_dict(self) -> dict:
        return asdict(self)


def sample_batches(
    data: EvalSet,
    batch_size: int = DEFAULTS["batch_size"],
    num_batches: int = DEFAULTS["num_batches"],
    *,
    seed: int | torch.Generator = DEFAULTS["batch_seed"],
    device: str | torch.device = "cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` mini-batches of ``batch_size`` distinct images each, drawn independently (see the module)."""
    from cellnas.data import normalize

    n = len(data)
    if not 1 <= batch_size <= n:
        raise CellnasError(
            f"--batch-size must be between 1 and the {n} images of the {data.split} set, got {batch_size}"
        )
    if num_batches < 2:
        raise CellnasError(f"--batches must be >= 2 for a variance, got {num_batches}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    batches = []
    for _ in range(num_batches):
        idx = torch.randperm(n, generator=gen)[:batch_size]
        x = normalize(data.images.index_select(0, idx).to(device), data.mean, data.std)
        batches.append((x, data.labels.index_select(0, idx).to(device)))
    return batches


@contextlib.contextmanager
def _bn_mode(model: nn.Module, bn: str):
    """``eval`` or ``train`` mode for the measurement; BN buffers and drop-path restored afterwards."""
    if bn not in BN_MODES:
        raise CellnasError(f"--bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
    was_training = model.training
    buffers = [b.detach().clone() for b in model.buffers()]
    drop = getattr(model, "drop_path_prob", None)
    if drop is not None:
        model.drop_path_prob = 0.0
    model.train(bn == "train")
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        model.train(was_training)
        if drop is not None:
            model.drop_path_prob = drop


def gradient_variance(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    normalize: str = DEFAULTS["normalize"],
    bn: str = DEFAULTS["bn"],
) -> GradVariance:
    """Var(g) = (1/B) sum_b ||g_b - mean_b g_b||^2 over ``batches`` at the model's current weights (SPEC 3.5).

    ``loss_fn(logits, y)`` defaults to the mean cross-entropy; models returning ``(logits, aux)`` use the logits.
    Parameters that never receive a gradient (an auxiliary head) are left out of the vector and of ``n_params``.
    Welford's update: ``delta = g - m; m += delta / k; S += delta . (g - m)``; ``Var = S / B``.
    """
    if normalize not in NORMALIZATIONS:
        raise CellnasError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if len(batches) < 2:
        raise CellnasError(f"gradient variance needs at least 2 batches, got {len(batches)}")
    loss_fn = loss_fn or F.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    used: list[bool] | None = None
    mean: torch.Tensor | None = None
    s = 0.0
    losses = []
    with _bn_mode(model, bn), torch.enable_grad():
        for k, (x, y) in enumerate(batches, start=1):
            loss = loss_fn(_logits(model(x)), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            if used is None:
                used = [g is not None for g in grads]
                if not any(used):
                    raise CellnasError("the loss does not depend on any parameter: no gradient to measure")
            g = torch.cat([
                (gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                for gi, p, u in zip(grads, params, used) if u
            ]).double()  # fmt: skip
            if mean is None:
                mean = torch.zeros_like(g)
            delta = g - mean
            mean += delta / k
            s += float(delta @ (g - mean))
            losses.append(float(loss.detach()))
    n_params = sum(p.numel() for p, u in zip(params, used) if u)
    raw = s / len(batches)
    value = raw / n_params if normalize == "per-parameter" else raw
    return GradVariance(
        variance=value, raw_variance=raw, mean_grad_sqnorm=float(mean @ mean), loss=float(np.mean(losses)),
        num_batches=len(batches), batch_size=int(batches[0][1].shape[0]), n_params=int(n_params),
        normalize=normalize, bn=bn,
    )  # fmt: skip


def gradvar_grid(
    model: nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    xs: np.ndarray | None = None,
    ys: np.ndarray | None = None,
    seed: int = DEFAULT_SEED,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    normalize: str = DEFAULTS["normalize"],
    bn: str = DEFAULTS["bn"],
    config: dict | None = None,
    path: str | Path | None = None,
    save_every: int | None = None,
    restart: bool = False,
    progress: bool = True,
) -> Grid:
    """Gradient variance at every point of the landscape's plane (Fig. 22; same seed -> same directions as
    :func:`~cellnas.analysis.landscape.loss_landscape`), resumable like it.

    Arrays: ``variances`` (normalised as asked), ``raw_variances``, ``mean_grad_sqnorms`` and ``losses`` (the mean
    training-mode-or-not batch loss at the point). Defaults: 51 x 51 over [-1, 1]^2.
    """
    xs = axis(-1, 1, 51) if xs is None else np.asarray(xs, dtype=np.float64)
    ys = axis(-1, 1, 51) if ys is None else np.asarray(ys, dtype=np.float64)
    if normalize not in NORMALIZATIONS:
        raise CellnasError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")

    def evaluate() -> dict[str, float]:
        r = gradient_variance(model, batches, loss_fn=loss_fn, normalize=normalize, bn=bn)
        return {"variances": r.variance, "raw_variances": r.raw_variance, "mean_grad_sqnorms": r.mean_grad_sqnorm,
                "losses": r.loss}  # fmt: skip

    params = list(model.parameters())
    directions = plane_directions(params, seed, n=2)
    cfg = {"kind": "gradvar", "normalize": normalize, "bn": bn, "num_batches": len(batches), **(config or {})}
    return plane_grid(evaluate, params, directions, xs, ys, seed=seed, config=cfg, path=path, save_every=save_every,
                      restart=restart, progress=progress, desc="gradient variance")  # fmt: skip
