"""bf16 autocast of the search (``cellnas search --amp``; issue 7's CUDA speed-up, testable on CPU autocast)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cellnas import ops
from cellnas.cli import main
from cellnas.errors import CellnasError
from cellnas.schedule import amp_dtype
from cellnas.search.architect import Architect
from cellnas.search.config import SearchConfig
from cellnas.supernet import SearchNetwork


def test_amp_resolves_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("off", cpu) is None and amp_dtype("off", cuda) is None
    assert amp_dtype("bf16", cpu) is torch.bfloat16 and amp_dtype("bf16", cuda) is torch.bfloat16
    assert amp_dtype("auto", cpu) is None and amp_dtype("auto", cuda) is torch.bfloat16
    with pytest.raises(ValueError, match="auto, bf16, off"):
        amp_dtype("fp16", cpu)


@pytest.mark.parametrize("dilation", [1, 2])
def test_depthwise_stays_fp32_under_cpu_autocast(dilation):
    # ATen's bf16 weight gradient of a dilated depthwise conv is not reproducible on CPU (and far from fp32's): under
    # CPU autocast the depthwise conv is the fp32 one, gradients and all
    torch.manual_seed(0)
    x = torch.randn(4, 16, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(16, 1, 5, 5, requires_grad=True)
    pad = 2 * dilation
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = ops.depthwise_conv2d(x, w, 1, pad, dilation)
    ref = ops.depthwise_conv2d(x, w, 1, pad, dilation)
    g = torch.randn_like(ref)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    for a, b in zip(torch.autograd.grad(ours, (x, w), g), torch.autograd.grad(ref, (x, w), g)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _tiny(seed=0):
    return SearchNetwork(C=4, num_classes=10, layers=3, in_channels=1, seed=seed)


def _batches():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g),
            torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g))  # fmt: skip


@pytest.mark.parametrize("hvp, expected", [("fd", [True, True, False, False]), ("exact", [True, True, True])])
def test_second_order_keeps_the_finite_differences_in_fp32(monkeypatch, hvp, expected):
    # ε v = 0.01 v / |v| is below bf16's resolution of the weights: the two FD passes must not be autocast
    net = _tiny()
    seen = []
    forward = net.forward

    def spy(x, *a, **kw):
        seen.append(torch.is_autocast_enabled("cpu"))
        return forward(x, *a, **kw)

    monkeypatch.setattr(net, "forward", spy)
    w_opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), 3e-4)
    arch = Architect(net, w_opt, a_opt, order=2, hvp=hvp, amp=torch.bfloat16)
    grads, loss, _ = arch.gradient(*_batches(), eta=0.025)
    assert seen == expected
    assert all(torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads) and torch.isfinite(loss)


def test_bf16_gradients_are_reproducible():
    net = SearchNetwork(C=16, num_classes=10, layers=3, in_channels=3, seed=0)  # 32x32: dilated 5x5 convs really run
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    params = net.arch_parameters() + net.weight_parameters()

    def grads():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x), y)
        return torch.autograd.grad(loss, params)

    for a, b in zip(grads(), grads()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bf16_alpha_gradient_is_close_to_fp32():
    net = _tiny()
    w_opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), 3e-4)
    x_t, y_t, x_v, y_v = _batches()
    g32 = Architect(net, w_opt, a_opt, order=1).gradient(x_t, y_t, x_v, y_v, 0.025)[0]
    g16 = Architect(net, w_opt, a_opt, order=1, amp=torch.bfloat16).gradient(x_t, y_t, x_v, y_v, 0.025)[0]
    for a, b in zip(g16, g32):
        assert not torch.equal(a, b)  # autocast really ran
        assert float((a - b).norm() / b.norm()) < 0.3  # bf16 keeps 8 bits: close, not equal


def test_amp_config_is_checked():
    with pytest.raises(CellnasError, match="--amp must be one of auto, bf16, off"):
        SearchConfig(amp="fp16").validate()
    with pytest.raises(CellnasError, match="--record-wiring needs --amp off"):
        SearchConfig(amp="bf16", record_wiring=True).validate()
    SearchConfig(amp="auto").validate()
    assert SearchConfig().amp == "off"  # opt-in: fp32 unless asked


def test_search_with_bf16_autocast_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["search", "--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "16", "--amp", "bf16",
            "--order", "2", "--steps-per-epoch", "2", "--epochs", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "config.json").read_text())["amp"] == "bf16"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(m == m for m in (metrics[-1]["train_loss"], metrics[-1]["search_loss"]))  # finite, not NaN


def test_bench_search_step_reports_amp():
    from cellnas.bench.search_step import bench_search_step

    r = bench_search_step(1, batch_size=4, channels=4, layers=3, size=8, repeats=1, warmup=0, amp="bf16")
    assert r["amp"] == "bf16" and r["step_s"] > 0
    assert bench_search_step(1, batch_size=4, channels=4, layers=3, size=8, repeats=1, warmup=0)["amp"] == "off"
