"""Contracts of the op registry (SPEC 1.1, 1.2): shapes, compositions, hand-counted parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cellnas import genotype as genotype_module
from cellnas.errors import CellnasError
from cellnas.genotype import EXTRA_PRIMITIVES, PRIMITIVES, Genotype
from cellnas.ops import (
    OPS,
    DepthwiseConv2d,
    DilConv,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    Zero,
    create_op,
    list_ops,
    make_generator,
    register_op,
    seeded_init,
)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_registry_holds_darts_primitives_then_extras():
    assert list_ops()[: len(PRIMITIVES)] == list(PRIMITIVES)
    assert set(EXTRA_PRIMITIVES) <= set(list_ops())


@pytest.mark.parametrize("name", list_ops())
@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("affine", [True, False])
def test_every_op_keeps_channels_and_halves_size_at_stride_2(name, size, affine):
    C = 4
    x = torch.randn(2, C, size, size)
    assert create_op(name, C, 1, affine)(x).shape == (2, C, size, size)
    half = (size + 1) // 2
    assert create_op(name, C, 2, affine)(x).shape == (2, C, half, half)


def test_unknown_op_lists_valid_names():
    with pytest.raises(CellnasError) as exc:
        create_op("sep_conv_9x9", 4, 1, True)
    assert "sep_conv_9x9" in str(exc.value) and "sep_conv_3x3" in str(exc.value)


def test_bad_stride_is_rejected():
    with pytest.raises(CellnasError):
        create_op("sep_conv_3x3", 4, 3, True)


def test_register_op_makes_name_valid_in_registry_and_genotypes():
    name = "conv_1x1_test"
    try:
        register_op(name, lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine))
        assert name in list_ops()
        op = create_op(name, 4, 2, True)
        assert op(torch.randn(1, 4, 7, 7)).shape == (1, 4, 4, 4)
        g = Genotype.from_darts([(name, 0), (name, 1)], [2], [(name, 0), (name, 1)], [2])
        assert g.normal.ops == [name, name]
        with pytest.raises(CellnasError):
            register_op(name, lambda C, stride, affine: Identity())
    finally:
        OPS.pop(name, None)
        genotype_module._OP_NAMES.discard(name)


def test_relu_conv_bn_order_and_hand_count():
    m = ReLUConvBN(3, 5, 1, 1, 0, affine=True)
    assert [type(x) for x in m] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert m[1].bias is None
    assert n_params(m) == 3 * 5 + 2 * 5
    assert n_params(ReLUConvBN(3, 5, 1, 1, 0, affine=False)) == 3 * 5


def test_sep_conv_is_applied_twice_with_stride_on_first_depthwise_only():
    C, k = 4, 3
    m = create_op("sep_conv_3x3", C, 2, affine=True)
    assert isinstance(m, SepConv)
    kinds = [type(x) for x in m]
    # the depthwise convs are nn.Conv2d subclasses with a faster CPU backward (same parameters and values)
    assert kinds == [nn.ReLU, DepthwiseConv2d, nn.Conv2d, nn.BatchNorm2d] * 2
    dw1, pw1, dw2, pw2 = m[1], m[2], m[5], m[6]
    assert dw1.groups == C and dw1.stride == (2, 2) and dw1.padding == (1, 1)
    assert dw2.groups == C and dw2.stride == (1, 1)
    assert pw1.kernel_size == (1, 1) and pw2.kernel_size == (1, 1)
    per_half = C * k * k + C * C + 2 * C  # depthwise, pointwise, BN scale+shift
    assert n_params(m) == 2 * per_half
    assert n_params(create_op("sep_conv_3x3", C, 1, affine=False)) == 2 * (C * k * k + C * C)
    assert n_params(create_op("sep_conv_5x5", C, 1, True)) == 2 * (C * 25 + C * C + 2 * C)
    assert n_params(create_op("sep_conv_7x7", C, 1, True)) == 2 * (C * 49 + C * C + 2 * C)


@pytest.mark.parametrize("name,k,pad", [("dil_conv_3x3", 3, 2), ("dil_conv_5x5", 5, 4)])
def test_dil_conv_is_applied_once_with_dilation_2(name, k, pad):
    C = 4
    m = create_op(name, C, 1, True)
    assert isinstance(m, DilConv)
    assert [type(x) for x in m] == [nn.ReLU, DepthwiseConv2d, nn.Conv2d, nn.BatchNorm2d]
    assert m[1].dilation == (2, 2) and m[1].padding == (pad, pad) and m[1].groups == C
    assert n_params(m) == C * k * k + C * C + 2 * C


def test_conv_7x1_1x7_hand_count():
    C = 4
    m = create_op("conv_7x1_1x7", C, 2, True)
    assert m[1].stride == (1, 2) and m[2].stride == (2, 1)
    assert n_params(m) == 2 * C * C * 7 + 2 * C


def test_factorized_reduce_matches_reference_on_even_sizes():
    torch.manual_seed(0)
    m = FactorizedReduce(4, 6, affine=True).eval()
    x = torch.randn(2, 4, 8, 8)
    r = torch.relu(x)
    expected = m.bn(torch.cat([m.conv_1(r), m.conv_2(r[:, :, 1:, 1:])], dim=1))
    assert torch.equal(m(x), expected)
    assert n_params(m) == 2 * (4 * 3) + 2 * 6


def test_factorized_reduce_needs_even_channels():
    with pytest.raises(CellnasError):
        FactorizedReduce(4, 5)


def test_skip_connect_is_identity_or_factorized_reduce():
    assert isinstance(create_op("skip_connect", 4, 1, True), Identity)
    assert isinstance(create_op("skip_connect", 4, 2, True), FactorizedReduce)


def test_zero_op_subsamples_and_zeros():
    x = torch.randn(1, 2, 7, 7)
    z = create_op("none", 2, 2, True)
    assert isinstance(z, Zero)
    assert torch.count_nonzero(z(x)) == 0 and z(x).shape == (1, 2, 4, 4)


def test_avg_pool_excludes_padding_from_average():
    out = create_op("avg_pool_3x3", 1, 1, True)(torch.ones(1, 1, 4, 4))
    assert torch.allclose(out, torch.ones_like(out))  # with padding counted, corners would be 4/9


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    with seeded_init(3):
        a = nn.Linear(4, 4).weight.detach().clone()
    with seeded_init(3):
        b = nn.Linear(4, 4).weight.detach().clone()
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
    g = torch.Generator().manual_seed(1)
    assert make_generator(g) is g
    assert torch.equal(torch.randn(3, generator=make_generator(5)), torch.randn(3, generator=make_generator(5)))
