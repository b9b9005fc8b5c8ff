"""A device-resident data loader with batched augmentation, and the splits that search and training use.

The whole dataset is moved to the target device once as a uint8 tensor; a batch is gathered by index and
augmented there (:mod:`cellnas.data.augment`), with no worker processes and no per-sample Python code
(the cifar10-airbench approach, STYLE). All randomness (permutations, crops, flips, cutout) comes from one
dedicated :class:`torch.Generator`, so a seed fixes every batch, and :meth:`DeviceLoader.state_dict` captures
the position and generator so that a resumed run sees exactly the batches an uninterrupted run would.

>>> import torch
>>> x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
>>> loader = DeviceLoader(x, torch.arange(10), 4, mean=(0.5,) * 3, std=(0.25,) * 3, augment=Augment(1, True, 0))
>>> len(loader), [tuple(xb.shape) for xb, _ in loader]
(3, [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from cellnas.data.augment import Augment, augment_batch
from cellnas.data.datasets import Dataset
from cellnas.errors import DataError, RunError, unknown_name

__all__ = ["DeviceLoader", "Loaders", "make_loaders", "search_split"]

log = logging.getLogger(__name__)

Seed = int | torch.Generator


def _as_generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


class DeviceLoader:
    """Batches of ``(x, y)`` from a dataset held on ``device``, augmented with batched tensor ops.

    ``images``: uint8 ``(N, C, H, W)``; ``labels``: ``(N,)`` integer classes. Each batch is cropped/flipped
    (uint8), normalised with ``mean``/``std`` (per channel, [0, 1] units) to ``dtype``, then cut out, as
    ``augment`` says (``None``: no augmentation); ``channels_last`` returns NHWC-strided batches.

    Two ways to read it, sharing one stream:

    * ``for x, y in loader``: the rest of the current epoch, or a whole new epoch when the current one is
      complete (so a loop resumed from a mid-epoch :meth:`state_dict` finishes that epoch); ``len(loader)`` is
      the number of batches in a full epoch (the last one partial unless ``drop_last``).
    * ``loader.next()``: an endless stream; when an epoch runs out the next batch starts a freshly shuffled one.
      The architecture batches of the search come from this by default (SPEC 1.5; each search image is used once
      per epoch).
    * ``loader.sample()``: quark0's architecture batch, ``next(iter(valid_queue))`` every step: the first batch of a
      fresh shuffled order, i.e. distinct images within a batch, drawn with replacement across steps; it leaves the
      stream of ``next()`` where it is.

    ``seed`` (int or :class:`torch.Generator`, used as is) drives everything random. The default CPU generator
    makes the batches the same on every device; a generator passed in may live on the device instead.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: Seed = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"DeviceLoader needs uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"{labels.shape[0] if labels.dim() else 0} labels for {images.shape[0]} images")
        if images.shape[0] == 0:
            raise DataError("DeviceLoader got an empty dataset")
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        if drop_last and batch_size > images.shape[0]:
            raise DataError(f"batch size {batch_size} exceeds the {images.shape[0]} images and drop_last=True "
                            "would leave no batch; lower the batch size")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise DataError(f"mean/std need {images.shape[1]} values (one per channel)")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = int(batch_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = augment or Augment.none()
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.dtype = dtype
        self.channels_last = channels_last
        self.generator = _as_generator(seed)
        self._epoch = -1  # index of the epoch the last batch came from; -1 before the first batch
        self._pos = 0  # next position in self._perm
        self._perm: torch.Tensor | None = None  # this epoch's order of the images, on self.device

    # ------------------------------------------------------------------------------------------ sizes

    @property
    def num_samples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    @property
    def epoch(self) -> int:
        """Index (from 0) of the epoch the most recent batch came from; -1 before the first batch."""
        return self._epoch

    def _epoch_end(self) -> int:
        return len(self) * self.batch_size if self.drop_last else self.num_samples

    def _epoch_done(self) -> bool:
        return self._perm is None or self._pos >= self._epoch_end()

    def _start_epoch(self) -> None:
        gen = self.generator
        if self.shuffle:
            perm = torch.randperm(self.num_samples, generator=gen, device=gen.device)
        else:
            perm = torch.arange(self.num_samples)
        self._perm = perm.to(self.device)
        self._pos = 0
        self._epoch += 1

    # ------------------------------------------------------------------------------------------ batches

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of the endless stream, starting a new shuffled epoch when the current one is used up."""
        if self._epoch_done():
            self._start_epoch()
        assert self._perm is not None
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += int(idx.shape[0])
        return self._make_batch(idx)

    __next__ = next

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` distinct images drawn afresh (the first batch of a new shuffled order), independently of
        every earlier batch: quark0's ``next(iter(valid_queue))``."""
        gen = self.generator
        idx = torch.randperm(self.num_samples, generator=gen, device=gen.device)[: self.batch_size]
        return self._make_batch(idx.to(self.device))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._epoch_done():
            self._start_epoch()
        while not self._epoch_done():
            yield self.next()

    def _make_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images.index_select(0, idx)  # (B, C, H, W) uint8
        y = self.labels.index_select(0, idx)
        x = augment_batch(x, self.augment, self.mean, self.std, self.generator, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    # ------------------------------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """Position (epoch, index in the permutation, the permutation) and generator state, for checkpoints."""
        return {
            "epoch": self._epoch,
            "pos": self._pos,
            "perm": None if self._perm is None else self._perm.cpu().clone(),
            "generator": self.generator.get_state(),
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where :meth:`state_dict` was taken; refuses a state from a differently sized loader."""
        for key in ("num_samples", "batch_size", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise RunError(f"cannot resume the data loader: the checkpoint has {key}={state[key]!r}, this "
                               f"loader {key}={getattr(self, key)!r}; resume with the same dataset and batch size")
        perm = state["perm"]
        if perm is not None and perm.shape != (self.num_samples,):
            raise RunError(f"cannot resume the data loader: its saved permutation has {perm.shape[0]} entries, "
                           f"the data {self.num_samples}")
        self.generator.set_state(state["generator"])
        self._epoch = int(state["epoch"])
        self._pos = int(state["pos"])
        self._perm = None if perm is None else perm.to(self.device)

    def __repr__(self) -> str:
        return (f"DeviceLoader(n={self.num_samples}, batch_size={self.batch_size}, augment={self.augment}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device}, dtype={self.dtype})")


def search_split(n_train: int, train_portion: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the training set for the bilevel search (SPEC 1.5; quark0 ``train_search.py``).

    Returns ``(train_idx, valid_idx)``: the first ``floor(train_portion * n_train)`` indices, in order, train the
    weights; the rest form the search ("validation") set that trains the architecture. Not shuffled: CIFAR-10's
    50,000 images give indices 0..24,999 and 25,000..49,999 at the default portion 0.5.

    >>> [t.tolist() for t in search_split(5, 0.5)]
    [[0, 1], [2, 3, 4]]
    """
    if not 0.0 < train_portion < 1.0:
        raise DataError(f"train_portion must be strictly between 0 and 1, got {train_portion}")
    split = math.floor(train_portion * n_train)
    if split == 0 or split == n_train:
        raise DataError(f"train_portion {train_portion} of {n_train} images leaves an empty part; "
                        "use more images or a portion nearer 0.5")
    return torch.arange(split), torch.arange(split, n_train)


class Loaders(NamedTuple):
    """What :func:`make_loaders` returns: ``train`` trains the weights; ``valid`` is the search set
    (``split='search'``) or the test set (``split='train'``)."""

    train: DeviceLoader
    valid: DeviceLoader


def _child_seeds(seed: Seed, n: int) -> list[int]:
    if isinstance(seed, torch.Generator):
        return [int(torch.randint(0, 2**62, (1,), generator=seed)) for _ in range(n)]
    return [int(child.generate_state(1, np.uint64)[0]) for child in np.random.SeedSequence(int(seed)).spawn(n)]


def make_loaders(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: Seed = 0,
    device: str | torch.device = "cpu",
    split: str = "search",
    train_portion: float = 0.5,
    augment: Augment | None = None,
    eval_batch_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Loaders:
    """The loaders each use case needs.

    * ``split='search'`` (SPEC 1.5): the training set split by :func:`search_split`; ``train`` (weights) and
      ``valid`` (architecture) are both shuffled and augmented with crop + flip, no cutout, batch ``batch_size``.
    * ``split='train'`` (SPEC 2.2): ``train`` is the full training set, augmented and shuffled; ``valid`` the test
      set, in order, without augmentation, batch ``eval_batch_size`` (default ``batch_size``).

    ``augment`` defaults to ``Augment(dataset.default_crop_padding, dataset.default_flip, cutout=0)`` (padding 4
    and flips for CIFAR; padding 1 and no flips for 8x8 digits); pass ``Augment(4, True, 16)`` for DARTS'
    ``--cutout`` retraining. The two loaders get independent seeds derived from ``seed``.
    """
    if augment is None:
        augment = Augment(dataset.default_crop_padding, dataset.default_flip, 0)
    common = dict(mean=dataset.mean, std=dataset.std, device=device, dtype=dtype, channels_last=channels_last)
    train_seed, valid_seed = _child_seeds(seed, 2)
    if split == "search":
        train_idx, valid_idx = search_split(dataset.n_train, train_portion)
        train = DeviceLoader(dataset.train_x[train_idx], dataset.train_y[train_idx], batch_size,
                             augment=augment, shuffle=True, seed=train_seed, **common)
        valid = DeviceLoader(dataset.train_x[valid_idx], dataset.train_y[valid_idx], batch_size,
                             augment=augment, shuffle=True, seed=valid_seed, **common)
    elif split == "train":
        train = DeviceLoader(dataset.train_x, dataset.train_y, batch_size,
                             augment=augment, shuffle=True, seed=train_seed, **common)
        valid = DeviceLoader(dataset.test_x, dataset.test_y, eval_batch_size or batch_size,
                             augment=Augment.none(), shuffle=False, seed=valid_seed, **common)
    else:
        raise unknown_name("split", split, ["search", "train"])
    log.info("%s loaders for %s: %d + %d images, augment %s", split, dataset.name, train.num_samples,
             valid.num_samples, augment)
    return Loaders(train, valid)
