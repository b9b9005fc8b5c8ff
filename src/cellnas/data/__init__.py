"""Datasets and the device-resident loader with batched augmentation (SPEC 1.5, 2.2).

* :mod:`cellnas.data.datasets`: :class:`Dataset`, the registry (``get_dataset``, ``list_datasets``,
  ``register_dataset``) and digits; :mod:`cellnas.data.cifar`: CIFAR-10/100 files and downloads;
  :mod:`cellnas.data.imagefolder`: ``imagefolder:PATH``, its split rule and fingerprint, reading images.
* :mod:`cellnas.data.augment`: :class:`Augment` and the batched crop/flip/normalise/cutout.
* :mod:`cellnas.data.loader`: :class:`DeviceLoader`, :func:`search_split`, :func:`make_loaders`.

>>> ds = get_dataset("digits")
>>> train, valid = make_loaders(ds, batch_size=64, seed=0, split="search")
>>> x, y = train.next()
>>> x.shape, x.dtype, y.dtype
(torch.Size([64, 1, 8, 8]), torch.float32, torch.int64)
"""

from __future__ import annotations

from cellnas.data.augment import Augment, augment_batch, cutout, normalize, random_crop_flip
from cellnas.data.datasets import Dataset, get_dataset, list_datasets, register_dataset
from cellnas.data.imagefolder import imagefolder_split, load_imagefolder, split_mismatch
from cellnas.data.loader import DeviceLoader, Loaders, make_loaders, search_split

__all__ = [
    "Augment",
    "Dataset",
    "DeviceLoader",
    "Loaders",
    "augment_batch",
    "cutout",
    "get_dataset",
    "imagefolder_split",
    "list_datasets",
    "load_imagefolder",
    "make_loaders",
    "normalize",
    "random_crop_flip",
    "register_dataset",
    "search_split",
    "split_mismatch",
]
