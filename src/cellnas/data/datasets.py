"""Datasets as whole uint8 tensors, and the registry whose names are the ``--dataset`` vocabulary.

A :class:`Dataset` holds the complete training and test sets in memory as ``uint8`` tensors of shape
``(N, C, H, W)`` plus ``int64`` labels, with the per-channel normalisation constants that the loader
applies on the device (SPEC 1.5, 2.2). Registered names:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (no download; for tests and quick runs);
* ``cifar10``, ``cifar100``: the python-pickle releases, read from ``data_dir`` (see :mod:`cellnas.data.cifar`);
* ``imagefolder:PATH``: one sub-folder per class of PNG/JPEG images.

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
    "load_imagefolder",
    "channel_stats",
    "resize_images",
    "DEFAULT_DATA_DIR",
    "IMAGE_EXTENSIONS",
]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("data")
"""Where file-based datasets are looked for (and downloaded to) when no ``data_dir`` is given."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2
IMAGEFOLDER_SEED = 0
IMAGEFOLDER_TEST_FRACTION = 0.2
IMAGEFOLDER_SPLITS = ("train", "test", "val")
"""Sub-folder names of the split layout ``PATH/train`` + ``PATH/test`` (or ``PATH/val``) of an image folder."""


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
    flips, because a mirrored digit is a different glyph (or none).
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


def register_dataset(name: str, loader_fn: DatasetLoader, *, overwrite: bool = False) -> None:
    """Make ``name`` usable with :func:`get_dataset` (and so as ``--dataset NAME``).

    ``loader_fn`` is called with keyword arguments ``data_dir`` (a :class:`~pathlib.Path`), ``download`` (bool)
    and ``image_size`` (int or None: the dataset's native size) and returns a :class:`Dataset`.
    """
    if ":" in name:
        raise ValueError(f"dataset name {name!r} must not contain ':' (reserved for 'imagefolder:PATH')")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = loader_fn


def list_datasets() -> list[str]:
    """The registered dataset names, sorted. ``imagefolder:PATH`` is accepted as well."""
    return sorted(_REGISTRY)


def get_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    train: bool = True,
) -> Dataset:
    """Load a dataset by name (SPEC 1.5, 2.2).

    ``data_dir`` is where file-based datasets live (default ``./data``); ``download=True`` fetches a missing
    archive whose official URL is known (CIFAR). ``image_size`` resizes the images (bilinear, antialiased;
    default: the native size, 32 for ``imagefolder:``). ``train=False`` says that only the test set is needed
    (``cellnas evaluate``): a loader that takes a ``train`` keyword (CIFAR) then reads no training files and
    returns an empty training set; the others load everything. Unknown names raise a
    :class:`~cellnas.errors.CellnasError` listing the valid ones.
    """
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if name.startswith("imagefolder:"):
        path = name.split(":", 1)[1]
        if not path:
            raise DataError("'imagefolder:' needs a directory: use --dataset imagefolder:PATH")
        return load_imagefolder(path, image_size=image_size or 32)
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
                   mean, std, ds.classes, default_crop_padding_for(image_size), ds.default_flip)


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


# --------------------------------------------------------------------------------------------- image folder


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from exc
    return arr.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _read_images(files: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        x[i] = _read_image(path, size)
    y = np.array([c for _, c in files], dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def load_imagefolder(path: str | Path, image_size: int = 32) -> Dataset:
    """A directory of images with one sub-folder per class, read with Pillow as RGB and resized to
    ``image_size`` x ``image_size`` (bilinear; the aspect ratio is not kept).

    The split layout applies only when every sub-folder of ``PATH`` is ``train``, ``test`` or ``val``
    (:data:`IMAGEFOLDER_SPLITS`): then ``PATH/train`` and ``PATH/test`` (or ``PATH/val``) are the split, and
    ``PATH/train`` alone is split as below. Otherwise ``PATH`` holds the classes, even one named ``train``
    (``cat/ dog/ train/``), each split deterministically, 20 % test (:func:`stratified_split`, seed 0). A mix
    whose split-named folders hold class folders (``train/<class>/`` beside ``extras/``) is refused: no reading
    of it is safe. Classes are the sorted sub-folder names, at least two; files with other extensions than
    ``.png .jpg .jpeg .bmp`` are ignored. mean/std come from the training split.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory; "
                        "expected PATH/<class name>/<images> for --dataset imagefolder:PATH")
    split_layout = _is_split_layout(root)
    held_out = next((root / d for d in ("test", "val") if (root / d).is_dir()), None) if split_layout else None
    has_train = split_layout and (root / "train").is_dir()
    if held_out is not None and not has_train:
        raise DataError(f"image folder {root} has {held_out.name}/ but no train/: give PATH/train/<class>/<images> "
                        f"beside PATH/{held_out.name}/<class>/<images>, or PATH/<class>/<images> without a split")
    if has_train and held_out is not None:
        classes = _classes(root / "train")
        unknown = sorted({d.name for d in _class_dirs(held_out)} - set(classes))
        if unknown:
            raise DataError(f"{held_out} has classes with no training folder in {root / 'train'}: {unknown}")
        train_files = _labelled_files(root / "train", classes)
        test_files = _labelled_files(held_out, classes, allow_empty=True)
        if not test_files:
            raise DataError(f"{held_out} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders; "
                            f"add test images there or remove {held_out} to split {root / 'train'} instead")
    else:
        if has_train:  # train/ alone: its classes, split as if it were the root
            log.info("%s has train/ but no test/ or val/: splitting train/ %d %% for testing", root,
                     round(100 * IMAGEFOLDER_TEST_FRACTION))
            root = root / "train"
        classes = _classes(root)
        files = _labelled_files(root, classes)
        labels = np.array([c for _, c in files], dtype=np.int64)
        train_idx, test_idx = stratified_split(labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_SEED)
        train_files = [files[i] for i in train_idx]
        test_files = [files[i] for i in test_idx]
        _check_split(root, classes, labels)
    log.info("reading %d training and %d test images from %s", len(train_files), len(test_files), root)
    train_x, train_y = _read_images(train_files, image_size)
    test_x, test_y = _read_images(test_files, image_size)
    mean, std = channel_stats(train_x)
    std = tuple(s if s > 0 else 1.0 for s in std)  # a constant channel would divide by zero
    return Dataset(f"imagefolder:{root}", train_x, train_y, test_x, test_y, len(classes), 3, image_size,
                   mean, std, classes, default_crop_padding_for(image_size), True)


def _check_split(root: Path, classes: list[str], labels: np.ndarray) -> None:
    """The per-class split holds out at least one image of every class with two or more (none of a class with one):
    refuse an empty test set, warn about classes that are never tested."""
    counts = np.bincount(labels, minlength=len(classes))
    single = [name for name, n in zip(classes, counts) if n == 1]
    pct = round(100 * IMAGEFOLDER_TEST_FRACTION)
    if len(single) == len(classes):
        raise DataError(
            f"image folder {root} has one image per class, so its test split is empty: each class needs at least "
            f"2 images ({pct} % of a class's images, at least one, are held out for testing), or give "
            f"PATH/train/<class>/ beside PATH/test/<class>/"
        )
    if single:
        names = ", ".join(single[:5]) + (f", ... ({len(single)} in all)" if len(single) > 5 else "")
        log.warning("image folder %s: class%s %s %s a single image, used for training only (a class needs at least "
                    "2 images to be tested)", root, "es" if len(single) > 1 else "", names,
                    "have" if len(single) > 1 else "has")  # fmt: skip


def _is_split_layout(root: Path) -> bool:
    """Whether ``root`` is ``train/`` + ``test/`` (or ``val/``): only split names among its sub-folders.

    Beside other folders, a split-named folder that holds images is a class (``cat/ dog/ train/``); one that
    holds only class folders is a split mixed with strays, which is refused rather than guessed at.
    """
    folders = _class_dirs(root)
    splits = [d for d in folders if d.name in IMAGEFOLDER_SPLITS]
    others = [d for d in folders if d.name not in IMAGEFOLDER_SPLITS]
    if not splits or not others:
        return bool(splits)
    nested = [d for d in splits if _class_dirs(d) and not any(_direct_images(d))]
    if nested:
        raise DataError(
            f"image folder {root} mixes split folders ({_listing(nested)}) with other folders ({_listing(others)}): "
            "use either PATH/train/<class>/<images> beside PATH/test/ or PATH/val/ and nothing else, or "
            "PATH/<class>/<images> only"
        )
    return False


def _direct_images(folder: Path):
    return (p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _listing(folders: list[Path], most: int = 5) -> str:
    names = [f"{d.name}/" for d in folders]
    return ", ".join(names) if len(names) <= most else f"{', '.join(names[:most])}, ... ({len(names)} in all)"


def _classes(root: Path) -> list[str]:
    """The class names of an image folder: its sub-folders, sorted; at least two."""
    classes = [d.name for d in _class_dirs(root)]
    if len(classes) == 1:
        raise DataError(f"image folder {root} has one class sub-folder ({classes[0]}); a classifier needs at least "
                        f"two: expected {root}/<class name>/<images> with one folder per class")
    return classes


def _labelled_files(root: Path, classes: list[str], allow_empty: bool = False) -> list[tuple[Path, int]]:
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders; expected {root}/<class name>/<images>")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        found = _image_files(folder) if folder.is_dir() else []
        if not found and not allow_empty:
            raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add images or remove the folder")
        files.extend((p, label) for p in found)
    return files


# --------------------------------------------------------------------------------------------- CIFAR (lazy)


def _cifar10(*, data_dir: Path, download: bool = False, image_size: int | None = None, train: bool = True) -> Dataset:
    from cellnas.data.cifar import load_cifar

    return _maybe_resize(load_cifar("cifar10", data_dir, download, train), image_size, recompute_stats=False)


def _cifar100(*, data_dir: Path, download: bool = False, image_size: int | None = None, train: bool = True) -> Dataset:
    from cellnas.data.cifar import load_cifar

    return _maybe_resize(load_cifar("cifar100", data_dir, download, train), image_size, recompute_stats=False)


register_dataset("digits", load_digits)
register_dataset("cifar10", _cifar10)
register_dataset("cifar100", _cifar100)
