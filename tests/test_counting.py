"""Parameter and multiply-add counts, checked against hand counts (SPEC 1.4, 2.4, 8)."""

from __future__ import annotations

import pytest
from torch import nn

from cellnas.counting import count_macs, count_params
from cellnas.errors import CellnasError
from cellnas.genotype import Genotype
from cellnas.network import NetworkCIFAR, NetworkImageNet
from cellnas.ops import create_op
from cellnas.supernet import SearchNetwork, SearchSpace
from cellnas.zoo import get_genotype


def test_single_conv_macs_formula():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    # 9x9 -> 5x5; C_out * H_out * W_out * C_in * kH * kW
    assert count_macs(conv, (3, 9, 9)) == 8 * 5 * 5 * 3 * 3 * 3


def test_grouped_dilated_conv_and_linear_macs():
    dw = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False)
    assert count_macs(dw, (1, 4, 6, 6)) == 4 * 6 * 6 * 1 * 3 * 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 7))
    assert count_macs(model, (5, 2, 2)) == 20 * 7


def test_sep_conv_macs_by_hand():
    C = 4
    # stride 1 on 8x8: two halves of (depthwise 3x3 + pointwise 1x1), each at 8x8
    assert count_macs(create_op("sep_conv_3x3", C, 1, True), (C, 8, 8)) == 2 * (C * 64 * 9 + C * 64 * C)
    # stride 2: the first depthwise conv already outputs 4x4, so everything runs at 4x4
    assert count_macs(create_op("sep_conv_3x3", C, 2, True), (C, 8, 8)) == 2 * (C * 16 * 9 + C * 16 * C)
    assert count_macs(create_op("max_pool_3x3", C, 1, True), (C, 8, 8)) == 0
    assert count_macs(create_op("none", C, 2, True), (C, 8, 8)) == 0


def _one_cell_net(op: str) -> NetworkCIFAR:
    """One reduction cell (layers=1 puts it at index 0) with one node fed by ``op`` from both inputs."""
    pairs = [(op, 0), (op, 1)]
    g = Genotype.from_darts(pairs, [2], pairs, [2])
    return NetworkCIFAR(C=4, num_classes=10, layers=1, auxiliary=False, genotype=g)


def test_tiny_network_macs_and_params_by_hand():
    # input 3x8x8, C=4: stem conv 3->12 at 8x8; the reduction cell doubles C to 8;
    # preprocess0/1 are 1x1 convs 12->8 at 8x8; node 2 = op(s0) + op(s1) at 4x4; head Linear(8, 10)
    stem = 12 * 64 * 3 * 9
    pre = 2 * (8 * 64 * 12)
    head = 8 * 10
    pool_net = _one_cell_net("max_pool_3x3")
    assert count_macs(pool_net, (3, 8, 8)) == stem + pre + head
    sep = 2 * (8 * 16 * 9 + 8 * 16 * 8)  # stride-2 sep_conv_3x3 with C=8, all at 4x4
    sep_net = _one_cell_net("sep_conv_3x3")
    assert count_macs(sep_net, (3, 8, 8)) == stem + pre + head + 2 * sep

    stem_p = 12 * 3 * 9 + 2 * 12
    pre_p = 2 * (12 * 8 + 2 * 8)
    head_p = 8 * 10 + 10
    assert count_params(pool_net) == stem_p + pre_p + head_p
    sep_p = 2 * (8 * 9 + 8 * 8 + 2 * 8)
    assert count_params(sep_net) == stem_p + pre_p + head_p + 2 * sep_p


def test_linear_head_params_by_hand():
    net = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=False, genotype=get_genotype("DARTS_V2"))
    # two reductions: C 4 -> 16; 4 concatenated nodes -> 64 features
    assert count_params(net.classifier) == 64 * 10 + 10


@pytest.mark.parametrize("kind", ["cifar", "imagenet"])
def test_auxiliary_head_excluded_by_default(kind):
    g = get_genotype("DARTS_V2")
    if kind == "cifar":
        with_aux = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=True, genotype=g, seed=0)
        without = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=False, genotype=g, seed=0)
        shape = (3, 32, 32)
    else:
        with_aux = NetworkImageNet(C=8, num_classes=10, layers=3, auxiliary=True, genotype=g, seed=0)
        without = NetworkImageNet(C=8, num_classes=10, layers=3, auxiliary=False, genotype=g, seed=0)
        shape = (3, 64, 64)
    # aux input: the reduce cell at index 2, 4 nodes x C=16 (cifar) / 32 (imagenet) channels
    c_aux = 4 * (16 if kind == "cifar" else 32)
    aux = c_aux * 128 + 2 * 128 + 128 * 768 * 2 * 2 + 768 * 10 + 10
    if kind == "cifar":
        aux += 2 * 768  # the BN after the 2x2 conv exists only in the CIFAR head
    assert count_params(with_aux) == count_params(without)
    assert count_params(with_aux, exclude_aux=False) == count_params(without) + aux
    assert count_macs(with_aux, shape) == count_macs(without, shape)


def test_supernet_count_excludes_alpha():
    net = SearchNetwork(C=4, num_classes=3, layers=3, space=SearchSpace(n_nodes=2))
    total = sum(p.numel() for p in net.parameters())
    assert count_params(net) == total - 2 * 5 * 8


def test_count_macs_restores_mode_and_checks_shape():
    net = NetworkCIFAR(C=4, num_classes=3, layers=3, auxiliary=True, genotype=get_genotype("DARTS_V2"))
    net.train()
    count_macs(net, (1, 3, 8, 8))
    assert net.training
    with pytest.raises(CellnasError):
        count_macs(net, (2, 3, 8, 8))
