"""Building what a retraining run needs from its config: network, loaders, schedules, device options.

The mirror image of :mod:`cellnas.search.setup` (SPEC 2.1-2.3).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from cellnas.genotype import Genotype
from cellnas.schedule import amp_dtype, autocast, cosine_lr
from cellnas.train.config import TrainConfig

if TYPE_CHECKING:
    from cellnas.data import Dataset, Loaders

log = logging.getLogger(__name__)

__all__ = [
    "build_model",
    "make_train_loaders",
    "learning_rate_at",
    "drop_path_at",
    "DeviceOptions",
    "network_args",
    "check_batches",
    "check_cutout",
]


def network_args(cfg: TrainConfig, dataset: Dataset) -> dict:
    """The constructor arguments of the evaluation network (also stored in ``final.pt``)."""
    return {
        "kind": cfg.network,
        "C": cfg.channels,
        "layers": cfg.layers,
        "num_classes": dataset.num_classes,
        "in_channels": dataset.in_channels,
        "auxiliary": cfg.auxiliary,
    }


def build_model(genotype: Genotype, cfg: TrainConfig, dataset: Dataset) -> torch.nn.Module:
    """The evaluation network of ``genotype`` (SPEC 2.1/2.3); weights and drop-path masks come from ``cfg.seed``.

    :class:`~cellnas.network.NetworkCIFAR` builds under ``fork_rng`` with the seed set, so the same seed gives
    the same network and the global RNG is left untouched.
    """
    from cellnas.network import build_network

    a = network_args(cfg, dataset)
    return build_network(
        genotype, a["kind"], num_classes=a["num_classes"], C=a["C"], layers=a["layers"], auxiliary=a["auxiliary"],
        in_channels=a["in_channels"], drop_path_prob=0.0, seed=cfg.seed,
    )  # fmt: skip


def make_train_loaders(
    cfg: TrainConfig, dataset: Dataset, device: torch.device, channels_last: bool = False
) -> Loaders:
    """Full training set (shuffled; crop + flip + cutout, SPEC 2.2) and the test set (in order, no augmentation)."""
    from cellnas.data import Augment, make_loaders

    padding = dataset.default_crop_padding if cfg.crop_padding is None else cfg.crop_padding
    flip = dataset.default_flip if cfg.flip is None else cfg.flip
    return make_loaders(
        dataset, batch_size=cfg.batch_size, seed=cfg.seed, device=device, split="train",
        augment=Augment(padding, flip, cfg.cutout), eval_batch_size=cfg.eval_batch_size, channels_last=channels_last,
    )  # fmt: skip


def learning_rate_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0), constant within the epoch.

    ``cosine`` (SPEC 2.2): lr_min + (lr - lr_min)(1 + cos(π e / E)) / 2, so epoch 0 uses ``lr``;
    ``step`` (SPEC 2.3, StepLR): lr · gamma^⌊e / lr_step⌋.

    >>> cfg = TrainConfig(lr=0.1, lr_schedule="step", lr_gamma=0.5, epochs=4)
    >>> [learning_rate_at(cfg, e) for e in range(3)]
    [0.1, 0.05, 0.025]
    """
    if cfg.lr_schedule == "step":
        return cfg.lr * cfg.lr_gamma ** (epoch // cfg.lr_step)
    return cosine_lr(epoch, cfg.epochs, cfg.lr, cfg.lr_min)


def drop_path_at(drop_path: float, epoch: int, epochs: int) -> float:
    """Drop-path probability of epoch ``epoch`` (from 0): the linear ramp p_e = p e / E of SPEC 2.1.

    >>> [drop_path_at(0.2, e, 10) for e in (0, 5, 9)]
    [0.0, 0.1, 0.18]
    """
    return drop_path * epoch / epochs


class DeviceOptions:
    """Mixed precision, memory format and compilation for ``device``, resolved from the config.

    ``auto`` means bf16 autocast and channels_last on CUDA, fp32 NCHW elsewhere. ``amp='bf16'`` on CPU
    uses CPU autocast. ``compile`` wraps the network with :func:`torch.compile` for the training forward
    passes; the test pass runs the plain module (in eval mode it would compile a second graph, and dynamo
    in torch 2.13 mis-traces the variadic ``cellnas.ops.cat_channels`` with gradients off, dropping all
    but its first input). Checkpoints always hold the plain module's weights.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        cuda = device.type == "cuda"
        self.device = device
        self.bf16 = amp_dtype(cfg.amp, device) is not None
        self.channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
        self.compile = bool(cfg.compile)

    def autocast(self):
        return autocast(self.device, torch.bfloat16 if self.bf16 else None)

    def prepare(self, model: torch.nn.Module):
        """Move ``model`` to the device (channels_last if asked); return the callable for forward passes."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def describe(self) -> str:
        parts = ["bf16 autocast" if self.bf16 else "fp32", "channels_last" if self.channels_last else "NCHW"]
        if self.compile:
            parts.append("torch.compile")
        return ", ".join(parts)


def check_batches(cfg: TrainConfig, dataset: Dataset) -> None:
    """A training batch of one image breaks batch norm in the auxiliary head (1x1 maps); refuse it up front."""
    from cellnas.errors import CellnasError

    n = dataset.n_train
    if cfg.batch_size == 1:
        raise CellnasError("--batch-size 1 gives batch norm one image per batch, which it cannot train on (the "
                           "auxiliary head's maps are 1x1); use --batch-size 2 or more")
    if n % cfg.batch_size == 1 and n > 1:
        raise CellnasError(
            f"{n} training images in batches of {cfg.batch_size} leave a last batch of one image, which batch norm "
            f"cannot train on; choose another --batch-size (e.g. {cfg.batch_size + 1})"
        )


def check_cutout(cfg: TrainConfig, dataset: Dataset, refuse: bool = True) -> None:
    """Refuse (with ``refuse``, else warn about) a cutout square that zeroes every image entirely; warn when it is
    at least the image size.

    The square's centre is uniform over the pixels and it is clipped at the borders (:func:`cellnas.data.cutout`),
    so a side of ``2 * size - 1`` or more covers the whole image wherever it lands.
    """
    from cellnas.errors import CellnasError

    size, length = dataset.image_size, cfg.cutout
    shape = f"{size}x{size}"
    if length >= 2 * size - 1 and not refuse:
        log.warning("--cutout %d blanks every %s image of %s entirely (a side of %d or more covers the image "
                    "wherever it lands)", length, shape, dataset.name, 2 * size - 1)  # fmt: skip
        return
    if length >= 2 * size - 1:
        raise CellnasError(f"--cutout {length} blanks every {shape} image of {dataset.name} entirely (a side of "
                           f"{2 * size - 1} or more covers the image wherever it lands); use a cutout smaller than "
                           f"the image (DARTS: 16 on 32x32), or 0 for none")  # fmt: skip
    if length >= size:
        log.warning(
            "--cutout %d is at least the image size (%s): it blanks most of every image of %s, and some of them "
            "entirely (DARTS: 16 on 32x32)", length, shape, dataset.name)  # fmt: skip

