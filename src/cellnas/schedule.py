"""Learning-rate schedules, device selection and mixed precision shared by search and training."""

from __future__ import annotations

import contextlib
import math

import torch

from cellnas._config import AMP_CHOICES
from cellnas.errors import RunError

__all__ = ["cosine_lr", "resolve_device", "amp_dtype", "autocast"]


def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """SPEC 1.5: lr_e = lr_min + (lr - lr_min)(1 + cos(π e / E)) / 2, constant within epoch e; epoch 0 uses lr.

    quark0/darts called ``scheduler.step()`` at the start of each epoch under PyTorch 0.3.1; later
    PyTorch versions shift that schedule by one epoch, so the formula is applied explicitly.
    """
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA request without CUDA, or naming a GPU the machine does
    not have (``cuda:1`` on a one-GPU machine), is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {name} was asked for but no CUDA device is available; use --device cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise RunError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and dev.index is not None:
        n = torch.cuda.device_count()
        if dev.index >= n:
            valid = ", ".join(f"cuda:{i}" for i in range(n))
            raise RunError(f"--device {name}: this machine has {n} CUDA device(s); choose one of {valid}")
    return dev


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``amp`` asks for on ``device`` (``None``: fp32, no autocast)."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    return torch.bfloat16 if amp == "bf16" or (amp == "auto" and device.type == "cuda") else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
