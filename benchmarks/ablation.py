"""Effect of each switchable speed-up of the supernet on the search step; prints JSON.

    python benchmarks/ablation.py [--order 1] [--batch 64] [--channels 16] [--layers 8] [--size 32]
                                  [--threads 1] [--repeats 3] [--warmup 1]

Every variant runs on its own copy of one supernet (same weights and alpha), and the variants are timed
interleaved (all, then each with one speed-up switched off, repeated), so that load from other processes hits
them alike. Besides wall-clock seconds the process CPU seconds of each step are reported (less sensitive to
other processes taking the cores). The switches (module flags read at call time):

  fast_depthwise   cellnas.ops.FAST_DEPTHWISE: depthwise gradients through oneDNN's fast kernels
  depthwise_5x5    cellnas.ops.FAST_DEPTHWISE_5X5: 5x5 weight gradients from 3x3 ones
  native_depthwise cellnas.ops.NATIVE_DEPTHWISE: 5x5 and dilated weight gradients by the C kernel (cellnas.native)
  inplace_relu     cellnas.ops.INPLACE_RELU: the ReLU in the middle of sep_conv in place
  avgpool_as_conv  cellnas.supernet.AVGPOOL_AS_CONV: avg_pool_3x3 as a depthwise box sum

The structural speed-ups (channels_last, ReLU and pooling shared per node, the softmax weight folded into BN,
'none' skipped, layout-keeping slices) have no switch; compare with `cellnas bench search-step --baseline`.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import time

import torch

import cellnas.ops as ops
import cellnas.supernet as supernet
from cellnas.bench.search_step import _load_average, make_search_step, synthetic_batches

SWITCHES = {
    "fast_depthwise": (ops, "FAST_DEPTHWISE"),
    "depthwise_5x5": (ops, "FAST_DEPTHWISE_5X5"),
    "native_depthwise": (ops, "NATIVE_DEPTHWISE"),
    "inplace_relu": (ops, "INPLACE_RELU"),
    "avgpool_as_conv": (supernet, "AVGPOOL_AS_CONV"),
}


def _with_switch_off(step, switch: str | None):
    def run():
        if switch is None:
            return step()
        module, name = SWITCHES[switch]
        old = getattr(module, name)
        setattr(module, name, False)
        try:
            return step()
        finally:
            setattr(module, name, old)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", type=int, choices=(1, 2), default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", default=",".join(SWITCHES), help="comma-separated switches to test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    model = supernet.SearchNetwork(C=args.channels, layers=args.layers, seed=0)
    batch = synthetic_batches(args.batch, args.size)
    variants = {"all": None, **{f"no_{s}": s for s in args.only.split(",") if s}}
    steps = {v: _with_switch_off(make_search_step(copy.deepcopy(model), batch, order=args.order), s)
             for v, s in variants.items()}  # fmt: skip
    load_before = _load_average()
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    wall: dict[str, list[float]] = {v: [] for v in steps}
    cpu: dict[str, list[float]] = {v: [] for v in steps}
    for r in range(args.repeats):
        for v, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[v].append(time.perf_counter() - t0)
            cpu[v].append(time.process_time() - c0)
            logging.info("%s repeat %d: %.2f s (cpu %.2f s)", v, r + 1, wall[v][-1], cpu[v][-1])
    base_cpu = statistics.median(cpu["all"])
    result = {
        "order": args.order, "batch": args.batch, "channels": args.channels, "layers": args.layers,
        "size": args.size, "threads": torch.get_num_threads(), "repeats": args.repeats, "warmup": args.warmup,
        "load_average_1min": [load_before, _load_average()], "torch_version": torch.__version__,
        "variants": {
            v: {"step_s": statistics.median(wall[v]), "cpu_s": statistics.median(cpu[v]),
                "cpu_vs_all": statistics.median(cpu[v]) / base_cpu, "step_s_all": wall[v], "cpu_s_all": cpu[v]}
            for v in steps
        },
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
