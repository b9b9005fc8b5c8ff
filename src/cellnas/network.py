"""Discrete evaluation networks built from a genotype (SPEC 2.1, 2.3).

Follows ``quark0/darts cnn/model.py``: :class:`Cell`, :class:`NetworkCIFAR` (stem conv3x3 + BN,
reductions at ``layers//3`` and ``2*layers//3``, auxiliary head after cell ``2*layers//3``) and
:class:`NetworkImageNet` (two stride-2 stems, first cell with ``reduction_prev=True``).
Cells may have any number of intermediate nodes, any ``k`` and any ``concat`` list.

Deliberate, documented differences from the reference code (none changes the outputs or
parameter counts at the reference input sizes):

* every ReLU is out-of-place (the reference's in-place ReLUs in the stems/aux heads only rewrite
  tensors that the next consumer passes through a ReLU anyway);
* the auxiliary heads fall back to adaptive average pooling to 2x2 when the SPEC pooling would not
  give a 2x2 map (e.g. 8x8 digits give 2x2 maps at the aux position; the reference crashes there). At
  the reference sizes (8x8 for CIFAR, 7x7 for ImageNet) the SPEC pooling is used unchanged;
* the ImageNet network's final ``AvgPool2d(7)`` is an adaptive global average pool (identical at 224x224);
* drop-path masks come from a seeded generator rather than the global RNG (STYLE 6);
* a genotype whose cells leave the network's output independent of its input (e.g. a normal cell with
  only ``none`` edges: every normal cell outputs zero) logs a warning that training can teach it nothing; it
  is still built, because Wan et al.'s op-disabling study (SPEC 5.2) makes such variants on purpose and
  their chance-level error is a result. A cell type with a constant output that the network reads around
  (an all-``none`` reduction cell: the next cells still read the cell before it) logs a milder warning.
  ``allow_constant_output=True`` builds either silently (``cellnas info`` does, and warns itself).

>>> from cellnas.zoo import get_genotype
>>> net = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=True, genotype=get_genotype("DARTS_V2"))
>>> logits, aux = net(torch.zeros(2, 3, 8, 8))
>>> logits.shape, aux.shape
(torch.Size([2, 10]), torch.Size([2, 10]))
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError, GenotypeError, unknown_name
from cellnas.genotype import Cell as CellGenotype
from cellnas.genotype import Genotype
from cellnas.ops import FactorizedReduce, Identity, ReLUConvBN, create_op, seeded_init

__all__ = [
    "drop_path",
    "Cell",
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "NetworkCIFAR",
    "NetworkImageNet",
    "build_network",
    "signal_report",
    "NETWORK_KINDS",
]

NETWORK_KINDS: tuple[str, ...] = ("cifar", "imagenet")

log = logging.getLogger(__name__)


def drop_path(x: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and divide survivors by ``1 - drop_prob`` (SPEC 2.1).

    The per-sample Bernoulli mask is drawn from ``generator`` (on its own device, then moved to ``x``'s).
    """
    if drop_prob <= 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    gen_device = generator.device if generator is not None else x.device
    mask = torch.empty((x.size(0), 1, 1, 1), dtype=x.dtype, device=gen_device).bernoulli_(
        keep_prob, generator=generator
    )
    return x / keep_prob * mask.to(x.device)


class Cell(nn.Module):
    """A discrete cell (SPEC 2.1): node j = sum of its ``k`` ops; output = concat of ``cell.concat`` nodes.

    Edges from the input nodes 0/1 have stride 2 in a reduction cell. Ops are built with ``affine=True``.
    """

    def __init__(
        self, cell: CellGenotype, C_prev_prev: int, C_prev: int, C: int, reduction: bool, reduction_prev: bool
    ):
        super().__init__()
        cell.validate("reduce" if reduction else "normal")
        if reduction and any(c < 2 for c in cell.concat):
            raise GenotypeError(
                f"reduce cell: concat {list(cell.concat)} names an input node (0 or 1), whose spatial size "
                "differs from the reduced intermediate nodes"
            )
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(C_prev_prev, C)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        self._nodes = [[src for _, src in node] for node in cell.nodes]
        self._concat = list(cell.concat)
        self.multiplier = len(cell.concat)
        self._ops = nn.ModuleList()
        for node in cell.nodes:
            for name, src in node:
                self._ops.append(create_op(name, C, 2 if reduction and src < 2 else 1, affine=True))

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for sources in self._nodes:
            s = 0
            for src in sources:
                op = self._ops[e]
                h = op(states[src])
                if self.training and drop_prob > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, drop_prob, generator)
                s = s + h
                e += 1
            states.append(s)
        return torch.cat([states[i] for i in self._concat], dim=1)


class _AuxPool(nn.Module):
    """AvgPool 5 (no pad, count_include_pad=False) as in SPEC 2.1/2.3 when it yields 2x2; else adaptive to 2x2."""

    def __init__(self, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.pool.stride
        if h >= 5 and w >= 5 and (h - 5) // s + 1 == 2 and (w - 5) // s + 1 == 2:
            return self.pool(x)
        return F.adaptive_avg_pool2d(x, 2)


class _AuxiliaryHead(nn.Module):
    """ReLU, AvgPool 5 to 2x2, 1x1 conv to 128 + BN + ReLU, 2x2 conv to 768 (+ BN) + ReLU, linear (SPEC 2.1, 2.3).

    The layer indices of ``features`` are those of the reference code, so state dicts load either way.
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int, bn_after_2x2: bool):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            _AuxPool(stride=pool_stride),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            *([nn.BatchNorm2d(768)] if bn_after_2x2 else []),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadCIFAR(_AuxiliaryHead):
    """Auxiliary classifier after cell ``2*layers//3`` (SPEC 2.1): designed for 8x8 maps (AvgPool 5, stride 3)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__(C, num_classes, pool_stride=3, bn_after_2x2=True)


class AuxiliaryHeadImageNet(_AuxiliaryHead):
    """ImageNet auxiliary classifier (SPEC 2.3): AvgPool 5 stride 2 and **no** BN after the 2x2 conv."""

    def __init__(self, C: int, num_classes: int):
        super().__init__(C, num_classes, pool_stride=2, bn_after_2x2=False)


def _reduction_indices(layers: int) -> tuple[int, ...]:
    """The reduction cells of a ``layers``-cell evaluation network: ``layers//3`` and ``2*layers//3`` (SPEC 2.1)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def signal_report(genotype: Genotype, layers: int) -> tuple[list[str], bool]:
    """What to tell about the cells of ``genotype`` whose output is constant (:meth:`Genotype.signal_problems`),
    and whether the output of a ``layers``-cell evaluation network of it still depends on its input.

    Cell i reads the outputs of cells i-2 and i-1 (the stem's at first, which depend on the image); a cell's
    output depends on the image when a concatenated node is reached from a reading that does, along edges other
    than ``none``. When the network's output does not, the one message says so; otherwise there is one message
    per cell type with a constant output. The networks log them as warnings.
    """
    problems = genotype.signal_problems()
    if not problems:
        return [], True
    reductions = _reduction_indices(layers)
    live_prev_prev = live_prev = True
    for i in range(layers):
        cell = genotype.reduce if i in reductions else genotype.normal
        inputs = [node for node, live in ((0, live_prev_prev), (1, live_prev)) if live]
        live_prev_prev, live_prev = live_prev, cell.reaches_output(inputs)
    if not live_prev:
        return [
            f"{'; '.join(problems)}, so the network's output ({layers} cells) does not depend on its input and "
            "training can teach it nothing (it will stay at chance level)"
        ], False
    around = "the network still depends on its input through the cells that read around it"
    return [f"{p}; {around}" for p in problems], True


class _Network(nn.Module):
    """Shared cell stack, drop-path generator and forward loop of the two evaluation networks."""

    drop_path_prob: float

    def _check_signal(self, genotype: Genotype, allow_constant_output: bool) -> None:
        """Warn about cells with a constant output, and loudest when the network's output then does not
        depend on its input (see the module docstring)."""
        if allow_constant_output:
            return
        messages, _ = signal_report(genotype, self.layers)
        for message in messages:
            log.warning("%s", message)

    def _build_cells(self, genotype: Genotype, C_prev_prev: int, C_prev: int, C: int, reduction_prev: bool) -> int:
        """Append the cells; return the channel count of the last cell's output."""
        self.cells = nn.ModuleList()
        self._aux_channels = None
        C_curr = C
        for i in range(self.layers):
            reduction = i in self.reduction_indices
            if reduction:
                C_curr *= 2
            cell = Cell(
                genotype.reduce if reduction else genotype.normal,
                C_prev_prev,
                C_prev,
                C_curr,
                reduction,
                reduction_prev,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.aux_index:
                self._aux_channels = C_prev
        return C_prev

    @property
    def reduction_indices(self) -> tuple[int, ...]:
        return _reduction_indices(self.layers)

    @property
    def aux_index(self) -> int:
        """Index of the cell whose output feeds the auxiliary head (``2*layers//3``)."""
        return 2 * self.layers // 3

    def _drop_generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._drop_generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self._drop_seed)
            self._drop_generators[key] = gen
        return gen

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor):
        logits_aux = None
        p = float(self.drop_path_prob)
        gen = self._drop_generator(s1.device) if self.training and p > 0 else None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, p, gen)
            if i == self.aux_index and self.auxiliary and self.training:
                logits_aux = self.auxiliary_head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1)), logits_aux


def _check_sizes(C: int, num_classes: int, layers: int, in_channels: int) -> None:
    if min(C, num_classes, layers, in_channels) < 1:
        raise CellnasError(
            f"C, num_classes, layers and in_channels must be >= 1, got {C}, {num_classes}, {layers}, {in_channels}"
        )


def _drop_seed(seed: int | torch.Generator | None) -> int:
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed))
    return 0 if seed is None else int(seed)


class NetworkCIFAR(_Network):
    """The CIFAR evaluation network (SPEC 2.1); ``forward`` returns ``(logits, logits_aux or None)``.

    ``drop_path_prob`` is a plain attribute (the training loop ramps it). ``seed`` (int, generator or
    ``None`` = 0) fixes the weight initialisation and the drop-path masks. ``allow_constant_output`` skips
    the warning about cells with a constant output (see the module docstring).
    """

    def __init__(
        self,
        C: int,
        num_classes: int,
        layers: int,
        auxiliary: bool,
        genotype: Genotype,
        in_channels: int = 3,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
        seed: int | torch.Generator | None = None,
        *,
        allow_constant_output: bool = False,
    ):
        super().__init__()
        _check_sizes(C, num_classes, layers, in_channels)
        self.C, self.num_classes, self.layers, self.auxiliary = C, num_classes, layers, auxiliary
        self._check_signal(genotype, allow_constant_output)
        self.genotype, self.in_channels, self.stem_multiplier = genotype, in_channels, stem_multiplier
        self.drop_path_prob = drop_path_prob
        self._drop_seed = _drop_seed(seed)
        self._drop_generators: dict[str, torch.Generator] = {}
        with seeded_init(self._drop_seed):
            C_stem = stem_multiplier * C
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
                nn.BatchNorm2d(C_stem),
            )
            C_prev = self._build_cells(genotype, C_stem, C_stem, C, reduction_prev=False)
            if auxiliary:
                self.auxiliary_head = AuxiliaryHeadCIFAR(self._aux_channels, num_classes)
            self.global_pooling = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = self.stem(x)
        return self._run_cells(s, s)


class NetworkImageNet(_Network):
    """The ImageNet (mobile setting) evaluation network (SPEC 2.3); returns ``(logits, logits_aux or None)``.

    ``seed`` and ``allow_constant_output`` as in :class:`NetworkCIFAR`.
    """

    def __init__(
        self,
        C: int,
        num_classes: int,
        layers: int,
        auxiliary: bool,
        genotype: Genotype,
        in_channels: int = 3,
        drop_path_prob: float = 0.0,
        seed: int | torch.Generator | None = None,
        *,
        allow_constant_output: bool = False,
    ):
        super().__init__()
        _check_sizes(C, num_classes, layers, in_channels)
        if C % 2:
            raise CellnasError(f"the ImageNet network needs an even C (stem0 has C/2 channels), got {C}")
        self.C, self.num_classes, self.layers, self.auxiliary = C, num_classes, layers, auxiliary
        self._check_signal(genotype, allow_constant_output)
        self.genotype, self.in_channels = genotype, in_channels
        self.drop_path_prob = drop_path_prob
        self._drop_seed = _drop_seed(seed)
        self._drop_generators: dict[str, torch.Generator] = {}
        with seeded_init(self._drop_seed):
            self.stem0 = nn.Sequential(
                nn.Conv2d(in_channels, C // 2, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C // 2),
                nn.ReLU(inplace=False),
                nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(C),
            )
            C_prev = self._build_cells(genotype, C, C, C, reduction_prev=True)
            if auxiliary:
                self.auxiliary_head = AuxiliaryHeadImageNet(self._aux_channels, num_classes)
            self.global_pooling = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(C_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        return self._run_cells(s0, s1)


def build_network(
    genotype: Genotype,
    dataset_kind: str = "cifar",
    num_classes: int = 10,
    C: int = 36,
    layers: int = 20,
    auxiliary: bool = False,
    in_channels: int = 3,
    drop_path_prob: float = 0.0,
    seed: int | torch.Generator | None = None,
    *,
    allow_constant_output: bool = False,
) -> NetworkCIFAR | NetworkImageNet:
    """:class:`NetworkCIFAR` (``'cifar'``, also for digits) or :class:`NetworkImageNet` (``'imagenet'``).

    A genotype whose cells make the network's output independent of its input logs a warning unless
    ``allow_constant_output`` (for inspecting such a network, as ``cellnas info`` does, which warns itself).
    """
    if dataset_kind == "cifar":
        cls = NetworkCIFAR
    elif dataset_kind == "imagenet":
        cls = NetworkImageNet
    else:
        raise unknown_name("network kind", dataset_kind, NETWORK_KINDS)
    return cls(C, num_classes, layers, auxiliary, genotype, in_channels=in_channels, drop_path_prob=drop_path_prob,
               seed=seed, allow_constant_output=allow_constant_output)  # fmt: skip
