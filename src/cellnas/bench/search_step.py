"""Seconds per DARTS search step of the supernet, optionally against the textbook baseline (SPEC 1.5, 1.6).

One step is what :meth:`cellnas.search.loop._Search.step` does in a bilevel search: an architecture step
(:class:`~cellnas.search.architect.Architect`, first or second order, Adam on α) on a search batch, then a
weight step (forward, backward, gradient clipping, SGD) on a training batch, with the optimisers set up as the
search loop sets them up (SGD lr 0.025, momentum 0.9, weight decay 3e-4; Adam 3e-4, betas (0.5, 0.999), weight
decay 1e-3: :class:`~cellnas.search.config.SearchConfig` defaults). The data are fixed synthetic batches of
random images (the step does no data loading).

With ``baseline=True`` the same step is also timed on :mod:`cellnas.bench.baseline` (quark0's supernet and
architect) built with the **same** weights and α; the two are timed interleaved (candidate, baseline, candidate,
...) after warm-up, so that load from other processes hits both alike, and the medians are compared. With
``schedule="processes"`` each runs in a fresh process of its own instead (candidate, baseline, candidate), because
in one process the baseline's 10-13 GB heap slows the candidate that runs after it (see :func:`bench_search_step`).

What is reported (see :func:`bench_search_step`):

* ``step_s``: median wall-clock seconds per step (CUDA: after a device synchronisation);
* ``images_per_s``: training images per second, ``batch / step_s`` (each step also reads a search batch of the
  same size);
* ``flops_per_step``: floating-point operations of one step as counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products, forward and backward; element-
  wise ops, BN and pooling are not counted), with one correction: torch's formula for the weight gradient of a
  grouped convolution ignores the groups (a depthwise weight gradient counts C times too many FLOPs), so it is
  counted like the forward convolution (:func:`_conv_backward_flop`); ``flops_per_s = flops_per_step / step_s``;
* ``peak_mem_bytes``: CUDA: ``torch.cuda.max_memory_allocated`` during one step minus the memory allocated before
  it. CPU: how far the resident set grows during one step: its peak minus the RSS before it (``/proc/self/statm``,
  read after handing freed heap memory back to the OS), i.e. activations, gradients and
  temporaries (and allocator slack) on top of what was already live (weights, optimiser state, data). The peak
  is the RSS sampled every 2 ms during the step, or ``ru_maxrss`` when the step raised the process's peak.
  ``tracemalloc`` cannot see torch's allocator, and ``torch.profiler``'s memory events cost a profiled step
  ~40 % more resident memory and several times the time. ``maxrss_bytes`` is the process's peak resident set.

FLOPs are counted on a separate step of a fresh copy at ``FLOP_BATCH`` images and scaled to the batch (exact:
every counted op is linear in the batch; FlopCounterMode's dispatch hooks would double a full step's memory).
The memory step is the first warm-up step (an extra, untimed step when ``warmup=0``).
"""

from __future__ import annotations

import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "bench_search_step", "make_search_step", "make_baseline_step", "synthetic_batches", "measure", "count_flops",
    "peak_memory", "flops_per_step", "release_memory", "make_pass_fns", "PASSES",
]  # fmt: skip

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def synthetic_batches(batch_size: int, size: int, in_channels: int = 3, num_classes: int = 10, seed: int = 0,
                      device: str | torch.device = "cpu") -> Batch:  # fmt: skip
    """``(x_train, y_train, x_search, y_search)``: standard-normal images and uniform labels, from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, in_channels, size, size)
    x_t, x_v = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    y_t = torch.randint(0, num_classes, (batch_size,), generator=gen)
    y_v = torch.randint(0, num_classes, (batch_size,), generator=gen)
    return tuple(t.to(device) for t in (x_t, y_t, x_v, y_v))  # type: ignore[return-value]


def _optimisers(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The search loop's SGD on the weights and Adam on α (SearchConfig defaults, SPEC 1.5)."""
    from cellnas.search.config import SearchConfig

    cfg = SearchConfig()
    w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr, betas=tuple(cfg.arch_betas),
                             weight_decay=cfg.arch_weight_decay)  # fmt: skip
    return w_opt, a_opt


def _weight_step(model, w_optimizer, x_t, y_t, grad_clip: float,
                 amp: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The weight half of ``_Search.step``: forward (under ``amp`` autocast), backward, clip the weights' global
    norm, SGD."""
    from cellnas.schedule import autocast

    w_optimizer.zero_grad(set_to_none=True)
    with autocast(x_t.device, amp):
        logits = model(x_t)
        loss = F.cross_entropy(logits, y_t)
    if not torch.isfinite(loss).all():
        raise FloatingPointError("non-finite training loss")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip)
    w_optimizer.step()
    return loss.detach(), logits.detach()


def make_search_step(model, batch: Batch, *, order: int = 1, hvp: str = "fd", lr: float | None = None,
                     grad_clip: float | None = None, amp: torch.dtype | None = None) -> Callable[[], dict]:  # fmt: skip
    """One bilevel step of :meth:`cellnas.search.loop._Search.step` on ``model`` (a ``SearchNetwork``), as a closure.

    Builds the search loop's SGD/Adam and :class:`~cellnas.search.architect.Architect`; every call runs the
    architecture step then the weight step on the fixed ``batch`` and returns the two losses. ``amp``: the autocast
    dtype of the forward passes (``cellnas search --amp``), ``None`` for fp32.
    """
    from cellnas.search.architect import Architect
    from cellnas.search.config import SearchConfig

    cfg = SearchConfig()
    lr = cfg.lr if lr is None else lr
    grad_clip = cfg.grad_clip if grad_clip is None else grad_clip
    w_opt, a_opt = _optimisers(model)
    architect = Architect(model, w_opt, a_opt, order=order, hvp=hvp, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, eps_scale=cfg.unrolled_eps, amp=amp)  # fmt: skip
    x_t, y_t, x_v, y_v = batch

    def step() -> dict:
        model.train()
        search_loss, _ = architect.step(x_t, y_t, x_v, y_v, eta=lr)
        if not torch.isfinite(search_loss).all():
            raise FloatingPointError("non-finite search loss")
        loss, _ = _weight_step(model, w_opt, x_t, y_t, grad_clip, amp)
        for a in model.arch_parameters():
            if not torch.isfinite(a.detach()).all():
                raise FloatingPointError("non-finite alpha")
        return {"search_loss": float(search_loss), "train_loss": float(loss)}

    step.optimizers = (w_opt, a_opt)  # type: ignore[attr-defined]
    return step


def make_baseline_step(model, batch: Batch, *, order: int = 1, lr: float | None = None,
                       grad_clip: float | None = None) -> Callable[[], dict]:  # fmt: skip
    """The same step on a :class:`~cellnas.bench.baseline.BaselineNetwork` with quark0's architect."""
    from cellnas.bench.baseline import BaselineArchitect
    from cellnas.search.config import SearchConfig

    cfg = SearchConfig()
    lr = cfg.lr if lr is None else lr
    grad_clip = cfg.grad_clip if grad_clip is None else grad_clip
    w_opt, a_opt = _optimisers(model)
    architect = BaselineArchitect(model, a_opt, order=order, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                                  r=cfg.unrolled_eps)  # fmt: skip
    x_t, y_t, x_v, y_v = batch

    def step() -> dict:
        model.train()
        search_loss = architect.step(x_t, y_t, x_v, y_v, lr, w_opt)
        if not torch.isfinite(search_loss).all():
            raise FloatingPointError("non-finite search loss")
        loss, _ = _weight_step(model, w_opt, x_t, y_t, grad_clip)
        return {"search_loss": float(search_loss), "train_loss": float(loss)}

    step.optimizers = (w_opt, a_opt)  # type: ignore[attr-defined]
    return step


# -- measuring -------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int | None:
    """Current resident set size of this process (Linux ``/proc/self/statm``), or ``None``."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _cpu_peak_bytes(fn: Callable[[], Any], interval: float = 0.002) -> int | None:
    """Growth of the resident set during ``fn()``: its peak minus the RSS before it (see the module doc).

    The peak is the larger of the RSS sampled every ``interval`` seconds by a thread and ``ru_maxrss`` when the
    step raised it; freed heap memory is handed back first (:func:`release_memory`) so that the starting RSS is
    what is really live. Without ``/proc`` only a step that raises ``ru_maxrss`` is measurable (else ``None``).
    """
    import threading

    release_memory()
    before, peak_before = _rss_bytes(), _maxrss_bytes()
    sampled = [before or 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            rss = _rss_bytes()
            if rss is not None and rss > sampled[0]:
                sampled[0] = rss

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        stop.set()
        sampler.join()
    peak_after = _maxrss_bytes()
    peak = max(sampled[0], peak_after if peak_after > peak_before else 0)
    if before is None:
        return peak_after - peak_before if peak_after > peak_before else None
    return max(peak - before, 0)


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape, **kwargs) -> int:  # fmt: skip
    """torch's ``conv_backward_flop`` with the weight gradient counted like the forward convolution.

    torch 2.13 counts the weight gradient as a convolution over all input channels, ignoring ``groups``: a
    depthwise weight gradient is counted C times (16-64 here) what it computes. Its multiply-adds are those of
    the forward convolution, which the forward formula counts right for any ``groups``.
    """
    from torch.utils.flop_counter import conv_backward_flop, conv_flop_count

    if transposed:
        raw = getattr(conv_backward_flop, "__wrapped__", conv_backward_flop)
        return raw(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                   _output_padding, _groups, output_mask, out_shape, **kwargs)  # fmt: skip
    flops = 0
    if output_mask[0]:  # as torch counts it: a transposed convolution of grad_out with the weight
        flops += conv_flop_count(grad_out_shape, w_shape, x_shape, transposed=True)
    if output_mask[1]:
        flops += conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=False)
    return flops


#: FLOPs are counted on a step with this many images and scaled to the batch: every counted op (convolutions,
#: matrix products) is linear in the batch size, and FlopCounterMode's dispatch hooks double a step's memory.
FLOP_BATCH = 2


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` counted by ``FlopCounterMode`` (with the groups-aware weight-gradient formula)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop})
    with counter:
        fn()
    return int(counter.get_total_flops())


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak extra memory of one call of ``fn`` (see the module doc)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    return _cpu_peak_bytes(fn)


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the OS (glibc), so that one model's peak does not stay
    resident while the next one runs."""
    import gc

    from cellnas.cpu import trim_heap

    gc.collect()
    trim_heap()


def measure(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int, warmup: int,
            memory: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Time every callable ``repeats`` times, interleaved (a, b, a, b, ...), after ``warmup`` untimed rounds.

    The warm-up rounds are interleaved like the timed ones, so the first timed call of each finds the heap as the
    others will (a warm-up of one name, then a memory reset for the next, would leave the first timed call to
    fault its pages in again). Returns per name: ``times`` (seconds per call) and ``step_s`` (their median); for the
    names in ``memory`` also ``peak_mem_bytes`` of one call (in the first warm-up round, or an extra round when
    ``warmup == 0``).
    """
    out: dict[str, dict[str, Any]] = {name: {"times": [], "peak_mem_bytes": None} for name in fns}
    for w in range(max(warmup, 1 if memory else 0)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            if w == 0 and name in memory:
                out[name]["peak_mem_bytes"] = peak_memory(fn, device)
            else:
                fn()
                _sync(device)
            log.info("%s: warm-up step %d: %.3f s", name, w + 1, time.perf_counter() - t0)
    for r in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            dt = time.perf_counter() - t0
            out[name]["times"].append(dt)
            log.info("%s: step %d/%d: %.3f s", name, r + 1, repeats, dt)
    for rec in out.values():
        rec["step_s"] = statistics.median(rec["times"]) if rec["times"] else float("nan")
    return out


def flops_per_step(make_step: Callable[[int], Callable[[], Any]], batch_size: int) -> int:
    """FLOPs of one step at ``batch_size``: counted on a fresh ``make_step(FLOP_BATCH)``, scaled linearly."""
    small = min(batch_size, FLOP_BATCH)
    flops = count_flops(make_step(small))
    release_memory()
    return flops * batch_size // small


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def run_with_threads(threads: int | None, fn: Callable[[], dict]) -> dict:
    """``fn()`` with ``torch.set_num_threads(threads)`` (restored after); records the thread count used."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = fn()
        result["threads"] = torch.get_num_threads()
        return result
    finally:
        torch.set_num_threads(previous)


def describe(device: torch.device) -> dict[str, Any]:
    """Environment fields shared by the step benchmarks."""
    import platform

    info: dict[str, Any] = {"device": str(device), "torch_version": torch.__version__,
                            "python": platform.python_version()}  # fmt: skip
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        from cellnas import native

        info["device_name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
        # whether the C kernel computed the depthwise weight gradients (a machine without a C compiler is slower)
        info["native_kernels"] = native.available()
        info["native_kernels_reason"] = native.unavailable_reason()
        info["native_threads"] = native.threading_model()  # "openmp" (PyTorch's own threads) or "pthreads"
    return info


# -- the benchmark -------------------------------------------------------------------------------------------


SCHEDULES = ("interleaved", "processes")


def _amp(settings: dict[str, Any]) -> torch.dtype | None:
    """The candidate's autocast dtype (``settings["amp"]``, resolved for the device); the baseline is always fp32."""
    from cellnas.schedule import amp_dtype

    return amp_dtype(settings.get("amp", "off"), torch.device(settings["device"]))


def _step_maker(which: str, *, order: int, hvp: str, **settings: Any) -> Callable[[int], Callable[[], Any]]:
    """``make(n)``: a fresh seeded supernet (wrapped as the baseline for ``which == "baseline"``) and its step on
    ``n`` synthetic images (:func:`_model_and_batch`). The same seed gives both implementations the same weights
    and α."""

    def make(n: int) -> Callable[[], Any]:
        net, batch = _model_and_batch(which, n, **settings)
        if which == "baseline":
            return make_baseline_step(net, batch, order=order)
        return make_search_step(net, batch, order=order, hvp=hvp, amp=_amp(settings))

    return make


def _model_and_batch(which: str, n: int, *, channels: int, layers: int, size: int, device: str, num_classes: int,
                     in_channels: int, seed: int, partial_channels: int = 1, edge_norm: bool = False,
                     **_: Any) -> tuple[torch.nn.Module, Batch]:  # fmt: skip
    """A fresh seeded supernet (wrapped as the baseline for ``which == "baseline"``) and ``n`` synthetic images.

    ``partial_channels`` / ``edge_norm`` (PC-DARTS) apply to the candidate only; the baseline stays DARTS's.
    """
    from cellnas.bench.baseline import baseline_from
    from cellnas.supernet import SearchNetwork

    dev = torch.device(device)
    pc = {} if which == "baseline" else dict(partial_channels=partial_channels, edge_norm=edge_norm)
    net = SearchNetwork(C=channels, num_classes=num_classes, layers=layers, in_channels=in_channels,
                        seed=seed, **pc).to(dev)  # fmt: skip
    batch = synthetic_batches(n, size, in_channels, num_classes, seed, dev)
    return (baseline_from(net) if which == "baseline" else net), batch


#: The passes a search step is made of (``passes=True``), each on the training batch: the forward pass with its
#: autograd graph, and forward + backward for the gradient of the loss w.r.t. α only (first-order architecture step,
#: the two finite-difference passes of second order), the weights only (weight step, the virtual step w') or both
#: (second order's validation pass at w').
PASSES = ("forward", "alpha", "weights", "both")


def make_pass_fns(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  amp: torch.dtype | None = None) -> dict[str, Callable[[], Any]]:  # fmt: skip
    """One callable per entry of :data:`PASSES` on ``model`` (anything with ``arch_parameters()`` and
    ``weight_parameters()``) in training mode, forward passes under ``amp`` autocast when given."""
    from cellnas.schedule import autocast

    model.train()
    alphas, weights = list(model.arch_parameters()), list(model.weight_parameters())

    def loss() -> torch.Tensor:
        with autocast(x.device, amp):
            return F.cross_entropy(model(x), y)

    def grads(params: list[torch.Tensor]) -> Callable[[], Any]:
        return lambda: torch.autograd.grad(loss(), params, allow_unused=True)

    return {"forward": loss, "alpha": grads(alphas), "weights": grads(weights), "both": grads(alphas + weights)}


def _pass_fns(which: str, settings: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """:func:`make_pass_fns` on a fresh seeded supernet (or its baseline) and the step's training batch."""
    model, (x, y, _, _) = _model_and_batch(which, settings["batch_size"], **settings)
    return make_pass_fns(model, x, y, None if which == "baseline" else _amp(settings))


def _measure(names: tuple[str, ...], settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Times, peak memory and FLOPs of the named implementations, interleaved in this process; with
    ``settings["passes"]`` also the median seconds of each of :data:`PASSES` (``passes_s``), interleaved likewise
    after the steps."""
    makers = {name: _step_maker(name, **settings) for name in names}
    flops = {name: flops_per_step(make, settings["batch_size"]) for name, make in makers.items()}
    fns = {name: make(settings["batch_size"]) for name, make in makers.items()}
    dev = torch.device(settings["device"])
    res = measure(fns, dev, settings["repeats"], settings["warmup"], memory=names)
    for name, rec in res.items():
        rec["flops_per_step"] = flops[name]
    if settings.get("passes"):
        del fns
        release_memory()
        pass_fns = {f"{name} {p} pass": fn for name in names for p, fn in _pass_fns(name, settings).items()}
        timed = measure(pass_fns, dev, settings["repeats"], max(settings["warmup"], 1))
        for name in names:
            res[name]["passes_times"] = {p: timed[f"{name} {p} pass"]["times"] for p in PASSES}
            res[name]["passes_s"] = {p: timed[f"{name} {p} pass"]["step_s"] for p in PASSES}
    return res


def _isolated_job(job: dict[str, Any], conn: Any) -> None:
    """Entry point of a fresh process: the same process settings as the command line, then one :func:`_measure`;
    sends ``("ok", record)`` or ``("error", exception)`` back through ``conn``."""
    from cellnas.cpu import die_with_parent

    die_with_parent()
    try:
        logging.basicConfig(level=job.pop("log_level"), format="%(message)s")
        if job.pop("keep_freed_memory"):
            from cellnas.cpu import keep_freed_memory

            keep_freed_memory()
        threads = job.pop("threads")
        which = job.pop("which")
        rec = run_with_threads(threads, lambda: _measure((which,), job)[which])
        rec["maxrss_bytes"] = _maxrss_bytes()
        conn.send(("ok", rec))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        conn.send(("error", exc))
    finally:
        conn.close()


def _in_fresh_process(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`_isolated_job` in a spawned process; the process is stopped if this one is interrupted."""
    import multiprocessing

    from cellnas.errors import CellnasError

    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_job, args=(job, sender), name=f"cellnas-bench-{job['which']}", daemon=True)
    proc.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        raise CellnasError(f"the {job['which']}'s benchmark process died (out of memory? try a smaller --batch "
                           "or --schedule interleaved)") from None  # fmt: skip
    finally:
        receiver.close()
        if proc.is_alive():
            proc.terminate()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status == "error":
        raise payload
    return payload


def bench_search_step(
    order: int = 1,
    batch_size: int = 64,
    channels: int = 16,
    layers: int = 8,
    size: int = 32,
    device: str | torch.device = "cpu",
    *,
    threads: int | None = None,
    repeats: int = 5,
    warmup: int = 2,
    baseline: bool = False,
    hvp: str = "fd",
    num_classes: int = 10,
    in_channels: int = 3,
    seed: int = 0,
    schedule: str = "interleaved",
    passes: bool = False,
    partial_channels: int = 1,
    edge_norm: bool = False,
    amp: str = "off",
) -> dict[str, Any]:
    """Median seconds per search step of :class:`~cellnas.supernet.SearchNetwork` (and of the baseline).

    ``amp`` (``cellnas search --amp``: off, bf16, auto) puts the candidate's forward passes under bf16 autocast; the
    baseline stays the textbook fp32 one.

    ``partial_channels`` / ``edge_norm`` time PC-DARTS's supernet (Xu et al. 2020) as the candidate; the baseline
    stays DARTS's, so the ratio is then PC-DARTS against textbook DARTS, another algorithm.

    Returns a dict with ``step_s``, ``step_s_all``, ``images_per_s``, ``peak_mem_bytes``, ``flops_per_step``,
    ``flops_per_s``, and with ``baseline``: ``baseline_step_s``, ``baseline_step_s_all``,
    ``baseline_images_per_s``, ``baseline_peak_mem_bytes``, ``baseline_flops_per_step``, ``speedup`` (ratio of the
    medians) and ``speedup_paired`` (median of the per-repeat ratios; ``None`` for ``schedule="processes"``);
    plus the settings, ``schedule``, ``threads``, ``load_average_1min`` (before and after), ``maxrss_bytes`` and
    the device. With ``passes``: ``passes_s`` (and ``baseline_passes_s``, ``passes_speedup``), the median seconds
    of each of :data:`PASSES`, timed after the steps in the same process(es). ``maxrss_bytes`` is the measuring
    process's peak resident set: with ``"interleaved"`` this process (both implementations); with ``"processes"``
    the larger of the two candidate processes, and ``baseline_maxrss_bytes`` that of the baseline's process (with
    ``passes``, read after the passes too).

    ``schedule`` (with ``baseline``): ``"interleaved"`` times both in this process, alternating step by step;
    ``"processes"`` times each in a fresh process of its own, one after the other (candidate, baseline,
    candidate; the candidate's figures pool both of its runs), so that neither runs on the other's heap. Measured
    on the 2-core machine of benchmarks/RESULTS.md: after one baseline step in the same process, our first-order
    step settled at 6.9-7.5 s against 4.8-6.1 s before it, and handing freed memory back to the OS did not undo it.
    The processes are spawned: a script that calls this with ``"processes"`` needs the usual
    ``if __name__ == "__main__":`` guard. Interleaved, use ``warmup >= 2``: the baseline's memory measurement in
    the first warm-up round trims the heap, and a second round lets the candidate grow it back before timing.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    if min(batch_size, channels, layers, size) < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch, channels, layers, size and repeats must be >= 1, warmup >= 0")
    from cellnas.supernet import check_partial_channels

    check_partial_channels(channels, partial_channels)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "processes" and not baseline:
        raise ValueError("schedule='processes' needs baseline=True (it says how the two are timed)")
    if baseline and layers < 3:  # cells layers//3 and 2*layers//3 are reductions: no normal cell below 3
        raise ValueError(f"baseline=True needs layers >= 3 (got {layers}): quark0's code differentiates the normal "
                         "cells' alphas, which a network of reduction cells only does not use")  # fmt: skip
    dev = torch.device(device)
    settings = dict(order=order, batch_size=batch_size, channels=channels, layers=layers, size=size, device=str(dev),
                    repeats=repeats, warmup=warmup, hvp=hvp, num_classes=num_classes, in_channels=in_channels,
                    seed=seed, passes=passes, partial_channels=partial_channels, edge_norm=edge_norm,
                    amp=amp)  # fmt: skip

    def interleaved() -> dict[str, dict]:
        return _measure(("candidate", "baseline") if baseline else ("candidate",), settings)

    def processes() -> dict[str, dict]:
        from cellnas.cpu import freed_memory_kept

        job = dict(settings, threads=torch.get_num_threads(), keep_freed_memory=freed_memory_kept(),
                   log_level=log.getEffectiveLevel())  # fmt: skip
        first = _in_fresh_process(dict(job, which="candidate"))
        base = _in_fresh_process(dict(job, which="baseline"))
        second = _in_fresh_process(dict(job, which="candidate"))
        times = first["times"] + second["times"]
        peaks = [p for p in (first["peak_mem_bytes"], second["peak_mem_bytes"]) if p is not None]
        cand = dict(first, times=times, step_s=statistics.median(times), peak_mem_bytes=max(peaks, default=None),
                    maxrss_bytes=max(first["maxrss_bytes"], second["maxrss_bytes"]))  # fmt: skip
        if passes:
            pooled = {p: first["passes_times"][p] + second["passes_times"][p] for p in PASSES}
            cand.update(passes_times=pooled, passes_s={p: statistics.median(t) for p, t in pooled.items()})
        return {"candidate": cand, "baseline": base}

    def run() -> dict:
        load_before = _load_average()
        res = processes() if schedule == "processes" else interleaved()
        cand = res["candidate"]
        out: dict[str, Any] = {
            "benchmark": "search-step",
            "order": order,
            "hvp": hvp,
            "batch": batch_size,
            "channels": channels,
            "layers": layers,
            "size": size,
            "partial_channels": partial_channels,
            "edge_norm": edge_norm,
            "amp": "bf16" if _amp(settings) is not None else "off",
            "repeats": repeats,
            "warmup": warmup,
            "schedule": schedule if baseline else None,
            "step_s": cand["step_s"],
            "step_s_all": cand["times"],
            "images_per_s": batch_size / cand["step_s"],
            "peak_mem_bytes": cand["peak_mem_bytes"],
            "flops_per_step": cand["flops_per_step"],
            "flops_per_s": cand["flops_per_step"] / cand["step_s"],
        }
        if passes:
            out["passes_s"] = cand["passes_s"]
        if baseline:
            base = res["baseline"]
            paired = (statistics.median(b / c for b, c in zip(base["times"], cand["times"]))
                      if schedule == "interleaved" else None)  # fmt: skip
            out.update(
                baseline_step_s=base["step_s"],
                baseline_step_s_all=base["times"],
                baseline_images_per_s=batch_size / base["step_s"],
                baseline_peak_mem_bytes=base["peak_mem_bytes"],
                baseline_flops_per_step=base["flops_per_step"],
                baseline_flops_per_s=base["flops_per_step"] / base["step_s"],
                speedup=base["step_s"] / cand["step_s"],
                speedup_paired=paired,
            )
            if passes:
                out["baseline_passes_s"] = base["passes_s"]
                out["passes_speedup"] = {p: base["passes_s"][p] / cand["passes_s"][p] for p in PASSES}
        out.update(describe(dev))
        out["load_average_1min"] = [load_before, _load_average()]
        out["maxrss_bytes"] = cand.get("maxrss_bytes", _maxrss_bytes())
        if "maxrss_bytes" in res.get("baseline", {}):
            out["baseline_maxrss_bytes"] = res["baseline"]["maxrss_bytes"]
        out["peak_mem_method"] = "cuda max_memory_allocated" if dev.type == "cuda" else "resident set growth"
        return out

    return run_with_threads(threads, run)
