"""Device selection (cellnas.schedule.resolve_device): every bad request is a one-line error naming the choices."""

from __future__ import annotations

import pytest
import torch

from cellnas.errors import RunError
from cellnas.schedule import resolve_device


def _fake_cuda(monkeypatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_auto_falls_back_to_cpu(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_cuda_says_use_cpu(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    with pytest.raises(RunError, match="no CUDA device is available; use --device cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["cuda:1", "cuda:7"])
def test_missing_gpu_ordinal_names_the_valid_ones(monkeypatch, name):
    _fake_cuda(monkeypatch, 1)
    with pytest.raises(RunError, match=rf"--device {name}: this machine has 1 CUDA device\(s\); choose one of cuda:0$"):
        resolve_device(name)


def test_present_gpu_ordinals_pass(monkeypatch):
    _fake_cuda(monkeypatch, 2)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_unknown_device_name(monkeypatch):
    _fake_cuda(monkeypatch, 1)
    with pytest.raises(RunError, match="unknown device 'cuda:x'"):
        resolve_device("cuda:x")
