"""Batched data augmentation on the device: random crop, horizontal flip, normalisation, cutout (SPEC 1.5, 2.2).

Each function transforms a whole batch ``(B, C, H, W)`` with tensor ops, no per-sample Python loop. Random
numbers are drawn from the ``generator`` passed in (on its own device, then moved to the data's device), so the
same generator state gives the same augmentation on CPU and GPU.

The order is that of quark0/darts (``utils._data_transforms_cifar10``): RandomCrop(32, padding=4) with zero fill
-> RandomHorizontalFlip -> ToTensor + Normalize -> Cutout. Crop and flip act on the uint8 images (a padded pixel is
0 before normalisation, as with torchvision), cutout zeroes *normalised* values (SPEC 2.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "random_crop_flip", "normalize", "cutout", "augment_batch"]


@dataclass(frozen=True)
class Augment:
    """Which augmentations a loader applies (SPEC 1.5: search uses crop + flip; SPEC 2.2: training adds cutout 16).

    ``crop_padding``: zero padding p on each side before a random crop back to the original size (0: no crop);
    ``flip``: horizontal flip with probability 0.5 per image; ``cutout``: side L of the zeroed square (0: none).
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.cutout < 0:
            raise ValueError(f"crop_padding and cutout must be >= 0, got {self.crop_padding}, {self.cutout}")

    @classmethod
    def none(cls) -> Augment:
        """No augmentation (evaluation)."""
        return cls(crop_padding=0, flip=False, cutout=0)

    @property
    def is_random(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.cutout > 0


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and (optionally) a random horizontal flip, batched.

    Pads the batch once, then gathers each image's ``H x W`` window at its own offset ``(dy, dx)``, uniform in
    ``[0, 2p]``; a flipped image reads its window's columns right to left, so flip and crop are one gather.
    Draws, in order: offsets ``(B, 2)`` when ``padding > 0``, then flip bits ``(B,)`` when ``flip``.
    """
    if padding == 0 and not flip:
        return x
    b, c, h, w = x.shape
    gdev = generator.device
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator, device=gdev).to(x.device)
        x = F.pad(x, (padding, padding, padding, padding))  # (B, C, H+2p, W+2p), zeros
    else:
        offsets = torch.zeros((b, 2), dtype=torch.long, device=x.device)
    hp, wp = x.shape[-2:]
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flip:
        flipped = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(x.device)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1:] + cols  # (B, W)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, hp * wp).gather(2, flat).view(b, c, h, w)


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """uint8 pixels -> ``(x / 255 - mean) / std`` per channel, computed in float32 and returned as ``dtype``."""
    c = x.shape[1]
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    scale = 1.0 / (255.0 * std_t)
    out = torch.addcmul(-mean_t / std_t, x.to(torch.float32), scale)
    return out if dtype == torch.float32 else out.to(dtype)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) as in quark0/darts ``utils.Cutout`` (SPEC 2.2), batched.

    Each image gets one ``length x length`` square set to zero, its centre ``(cy, cx)`` uniform over the pixel grid,
    clipped at the borders: rows ``[cy - L//2, cy - L//2 + L)`` and likewise columns. For even L (16) this is exactly
    quark0's ``[cy - L/2, cy + L/2)``; for odd L quark0 zeroes ``L-1`` rows, here ``L``.
    Draws ``cy`` ``(B,)`` then ``cx`` ``(B,)``.
    """
    if length <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator, device=generator.device).to(x.device)
    cx = torch.randint(0, w, (b,), generator=generator, device=generator.device).to(x.device)
    y0, x0 = cy - length // 2, cx - length // 2
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_rows = (ys >= y0[:, None]) & (ys < (y0 + length)[:, None])  # (B, H)
    in_cols = (xs >= x0[:, None]) & (xs < (x0 + length)[:, None])  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    return x.masked_fill(mask, 0)


def augment_batch(
    x: torch.Tensor,
    augment: Augment | None,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 batch -> augmented, normalised ``dtype`` batch: crop + flip, normalise, cutout (SPEC 1.5, 2.2)."""
    aug = augment or Augment.none()
    x = random_crop_flip(x, aug.crop_padding, aug.flip, generator)
    x = normalize(x, mean, std, dtype)
    return cutout(x, aug.cutout, generator)
