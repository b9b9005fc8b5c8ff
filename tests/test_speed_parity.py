"""The fast supernet computes the textbook DARTS supernet's function (issue 7; SPEC 1.1-1.6).

Reference: :mod:`cellnas.bench.baseline` (quark0/darts transcribed: every op computed, a ReLU per op, NCHW, the
Python sum over ops). With the same weights and α, the fast :mod:`cellnas.supernet` must give the same outputs,
the same gradients with respect to the input, every weight and α, and the same BN running statistics; one whole
search step (first and second order) must end in the same weights and α. float64 checks the algebra tightly
(differences are summation order only); float32 checks the channels_last / oneDNN paths that searches use.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import cellnas.ops
from cellnas.bench.baseline import BaselineCell, BaselineMixedOp, baseline_from
from cellnas.bench.search_step import make_baseline_step, make_search_step, synthetic_batches
from cellnas.genotype import PRIMITIVES
from cellnas.ops import cat_channels, depthwise_conv2d, even_pixels, shift_up_left
from cellnas.supernet import MixedOp, SearchCell, SearchNetwork, SearchSpace

CL = torch.channels_last
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=2e-4, atol=2e-5)}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda m: f"{what}: {m}")


def grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    g = torch.randn(out.shape, generator=gen(seed), dtype=out.dtype)
    return list(torch.autograd.grad(out, inputs, g, allow_unused=True))


def one_hot_ish(k: int, n: int, dtype) -> torch.Tensor:
    """Weights that favour op ``k`` (0.9) but keep every op in the sum (0.1 / n each)."""
    w = torch.full((n,), 0.1 / n, dtype=dtype)
    w[k] += 0.9
    return w


# -- one edge: every op alone ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", range(len(PRIMITIVES)), ids=list(PRIMITIVES))
def test_mixed_op_matches_textbook_for_every_op(k, stride, dtype):
    C = 4
    fast = MixedOp(C, stride).to(dtype).train()
    slow = BaselineMixedOp(C, stride, PRIMITIVES).to(dtype).train()
    slow.load_state_dict(fast.state_dict())
    x0 = torch.randn(3, C, 8, 8, generator=gen(k), dtype=dtype)
    # the fast path runs in channels_last on CPU (as SearchNetwork feeds it); the textbook one in NCHW
    x_fast = x0.contiguous(memory_format=CL).requires_grad_()
    x_slow = x0.clone().requires_grad_()
    w_fast = one_hot_ish(k, len(PRIMITIVES), dtype).requires_grad_()
    w_slow = w_fast.detach().clone().requires_grad_()
    y_fast, y_slow = fast(x_fast, w_fast), slow(x_slow, w_slow)
    assert_close(y_fast, y_slow, dtype, "output")
    g_fast = grads(y_fast, [x_fast, w_fast, *fast.parameters()])
    g_slow = grads(y_slow, [x_slow, w_slow, *slow.parameters()])
    names = ["x", "weights"] + [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, g_fast, g_slow):
        assert_close(a, b, dtype, f"gradient of {name}")
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        assert_close(a.to(b.dtype), b, dtype, f"buffer {name}") if a.is_floating_point() else torch.equal(a, b)


def test_none_is_skipped_but_its_alpha_still_gets_a_gradient():
    """SPEC 1.1: 'none' is in the softmax; its zero output is not computed, d loss / d alpha_none is not zero."""
    m = MixedOp(4, 1)
    alpha = torch.randn(len(PRIMITIVES), generator=gen(0), requires_grad=True)
    x = torch.randn(2, 4, 6, 6, generator=gen(1))
    (g,) = torch.autograd.grad(m(x, F.softmax(alpha, -1)).square().sum(), [alpha])
    assert g[PRIMITIVES.index("none")].abs() > 0
    w = torch.zeros(len(PRIMITIVES))
    w[PRIMITIVES.index("none")] = 1.0
    assert torch.count_nonzero(m(x, w)) == 0


# -- both cell types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction,reduction_prev", [(False, False), (False, True), (True, False)])
def test_cell_matches_textbook(reduction, reduction_prev, dtype):
    space = SearchSpace()
    C_pp, C_p, C = 6, 8, 4
    fast = SearchCell(space, C_pp, C_p, C, reduction, reduction_prev).to(dtype).train()
    slow = BaselineCell(space.ops, space.n_nodes, C_pp, C_p, C, reduction, reduction_prev).to(dtype).train()
    slow.load_state_dict(fast.state_dict())
    size0 = 16 if reduction_prev else 8
    s0 = torch.randn(2, C_pp, size0, size0, generator=gen(2), dtype=dtype)
    s1 = torch.randn(2, C_p, 8, 8, generator=gen(3), dtype=dtype)
    alpha = torch.randn(space.n_edges, space.n_ops, generator=gen(4), dtype=dtype)
    inputs = {}
    for name, layout in (("fast", CL), ("slow", torch.contiguous_format)):
        inputs[name] = [
            s0.contiguous(memory_format=layout).requires_grad_(),
            s1.contiguous(memory_format=layout).requires_grad_(),
            alpha.clone().requires_grad_(),
        ]
    y_fast = fast(*inputs["fast"][:2], F.softmax(inputs["fast"][2], -1))
    y_slow = slow(*inputs["slow"][:2], F.softmax(inputs["slow"][2], -1))
    assert_close(y_fast, y_slow, dtype, "cell output")
    g_fast = grads(y_fast, inputs["fast"] + list(fast.parameters()))
    g_slow = grads(y_slow, inputs["slow"] + list(slow.parameters()))
    names = ["s0", "s1", "alpha"] + [n for n, _ in fast.named_parameters()]
    for name, a, b in zip(names, g_fast, g_slow):
        assert_close(a, b, dtype, f"gradient of {name}")
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        if a.is_floating_point():
            assert_close(a, b, dtype, f"buffer {name}")
        else:
            assert torch.equal(a, b), name


# -- the whole network ----------------------------------------------------------------------------------------


def tiny_pair(dtype=torch.float64, **kw):
    net = SearchNetwork(C=4, num_classes=3, layers=3, seed=0, **kw).to(dtype)
    with torch.no_grad():  # alpha far from uniform, so that every op's weight matters
        net.alphas_normal.normal_(generator=gen(5))
        net.alphas_reduce.normal_(generator=gen(6))
    return net, baseline_from(net)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_network_loss_and_every_gradient_match_textbook(dtype):
    net, base = tiny_pair(dtype)
    assert list(net.state_dict()) == list(base.state_dict())
    x = torch.randn(4, 3, 8, 8, generator=gen(7), dtype=dtype)
    y = torch.tensor([0, 1, 2, 1])
    loss_fast, loss_slow = F.cross_entropy(net(x), y), F.cross_entropy(base(x), y)
    assert_close(loss_fast, loss_slow, dtype, "loss")
    g_fast = torch.autograd.grad(loss_fast, list(net.parameters()))
    g_slow = torch.autograd.grad(loss_slow, list(base.parameters()))
    for (name, _), a, b in zip(net.named_parameters(), g_fast, g_slow):
        assert_close(a, b, dtype, f"gradient of {name}")
    # the alpha-only backward (first-order architect) skips weight gradients but gives the same alpha gradient
    a_fast = torch.autograd.grad(F.cross_entropy(net(x), y), net.arch_parameters())
    base(x)  # the same number of training-mode passes, so the same running statistics
    for a, b in zip(a_fast, g_slow[:2]):
        assert_close(a, b, dtype, "alpha-only gradient")
    net.eval(), base.eval()
    assert_close(net(x), base(x), dtype, "eval-mode logits (running statistics)")


def test_all_normal_and_fewer_nodes_match_textbook():
    net, base = tiny_pair(space=SearchSpace(n_nodes=2), all_normal=True)
    x = torch.randn(2, 3, 8, 8, generator=gen(8), dtype=torch.float64)
    assert_close(net(x), base(x), torch.float64, "logits")


@pytest.mark.parametrize("order", [1, 2])
def test_one_search_step_ends_where_the_textbook_step_ends(order):
    """Architect + SGD on the fast net vs quark0's architect on the baseline: same alpha, weights and buffers."""
    net, base = tiny_pair()
    batch = tuple(t.double() if t.is_floating_point() else t for t in synthetic_batches(4, 8, num_classes=3))
    fast_step, slow_step = make_search_step(net, batch, order=order), make_baseline_step(base, batch, order=order)
    for _ in range(2):  # the second step uses SGD momentum in the unrolled weights
        fast_step(), slow_step()
    for (name, a), b in zip(net.state_dict().items(), base.state_dict().values()):
        if a.is_floating_point():
            assert_close(a, b, torch.float64, name)
        else:
            assert torch.equal(a, b), name


def test_exact_hessian_vector_product_goes_through_the_fast_depthwise_backward():
    """Double backward (hvp='exact') on the fast net equals the one on the textbook net."""
    net, base = tiny_pair()
    x = torch.randn(2, 3, 8, 8, generator=gen(9), dtype=torch.float64)
    y = torch.tensor([0, 2])
    out = []
    for model in (net, base):
        weights = [p for n, p in model.named_parameters() if not n.startswith("alphas")]
        g_w = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
        v = [torch.ones_like(g) for g in g_w]
        dot = sum((g * d).sum() for g, d in zip(g_w, v))
        out.append(torch.autograd.grad(dot, model.arch_parameters()))
    for a, b in zip(*out):
        assert_close(a, b, torch.float64, "exact HVP")


# -- the building blocks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [CL, torch.contiguous_format], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("size", [8, 7, 4, 3, 2])  # below 5: taps that only read padding are dropped
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k,dilation", [(3, 1), (5, 1), (3, 2), (5, 2), (7, 1)])
@pytest.mark.parametrize("min_values", [0, None], ids=["re-expressed-5x5", "default"])
def test_depthwise_conv2d_is_conv2d(k, dilation, stride, size, layout, min_values, monkeypatch):
    if min_values is not None:  # the 5x5 weight gradients from 3x3 ones at every size, not only large maps
        monkeypatch.setattr(cellnas.ops, "FAST_5X5_MIN_VALUES", min_values)
    pad = dilation * (k - 1) // 2
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(3, 4, size, size, generator=gen(k), dtype=dtype).contiguous(memory_format=layout)
        w = torch.randn(4, 1, k, k, generator=gen(size), dtype=dtype)
        xs, ws = [x.clone().requires_grad_() for _ in range(2)], [w.clone().requires_grad_() for _ in range(2)]
        y_fast = depthwise_conv2d(xs[0], ws[0], stride, pad, dilation)
        y_ref = F.conv2d(xs[1], ws[1], None, stride, pad, dilation, 4)
        assert_close(y_fast, y_ref, dtype, "output")
        for a, b in zip(grads(y_fast, [xs[0], ws[0]]), grads(y_ref, [xs[1], ws[1]])):
            assert_close(a, b, dtype, "gradient")
        # the weight gradient alone (the input is not a leaf that needs one) is right too
        (gw,) = torch.autograd.grad(depthwise_conv2d(x, ws[0], stride, pad, dilation).square().sum(), [ws[0]])
        (gw_ref,) = torch.autograd.grad(F.conv2d(x, ws[1], None, stride, pad, dilation, 4).square().sum(), [ws[1]])
        assert_close(gw, gw_ref, dtype, "weight-only gradient")


def test_depthwise_conv2d_takes_an_empty_batch():
    w = torch.randn(4, 1, 5, 5, requires_grad=True)
    y = depthwise_conv2d(torch.zeros(0, 4, 8, 8).contiguous(memory_format=CL), w, 1, 2, 1)
    assert y.shape == (0, 4, 8, 8)
    (gw,) = torch.autograd.grad(y.sum(), [w])
    assert torch.equal(gw, torch.zeros_like(w))


@pytest.mark.parametrize("size", [8, 7])
def test_layout_keeping_helpers_are_the_plain_ops(size):
    x = torch.randn(2, 3, size, size, generator=gen(0), dtype=torch.float64).contiguous(memory_format=CL)
    cases = [
        (even_pixels, lambda t: t[:, :, ::2, ::2]),
        (shift_up_left, lambda t: F.pad(t[:, :, 1:, 1:], (0, 1, 0, 1))),
        (lambda t: cat_channels([t, 2 * t]), lambda t: torch.cat([t, 2 * t], 1)),
    ]
    for fast, ref in cases:
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        y = fast(a)
        assert y.is_contiguous(memory_format=CL)
        torch.testing.assert_close(y, ref(b))
        (ga,), (gb,) = grads(y, [a]), grads(ref(b), [b])
        torch.testing.assert_close(ga, gb)
        assert ga.is_contiguous(memory_format=CL)


def test_cat_channels_compiles_under_no_grad():
    """torch.compile of the autograd function under no_grad returned its first input only (PyTorch 2.13)."""
    parts = [torch.randn(2, c, 4, 4, generator=gen(c)) for c in (3, 5)]
    compiled = torch.compile(lambda a, b: cat_channels([a, b]) * 2, backend="eager")
    with torch.no_grad():
        out = compiled(*parts)
    torch.testing.assert_close(out, torch.cat(parts, 1) * 2)
