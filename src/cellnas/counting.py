"""Exact parameter and multiply-add counts (SPEC 1.4, 2.4, 8, 9.4-9.5).

* :func:`count_params` follows DARTS's ``utils.count_parameters_in_MB`` semantic: parameters whose
  name contains ``'auxiliary'`` are excluded (Shu et al.'s variant counts them; pass ``exclude_aux=False``).
  Architecture parameters (alpha) are never weights and are excluded too, as in DARTS, where alpha was
  not a module parameter.
* :func:`count_macs` counts multiply-adds at batch 1 with one rule, stated here because published
  figures use others: **only convolutions and linear layers count**; a conv counts
  ``C_out * H_out * W_out * (C_in / groups) * kH * kW``, a linear layer ``in_features * out_features``;
  BN, ReLU, pooling, additions, the ``none`` op and the auxiliary head count nothing. The model runs in
  eval mode (so no auxiliary head runs) and forward hooks read the real output sizes.
  Under this rule DARTS_V2 on ImageNet (C=48, 14 cells, 224x224) does not give the paper's 574M (SPEC 9.5).

>>> from torch import nn
>>> count_macs(nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 4, 4))
3456
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cellnas.errors import CellnasError

__all__ = ["count_params", "count_macs", "conv_macs"]


def count_params(model: nn.Module, exclude_aux: bool = True) -> int:
    """Number of weight parameters; names containing ``'auxiliary'`` are skipped when ``exclude_aux``.

    Parameters returned by ``model.arch_parameters()`` (if the model has it) are never counted.
    """
    arch = {id(p) for p in model.arch_parameters()} if hasattr(model, "arch_parameters") else set()
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if id(p) not in arch and not (exclude_aux and "auxiliary" in name)
    )


def conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    """Multiply-adds of one conv for one sample: C_out * H_out * W_out * (C_in/groups) * kH * kW."""
    k_h, k_w = conv.kernel_size
    spatial = output.shape[-2] * output.shape[-1]
    return conv.out_channels * spatial * (conv.in_channels // conv.groups) * k_h * k_w


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of one forward pass at batch 1 (conv + linear only; see the module docstring).

    ``input_shape`` is ``(C, H, W)`` or ``(1, C, H, W)``. The input is zeros on the model's device and
    dtype; the model is put in eval mode for the count and restored afterwards.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise CellnasError(f"input_shape must be (C, H, W) or (1, C, H, W), got {tuple(input_shape)}")
    total = 0

    def on_conv(module, inputs, output):
        nonlocal total
        total += conv_macs(module, output)

    def on_linear(module, inputs, output):
        nonlocal total
        rows = output.numel() // module.out_features  # batch 1: 1 for a (1, out) output
        total += rows * module.in_features * module.out_features

    handles = []
    for name, module in model.named_modules():
        if "auxiliary" in name:
            continue
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
