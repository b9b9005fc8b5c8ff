"""CIFAR-10 and CIFAR-100 from the official python-pickle releases (SPEC 1.5, 2.2).

Looked for in ``data_dir``, in this order:

1. the extracted folders ``DIR/cifar-10-batches-py/{data_batch_1..5, test_batch}`` and
   ``DIR/cifar-100-python/{train, test}``;
2. the archives ``DIR/cifar-10-python.tar.gz`` / ``DIR/cifar-100-python.tar.gz``, extracted safely (regular files
   and folders only, no absolute paths, no ``..``; into a temporary folder renamed into place when complete);
3. with ``download=True``, the official archive from www.cs.toronto.edu, streamed to a temporary file whose MD5 is
   checked before it is renamed into place, so a half-downloaded archive never passes for a good one.

The batches are read with an unpickler that only admits the few globals a CIFAR batch needs (numpy arrays),
so a malicious file cannot run code. Anything missing or unreadable raises :class:`~cellnas.errors.DataError`
saying where the files must be put and how to download them; a damaged file is named as incomplete or damaged,
and the advice depends on the archive beside it (absent: download or place it; official MD5: extract it again;
another MD5: it is damaged too, replace it).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from cellnas.data.datasets import Dataset
from cellnas.errors import DataError

__all__ = ["CIFAR", "CifarSpec", "load_cifar", "download_archive", "extract_archive"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR release lives and what its files hold."""

    title: str
    folder: str
    archive: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    meta_file: str
    names_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels", "batches.meta", b"label_names", 10,
        # SPEC 1.5 (quark0/darts utils.py)
        (0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768),
    ),
    "cifar100": CifarSpec(
        "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",), ("test",), b"fine_labels", "meta", b"fine_label_names", 100,
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}  # fmt: skip


def load_cifar(name: str, data_dir: str | Path, download: bool = False, train: bool = True) -> Dataset:
    """Load ``cifar10`` or ``cifar100`` from ``data_dir`` (extracting or downloading the archive if needed).

    Returns uint8 images ``(N, 3, 32, 32)`` (50,000 / 10,000 for the official files) with the published
    normalisation constants (CIFAR-10: SPEC 1.5). ``train=False``: the test set alone (for evaluation), with an
    empty training set; the training batches are neither read nor required.
    """
    spec = CIFAR[name]
    data_dir = Path(data_dir).expanduser()
    folder = data_dir / spec.folder
    wanted = (spec.train_files if train else ()) + spec.test_files
    if not folder.is_dir():
        archive = data_dir / spec.archive
        if not archive.is_file():
            if not download:
                raise DataError(_missing_message(spec, data_dir))
            download_archive(spec.url, spec.md5, archive)
        elif _md5(archive) != spec.md5:
            log.warning("%s does not have the official MD5 %s; using it anyway", archive, spec.md5)
        extract_archive(archive, data_dir, spec.folder, _replace_archive(spec, archive))
    missing = [f for f in wanted if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{spec.title}: {folder} lacks {', '.join(missing)} (an incomplete extraction). "
                        f"{_restore_folder(spec, data_dir)}")
    train_parts = [_read_batch(folder / f, spec, data_dir) for f in spec.train_files] if train else []
    test = [_read_batch(folder / f, spec, data_dir) for f in spec.test_files]
    train_x, train_y = _stack(train_parts)
    test_x, test_y = _stack(test)
    if train:
        log.info("%s: %d training and %d test images from %s", spec.title, len(train_y), len(test_y), folder)
    else:
        log.info("%s: %d test images from %s (the training batches are not read)", spec.title, len(test_y), folder)
    return Dataset(name, train_x, train_y, test_x, test_y, spec.num_classes, 3, 32, spec.mean, spec.std,
                   _class_names(folder / spec.meta_file, spec), default_crop_padding=4, default_flip=True)


def _replace_archive(spec: CifarSpec, archive: Path) -> str:
    """How to replace a damaged archive that is already in place (placing it again is not the fix)."""
    return (f"Delete {archive} and re-run with --download to fetch {spec.url} again (MD5 {spec.md5}), or replace it "
            f"with a complete copy from that address, or use --data-dir DIR with the extracted DIR/{spec.folder}/")


def _restore_folder(spec: CifarSpec, data_dir: Path) -> str:
    """How to restore a damaged extracted folder, which depends on the archive beside it (if any)."""
    folder, archive = data_dir / spec.folder, data_dir / spec.archive
    if not archive.is_file():
        return (f"Delete {folder} and re-run with --download to fetch {spec.url} (MD5 {spec.md5}), or put the "
                f"archive {spec.archive} from that address in {data_dir}")
    digest = _md5(archive)
    if digest == spec.md5:
        return f"Delete {folder}; the next run extracts it again from {archive}, which has the official MD5"
    return (f"{archive} is incomplete or damaged too (MD5 {digest}, not the official {spec.md5}): delete it and "
            f"{folder}, then re-run with --download to fetch {spec.url}, or replace the archive with a complete copy")


def _missing_message(spec: CifarSpec, data_dir: Path) -> str:
    files = ", ".join((*spec.train_files, *spec.test_files))
    return (f"{spec.title} not found in {data_dir}: expected {data_dir / spec.folder}/{{{files}}} or the archive "
            f"{data_dir / spec.archive}. Use --data-dir DIR with DIR/{spec.folder}/..., or add --download to fetch "
            f"{spec.url} (MD5 {spec.md5})")


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    if not parts:
        return torch.empty((0, 3, 32, 32), dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)  # rows are R(1024) G(1024) B(1024)
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


# --------------------------------------------------------------------------------------------- reading batches


def _numpy_module(module: str) -> str:
    """Pickles name ``numpy.core`` (numpy < 2) or ``numpy._core`` (numpy >= 2); use whichever exists here."""
    for candidate in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
        try:
            importlib.import_module(candidate)
            return candidate
        except ImportError:
            continue
    return module


class _BatchUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR batch contains: dicts, lists, bytes and numpy arrays."""

    _ALLOWED = {
        ("_codecs", "encode"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} (not a CIFAR batch)")
        if module.startswith("numpy."):
            module = _numpy_module(module)
        return super().find_class(module, name)


def _read_batch(path: Path, spec: CifarSpec, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    def corrupt(why: str) -> DataError:
        return DataError(f"{spec.title}: {path} is incomplete or damaged ({why}). {_restore_folder(spec, data_dir)}")

    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # any failure to parse means the file is not a usable batch
        raise corrupt(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        raise corrupt(f"no b'data' / {spec.label_key!r} entries")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[spec.label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise corrupt(f"b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise corrupt(f"{labels.shape[0] if labels.ndim else 0} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise corrupt(f"labels outside [0, {spec.num_classes})")
    return data, labels.astype(np.int64)


def _class_names(meta: Path, spec: CifarSpec) -> list[str] | None:
    try:
        with open(meta, "rb") as f:
            names = _BatchUnpickler(f, encoding="bytes").load()[spec.names_key]
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except Exception as exc:  # class names are a convenience; the data is usable without them
        log.debug("no class names from %s: %s", meta, exc)
        return None
    return names if len(names) == spec.num_classes else None


# --------------------------------------------------------------------------------------------- archives


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_archive(archive: Path, dest: Path, top: str, how_to_fix: str = "") -> Path:
    """Extract the folder ``top`` of a ``.tar.gz`` into ``dest`` safely and atomically; returns ``dest / top``.

    Only regular files and folders are admitted, with relative paths that stay inside the target (a link,
    device, absolute path or ``..`` is refused: the archive is not an official one). Members are written into a
    temporary folder in ``dest`` that is renamed to ``dest / top`` only once everything was read, so an
    interrupted or failed extraction leaves nothing that looks like a dataset. ``how_to_fix`` ends the message
    of a damaged archive (default: delete it and download it again).
    """
    how_to_fix = how_to_fix or f"Delete {archive} and download it again"
    target = dest / top
    tmp = Path(tempfile.mkdtemp(prefix=f".{top}.", suffix=".extract", dir=dest))
    try:
        log.info("extracting %s", archive)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                out = _safe_member_path(member, tmp, archive)
                if member.isdir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular file always has contents
                with src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if not (tmp / top).is_dir():
            raise DataError(f"{archive} has no folder {top}/: it is not the expected archive. {how_to_fix}")
        os.replace(tmp / top, target)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{archive} is incomplete or damaged and cannot be extracted ({type(exc).__name__}: "
                        f"{exc}). {how_to_fix}") from exc
    except OSError as exc:  # writing into dest (disk full, permissions), not the archive's fault
        raise DataError(f"cannot extract {archive} into {dest}: {exc.strerror or exc} "
                        f"({exc.filename or dest})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _safe_member_path(member: tarfile.TarInfo, root: Path, archive: Path) -> Path:
    name = PurePosixPath(member.name)
    if not (member.isfile() or member.isdir()):
        raise DataError(f"{archive}: refusing to extract {member.name!r} (links and special files are not allowed)")
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise DataError(f"{archive}: refusing to extract {member.name!r} (path outside the target folder)")
    out = (root / Path(*name.parts)) if name.parts else root
    if not out.resolve().is_relative_to(root.resolve()):
        raise DataError(f"{archive}: refusing to extract {member.name!r} (path outside the target folder)")
    return out


def download_archive(url: str, md5: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, verifying its MD5 before the file appears under its final name.

    The bytes go to a temporary ``*.part`` file next to ``dest`` (removed on any failure); a network error or a
    wrong checksum raises :class:`~cellnas.errors.DataError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        log.info("downloading %s to %s", url, dest)
        from tqdm.auto import tqdm

        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = response.headers.get("Content-Length") if response.headers else None
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, desc=dest.name,
                      disable=None) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise DataError(f"download of {url} is incomplete or altered: MD5 {digest.hexdigest()}, expected {md5}. "
                            f"Retry, or download it by hand and put it at {dest}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"could not download {url}: {reason}. Check the network connection, or download the file "
                        f"by hand and put it at {dest}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest
