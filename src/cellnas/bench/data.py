"""Images per second of :class:`~cellnas.data.DeviceLoader` against a standard ``DataLoader``.

Both pipelines apply the same augmentation (random crop with padding 4, horizontal flip, normalisation, cutout;
SPEC 1.5, 2.2) to the same uint8 images. The baseline is what a typical PyTorch training script does: a
``Dataset.__getitem__`` that transforms one image at a time (written with plain torch ops, since torchvision is
not a dependency; torchvision's PIL transforms are slower still), collated by ``torch.utils.data.DataLoader``
with ``num_workers`` 0 and 2, then moved to the device. Timings start after a short warm-up (worker start-up
excluded) and end after a device synchronisation.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from cellnas.data import Augment, DeviceLoader, get_dataset

__all__ = ["bench_data", "synthetic_cifar"]

log = logging.getLogger(__name__)

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
WARMUP_BATCHES = 3


def synthetic_cifar(n: int = 50_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images ``(n, 3, 32, 32)`` and labels in ``[0, 10)``: CIFAR-10's shape without a download."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return images, labels


class _PerSampleDataset(torch.utils.data.Dataset):
    """The baseline: crop, flip, normalise and cut out one image per ``__getitem__`` call."""

    def __init__(self, images, labels, mean, std, augment: Augment, seed: int) -> None:
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.gen = torch.Generator().manual_seed(seed)  # copied into each worker: fine for timing

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.images[i]
        _, h, w = img.shape
        p = self.augment.crop_padding
        if p:
            dy, dx = torch.randint(0, 2 * p + 1, (2,), generator=self.gen).tolist()
            img = F.pad(img, (p, p, p, p))[:, dy : dy + h, dx : dx + w]
        if self.augment.flip and torch.rand(1, generator=self.gen).item() < 0.5:
            img = img.flip(-1)
        img = (img.float() / 255.0 - self.mean) / self.std
        length = self.augment.cutout
        if length:
            y0 = int(torch.randint(0, h, (1,), generator=self.gen)) - length // 2
            x0 = int(torch.randint(0, w, (1,), generator=self.gen)) - length // 2
            img[:, max(y0, 0) : y0 + length, max(x0, 0) : x0 + length] = 0
        return img, self.labels[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_s(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], n_batches: int, device: torch.device) -> float:
    for _ in range(WARMUP_BATCHES):
        next(batches)
    _sync(device)
    start = time.perf_counter()
    n_images = 0
    for _ in range(n_batches):
        x, _ = next(batches)
        n_images += int(x.shape[0])
    _sync(device)
    return n_images / (time.perf_counter() - start)


def _dataloader_batches(loader: DataLoader, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:  # as many epochs as the timing needs
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def bench_data(
    dataset: str = "synthetic-cifar",
    batch_size: int = 256,
    n_batches: int = 50,
    device: str | torch.device = "cpu",
    *,
    cutout: int = 16,
    num_workers: Sequence[int] = (0, 2),
    data_dir: str | Path | None = None,
    seed: int = 0,
    threads: int | None = None,
    download: bool = False,
) -> dict[str, Any]:
    """Throughput of the device-resident loader vs ``torch.utils.data.DataLoader`` with per-sample transforms.

    ``dataset``: ``synthetic-cifar`` (50,000 seeded random uint8 images 3x32x32) or any registered dataset name (its
    training set; ``download`` fetches CIFAR when it is missing). Augmentation: crop (the dataset's default padding,
    4 for CIFAR) + flip + normalise + cutout ``cutout``. Returns ``device``, ``ours_images_per_s``,
    ``torch_dataloader_images_per_s`` (the best over ``num_workers``), ``torch_dataloader_images_per_s_by_workers``,
    ``ratio`` (ours / best baseline) and the settings. ``threads`` sets ``torch.set_num_threads`` for the
    measurement (restored afterwards); the batched ops are multi-threaded on CPU and suffer most when other
    processes compete for the cores, so the result records the thread count and the load average.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench(dataset, batch_size, n_batches, torch.device(device), cutout, num_workers, data_dir, seed,
                      download)
    finally:
        torch.set_num_threads(previous_threads)


def _bench(
    dataset: str, batch_size: int, n_batches: int, dev: torch.device, cutout: int, num_workers: Sequence[int],
    data_dir: str | Path | None, seed: int, download: bool = False,
) -> dict[str, Any]:
    threads = torch.get_num_threads()
    if dataset == "synthetic-cifar":
        images, labels = synthetic_cifar(seed=seed)
        mean, std, augment = CIFAR10_MEAN, CIFAR10_STD, Augment(4, True, cutout)
    else:
        ds = get_dataset(dataset, data_dir=data_dir, download=download)
        images, labels, mean, std = ds.train_x, ds.train_y, ds.mean, ds.std
        augment = Augment(ds.default_crop_padding, True, cutout)

    ours = DeviceLoader(images, labels, batch_size, mean=mean, std=std, augment=augment, shuffle=True,
                        drop_last=True, seed=seed, device=dev)
    ours_rate = _images_per_s(iter(ours.next, None), n_batches, dev)
    log.info("DeviceLoader: %.0f images/s", ours_rate)

    by_workers: dict[str, float] = {}
    per_sample = _PerSampleDataset(images, labels, mean, std, augment, seed)
    for workers in num_workers:
        loader = DataLoader(per_sample, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                            pin_memory=dev.type == "cuda", generator=torch.Generator().manual_seed(seed))
        batches = _dataloader_batches(loader, dev)
        by_workers[str(workers)] = _images_per_s(batches, n_batches, dev)
        batches.close()  # shuts the workers down
        log.info("DataLoader, %d workers: %.0f images/s", workers, by_workers[str(workers)])

    best = max(by_workers.values())
    return {
        "device": str(dev),
        "dataset": dataset,
        "batch_size": batch_size,
        "n_batches": n_batches,
        "augment": {"crop_padding": augment.crop_padding, "flip": augment.flip, "cutout": augment.cutout},
        "ours_images_per_s": ours_rate,
        "torch_dataloader_images_per_s": best,
        "torch_dataloader_images_per_s_by_workers": by_workers,
        "ratio": ours_rate / best,
        "torch_version": torch.__version__,
        "torch_threads": threads,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
