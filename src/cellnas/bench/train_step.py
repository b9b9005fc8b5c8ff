"""Seconds per training step of a genotype's evaluation network (SPEC 2.1, 2.2).

One step: forward of :class:`~cellnas.network.NetworkCIFAR` on a fixed synthetic batch, cross-entropy (plus
``aux_weight`` times the auxiliary head's loss when ``auxiliary``), backward, gradient clipping (global L2 norm 5)
and an SGD step (lr 0.025, momentum 0.9, weight decay 3e-4), as in DARTS' ``train.py``. Drop-path is applied
with ``drop_path_prob``. The same measurements as :mod:`cellnas.bench.search_step` are reported (median seconds
after warm-up, images/s, FLOPs from ``FlopCounterMode`` counted at a small batch and scaled, peak memory of one
step).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cellnas.bench.search_step import (
    FLOP_BATCH,
    _load_average,
    _maxrss_bytes,
    describe,
    flops_per_step,
    measure,
    run_with_threads,
)

__all__ = ["bench_train_step", "make_train_step"]


def make_train_step(model, x: torch.Tensor, y: torch.Tensor, *, lr: float = 0.025, momentum: float = 0.9,
                    weight_decay: float = 3e-4, grad_clip: float = 5.0, aux_weight: float = 0.4,
                    forward=None, amp: torch.dtype | None = None):  # fmt: skip
    """A closure running one SGD training step of ``model`` (a NetworkCIFAR/ImageNet) on ``(x, y)``.

    ``forward``: what computes the forward pass (default ``model``; a ``torch.compile`` wrapper of it, as
    ``cellnas train --compile`` runs); ``amp``: the autocast dtype of the forward pass and loss (None: fp32)."""
    from cellnas.schedule import autocast

    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=momentum, weight_decay=weight_decay)
    forward = model if forward is None else forward

    def step() -> dict:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device, amp):
            logits, logits_aux = forward(x)
            loss = F.cross_entropy(logits, y)
            if logits_aux is not None:
                loss = loss + aux_weight * F.cross_entropy(logits_aux, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        return {"loss": float(loss.detach())}

    return step


def bench_train_step(
    genotype: str = "DARTS_V2",
    batch_size: int = 96,
    channels: int = 36,
    layers: int = 20,
    size: int = 32,
    device: str | torch.device = "cpu",
    *,
    auxiliary: bool = True,
    drop_path_prob: float = 0.2,
    channels_last: bool = False,
    amp: str = "off",
    compile: bool = False,
    threads: int | None = None,
    repeats: int = 5,
    warmup: int = 2,
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Median seconds per training step of the evaluation network of ``genotype`` (zoo name, file, text).

    Defaults are the DARTS CIFAR-10 evaluation setting (C=36, 20 cells, batch 96, auxiliary head, drop-path 0.2;
    SPEC 2.2). ``channels_last`` converts the network and the input to channels_last (on CPU, oneDNN's faster
    layout for the depthwise convolutions). ``amp`` (off, bf16, auto: bf16 on CUDA) and ``compile`` are those of
    ``cellnas train`` (:class:`~cellnas.train.setup.DeviceOptions`): bf16 autocast of the forward pass, and
    ``torch.compile`` of the timed network (compiled during the warm-up; FLOPs are counted on the plain one).
    Returns ``step_s``, ``step_s_all``, ``images_per_s``,
    ``peak_mem_bytes``, ``flops_per_step``, ``flops_per_s``, the parameter count, the settings and the device.
    """
    from cellnas.bench.search_step import synthetic_batches
    from cellnas.formats import load_genotype
    from cellnas.network import NetworkCIFAR

    if min(batch_size, channels, layers, size) < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch, channels, layers, size and repeats must be >= 1, warmup >= 0")
    from cellnas.schedule import amp_dtype

    geno = load_genotype(genotype)
    dev = torch.device(device)
    dtype = amp_dtype(amp, dev)

    def run() -> dict:
        load_before = _load_average()
        def network():
            net = NetworkCIFAR(channels, num_classes, layers, auxiliary, geno, in_channels=in_channels,
                               drop_path_prob=drop_path_prob, seed=seed).to(dev)  # fmt: skip
            return net.to(memory_format=torch.channels_last) if channels_last else net

        def step(n: int):
            x, y, _, _ = synthetic_batches(n, size, in_channels, num_classes, seed, dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if n != batch_size:  # the FLOP count: the plain network, fp32
                return make_train_step(network(), x, y)
            return make_train_step(model, x, y, forward=torch.compile(model) if compile else None, amp=dtype)

        flops = flops_per_step(step, batch_size) if batch_size > FLOP_BATCH else None
        model = network()
        res = measure({"train": step(batch_size)}, dev, repeats, warmup, memory=("train",))["train"]
        res["flops_per_step"] = flops if flops is not None else flops_per_step(step, batch_size)
        out: dict[str, Any] = {
            "benchmark": "train-step",
            "genotype": str(genotype),
            "batch": batch_size,
            "channels": channels,
            "layers": layers,
            "size": size,
            "auxiliary": auxiliary,
            "drop_path_prob": drop_path_prob,
            "channels_last": channels_last,
            "amp": amp,
            "compile": compile,
            "params": sum(p.numel() for p in model.parameters()),
            "repeats": repeats,
            "warmup": warmup,
            "step_s": res["step_s"],
            "step_s_all": res["times"],
            "images_per_s": batch_size / res["step_s"],
            "peak_mem_bytes": res["peak_mem_bytes"],
            "flops_per_step": res["flops_per_step"],
            "flops_per_s": res["flops_per_step"] / res["step_s"],
        }
        out.update(describe(dev))
        out["load_average_1min"] = [load_before, _load_average()]
        out["maxrss_bytes"] = _maxrss_bytes()
        return out

    return run_with_threads(threads, run)
