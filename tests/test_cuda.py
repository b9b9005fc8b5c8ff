"""The CUDA paths (issue 7): supernet, second-order step, search, training and the benchmark on a GPU.

These run where a GPU is: on ``cuda`` when ``torch.cuda.is_available()``, or on the device that
``CELLNAS_TEST_DEVICE`` names (``CELLNAS_TEST_DEVICE=cpu`` runs them on the CPU, to check the tests themselves on a
machine without a GPU). Elsewhere, CI included, they are skipped: CI has no GPU. ``benchmarks/gpu_check.sh`` runs
them on a lent GPU, together with the GPU benchmarks.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from cellnas.cli import main
from cellnas.search.architect import Architect
from cellnas.supernet import SearchNetwork

_NAME = os.environ.get("CELLNAS_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
DEVICE = torch.device(_NAME) if _NAME else None

pytestmark = pytest.mark.skipif(DEVICE is None, reason="no GPU (set CELLNAS_TEST_DEVICE=cpu to run these on the CPU)")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 off: the device must compute the CPU's fp32 function, not a 10-bit-mantissa one."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _net(seed: int = 0) -> SearchNetwork:
    # 16x16: the 5x5 and dilated convolutions see real maps in every cell
    return SearchNetwork(C=4, num_classes=10, layers=3, in_channels=3, seed=seed)


def _batches(n: int = 8, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g),
            torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))  # fmt: skip


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), rtol=2e-4, atol=2e-5, msg=lambda m: f"{what}: {m}")


def test_supernet_loss_and_every_gradient_match_the_cpu():
    cpu = _net()
    dev = _net().to(DEVICE)
    x, y, _, _ = _batches()
    grads = []
    for net, d in ((cpu, "cpu"), (dev, DEVICE)):
        loss = F.cross_entropy(net(x.to(d)), y.to(d))
        params = net.arch_parameters() + net.weight_parameters()
        grads.append((loss, torch.autograd.grad(loss, params)))
    _close(grads[1][0], grads[0][0], "loss")
    names = ["alphas_normal", "alphas_reduce"] + [n for n, _ in cpu.named_parameters() if "alphas" not in n]
    assert len(names) == len(grads[0][1]) == len(grads[1][1])  # every parameter compared, by name
    for name, g_dev, g_cpu in zip(names, grads[1][1], grads[0][1]):
        _close(g_dev, g_cpu, name)


@pytest.mark.parametrize("hvp", ["fd", "exact"])
def test_second_order_alpha_gradient_matches_the_cpu(hvp):
    out = []
    for d in ("cpu", DEVICE):
        net = _net().to(d)
        w_opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
        a_opt = torch.optim.Adam(net.arch_parameters(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        arch = Architect(net, w_opt, a_opt, order=2, hvp=hvp)
        grads, loss, _ = arch.gradient(*(t.to(d) for t in _batches()), eta=0.025)
        out.append((grads, loss))
    _close(out[1][1], out[0][1], "validation loss")
    for g_dev, g_cpu in zip(out[1][0], out[0][0]):
        # the finite difference divides by 2 eps = 0.02 / |v|: its rounding shows at the 1e-3 level
        torch.testing.assert_close(g_dev.cpu(), g_cpu, rtol=2e-3, atol=2e-4)


def test_bf16_search_step_stays_finite_and_near_fp32():
    net = _net().to(DEVICE)
    w_opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), 3e-4)
    batches = [t.to(DEVICE) for t in _batches()]
    g32 = Architect(net, w_opt, a_opt, order=2).gradient(*batches, eta=0.025)[0]
    g16 = Architect(net, w_opt, a_opt, order=2, amp=torch.bfloat16).gradient(*batches, eta=0.025)[0]
    for a, b in zip(g16, g32):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        # bf16 keeps 8 bits of mantissa: 0.38 on CPU autocast at this width (the validation pass at w' in bf16);
        # finite differences taken in bf16 (eps v below the weights' resolution) would be far off
        assert float((a - b).norm() / b.norm()) < 0.6


def test_search_on_the_device_resumes_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--no-progress", "--no-plots", "-C", "4", "-L", "3", "--batch-size", "16", "--steps-per-epoch", "2"]
    assert main(["search", *common, "--device", str(DEVICE), "--amp", "auto", "--order", "2", "--epochs", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    assert main(["search", "--resume", str(out), "--device", "cpu", "--epochs", "2", "--no-progress"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(m["train_loss"] == m["train_loss"] for m in metrics)  # two epochs, no NaN
    assert json.loads((out / "config.json").read_text())["device"] == "cpu" and (out / "genotype.json").exists()


def test_training_with_amp_channels_last_and_compile_then_evaluating_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "train"
    assert main(["train", "DARTS_V2", "-C", "4", "-L", "3", "--batch-size", "16", "--epochs", "1",
                 "--steps-per-epoch", "3", "--device", str(DEVICE), "--amp", "bf16", "--channels-last", "on",
                 "--compile", "--no-progress", "--no-plots", "-o", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", str(out), "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert 0.0 <= r["test_acc"] <= 1.0


@pytest.mark.parametrize("order", [1, 2])
def test_bench_search_step_on_the_device(order):
    from cellnas.bench.search_step import bench_search_step

    r = bench_search_step(order, batch_size=8, channels=4, layers=3, size=16, device=DEVICE, repeats=1, warmup=1,
                          baseline=True)  # fmt: skip
    assert r["device"] == str(DEVICE) and r["step_s"] > 0 and r["baseline_step_s"] > 0
    assert r["flops_per_step"] > 0
    if DEVICE.type == "cuda":
        assert r["peak_mem_bytes"] > 0 and r["baseline_peak_mem_bytes"] > 0
