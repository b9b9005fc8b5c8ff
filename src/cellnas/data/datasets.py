"""Datasets as whole uint8 tensors, and the registry whose names are the ``--dataset`` vocabulary.

A :class:`Dataset` holds the complete training and test sets in memory as ``uint8`` tensors of shape
``(N, C, H, W)`` plus ``int64`` labels, with the per-channel normalisation constants that the loader
applies on the device (SPEC 1.5, 2.2). Registered names:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (no download; for tests and quick runs);
* ``cifar10``, ``cifar100``: the python-pickle releases, read from ``data_dir`` (see :mod:`cellnas.data.cifar`);
* ``imagefolder:PATH``: one sub-folder per class of images, each class split about 80/20 by a hash of each file's
  path, or ``PATH/train/`` beside ``PATH/test/`` (see :mod:`cellnas.data.imagefolder`).

>>> ds = get_dataset("digits")
>>> ds.train_x.shape, ds.test_x.shape, ds.num_classes
(torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]), 10)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cellnas.errors import DataError, unknown_name

__all__ = [
    "Dataset",
    "DatasetLoader",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "load_digits",
    "stratified_split",
    "channel_stats",
    "resize_images",
    "DEFAULT_DATA_DIR",
]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("data")
"""Where file-based datasets are looked for (and downloaded to) when no ``data_dir`` is given."""

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def default_crop_padding_for(image_size: int) -> int:
    """Random-crop padding scaled like DARTS' 4 px on 32 px images (SPEC 1.5): ``max(1, size // 8)``.

    8x8 digits get 1 px: padding 4 on an 8x8 image would move half the glyph off the crop.
    """
    return max(1, image_size // 8)


@dataclass(eq=False)
class Dataset:
    """A complete image-classification dataset held in memory (SPEC 1.5, 2.2).

    ``train_x``/``test_x`` are ``uint8`` tensors ``(N, C, H, W)`` with values 0..255, ``train_y``/``test_y``
    ``int64`` class indices in ``[0, num_classes)``. ``mean``/``std`` are per-channel constants in [0, 1] units
    (pixel / 255) used for normalisation. ``default_crop_padding`` and ``default_flip`` are the augmentation
    defaults suited to the data (:func:`cellnas.data.make_loaders` uses them): digits use padding 1 and no
    flips, because a mirrored digit is a different glyph (or none). ``split`` describes how a dataset whose split
    can change with its files chose its test set (image folders: rule, counts and a fingerprint of the test files,
    see :mod:`cellnas.data.imagefolder`), as plain JSON values; ``None`` for fixed releases.
    """

    name: str
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str] | None = field(default=None, repr=False)
    default_crop_padding: int = 4
    default_flip: bool = True
    split: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            shape = (self.in_channels, self.image_size, self.image_size)
            if x.dtype != torch.uint8 or x.dim() != 4 or tuple(x.shape[1:]) != shape:
                raise DataError(f"dataset {self.name!r}: {part}_x must be uint8 (N, {', '.join(map(str, shape))}), "
                                f"got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"dataset {self.name!r}: {part}_y must be int64 of length {x.shape[0]}, "
                                f"got {y.dtype} {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"dataset {self.name!r}: {part} labels outside [0, {self.num_classes})")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise DataError(f"dataset {self.name!r}: mean/std need {self.in_channels} values per channel")
        if self.classes is not None and len(self.classes) != self.num_classes:
            raise DataError(f"dataset {self.name!r}: {len(self.classes)} class names for {self.num_classes} classes")

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_x.shape[0])


DatasetLoader = Callable[..., Dataset]
"""``loader(*, data_dir: Path, download: bool, image_size: int | None) -> Dataset``."""

_REGISTRY: dict[str, DatasetLoader] = {}
_WITHOUT_FILES: set[str] = set()


def register_dataset(name: str, loader_fn: DatasetLoader, *, overwrite: bool = False, reads_files: bool = True) -> None:
    """Make ``name`` usable with :func:`get_dataset` (and so as ``--dataset NAME``).

    ``loader_fn`` is called with keyword arguments ``data_dir`` (a :class:`~pathlib.Path`), ``download`` (bool)
    and ``image_size`` (int or None: the dataset's native size) and returns a :class:`Dataset`. ``reads_files=False``
    for a dataset bundled with its code (digits): its runs then record no data folder.
    """
    if ":" in name:
        raise ValueError(f"dataset name {name!r} must not contain ':' (reserved for 'imagefolder:PATH')")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = loader_fn
    (_WITHOUT_FILES.discard if reads_files else _WITHOUT_FILES.add)(name)


def reads_files(name: str) -> bool:
    """Whether dataset ``name`` reads files from a data folder (``--data-dir``): every registered one but those
    registered with ``reads_files=False``; ``imagefolder:PATH`` reads its own folder, named in it."""
    return name not in _WITHOUT_FILES and not name.startswith("imagefolder:")


def list_datasets() -> list[str]:
    """The registered dataset names, sorted. ``imagefolder:PATH`` is accepted as well."""
    return sorted(_REGISTRY)


def get_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    train: bool = True,
    split_rule: str | None = None,
) -> Dataset:
    """Load a dataset by name (SPEC 1.5, 2.2).

    ``data_dir`` is where file-based datasets live (default ``./data``); ``download=True`` fetches a missing
    archive whose official URL is known (CIFAR). ``image_size`` resizes the images (bilinear, antialiased;
    default: the native size, 32 for ``imagefolder:``). ``train=False`` says that only the test set is needed
    (``cellnas evaluate``): a loader that takes a ``train`` keyword (CIFAR) then reads no training files and
    returns an empty training set; the others load everything. ``split_rule``: the train/test split of an image
    folder (:data:`cellnas.data.imagefolder.SPLIT_RULES`; default: the current rule). Unknown names raise a
    :class:`~cellnas.errors.CellnasError` listing the valid ones.
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if name.startswith("imagefolder:"):
        path = name.split(":", 1)[1]
        if not path:
            raise DataError("'imagefolder:' needs a directory: use --dataset imagefolder:PATH")
        from cellnas.data.imagefolder import load_imagefolder

        return load_imagefolder(path, image_size=image_size or 32, **({"split_rule": split_rule} if split_rule else {}))
    if name not in _REGISTRY:
        raise unknown_name("dataset", name, [*_REGISTRY, "imagefolder:PATH"])
    loader_fn = _REGISTRY[name]
    if not train and "train" in inspect.signature(loader_fn).parameters:
        return loader_fn(data_dir=root, download=download, image_size=image_size, train=False)
    return loader_fn(data_dir=root, download=download, image_size=image_size)


# --------------------------------------------------------------------------------------------- helpers


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images ``(N, C, H, W)``, in [0, 1] units."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        part = x[i : i + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def resize_images(x: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Resize uint8 images ``(N, C, H, W)`` to ``(N, C, size, size)`` (bilinear, antialiased, rounded)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        part = F.interpolate(x[i : i + chunk].float(), size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True)
        out[i : i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: ``round(test_fraction * n_c)`` test images per class (at least one when
    the class has two or more), chosen by a ``numpy.random.Generator(seed)`` permutation; both index arrays sorted.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_test = max(1, round(test_fraction * idx.size)) if idx.size >= 2 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _maybe_resize(ds: Dataset, image_size: int | None, recompute_stats: bool) -> Dataset:
    if image_size is None or image_size == ds.image_size:
        return ds
    train_x = resize_images(ds.train_x, image_size)
    test_x = resize_images(ds.test_x, image_size)
    mean, std = channel_stats(train_x) if recompute_stats else (ds.mean, ds.std)
    return Dataset(ds.name, train_x, ds.train_y, test_x, ds.test_y, ds.num_classes, ds.in_channels, image_size,
                   mean, std, ds.classes, default_crop_padding_for(image_size), ds.default_flip, ds.split)


# --------------------------------------------------------------------------------------------- digits


def load_digits(*, data_dir: Path | None = None, download: bool = False, image_size: int | None = None) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, 10 classes, no download.

    Values 0..16 are scaled exactly to 0..255 (``round(v * 255 / 16)``). Fixed split: stratified 80/20 with
    ``numpy.random.default_rng(0)`` (:func:`stratified_split`), giving **1,438 training and 359 test** images.
    mean/std come from the training split (recomputed after resizing). Augmentation defaults: crop padding
    ``max(1, image_size // 8)`` (1 at 8x8), no horizontal flips (a mirrored digit is not the same digit).
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SEED)
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels)
    train_x, test_x = x[train_idx].contiguous(), x[test_idx].contiguous()
    mean, std = channel_stats(train_x)
    ds = Dataset("digits", train_x, y[train_idx].contiguous(), test_x, y[test_idx].contiguous(), 10, 1, 8,
                 mean, std, [str(i) for i in range(10)], default_crop_padding=1, default_flip=False)
    return _maybe_resize(ds, image_size, recompute_stats=True)


# --------------------------------------------------------------------------------------------- CIFAR (lazy)


def _cifar10(*, data_dir: Path, download: bool = False, image_size: int | None = None, train: bool = True) -> Dataset:
    from cellnas.data.cifar import load_cifar

    return _maybe_resize(load_cifar("cifar10", data_dir, download, train), image_size, recompute_stats=False)


def _cifar100(*, data_dir: Path, download: bool = False, image_size: int | None = None, train: bool = True) -> Dataset:
    from cellnas.data.cifar import load_cifar

    return _maybe_resize(load_cifar("cifar100", data_dir, download, train), image_size, recompute_stats=False)


register_dataset("digits", load_digits, reads_files=False)
register_dataset("cifar10", _cifar10)
register_dataset("cifar100", _cifar100)
