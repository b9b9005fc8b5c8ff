"""Image folders as datasets (``--dataset imagefolder:PATH``): the layouts, the train/test split, and reading pixels.

Two layouts, told apart by the names of ``PATH``'s sub-folders:

* ``PATH/<class>/<images>``, or ``PATH/train/<class>/<images>`` alone: every class is split into training and test
  images by the rule ``hash-v1`` (:func:`hash_split`). A file is a test image when the SHA-256 of
  ``"<seed>:<class>/<path inside the class folder>"`` (seed 0), read as a fraction of 2**64, is below 0.2. A file's
  side depends on its own relative path alone, so adding, removing or renaming other files never moves it and no class
  affects another; about 20 % of each class is tested (each file independently: a small class may get more or
  fewer). A class of two or more images keeps at least one test and one training image: when the hashes give it
  none, its lowest-hash image is tested (or its highest-hash image trained), the one case where adding files to a
  class can move one of its files. A class of a single image is used for training only.
* ``PATH/train/<class>/`` beside ``PATH/test/<class>/`` (or ``PATH/val/``): the folders are the split, as given.

:attr:`Dataset.split <cellnas.data.Dataset>` describes the split: its rule, seed and fraction, the counts, and
``test_files``, a fingerprint of the test files (the first 16 hex digits of the SHA-256 of their sorted paths, relative
to the folder of classes or to ``test/``, one a line). ``cellnas train`` records it with the dataset in
``final.pt``, so that ``cellnas evaluate`` can warn when the folder's test split is no longer the one held out at
training (:func:`split_mismatch`). :func:`imagefolder_split` computes it from the file names alone, reading no image.

Images are read with Pillow in every common format this Pillow build reads (:func:`image_extensions`; files with
other extensions are skipped, with one warning naming a few) and converted to 8-bit RGB: 16-bit greyscale (``I;16``)
is scaled by 255/65535, 32-bit integer images (``I``) the same when their values lie in 0..65535, float images
(``F``) with values in [0, 1] by 255; other ranges are refused. Of an animated or multi-page file, the first frame.

>>> ds = load_imagefolder("pets", image_size=32)  # doctest: +SKIP
>>> sorted(ds.split)  # doctest: +SKIP
['n_test', 'n_train', 'rule', 'seed', 'test_fraction', 'test_files']
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cellnas.data.datasets import Dataset, channel_stats, default_crop_padding_for, stratified_split
from cellnas.errors import DataError, unknown_name

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGEFOLDER_SEED",
    "IMAGEFOLDER_SPLITS",
    "IMAGEFOLDER_TEST_FRACTION",
    "SPLIT_RULE",
    "SPLIT_RULES",
    "hash_split",
    "image_extensions",
    "imagefolder_split",
    "load_imagefolder",
    "split_mismatch",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
                    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi", ".avif", ".jp2", ".j2k")  # fmt: skip
"""The image formats an image folder may hold, where this Pillow build reads them (:func:`image_extensions`)."""

LEGACY_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
"""The extensions read before cellnas accepted every format Pillow reads (rule ``permutation-v0``)."""

IMAGEFOLDER_SEED = 0
IMAGEFOLDER_TEST_FRACTION = 0.2
IMAGEFOLDER_SPLITS = ("train", "test", "val")
"""Sub-folder names of the split layout ``PATH/train`` + ``PATH/test`` (or ``PATH/val``) of an image folder."""

SPLIT_RULE = "hash-v1"
"""The split of a flat image folder: each file by a hash of its relative path (:func:`hash_split`)."""

LEGACY_SPLIT_RULE = "permutation-v0"
"""The split before ``hash-v1``: a ``numpy`` permutation (seed 0) of each class in turn, one generator for all the
classes (so a class's split depended on the classes before it), of ``.png .jpg .jpeg .bmp`` files only. Kept to
re-create the test set of networks trained with it (their ``final.pt`` records no split)."""

SPLIT_RULES = (SPLIT_RULE, LEGACY_SPLIT_RULE)

FOLDERS_RULE = "folders"
"""The ``rule`` of :attr:`Dataset.split` for the layout ``PATH/train`` + ``PATH/test`` (or ``PATH/val``)."""

#: Formats whose decoder is optional in a Pillow build: the :func:`PIL.features.check` name of each.
_CODECS = {".jpg": "jpg", ".jpeg": "jpg", ".jpe": "jpg", ".jfif": "jpg", ".webp": "webp", ".avif": "avif",
           ".jp2": "jpg_2000", ".j2k": "jpg_2000"}  # fmt: skip

#: Skipped-file warnings already given, so that listing a folder twice (``cellnas evaluate``) warns once.
_WARNED_SKIPPED: set[tuple[str, int]] = set()


@lru_cache(maxsize=1)
def image_extensions() -> tuple[str, ...]:
    """The extensions of :data:`IMAGE_EXTENSIONS` that this Pillow build can open and decode, in that order."""
    from PIL import Image, features

    Image.init()
    registered = Image.registered_extensions()

    def readable(ext: str) -> bool:
        if registered.get(ext) not in Image.OPEN:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an older Pillow warns about a feature name it does not know
            return ext not in _CODECS or bool(features.check(_CODECS[ext]))

    return tuple(ext for ext in IMAGE_EXTENSIONS if readable(ext))


# --------------------------------------------------------------------------------------------- the split


def _unit_hash(key: str, seed: int) -> float:
    """``sha256("<seed>:<key>")`` as a fraction in [0, 1); ``key`` in Unicode NFC, so that a name hashes the same on
    file systems that store it decomposed (macOS)."""
    text = f"{seed}:{unicodedata.normalize('NFC', key)}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") / 2.0**64


def hash_split(
    keys: Sequence[str], labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Split rule ``hash-v1``: ``(train indices, test indices)``, both sorted.

    Item ``i`` is a test item when ``sha256(f"{seed}:{keys[i]}")`` as a fraction of 2**64 is below ``test_fraction``,
    whatever the other items are. Then, per class (``labels``): a class of one item is trained on only; a class of
    two or more with no test item has its lowest-hash item tested, one with no training item its highest-hash item
    trained. Image folders use the path relative to the folder of classes (``cat/001.png``) as the key.

    >>> hash_split(["a/1", "a/2", "a/3", "b/1", "b/2"], np.array([0, 0, 0, 1, 1]), 0.2, 0)
    (array([0, 4]), array([1, 2, 3]))
    """
    labels = np.asarray(labels)
    u = np.array([_unit_hash(k, seed) for k in keys], dtype=np.float64)
    test = u < test_fraction
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            test[idx] = False
        elif not test[idx].any():
            test[idx[np.argmin(u[idx])]] = True
        elif test[idx].all():
            test[idx[np.argmax(u[idx])]] = False
    return np.flatnonzero(~test), np.flatnonzero(test)


def _fingerprint(files: list[tuple[Path, int]], base: Path) -> str:
    """A hash of the sorted relative paths of ``files``: equal fingerprints, the same files."""
    names = sorted(unicodedata.normalize("NFC", p.relative_to(base).as_posix()) for p, _ in files)
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def split_mismatch(recorded: dict, current: dict) -> str | None:
    """How the test split ``current`` differs from ``recorded`` (both :attr:`Dataset.split` descriptions), in words
    for a message; ``None`` when the test files are the same."""
    then_rule, now_rule = recorded.get("rule"), current.get("rule")
    if then_rule != now_rule:
        return f"it was split by rule {then_rule!r} at training and by {now_rule!r} now"
    if recorded.get("test_files") == current.get("test_files"):
        return None
    counts = "{n_test} test and {n_train} training images"
    return (f"{counts.format(**_counts(recorded))} at training, {counts.format(**_counts(current))} now, "
            "and not the same test files")


def _counts(split: dict) -> dict:
    return {"n_test": split.get("n_test", "?"), "n_train": split.get("n_train", "?")}


# --------------------------------------------------------------------------------------------- layout


@dataclass
class _Plan:
    """Which files an image folder's training and test sets hold, before any image is read."""

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    split: dict


def imagefolder_split(path: str | Path, rule: str = SPLIT_RULE) -> dict:
    """The :attr:`Dataset.split` description of the image folder ``path`` (see the module docstring), from the file
    names alone: no image is read. ``cellnas evaluate`` compares it with the one recorded at training."""
    return _plan(path, rule).split


def load_imagefolder(path: str | Path, image_size: int = 32, split_rule: str = SPLIT_RULE) -> Dataset:
    """A directory of images with one sub-folder per class, read with Pillow as 8-bit RGB and resized to
    ``image_size`` x ``image_size`` (bilinear; the aspect ratio is not kept).

    The split layout applies only when every sub-folder of ``PATH`` is ``train``, ``test`` or ``val``
    (:data:`IMAGEFOLDER_SPLITS`): then ``PATH/train`` and ``PATH/test`` (or ``PATH/val``) are the split, and
    ``PATH/train`` alone is split as below. Otherwise ``PATH`` holds the classes, even one named ``train``
    (``cat/ dog/ train/``), each split by ``split_rule``: ``hash-v1`` (the default), about 20 % of each class tested,
    each file by a hash of its path relative to ``PATH`` (:func:`hash_split`, seed 0), so a file never changes side
    when other files come or go; or ``permutation-v0``, the rule before it (:data:`LEGACY_SPLIT_RULE`). A mix whose
    split-named folders hold class folders (``train/<class>/`` beside ``extras/``) is refused: no reading of it is
    safe. Classes are the sorted sub-folder names, at least two; files of other formats than :func:`image_extensions`
    are skipped with a warning. mean/std come from the training split; :attr:`Dataset.split` describes the split.
    """
    plan = _plan(path, split_rule)
    log.info("reading %d training and %d test images from %s", len(plan.train), len(plan.test), plan.root)
    train_x, train_y = _read_images(plan.train, image_size)
    test_x, test_y = _read_images(plan.test, image_size)
    mean, std = channel_stats(train_x)
    std = tuple(s if s > 0 else 1.0 for s in std)  # a constant channel would divide by zero
    return Dataset(f"imagefolder:{plan.root}", train_x, train_y, test_x, test_y, len(plan.classes), 3, image_size,
                   mean, std, plan.classes, default_crop_padding_for(image_size), True, split=plan.split)


def _plan(path: str | Path, rule: str) -> _Plan:
    if rule not in SPLIT_RULES:
        raise unknown_name("image-folder split rule", rule, SPLIT_RULES)
    extensions = LEGACY_EXTENSIONS if rule == LEGACY_SPLIT_RULE else image_extensions()
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory; "
                        "expected PATH/<class name>/<images> for --dataset imagefolder:PATH")
    skipped: list[Path] = []
    split_layout = _is_split_layout(root, extensions)
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
        train_files = _labelled_files(root / "train", classes, extensions, skipped)
        test_files = _labelled_files(held_out, classes, extensions, skipped, allow_empty=True)
        if not test_files:
            raise DataError(f"{held_out} holds no images ({', '.join(extensions)}) in its class folders; "
                            f"add test images there or remove {held_out} to split {root / 'train'} instead")
        split = {"rule": FOLDERS_RULE, "test_folder": held_out.name, "n_train": len(train_files),
                 "n_test": len(test_files), "test_files": _fingerprint(test_files, held_out)}  # fmt: skip
    else:
        if has_train:  # train/ alone: its classes, split as if it were the root
            log.info("%s has train/ but no test/ or val/: splitting train/, about %d %% of each class for testing",
                     root, round(100 * IMAGEFOLDER_TEST_FRACTION))  # fmt: skip
            root = root / "train"
        classes = _classes(root)
        files = _labelled_files(root, classes, extensions, skipped)
        labels = np.array([c for _, c in files], dtype=np.int64)
        _check_split(root, classes, labels)
        if rule == SPLIT_RULE:
            keys = [p.relative_to(root).as_posix() for p, _ in files]
            train_idx, test_idx = hash_split(keys, labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_SEED)
        else:
            train_idx, test_idx = stratified_split(labels, IMAGEFOLDER_TEST_FRACTION, IMAGEFOLDER_SEED)
        train_files = [files[i] for i in train_idx]
        test_files = [files[i] for i in test_idx]
        split = {"rule": rule, "seed": IMAGEFOLDER_SEED, "test_fraction": IMAGEFOLDER_TEST_FRACTION,
                 "n_train": len(train_files), "n_test": len(test_files),
                 "test_files": _fingerprint(test_files, root)}  # fmt: skip
    _warn_skipped(root, skipped, extensions)
    return _Plan(root, classes, train_files, test_files, split)


def _warn_skipped(root: Path, skipped: list[Path], extensions: Sequence[str], most: int = 3) -> None:
    """One warning naming a few of the files skipped for their extension (and the formats this Pillow lacks)."""
    key = (str(root), len(skipped))
    if not skipped or key in _WARNED_SKIPPED:
        return
    _WARNED_SKIPPED.add(key)
    names = ", ".join(str(p.relative_to(root)) for p in skipped[:most])
    more = f", ... ({len(skipped)} in all)" if len(skipped) > most else ""
    lacking = sorted({p.suffix.lower() for p in skipped} & (set(IMAGE_EXTENSIONS) - set(extensions)))
    hint = f"; this Pillow build cannot read {', '.join(lacking)}" if lacking else ""
    log.warning("image folder %s: skipped %d file%s that %s not an image format cellnas reads (%s%s)%s; it reads %s",
                root, len(skipped), "s" if len(skipped) > 1 else "", "are" if len(skipped) > 1 else "is", names, more,
                hint, " ".join(extensions))  # fmt: skip


def _check_split(root: Path, classes: list[str], labels: np.ndarray) -> None:
    """The per-class split holds out at least one image of every class with two or more (none of a class with one):
    refuse an empty test set, warn about classes that are never tested."""
    counts = np.bincount(labels, minlength=len(classes))
    single = [name for name, n in zip(classes, counts) if n == 1]
    pct = round(100 * IMAGEFOLDER_TEST_FRACTION)
    if len(single) == len(classes):
        raise DataError(
            f"image folder {root} has one image per class, so its test split is empty: each class needs at least "
            f"2 images (about {pct} % of a class's images, at least one, are held out for testing), or give "
            f"PATH/train/<class>/ beside PATH/test/<class>/"
        )
    if single:
        names = ", ".join(single[:5]) + (f", ... ({len(single)} in all)" if len(single) > 5 else "")
        log.warning("image folder %s: class%s %s %s a single image, used for training only (a class needs at least "
                    "2 images to be tested)", root, "es" if len(single) > 1 else "", names,
                    "have" if len(single) > 1 else "has")  # fmt: skip


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_split_layout(root: Path, extensions: Sequence[str]) -> bool:
    """Whether ``root`` is ``train/`` + ``test/`` (or ``val/``): only split names among its sub-folders.

    Beside other folders, a split-named folder that holds images is a class (``cat/ dog/ train/``); one that
    holds only class folders is a split mixed with strays, which is refused rather than guessed at.
    """
    folders = _class_dirs(root)
    splits = [d for d in folders if d.name in IMAGEFOLDER_SPLITS]
    others = [d for d in folders if d.name not in IMAGEFOLDER_SPLITS]
    if not splits or not others:
        return bool(splits)
    nested = [d for d in splits if _class_dirs(d) and not any(_direct_images(d, extensions))]
    if nested:
        raise DataError(
            f"image folder {root} mixes split folders ({_listing(nested)}) with other folders ({_listing(others)}): "
            "use either PATH/train/<class>/<images> beside PATH/test/ or PATH/val/ and nothing else, or "
            "PATH/<class>/<images> only"
        )
    return False


def _direct_images(folder: Path, extensions: Sequence[str]) -> Iterator[Path]:
    return (p for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."))  # fmt: skip


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


def _labelled_files(
    root: Path, classes: list[str], extensions: Sequence[str], skipped: list[Path], allow_empty: bool = False
) -> list[tuple[Path, int]]:  # fmt: skip
    """``(file, class index)`` of the images of each class folder, sorted; other files go to ``skipped``."""
    if not classes:
        raise DataError(f"image folder {root} has no class sub-folders; expected {root}/<class name>/<images>")
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        folder = root / name
        found = []
        for p in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if not p.is_file() or p.name.startswith("."):
                continue
            (found if p.suffix.lower() in extensions else skipped).append(p)
        if not found and not allow_empty:
            raise DataError(f"class folder {folder} holds no images ({', '.join(extensions)}); "
                            "add images or remove the folder")
        files.extend((p, label) for p in found)
    return files


# --------------------------------------------------------------------------------------------- reading pixels


def _read_images(files: list[tuple[Path, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.empty((len(files), 3, size, size), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        x[i] = _read_image(path, size)
    y = np.array([c for _, c in files], dtype=np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def _read_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 ``(3, size, size)``; any failure is a one-line :class:`DataError` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            rgb = _rgb8(im, path)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"cannot read image {path}: it has more pixels than Pillow opens ({str(exc).rstrip('.')}); "
                        f"downscale the file (cellnas resizes it to {size}x{size} anyway) or remove it; from Python, "
                        "raising PIL.Image.MAX_IMAGE_PIXELS lifts the limit for files you trust") from None  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types; each means an unreadable file
        raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}; remove or replace the file") from None
    return arr.transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _rgb8(im, path: Path):
    """``im`` as an 8-bit RGB image. ``convert("RGB")`` clips deeper greyscale to 255 (a 16-bit image turns white),
    so 16-bit, 32-bit integer and float images are scaled to 0..255 first (see the module docstring)."""
    from PIL import Image

    if im.mode.startswith("I;16"):
        grey = np.asarray(im).astype(np.float64) * (255.0 / 65535.0)
    elif im.mode == "I":
        grey = np.asarray(im)
        lo, hi = int(grey.min()), int(grey.max())
        if lo < 0 or hi > 65535:
            raise DataError(f"cannot read image {path}: 32-bit integer pixels from {lo} to {hi} have no known range "
                            "(cellnas reads integer images of 8 or 16 bits, 0..65535); convert it to 8 or 16 bits")
        grey = grey * (255.0 / 65535.0)
    elif im.mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        if not np.isfinite(grey).all() or grey.min() < 0.0 or grey.max() > 1.0:
            raise DataError(f"cannot read image {path}: float pixels from {np.nanmin(grey):g} to {np.nanmax(grey):g} "
                            "(cellnas reads float images with values in [0, 1]); rescale it or convert it to 8 bits")
        grey = grey * 255.0
    else:
        return im.convert("RGB")
    return Image.fromarray(np.rint(grey).astype(np.uint8)).convert("RGB")
