"""Candidate operations of the DARTS search space, as a registry (SPEC 1.1, 1.2).

Every op is built by a factory ``(C, stride, affine) -> nn.Module`` that keeps the
channel count ``C`` and, at ``stride=2``, halves the spatial size (``ceil(H/2)``).
The compositions follow ``quark0/darts cnn/operations.py``: ReLU -> conv -> BN,
separable convs applied twice, dilated convs once, every conv without bias.

>>> op = create_op("sep_conv_3x3", C=8, stride=2, affine=True)
>>> op(torch.zeros(1, 8, 7, 7)).shape
torch.Size([1, 8, 4, 4])

Users add ops with :func:`register_op`; the name then becomes valid in genotypes too.

One deliberate difference from the reference code: :class:`FactorizedReduce` pads the
one-pixel-shifted branch at the bottom/right, so odd sizes work (the reference crashes on
them). For even sizes the output is bit-for-bit the reference one (a stride-2 1x1 conv never
samples the padded pixel).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from cellnas import native
from cellnas.errors import CellnasError, unknown_name
from cellnas.genotype import register_op_name
from cellnas.native import _get_current_dispatch_mode

__all__ = [
    "OPS",
    "OpFactory",
    "register_op",
    "create_op",
    "list_ops",
    "ReLUConvBN",
    "FactorizedReduce",
    "SepConv",
    "DilConv",
    "Identity",
    "Zero",
    "DepthwiseConv2d",
    "depthwise_conv2d",
    "batch_norm",
    "cat_channels",
    "even_pixels",
    "shift_up_left",
    "make_generator",
    "seeded_init",
]

OpFactory = Callable[[int, int, bool], nn.Module]


# -- depthwise convolution with a fast CPU backward (SPEC 1.1: the depthwise convs of sep_conv / dil_conv) -----------
#
# oneDNN (PyTorch's CPU convolution backend) is fast at the depthwise *forward* in channels_last for every kernel,
# and at the weight gradient of 3x3 undilated kernels with padding <= 1, but its backward is 10-40x slower for
# dilated kernels and several times slower for 5x5 weight gradients (measured on the 2-core AMD EPYC of
# benchmarks/RESULTS.md). So, for stride-1 'same' convolutions, the gradients are re-expressed with fast kernels:
#   * input gradient = forward conv of the output gradient with the flipped kernel (also beats oneDNN's own
#     input gradient for undilated 3x3 and 5x5);
#   * weight gradient of a dilation-2 conv = weight gradient of the undilated conv on the 2x2 polyphase
#     components stacked along the batch ("space to batch"; needs even sizes);
#   * weight gradient of a 5x5 kernel = 3x3 weight gradients: sixteen on the polyphase components (one copy of
#     the input and of the gradient), or four on shifted windows of the padded input (whichever measured faster
#     for the channel count);
#   * a stride-2 dilation-2 conv reads only the even pixels: it is the undilated conv of x[:, :, ::2, ::2];
#   * where the C kernel of cellnas.native compiles (channels_last float32), 5x5 and dilated weight gradients are
#     computed by it directly, without copies; the two re-expressions above are then the fallback.
# Each is exact (the same products, summed in another order). Double backward (exact Hessian-vector products)
# uses the plain formulas. Weight gradients are skipped when the backward pass does not need them
# (``autograd.grad`` with respect to α only, as the first-order architect and the finite-difference HVP do).

_conv_backward = torch.ops.aten.convolution_backward

#: Switches of the re-expressed depthwise gradients on CPU, for measuring their effect (cellnas.bench).
FAST_DEPTHWISE = True
FAST_DEPTHWISE_5X5 = True
#: The weight gradient of 5x5 and dilated kernels by the C kernel of :mod:`cellnas.native` (channels_last float32,
#: when a C compiler is found; measured alone, C=16, 32x32, 5x5: 0.5 ms against 3.3 ms for the re-expression
#: below and 4.1 ms for oneDNN's own). Undilated 3x3 kernels stay with oneDNN, which is as fast.
NATIVE_DEPTHWISE = True
INPLACE_RELU = True
#: The 5x5 weight gradient is re-expressed only from this many values per image (C*H*W) on: below it oneDNN's
#: own is faster (measured at 1 thread: C=8, 8x8: 2.4 ms re-expressed vs 0.7 ms; C=64, 8x8: 2.7 vs 3.3 ms).
FAST_5X5_MIN_VALUES = 4096


def _grad_needed(ctx, i: int) -> bool:
    """Whether this backward pass needs the gradient of input ``i`` (``autograd.grad`` w.r.t. α skips the weights)."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # a leaf passed to autograd.grad itself, or an older torch: needed
        return True


def _conv_grads(grad, x, weight, padding: int, dilation: int, mask: list[bool]):
    return _conv_backward(grad, x, weight, None, [1, 1], [padding] * 2, [dilation] * 2, False, [0, 0],
                          weight.shape[0], mask + [False])[:2]  # fmt: skip


def _space_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (4B, C, H/2, W/2): the polyphase components x[:, :, r::2, q::2], (r, q) = 00, 01, 10, 11."""
    return torch.cat([x[:, :, r::2, q::2] for r in (0, 1) for q in (0, 1)], 0)


def _padded(x: torch.Tensor, p: int) -> torch.Tensor:
    """``F.pad(x, (p, p, p, p))`` in ``x``'s memory format (one dense zero fill, then the interior)."""
    B, C, H, W = x.shape
    if _memory_format(x) == torch.channels_last:
        out = x.new_zeros((B, H + 2 * p, W + 2 * p, C)).permute(0, 3, 1, 2)
    else:
        out = x.new_zeros((B, C, H + 2 * p, W + 2 * p))
    out[:, :, p : H + p, p : W + p] = x
    return out


def _weight_grad_5x5(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """dW[i, j] = sum grad[h, w] x[h+i-2, w+j-2] (padding 2) from four 3x3 weight gradients.

    On the input padded by 2, the 3x3 weight gradient (padding 0) of the window starting at (ti, tj) gives the
    offsets ti..ti+2 x tj..tj+2 of the padded input; windows at 0 and 2 cover 0..4 (offset 2 twice).
    """
    H, W = x.shape[-2:]
    fmt = _memory_format(x)
    xp = _padded(x, 2)
    w3 = weight.new_empty(weight.shape[0], 1, 3, 3)
    blocks = {}
    for ti in (0, 2):
        for tj in (0, 2):
            window = xp[:, :, ti : ti + H + 2, tj : tj + W + 2].clone(memory_format=fmt)  # faster than contiguous
            blocks[ti, tj] = _conv_grads(grad, window, w3, 0, 1, [False, True])[1]
    top = torch.cat([blocks[0, 0], blocks[0, 2][..., 1:]], -1)
    bottom = torch.cat([blocks[2, 0][..., 1:, :], blocks[2, 2][..., 1:, 1:]], -1)
    return torch.cat([top, bottom], -2)


# (output phase r, input phase q) -> (taps of the 5-tap axis, taps of the 3-tap block) along one axis: the input
# pixel 2a + r + t of tap t in -2..2 is pixel a + s of phase q, with r + t = 2s + q and s in -1..1.
_PHASE_TAPS = {(0, 0): (slice(0, 5, 2), slice(0, 3)), (1, 1): (slice(0, 5, 2), slice(0, 3)),
               (0, 1): (slice(1, 4, 2), slice(0, 2)), (1, 0): (slice(1, 4, 2), slice(1, 3))}  # fmt: skip


def _weight_grad_5x5_polyphase(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """dW[i, j] = sum grad[h, w] x[h+i-2, w+j-2] (padding 2, even sizes) from sixteen 3x3 weight gradients.

    On the 2x2 polyphase components (one dense copy of x and of grad), every (output phase, input phase) pair
    is a 3x3 correlation with padding 1 whose taps land on a known subset of the 5x5 taps (``_PHASE_TAPS``).
    """
    B, C = x.shape[:2]
    xs, gs = _space_to_batch(x), _space_to_batch(grad)
    w3 = weight.new_empty(C, 1, 3, 3)
    out = weight.new_zeros(C, 1, 5, 5)
    for rh in (0, 1):
        for rw in (0, 1):
            g_r = gs[(2 * rh + rw) * B : (2 * rh + rw + 1) * B]
            for qh in (0, 1):
                for qw in (0, 1):
                    x_q = xs[(2 * qh + qw) * B : (2 * qh + qw + 1) * B]
                    block = _conv_grads(g_r, x_q, w3, 1, 1, [False, True])[1]
                    (th, bh), (tw, bw) = _PHASE_TAPS[rh, qh], _PHASE_TAPS[rw, qw]
                    out[:, :, th, tw] += block[:, :, bh, bw]
    return out


def _undilated_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    if weight.shape[-1] == 5 and padding == 2 and FAST_DEPTHWISE_5X5 and math.prod(x.shape[1:]) >= FAST_5X5_MIN_VALUES:
        # measured on a 2-core AMD EPYC (oneDNN 3.12): the polyphase form wins at 16 channels, the four
        # shifted windows from 32 channels on (both beat oneDNN's 5x5 weight gradient)
        if x.shape[1] <= 16 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            return _weight_grad_5x5_polyphase(grad, x, weight)
        return _weight_grad_5x5(grad, x, weight)
    return _conv_grads(grad, x, weight, padding, 1, [False, True])[1]


class _Depthwise(torch.autograd.Function):
    """Stride-1 depthwise conv with 'same' padding; gradients through fast kernels (see above)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        padding = dilation * (weight.shape[-1] - 1) // 2
        return F.conv2d(x, weight, None, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        dilation, C = ctx.dilation, weight.shape[0]
        padding = dilation * (weight.shape[-1] - 1) // 2
        if x.dtype != grad.dtype or weight.dtype != grad.dtype:
            # under autocast (bf16) the forward conv ran in the output's dtype, which the gradient has; the
            # input and weight were saved as they came (often float32): compute in the gradient's dtype and
            # return each gradient in its input's dtype
            gx, gw = _depthwise_grads(ctx, grad, x.to(grad.dtype), weight.to(grad.dtype), padding, C)
            return (None if gx is None else gx.to(x.dtype)), (None if gw is None else gw.to(weight.dtype)), None
        gx, gw = _depthwise_grads(ctx, grad, x, weight, padding, C)
        return gx, gw, None


def _depthwise_grads(ctx, grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: int, C: int):
    """:class:`_Depthwise`'s ``(grad of x, grad of weight)``, with ``grad``, ``x`` and ``weight`` of one dtype."""
    dilation = ctx.dilation
    if torch.is_grad_enabled():  # create_graph: differentiable reference formulas
        return _conv_grads(grad, x, weight, padding, dilation, list(ctx.needs_input_grad[:2]))
    grad = grad.contiguous(memory_format=_memory_format(x))
    gx = gw = None
    if _grad_needed(ctx, 0):
        gx = F.conv2d(grad, weight.flip(-1, -2), None, 1, padding, dilation, C)
    if _grad_needed(ctx, 1):
        k = weight.shape[-1]
        if NATIVE_DEPTHWISE and (k > 3 or dilation > 1):
            gw = native.depthwise_weight_grad(grad, x, k, dilation)
            if gw is not None:
                return gx, gw.to(weight.dtype)
        if dilation == 1:
            gw = _undilated_weight_grad(grad, x, weight, padding)
        elif dilation == 2 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
            gw = _undilated_weight_grad(_space_to_batch(grad), _space_to_batch(x), weight, padding // 2)
        else:
            gw = _conv_grads(grad, x, weight, padding, dilation, [False, True])[1]
    return gx, gw


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# Slicing, padding and concatenation have backward passes that return NCHW or strided gradients; in a
# channels_last network those then meet channels_last gradients and every later kernel (BN backward above all)
# takes a slow mixed-layout path. The three helpers below keep the layout of their input in both directions.


class _EvenPixels(torch.autograd.Function):
    """``x[:, :, ::2, ::2]``, dense, in the memory format of ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.memory_format = x.shape, _memory_format(x)
        return x[:, :, ::2, ::2].clone(memory_format=ctx.memory_format)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.memory_format).zero_()
        out[:, :, ::2, ::2] = grad
        return out


class _ShiftUpLeft(torch.autograd.Function):
    """``y[:, :, i, j] = x[:, :, i+1, j+1]``, zero in the last row and column, in the memory format of ``x``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        fmt = ctx.memory_format = _memory_format(x)
        out = torch.empty_like(x, memory_format=fmt)
        out[:, :, :-1, :-1] = x[:, :, 1:, 1:]
        out[:, :, -1].zero_()
        out[:, :, :-1, -1].zero_()
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(grad, memory_format=ctx.memory_format)
        out[:, :, 1:, 1:] = grad[:, :, :-1, :-1]
        out[:, :, 0].zero_()
        out[:, :, 1:, 0].zero_()
        return out


class _CatChannels(torch.autograd.Function):
    """``torch.cat(xs, dim=1)`` whose backward returns dense gradient slices in the inputs' memory format."""

    @staticmethod
    def forward(ctx, *xs: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [x.shape[1] for x in xs]
        ctx.formats = [_memory_format(x) for x in xs]
        return torch.cat(xs, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if torch.is_grad_enabled():  # create_graph: keep it differentiable
            return tuple(grad.split(ctx.sizes, dim=1))
        parts = grad.split(ctx.sizes, dim=1)
        # clone: several times faster than .contiguous(memory_format=...) on these strided views
        return tuple(g if g.is_contiguous(memory_format=f) else g.clone(memory_format=f)
                     for g, f in zip(parts, ctx.formats))  # fmt: skip


def even_pixels(x: torch.Tensor) -> torch.Tensor:
    """``x[:, :, ::2, ::2]`` (a dense copy in ``x``'s memory format, whose gradient keeps it too)."""
    return _EvenPixels.apply(x)


def shift_up_left(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))``, keeping ``x``'s memory format (gradient included)."""
    return _ShiftUpLeft.apply(x)


def cat_channels(xs: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat(xs, dim=1)``; the gradients of the parts come back dense in the parts' memory format.

    Without gradients it is ``torch.cat`` itself: ``torch.compile`` (PyTorch 2.13) traces the autograd function of a
    variable number of inputs wrongly under ``no_grad`` and returns its first input only.
    """
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in xs)):
        return torch.cat(xs, dim=1)
    return _CatChannels.apply(*xs)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> torch.Tensor:  # fmt: skip
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups=C)`` for a (C, 1, k, k) kernel.

    The same function, computed with faster CPU gradients when the padding is 'same' (``dilation * (k-1) / 2``,
    k odd); other cases, and CUDA, call ``F.conv2d`` as is. Under CPU autocast it is computed in fp32 (below). On
    any device, a stride-1 'same' conv on a map smaller than the kernel's reach drops the taps that only read padding
    (:func:`_reachable_taps`; this also happens with ``FAST_DEPTHWISE = False``).
    """
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # fp32 under CPU bf16 autocast (cellnas search --amp bf16): measured on a 2-core AMD EPYC (oneDNN, torch
        # 2.13), ATen's bf16 weight gradient of a dilated depthwise conv changed from call to call and was off from
        # the fp32 one by more than its own size; and depthwise convs, memory-bound, are no faster in bf16 there
        with torch.autocast("cpu", enabled=False):
            return depthwise_conv2d(x.float(), weight.float(), stride, padding, dilation)
    C, k = weight.shape[0], weight.shape[-1]
    same = weight.shape[-2] == k and k % 2 == 1 and padding == dilation * (k - 1) // 2
    if same and stride == 1:
        cropped = _reachable_taps(x, weight, dilation)
        if cropped is not None:
            return cropped
    plain = (
        not FAST_DEPTHWISE
        or x.device.type != "cpu"
        or not same
        or stride not in (1, 2)
        or (dilation == 1 and stride == 2)
    )
    if plain:
        return F.conv2d(x, weight, None, stride, padding, dilation, C)
    if stride == 2:
        # y[o] = sum_t x[2o + dilation*t - padding]: with an even dilation only even pixels are read
        if dilation % 2:
            return F.conv2d(x, weight, None, stride, padding, dilation, C)
        return depthwise_conv2d(even_pixels(x), weight, 1, padding // 2, dilation // 2)
    return _Depthwise.apply(x, weight, dilation)


def _reachable_taps(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor | None:
    """A stride-1 'same' depthwise conv on a map smaller than the kernel's reach, with only the taps that can
    touch the image (``None`` when every tap can).

    Tap t of a kernel of size k reads pixel i + dilation * (t - (k-1)/2); where that offset is at least the map
    size, the tap only ever multiplies zero padding. Dropping such taps (and their padding) gives the same
    output, and their weight gradient is zero either way. On the 2x2 and 4x4 maps of small inputs (the
    embedded 8x8 digits after two reductions) a 5x5 or dilated kernel shrinks to 3x3 or 1x1.
    """
    k = weight.shape[-1]
    c = (k - 1) // 2
    H, W = x.shape[-2:]
    m_h, m_w = min(c, (H - 1) // dilation), min(c, (W - 1) // dilation)
    if m_h == c and m_w == c:
        return None
    w = weight[:, :, c - m_h : c + m_h + 1, c - m_w : c + m_w + 1]
    return F.conv2d(x, w, None, 1, (dilation * m_h, dilation * m_w), dilation, weight.shape[0])


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)`` computed by :func:`depthwise_conv2d`.

    Same parameters, ``state_dict`` and forward values as the ``nn.Conv2d`` it subclasses; only the CPU
    gradients are computed differently.
    """

    def __init__(self, C: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__(C, C, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.stride[0], self.padding[0], self.dilation[0])


#: Training-mode batch norm of channels_last float32 CPU maps with fewer than this many channels by
#: :class:`_FewChannelsBatchNorm` (PC-DARTS's edges run on C/K = 4 channels). Measured alone, batch 64, 32x32, 2
#: threads, forward and backward: ATen's own 2.9-5.1 ms at C=4 (2.3-3.0 ms at C=16 on four times the data), this
#: 2.1 ms; from C=8 on ATen's is faster. ``False`` uses ATen's everywhere.
FEW_CHANNELS_BN = True
FEW_CHANNELS_BN_BELOW = 8


class _FewChannelsBatchNorm(torch.autograd.Function):
    """Training-mode batch norm (batch statistics, optional per-channel ``weight``, no bias) of a channels_last
    map with few channels; returns ``(y, mean, biased var)``.

    The map's memory is a (pixels, C) matrix; viewed as (pixels / r, r * C) its column sums are fast, and folding
    the r column groups gives the per-channel sums. Mean and variance come from the sums and the Gram matrix's
    diagonal (E[x^2] - E[x]^2, accumulated by the matrix product); the normalisation is one ``addcmul`` on the
    same view. The backward uses the same sums of the gradient and of gradient x input. Double backward
    (``create_graph``, the exact Hessian-vector product) differentiates ATen's batch norm instead.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None, eps: float, r: int):
        C = x.shape[1]
        x2 = x.permute(0, 2, 3, 1).reshape(-1, r * C)  # a view: x is channels_last
        n = x.numel() // C
        mean = x2.sum(0).view(r, C).sum(0) / n
        var = ((x2.T @ x2).diagonal().view(r, C).sum(0) / n - mean * mean).clamp_min_(0.0)
        invstd = torch.rsqrt(var + eps)
        a = invstd if weight is None else invstd * weight
        y = torch.empty_like(x, memory_format=torch.channels_last)
        torch.addcmul((-mean * a).repeat(r), x2, a.repeat(r), out=y.permute(0, 2, 3, 1).view(-1, r * C))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.r = eps, r
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, gy: torch.Tensor, _gmean, _gvar):
        x, weight, mean, invstd = ctx.saved_tensors
        wants = [bool(ctx.needs_input_grad[0]), weight is not None and bool(ctx.needs_input_grad[1])]
        if torch.is_grad_enabled():  # create_graph: the differentiable reference formula
            inputs = [t for t, w in zip((x, weight), wants) if w]
            with torch.enable_grad():
                y = F.batch_norm(x, None, None, weight, None, True, 0.0, ctx.eps)
            grads = iter(torch.autograd.grad(y, inputs, gy, create_graph=True))
            return (next(grads) if wants[0] else None), (next(grads) if wants[1] else None), None, None
        r, C = ctx.r, x.shape[1]
        n = x.numel() // C
        x2 = x.permute(0, 2, 3, 1).reshape(-1, r * C)
        g2 = gy.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).reshape(-1, r * C)
        sum_g = g2.sum(0).view(r, C).sum(0)
        sum_gx = (g2.T @ x2).diagonal().view(r, C).sum(0)
        sum_g_xhat = invstd * (sum_gx - mean * sum_g)
        gx = None
        if wants[0]:  # gx = a (g - mean(g) - xhat mean(g xhat)) = A g + B x + c, per channel
            a = invstd if weight is None else invstd * weight
            k = sum_g_xhat / n
            B = -a * invstd * k
            c = a * (mean * invstd * k - sum_g / n)
            gx = torch.empty_like(x, memory_format=torch.channels_last)
            out = gx.permute(0, 2, 3, 1).view(-1, r * C)
            torch.addcmul(c.repeat(r), g2, a.repeat(r), out=out).addcmul_(x2, B.repeat(r))
        return gx, (sum_g_xhat if wants[1] else None), None, None


def _few_channels(x: torch.Tensor) -> int | None:
    """The column-group count r for :class:`_FewChannelsBatchNorm`, or None when ATen's batch norm is used.

    ATen's is also used under a Python dispatch mode (``FlopCounterMode``, tracing), which would count the
    statistics' matrix product as convolution-like FLOPs.
    """
    C = x.shape[1] if x.dim() == 4 else 0
    if not (FEW_CHANNELS_BN and 0 < C < FEW_CHANNELS_BN_BELOW and x.device.type == "cpu"
            and _get_current_dispatch_mode() is None
            and x.dtype == torch.float32 and _memory_format(x) == torch.channels_last):  # fmt: skip
        return None
    return math.gcd(x.numel() // C, max(1, 32 // C))


def train_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, ...]:
    """Batch norm with batch statistics and no bias: ``(y, mean, biased variance)`` (statistics detached).

    :class:`_FewChannelsBatchNorm` on channels_last float32 CPU maps with few channels, ATen's elsewhere.
    """
    r = _few_channels(x)
    if r is not None:
        return _FewChannelsBatchNorm.apply(x, weight, eps, r)
    y, mean, invstd = torch.native_batch_norm(x, weight, None, None, None, True, 0.0, eps)
    return y, mean.detach(), invstd.detach().pow(-2) - eps


def update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, n: int, factor: float) -> None:
    """``bn``'s running averages after a training-mode batch of ``n`` values per channel with batch ``mean`` and
    biased ``var``, as ``F.batch_norm`` updates them (the unbiased variance enters)."""
    with torch.no_grad():
        bn.running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        bn.running_var.mul_(1.0 - factor).add_(var * (n / max(n - 1, 1)), alpha=factor)


def batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``bn(x)``, times ``scale`` (a 0-d tensor) when given, folded into BN's affine transform (one kernel).

    Exactly ``nn.BatchNorm2d.forward`` (running statistics, momentum, train/eval); the scale multiplies the
    normalised output, so the statistics and the running averages do not depend on it. This is how the supernet
    weights an op's output by softmax(α) without a separate multiplication (SPEC 1.1, search specifics).
    """
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    weight, bias = bn.weight, bn.bias
    if scale is not None:
        # contiguous: torch's CPU BN backward reads a stride-0 (expanded) weight wrongly in channels_last
        weight = scale.expand(x.shape[1]).contiguous() if weight is None else weight * scale
        bias = None if bias is None else bias * scale
    r = _few_channels(x) if use_batch and bias is None else None
    if r is not None:
        y, mean, var = _FewChannelsBatchNorm.apply(x, weight, bn.eps, r)
        if track and bn.running_mean is not None:
            update_running_stats(bn, mean, var, x.numel() // x.shape[1], factor)
        return y
    return F.batch_norm(x, bn.running_mean if track else None, bn.running_var if track else None, weight, bias,
                        use_batch, factor, bn.eps)  # fmt: skip


class ReLUConvBN(nn.Sequential):
    """ReLU, conv (no bias), BN: the cell pre-processing op (SPEC 1.2)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self[0](x))

    def forward_activated(self, r: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The op after its leading ReLU (``r = relu(x)``), output times ``scale`` (see :func:`batch_norm`)."""
        return batch_norm(self[1](r), self[2], scale)


class DilConv(nn.Sequential):
    """ReLU, depthwise dilated conv, pointwise 1x1 conv, BN, applied once (SPEC 1.1 ``dil_conv_*``)."""

    def __init__(
        self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride=stride, padding=padding, dilation=dilation),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self[0](x))

    def forward_activated(self, r: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The op after its leading ReLU (``r = relu(x)``), output times ``scale`` (see :func:`batch_norm`)."""
        return batch_norm(self[2](self[1](r)), self[3], scale)


class SepConv(nn.Sequential):
    """Separable conv applied twice; only the first depthwise conv has stride ``stride`` (SPEC 1.1 ``sep_conv_*``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride=stride, padding=padding),
            nn.Conv2d(C_in, C_in, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel_size, stride=1, padding=padding),
            nn.Conv2d(C_in, C_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self[0](x))

    def forward_activated(self, r: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The op after its leading ReLU (``r = relu(x)``), output times ``scale`` (see :func:`batch_norm`)."""
        y = self[3](self[2](self[1](r)))
        y = torch.relu_(y) if INPLACE_RELU else self[4](y)  # in place: BN's backward does not need its output
        return batch_norm(self[6](self[5](y)), self[7], scale)


class Identity(nn.Module):
    """``skip_connect`` at stride 1. Drop-path skips ops of this class (SPEC 2.1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: zeros, subsampled ``x[:, :, ::s, ::s]`` at stride s (SPEC 1.1)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU; two stride-2 1x1 convs (on x and on x shifted by one pixel), concatenated; BN (SPEC 1.2).

    ``C_out`` must be even. The shifted branch is zero-padded by one pixel at the bottom/right so
    that odd input sizes give ``ceil(H/2)`` on both branches (identical to the reference for even sizes).
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise CellnasError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self.relu(x))

    def forward_activated(self, r: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The op after its leading ReLU (``r = relu(x)``), output times ``scale`` (see :func:`batch_norm`)."""
        shifted = shift_up_left(r)  # = F.pad(r[:, :, 1:, 1:], (0, 1, 0, 1))
        return batch_norm(cat_channels([self.conv_1(r), self.conv_2(shifted)]), self.bn, scale)


def _conv_7x1_1x7(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )


#: name -> factory ``(C, stride, affine) -> nn.Module`` (the 8 DARTS primitives, then the extras).
OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda C, stride, affine: Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine=affine),
    "conv_7x1_1x7": _conv_7x1_1x7,
}


def register_op(name: str, factory: OpFactory, *, overwrite: bool = False) -> None:
    """Add an op to the registry and make ``name`` valid in genotypes.

    The factory must keep ``C`` channels and give ``ceil(H/2)`` at stride 2.

    >>> register_op("conv_1x1", lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine))
    >>> "conv_1x1" in list_ops()
    True
    """
    if not isinstance(name, str) or not name:
        raise CellnasError(f"op names must be non-empty strings, got {name!r}")
    if not callable(factory):
        raise CellnasError(f"the factory for op {name!r} is not callable")
    if name in OPS and not overwrite and OPS[name] is not factory:
        raise CellnasError(f"op {name!r} is already registered; pass overwrite=True to replace it")
    register_op_name(name)
    OPS[name] = factory


def create_op(name: str, C: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Instantiate the registered op ``name`` with ``C`` channels."""
    try:
        factory = OPS[name]
    except KeyError:
        raise unknown_name("op", name, OPS) from None
    if stride not in (1, 2):
        raise CellnasError(f"op stride must be 1 or 2, got {stride}")
    return factory(C, stride, affine)


def list_ops() -> list[str]:
    """Registered op names, in registry order (the DARTS primitives first)."""
    return list(OPS)


# -- seeding (STYLE 6: every stochastic function takes a seed) --------------------------------------------


def make_generator(seed: int | torch.Generator | None, default: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed (``None`` -> ``default``), or ``seed`` itself."""
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(default if seed is None else int(seed))


@contextlib.contextmanager
def seeded_init(seed: int | torch.Generator | None) -> Iterator[None]:
    """Run module construction with torch's CPU RNG seeded from ``seed``, restoring the global state after.

    PyTorch's layers initialise their weights from the global RNG; this makes a network's
    initial weights a function of ``seed`` alone without disturbing anyone else's random stream.
    ``None`` is treated as seed 0.
    """
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(0, 2**62, (1,), generator=seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0 if seed is None else int(seed))
        yield
