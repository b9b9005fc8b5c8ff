"""Typed configuration of a retraining run, and its presets (SPEC 2.2, 2.3, 5.6, 6).

The CLI and config files fill a :class:`TrainConfig`; library code takes it as is. The resolved config is
written to ``config.json`` and into every checkpoint. Values resolve in this order: the dataclass defaults
(the quick ``digits`` setting), then the preset, then explicit overrides. Without a preset, the dataset picks
one (:data:`DATASET_PRESETS`): ``cifar10`` trains with the DARTS protocol unless told otherwise.

Presets and their deviations from the papers:

* ``darts-cifar10`` (SPEC 2.2, quark0/darts ``train.py``): 20 cells, C=36, batch 96, 600 epochs, SGD lr 0.025
  cosine to 0, momentum 0.9, wd 3e-4, cutout 16, drop-path 0.2 ramped linearly (p_e = p e / E), auxiliary
  weight 0.4, gradient clipping 5, seed 0; full 50k training set, evaluated on the 10k test set.
* ``darts-cifar100``: the same on CIFAR-100. Weight decay 3e-4 as quark0 would run it; Wan et al. (SPEC 5.6)
  use 5e-4 for CIFAR-100 (``--weight-decay 5e-4``).
* ``darts-imagenet`` (SPEC 2.3): NetworkImageNet, 14 cells, C=48, batch 128, 250 epochs, SGD lr 0.1 with StepLR
  gamma 0.97 per epoch, wd 3e-5, label smoothing 0.1, auxiliary 0.4, clip 5, no drop-path, 224x224 input from an
  ``imagefolder:PATH`` dataset. **Not the exact protocol**: our tensor pipeline has no RandomResizedCrop and no
  ColorJitter, and images are resized to 224 once when read (no Resize 256 + CenterCrop 224 at test time); it
  trains with random crop (padding 28) + flip on the pre-resized images. The whole dataset is held in memory.
* ``nb301-proxy`` (SPEC 5.6, 6; the NAS-Bench-301 pipeline): 8 cells, C=32, batch 96, 100 epochs, lr 0.025
  cosine to 1e-8, wd 3e-4, cutout 16, auxiliary 0.4, drop-path 0.2, mixup alpha 0.2. NB301 trains on an 80/20
  split of the training set; here the run trains on the whole training set and evaluates on the test set.
* ``digits``: the default; scikit-learn's 8x8 digits, 8 cells, C=16, a few CPU minutes to > 90 % test accuracy.

A preset names the dataset it was made for, but fixes only hyper-parameters: the number of classes and input
channels always come from the dataset when the network is built. A preset given with another dataset (say
``--preset darts-cifar100 --dataset cifar10``) therefore trains correctly shaped networks, and may be meant
(one protocol on several datasets); :func:`resolve_config` logs a warning naming both instead of refusing,
once per process for each pair.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

from cellnas._config import AMP_CHOICES, absolute_paths, check_types, config_from_dict, recorded_data_dir
from cellnas.errors import CellnasError, check_finite_option, unknown_name

__all__ = ["TrainConfig", "PRESETS", "DATASET_PRESETS", "resolve_config", "LR_SCHEDULES"]

log = logging.getLogger(__name__)

LR_SCHEDULES = ("cosine", "step")
_CHANNELS_LAST = ("auto", "on", "off")
#: The float options, each refused unless finite (--grad-clip, a cap, also takes inf: no clipping, as runs saved
#: before this check may hold).
_FLOATS = ("auxiliary_weight", "drop_path", "lr", "lr_min", "lr_gamma", "momentum", "weight_decay",
           "label_smoothing", "mixup")  # fmt: skip


@dataclass
class TrainConfig:
    """Every knob of a retraining run. Defaults are the quick ``digits`` configuration."""

    # data (SPEC 2.2)
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None
    batch_size: int = 64
    eval_batch_size: int = 256
    cutout: int = 0
    crop_padding: int | None = None  # None: the dataset's default (4 for CIFAR, 1 for 8x8 digits)
    flip: bool | None = None  # None: the dataset's default (CIFAR yes, digits no)
    # network (SPEC 2.1, 2.3)
    network: str = "cifar"
    channels: int = 16
    layers: int = 8
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path: float = 0.1
    # optimisation (SPEC 2.2, 2.3)
    epochs: int = 20
    lr: float = 0.05
    lr_schedule: str = "cosine"
    lr_min: float = 0.0
    lr_gamma: float = 0.97
    lr_step: int = 1
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    # run control
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    steps_per_epoch: int | None = None
    checkpoint_every: int = 0
    progress: bool = True
    plots: bool = True
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`CellnasError` naming the first bad value (wrong type, not finite, out of range) and its
        flag. Also records the data folder the run reads as an absolute path
        (:func:`~cellnas._config.recorded_data_dir`: ``./data`` of the current directory when none was given for a
        dataset that reads files), and an ``imagefolder:PATH`` dataset with an absolute path."""
        check_types(self)

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise CellnasError(msg)

        # argparse and Python's json take inf, 1e400 and nan; range checks let NaN through (it compares false)
        for key in _FLOATS:
            check_finite_option(getattr(self, key), "--" + key.replace("_", "-"))

        need(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}")
        need(self.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {self.eval_batch_size}")
        need(self.channels >= 1, f"--channels must be >= 1, got {self.channels}")
        need(self.layers >= 1, f"--layers must be >= 1, got {self.layers}")
        need(self.image_size is None or self.image_size >= 1, f"--image-size must be >= 1, got {self.image_size}")
        need(self.cutout >= 0, f"--cutout must be >= 0, got {self.cutout}")
        need(self.crop_padding is None or self.crop_padding >= 0,
             f"--crop-padding must be >= 0, got {self.crop_padding}")
        need(self.network in ("cifar", "imagenet"), f"--network must be cifar or imagenet, got {self.network!r}")
        need(self.network != "imagenet" or self.channels % 2 == 0,
             f"--network imagenet needs an even --channels, got {self.channels}")
        need(self.auxiliary_weight >= 0, f"--auxiliary-weight must be >= 0, got {self.auxiliary_weight}")
        need(0.0 <= self.drop_path < 1.0, f"--drop-path must be in [0, 1), got {self.drop_path}")
        need(self.lr > 0, f"--lr must be positive, got {self.lr}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        need(0 <= self.lr_min <= self.lr, f"--lr-min must be in [0, lr], got {self.lr_min}")
        need(0 < self.lr_gamma <= 1, f"--lr-gamma must be in (0, 1], got {self.lr_gamma}")
        need(self.lr_step >= 1, f"--lr-step must be >= 1, got {self.lr_step}")
        need(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        need(self.grad_clip > 0, f"--grad-clip must be positive (inf: no clipping), got {self.grad_clip}")
        need(0.0 <= self.label_smoothing < 1.0, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        need(self.mixup >= 0, f"--mixup (alpha) must be >= 0, got {self.mixup}")
        need(self.amp in AMP_CHOICES, f"--amp must be one of {', '.join(AMP_CHOICES)}, got {self.amp!r}")
        need(self.channels_last in _CHANNELS_LAST,
             f"--channels-last must be one of {', '.join(_CHANNELS_LAST)}, got {self.channels_last!r}")
        need(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "--steps-per-epoch must be >= 1")
        need(self.checkpoint_every >= 0, f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        need(self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"--device must be auto, cpu or cuda[:N], got {self.device!r}")  # fmt: skip
        self.dataset = absolute_paths({"dataset": self.dataset})["dataset"]
        self.data_dir = recorded_data_dir(self.dataset, self.data_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "train")


_DARTS_CIFAR = dict(
    network="cifar", channels=36, layers=20, batch_size=96, epochs=600, lr=0.025, lr_schedule="cosine", lr_min=0.0,
    momentum=0.9, weight_decay=3e-4, grad_clip=5.0, cutout=16, drop_path=0.2, auxiliary=True, auxiliary_weight=0.4,
    label_smoothing=0.0, mixup=0.0, seed=0,
)  # fmt: skip

#: Named configurations (see the module docstring for their sources and deviations).
PRESETS: dict[str, dict] = {
    "darts-cifar10": dict(_DARTS_CIFAR, dataset="cifar10"),
    "darts-cifar100": dict(_DARTS_CIFAR, dataset="cifar100"),
    "darts-imagenet": dict(
        dataset="imagefolder:data/imagenet", image_size=224, network="imagenet", channels=48, layers=14,
        batch_size=128, epochs=250, lr=0.1, lr_schedule="step", lr_gamma=0.97, lr_step=1, momentum=0.9,
        weight_decay=3e-5, label_smoothing=0.1, auxiliary=True, auxiliary_weight=0.4, grad_clip=5.0, drop_path=0.0,
        cutout=0, mixup=0.0, seed=0,
    ),
    "nb301-proxy": dict(
        dataset="cifar10", network="cifar", channels=32, layers=8, batch_size=96, epochs=100, lr=0.025,
        lr_schedule="cosine", lr_min=1e-8, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, cutout=16, drop_path=0.2,
        auxiliary=True, auxiliary_weight=0.4, mixup=0.2, label_smoothing=0.0, seed=0,
    ),
    "digits": dict(dataset="digits"),
}  # fmt: skip

#: The preset used when none is named, by dataset.
DATASET_PRESETS: dict[str, str] = {"digits": "digits", "cifar10": "darts-cifar10", "cifar100": "darts-cifar100"}


def resolve_config(preset: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults, then the preset (named, or chosen by the dataset), then explicit overrides.

    ``None`` values in ``overrides`` mean "not given". To rebuild a saved config exactly, use
    :meth:`TrainConfig.from_dict` instead.

    >>> resolve_config("darts-cifar10", {"epochs": 1}).channels
    36
    >>> resolve_config(None, {"dataset": "cifar10"}).preset
    'darts-cifar10'
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    named = overrides.pop("preset", None)  # a config file may name its preset
    preset = preset if preset is not None else named
    if preset is None:
        preset = DATASET_PRESETS.get(overrides.get("dataset", TrainConfig.dataset))
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise unknown_name("train preset", preset, PRESETS)
        values.update(PRESETS[preset])
        values["preset"] = preset
    values.update(overrides)
    cfg = TrainConfig.from_dict(absolute_paths(values))
    cfg.validate()
    if preset is not None:
        _warn_if_meant_for_another_dataset(preset, cfg.dataset)
    return cfg


def _preset_fits(preset_dataset: str, dataset: str) -> bool:
    """Whether ``dataset`` is the one the preset was made for; an image-folder preset fits every image folder."""
    if preset_dataset.startswith("imagefolder:"):
        return dataset.startswith("imagefolder:")
    return dataset == preset_dataset


#: (preset, dataset) pairs already warned about: once per process, not once per proxy evaluation.
_WARNED: set[tuple[str, str]] = set()


def _warn_if_meant_for_another_dataset(preset: str, dataset: str) -> None:
    meant = PRESETS[preset].get("dataset", TrainConfig.dataset)
    if _preset_fits(meant, dataset) or (preset, dataset) in _WARNED:
        return
    _WARNED.add((preset, dataset))
    if meant.startswith("imagefolder:"):
        meant = "imagefolder:PATH"
    own = DATASET_PRESETS.get(dataset)
    hint = f"drop --preset to use {own} (the preset for {dataset})" if own else "check that this is intended"
    log.warning("preset %r is made for %s, but --dataset %s was given: %s is trained with %s's hyper-parameters "
                "(its classes come from the dataset); %s", preset, meant, dataset, dataset, preset, hint)
