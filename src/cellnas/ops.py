"""Candidate operations of the DARTS search space, as a registry (SPEC 1.1, 1.2).

Every op is built by a factory ``(C, stride, affine) -> nn.Module`` that keeps the
channel count ``C`` and, at ``stride=2``, halves the spatial size (``ceil(H/2)``).
The compositions follow ``quark0/darts cnn/operations.py``: ReLU -> conv -> BN,
separable convs applied twice, dilated convs once, every conv without bias.

>>> op = create_op("sep_conv_3x3", C=8, stride=2, affine=True)
>>> op(torch.zeros(1, 8, 7, 7)).shape
torch.Size([1, 8, 4, 4])

Users add ops with :func:`register_op`; the name then becomes valid in genotypes too.

One deliberate difference from the reference code: :class:`FactorizedReduce` pads the
one-pixel-shifted branch at the bottom/right, so odd sizes work (the reference crashes on
them). For even sizes the output is bit-for-bit the reference one (a stride-2 1x1 conv never
samples the padded pixel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from cellnas.errors import CellnasError, unknown_name
from cellnas.genotype import register_op_name

__all__ = [
    "OPS",
    "OpFactory",
    "register_op",
    "create_op",
    "list_ops",
    "ReLUConvBN",
    "FactorizedReduce",
    "SepConv",
    "DilConv",
    "Identity",
    "Zero",
    "make_generator",
    "seeded_init",
]

OpFactory = Callable[[int, int, bool], nn.Module]


class ReLUConvBN(nn.Sequential):
    """ReLU, conv (no bias), BN: the cell pre-processing op (SPEC 1.2)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise dilated conv, pointwise 1x1 conv, BN, applied once (SPEC 1.1 ``dil_conv_*``)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False
            ),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable conv applied twice; only the first depthwise conv has stride ``stride`` (SPEC 1.1 ``sep_conv_*``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class Identity(nn.Module):
    """``skip_connect`` at stride 1. Drop-path skips ops of this class (SPEC 2.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: zeros, subsampled ``x[:, :, ::s, ::s]`` at stride s (SPEC 1.1)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU; two stride-2 1x1 convs (on x and on x shifted by one pixel), concatenated; BN (SPEC 1.2).

    ``C_out`` must be even. The shifted branch is zero-padded by one pixel at the bottom/right so
    that odd input sizes give ``ceil(H/2)`` on both branches (identical to the reference for even sizes).
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise CellnasError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _conv_7x1_1x7(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


#: name -> factory ``(C, stride, affine) -> nn.Module`` (the 8 DARTS primitives, then the extras).
OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine=affine),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


def register_op(name: str, factory: OpFactory, *, overwrite: bool = False) -> None:
    """Add an op to the registry and make ``name`` valid in genotypes.

    The factory must keep ``C`` channels and give ``ceil(H/2)`` at stride 2.

    >>> register_op("conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine))
    >>> "conv_1x1" in list_ops()
    True
    """
    if not isinstance(name, str) or not name:
        raise CellnasError(f"op names must be non-empty strings, got {name!r}")
    if not callable(factory):
        raise CellnasError(f"the factory for op {name!r} is not callable")
    if name in OPS and not overwrite and OPS[name] is not factory:
        raise CellnasError(f"op {name!r} is already registered; pass overwrite=True to replace it")
    register_op_name(name)
    OPS[name] = factory


def create_op(name: str, C: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Instantiate the registered op ``name`` with ``C`` channels."""
    try:
        factory = OPS[name]
    except KeyError:
        raise unknown_name("op", name, OPS) from None
    if stride not in (1, 2):
        raise CellnasError(f"op stride must be 1 or 2, got {stride}")
    return factory(C, stride, affine)


def list_ops() -> list[str]:
    """Registered op names, in registry order (the DARTS primitives first)."""
    return list(OPS)


# -- seeding (STYLE 6: every stochastic function takes a seed) --------------------------------------------


def make_generator(seed: int | torch.Generator | None, default: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed (``None`` -> ``default``), or ``seed`` itself."""
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(default if seed is None else int(seed))


@contextlib.contextmanager
def seeded_init(seed: int | torch.Generator | None) -> Iterator[None]:
    """Run module construction with torch's CPU RNG seeded from ``seed``, restoring the global state after.

    PyTorch's layers initialise their weights from the global RNG; this makes a network's
    initial weights a function of ``seed`` alone without disturbing anyone else's random stream.
    ``None`` is treated as seed 0.
    """
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        yield
