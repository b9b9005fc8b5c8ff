"""The batch norm for channels_last maps with few channels (PC-DARTS's C/K-channel edges) computes ATen's."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cellnas import ops
from cellnas.supernet import SearchNetwork

CL = torch.channels_last


def _map(C: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(8, C, 6, 10, generator=g) * 3 + 1.5).contiguous(memory_format=CL)


@pytest.mark.parametrize("C", [2, 3, 4, 6])
@pytest.mark.parametrize("scaled", [False, True])
def test_values_gradients_and_running_statistics_are_atens(C, scaled, monkeypatch):
    assert ops._few_channels(_map(C)) is not None  # the fast path is the one under test
    results = []
    for fast in (True, False):
        monkeypatch.setattr(ops, "FEW_CHANNELS_BN", fast)
        bn = nn.BatchNorm2d(C, affine=False)
        x = _map(C).requires_grad_()
        scale = torch.tensor(0.7, requires_grad=True)
        y = ops.batch_norm(x, bn, scale if scaled else None)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=CL)
        grads = torch.autograd.grad(y, [x, scale] if scaled else [x], g)
        results.append((y, *grads, bn.running_mean.clone(), bn.running_var.clone()))
        assert y.is_contiguous(memory_format=CL) and grads[0].is_contiguous(memory_format=CL)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums in another order


def test_double_backward_differentiates_the_same_function(monkeypatch):
    out = []
    for fast in (True, False):
        monkeypatch.setattr(ops, "FEW_CHANNELS_BN", fast)
        x = _map(4).requires_grad_()
        w = torch.full((4,), 0.5, requires_grad=True)
        y = ops.train_batch_norm(x, w, 1e-5)[0]
        (gx,) = torch.autograd.grad((y**3).sum(), [x], create_graph=True)
        out.append(torch.autograd.grad((gx**2).sum(), [x, w]))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_other_maps_keep_atens_batch_norm():
    assert ops._few_channels(_map(8)) is None  # ATen's is faster from 8 channels on
    assert ops._few_channels(_map(4).contiguous()) is None  # NCHW
    assert ops._few_channels(_map(4).double()) is None


def test_a_pc_darts_supernet_step_is_the_same_with_atens_batch_norm(monkeypatch):
    grads = []
    for fast in (True, False):
        monkeypatch.setattr(ops, "FEW_CHANNELS_BN", fast)
        net = SearchNetwork(C=8, num_classes=3, layers=3, partial_channels=4, edge_norm=True, seed=0)
        x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(2))
        loss = F.cross_entropy(net(x), torch.tensor([0, 1, 2, 0, 1, 2]))
        grads.append(torch.autograd.grad(loss, list(net.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_the_flop_counter_sees_atens_batch_norm():
    from torch.utils.flop_counter import FlopCounterMode

    x = _map(4)
    assert ops._few_channels(x) is not None
    with FlopCounterMode(display=False) as counter:
        assert ops._few_channels(x) is None
        ops.train_batch_norm(x, None, 1e-5)
    assert counter.get_total_flops() == 0  # the statistics' matrix product is not a convolution
