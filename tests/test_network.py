"""Evaluation networks built from genotypes (SPEC 2.1, 2.3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cellnas.errors import CellnasError, GenotypeError
from cellnas.genotype import Genotype
from cellnas.network import (
    AuxiliaryHeadCIFAR,
    AuxiliaryHeadImageNet,
    Cell,
    NetworkCIFAR,
    NetworkImageNet,
    build_network,
    drop_path,
)
from cellnas.ops import Identity
from cellnas.zoo import get_genotype, list_genotypes


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dead_op_prefixes(net) -> tuple[str, ...]:
    """Parameter-name prefixes of ops on intermediate nodes that no output depends on."""
    prefixes = []
    for c, cell in enumerate(net.cells):
        live = set(cell._concat)
        for j in reversed(range(len(cell._nodes))):
            if j + 2 in live:
                live.update(cell._nodes[j])
        e = 0
        for j, sources in enumerate(cell._nodes):
            for _ in sources:
                if j + 2 not in live:
                    prefixes.append(f"cells.{c}._ops.{e}.")
                e += 1
    return tuple(prefixes)


@pytest.mark.parametrize("name", list_genotypes())
def test_every_zoo_genotype_trains_and_evaluates(name):
    g = get_genotype(name)
    net = NetworkCIFAR(C=4, num_classes=5, layers=3, auxiliary=True, genotype=g, seed=0)
    net.drop_path_prob = 0.2
    x = torch.randn(2, 3, 8, 8, generator=_gen())
    net.train()
    logits, aux = net(x)
    assert logits.shape == (2, 5) and aux.shape == (2, 5)
    (F.cross_entropy(logits, torch.tensor([0, 1])) + 0.4 * F.cross_entropy(aux, torch.tensor([0, 1]))).backward()
    dead = _dead_op_prefixes(net)
    for pname, p in net.named_parameters():
        if pname.startswith(dead):
            continue  # ops of nodes that reach no output (e.g. *_ADAPT reduce cells) get no gradient
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    net.eval()
    logits, aux = net(x)
    assert logits.shape == (2, 5) and aux is None


@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet", "AmoebaNet"])
def test_without_auxiliary_head_at_cifar_size(name):
    # 32x32 with 3 cells: the aux position sees 8x8 maps, the size the SPEC head is built for
    net = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=False, genotype=get_genotype(name))
    assert not hasattr(net, "auxiliary_head")
    logits, aux = net.train()(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and aux is None
    logits.sum().backward()


def test_imagenet_network_small_input():
    net = NetworkImageNet(C=8, num_classes=7, layers=3, auxiliary=True, genotype=get_genotype("DARTS_V2"))
    assert net.cells[0].preprocess0.__class__.__name__ == "FactorizedReduce"  # reduction_prev=True on the stem
    logits, aux = net.train()(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    (logits.sum() + aux.sum()).backward()
    assert net.eval()(torch.randn(1, 3, 64, 64))[1] is None
    # no BN after the 2x2 conv of the ImageNet aux head (SPEC 2.3)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.auxiliary_head.modules()) == 1


def test_aux_heads_use_spec_pooling_at_reference_sizes_and_adapt_otherwise():
    x8 = torch.randn(2, 6, 8, 8)
    cifar = AuxiliaryHeadCIFAR(6, 3)
    pooled = cifar.features[1](torch.relu(x8))
    assert torch.allclose(pooled, F.avg_pool2d(torch.relu(x8), 5, stride=3))
    assert pooled.shape[-2:] == (2, 2)
    x7 = torch.randn(2, 6, 7, 7)
    imnet = AuxiliaryHeadImageNet(6, 3)
    assert torch.allclose(imnet.features[1](x7), F.avg_pool2d(x7, 5, stride=2))
    x2 = torch.randn(2, 6, 2, 2)  # 8x8 digits reach the aux position at 2x2
    assert torch.allclose(cifar.features[1](x2), x2)
    assert cifar.eval()(x2).shape == (2, 3)


def test_cell_channel_bookkeeping_by_hand():
    g = get_genotype("DARTS_V2")
    net = NetworkCIFAR(C=4, num_classes=10, layers=5, auxiliary=False, genotype=g)
    # reductions at 5//3=1 and 10//3=3; 4 concat nodes -> 4 * (4 * 2 * 2) channels at the head
    assert [c.reduction for c in net.cells] == [False, True, False, True, False]
    assert net.classifier.in_features == 4 * 16
    nasnet = NetworkCIFAR(C=4, num_classes=10, layers=3, auxiliary=True, genotype=get_genotype("NASNet"))
    # NASNet: normal concat 5 nodes, reduce concat 3 nodes; aux after cell 2 (reduce, C=16)
    assert nasnet.cells[0].multiplier == 5 and nasnet.cells[1].multiplier == 3
    assert nasnet.auxiliary_head.features[2].in_channels == 3 * 16


def test_reduction_edges_from_inputs_have_stride_2():
    g = get_genotype("AmoebaNet")
    cell = Cell(g.reduce, 8, 8, 4, reduction=True, reduction_prev=False)
    out = cell(torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8))
    assert out.shape == (2, 3 * 4, 4, 4)


def _g(pairs, concat, k):
    return Genotype.from_darts(pairs, concat, pairs, concat, k=k)


@pytest.mark.parametrize(
    "genotype,n_out",
    [
        (_g([("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 2)], [3, 4], k=1), 2),
        (_g([("skip_connect", 0)], [2], k=1), 1),
        (
            _g(
                [
                    ("sep_conv_3x3", 0),
                    ("skip_connect", 1),
                    ("avg_pool_3x3", 0),
                    ("dil_conv_3x3", 0),
                    ("sep_conv_5x5", 1),
                    ("max_pool_3x3", 2),
                ],
                [2, 3],
                k=3,
            ),
            2,
        ),
    ],
)
def test_cells_with_other_k_and_node_counts(genotype, n_out):
    net = NetworkCIFAR(C=4, num_classes=3, layers=3, auxiliary=True, genotype=genotype, drop_path_prob=0.3)
    logits, aux = net.train()(torch.randn(2, 3, 8, 8))
    (logits.sum() + aux.sum()).backward()
    assert net.cells[0].multiplier == n_out


def test_normal_cell_may_concat_an_input_but_reduce_cell_may_not():
    pairs = [("sep_conv_3x3", 0), ("skip_connect", 1)]
    ok = Genotype.from_darts(pairs, [1, 2], pairs, [2])
    net = NetworkCIFAR(C=4, num_classes=3, layers=3, auxiliary=False, genotype=ok)
    assert net(torch.randn(2, 3, 8, 8))[0].shape == (2, 3)
    bad = Genotype.from_darts(pairs, [2], pairs, [0, 2])
    with pytest.raises(GenotypeError, match="reduce cell"):
        NetworkCIFAR(C=4, num_classes=3, layers=3, auxiliary=False, genotype=bad)


def test_drop_path_drops_whole_samples_and_rescales():
    x = torch.ones(64, 2, 3, 3)
    y = drop_path(x, 0.5, _gen(1))
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert all(len(row.unique()) == 1 for row in per_sample)
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(y, drop_path(x, 0.5, _gen(1)))
    assert drop_path(x, 0.0) is x


def test_drop_path_skips_identity_ops_only():
    skip = _g([("skip_connect", 0), ("skip_connect", 1)], [2], k=2)
    conv = _g([("sep_conv_3x3", 0), ("skip_connect", 1)], [2], k=2)
    x0, x1 = torch.randn(4, 6, 5, 5), torch.randn(4, 6, 5, 5)
    for genotype, changes in [(skip, False), (conv, True)]:
        cell = Cell(genotype.normal, 6, 6, 4, reduction=False, reduction_prev=False).train()
        assert isinstance(cell._ops[1], Identity)
        plain = cell(x0, x1, 0.0)
        dropped = cell(x0, x1, 0.9, _gen(0))
        assert (not torch.allclose(plain, dropped)) == changes
    # a stride-2 skip is a FactorizedReduce and does get drop-path
    red = Cell(skip.reduce, 6, 6, 4, reduction=True, reduction_prev=False).train()
    assert not torch.allclose(red(x0, x1, 0.0), red(x0, x1, 0.9, _gen(0)))


def test_drop_path_only_in_training_and_seeded():
    g = get_genotype("DARTS_V2")
    a = NetworkCIFAR(4, 3, 3, False, g, drop_path_prob=0.5, seed=3)
    b = NetworkCIFAR(4, 3, 3, False, g, drop_path_prob=0.5, seed=3)
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(a.train()(x)[0], b.train()(x)[0])
    a.eval()
    out = a(x)[0]
    a.drop_path_prob = 0.0
    assert torch.equal(out, a(x)[0])


def test_seed_fixes_initial_weights():
    g = get_genotype("DARTS_V1")
    a, b = NetworkCIFAR(4, 3, 3, True, g, seed=7), NetworkCIFAR(4, 3, 3, True, g, seed=7)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_grey_input_channels():
    net = build_network(get_genotype("DARTS_V2"), "cifar", num_classes=10, C=4, layers=3, in_channels=1)
    assert isinstance(net, NetworkCIFAR) and net.stem[0].in_channels == 1
    assert net(torch.randn(2, 1, 8, 8))[0].shape == (2, 10)


def test_build_network_kinds():
    g = get_genotype("DARTS_V2")
    assert isinstance(build_network(g, "imagenet", 10, C=8, layers=3), NetworkImageNet)
    with pytest.raises(CellnasError, match="cifar"):
        build_network(g, "mnist", 10, C=4, layers=3)
    with pytest.raises(CellnasError):
        NetworkImageNet(7, 10, 3, False, g)
