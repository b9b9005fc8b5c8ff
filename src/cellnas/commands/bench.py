"""``cellnas bench ...``: throughput benchmarks (search step, training step, data loading).

The logic lives in :mod:`cellnas.bench`; this module only parses arguments and prints.
"""

from __future__ import annotations

import json

from cellnas.errors import CellnasError

_DESCRIPTION = """Throughput benchmarks. Timings on a shared machine are noisy: the thread count (--threads) and the
1-minute load average before and after are part of every result; compare figures taken side by side only.

  search-step  seconds per DARTS search step (architecture step + weight step, as `cellnas search` runs it)
               of the supernet on synthetic data; --baseline times a textbook (quark0/darts) supernet and
               architect with the same weights, interleaved (or, --schedule processes, each in a fresh
               process), and reports the speed-up
  train-step   seconds per SGD step of a genotype's evaluation network (NetworkCIFAR)
  data         images/s of the device-resident loader vs torch.utils.data.DataLoader

examples:
  cellnas bench search-step --order 1 --baseline --threads 2 --warmup 2 --repeats 3
  cellnas bench search-step --order 2 --baseline --schedule processes --threads 2
  cellnas bench search-step --order 2 --json
  cellnas bench search-step --order 2 --baseline --passes --schedule processes --threads 2
  cellnas bench train-step DARTS_V2 --batch 96
  cellnas bench data --batch 256"""


def register(sub, formatter) -> None:
    p = sub.add_parser("bench", help="throughput benchmarks (search step, training step, data loading)",
                       description=_DESCRIPTION, formatter_class=formatter)  # fmt: skip
    benches = p.add_subparsers(dest="bench", metavar="BENCHMARK")

    s = benches.add_parser(
        "search-step",
        help="seconds per DARTS search step of the supernet (optionally vs the textbook baseline)",
        description=(
            "Median seconds per search step after warm-up: the architecture step (Architect, first or second\n"
            "order, Adam on alpha) on a search batch, then the weight step (forward, backward, clipping, SGD) on\n"
            "a training batch, as `cellnas search` runs them, on fixed random images.\n"
            "Also: images/s (training images), FLOPs per step (torch FlopCounterMode: convolutions and matrix\n"
            "products, counted at 2 images and scaled) and FLOP/s, and peak memory of one step (CUDA:\n"
            "max_memory_allocated; CPU: growth of the resident set during the step, sampled every 2 ms).\n"
            "--baseline also times quark0/darts' supernet and architect (every op computed, NCHW, full\n"
            "backward for the first-order alpha gradient, a freshly built unrolled model for second order) with\n"
            "the same weights, interleaved with the candidate (--schedule processes: each in a fresh\n"
            "process of its own), and reports the speed-up."
        ),
        formatter_class=formatter,
    )
    s.add_argument("--order", type=int, choices=(1, 2), default=1, help="first or second order architecture step")
    s.add_argument("--hvp", choices=("fd", "exact"), default="fd", help="second order: Hessian-vector product")
    _common(s, batch=64, channels=16, layers=8)
    s.add_argument("--baseline", action="store_true", help="also time the textbook baseline and report the speed-up")
    s.add_argument("--partial-channels", type=int, default=1, metavar="K",
                   help="time PC-DARTS's supernet (each edge on C/K channels; 1: off, PC-DARTS uses 4); the "
                        "baseline stays DARTS's, so the ratio compares two algorithms")  # fmt: skip
    s.add_argument("--edge-norm", action="store_true", help="with PC-DARTS's edge normalisation (beta per edge)")
    s.add_argument("--amp", choices=("off", "bf16", "auto"), default="off",
                   help="the candidate's forward passes under bf16 autocast, as `cellnas search --amp` (auto: on "
                        "CUDA only); the baseline stays fp32")  # fmt: skip
    s.add_argument("--schedule", choices=("interleaved", "processes"), default="interleaved",
                   help="with --baseline: alternate the two step by step in this process, or run each in a fresh "
                        "process of its own (candidate, baseline, candidate), so that neither runs on the other's "
                        "heap (measured: our first-order step took 6.9-7.5 s after a baseline step in the same "
                        "process, 4.8-6.1 s before it)")  # fmt: skip
    s.add_argument("--passes", action="store_true",
                   help="also time, after the steps, the passes a step is made of, on the training batch: forward "
                        "(with its graph), and forward+backward for the gradient w.r.t. alpha only, the weights only, "
                        "or both (a first-order step is one alpha pass and one weights pass; a second-order step "
                        "two weights, one both and two alpha passes); with --baseline, per-pass speed-ups")  # fmt: skip
    s.set_defaults(func=run_search_step)

    t = benches.add_parser(
        "train-step",
        help="seconds per SGD step of a genotype's evaluation network",
        description=(
            "Median seconds per training step (forward, backward, clipping, SGD) of the CIFAR evaluation network\n"
            "of GENOTYPE on random images; defaults are DARTS' CIFAR-10 setting (C=36, 20 cells, batch 96,\n"
            "auxiliary head with weight 0.4, drop-path 0.2). Reports images/s, FLOPs, FLOP/s and peak memory."
        ),
        formatter_class=formatter,
    )
    t.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or Genotype(...) text")
    _common(t, batch=96, channels=36, layers=20)
    t.add_argument("--no-auxiliary", action="store_true", help="without the auxiliary head")
    t.add_argument("--drop-path", type=float, default=0.2, help="drop-path probability")
    t.add_argument("--channels-last", action="store_true", help="network and input in channels_last memory format")
    t.add_argument("--amp", choices=["off", "bf16", "auto"], default="off",
                   help="the forward pass under bf16 autocast, as `cellnas train --amp` (auto: on CUDA only)")
    t.add_argument("--compile", action="store_true",
                   help="torch.compile the network, as `cellnas train --compile` (compiled during the warm-up, so "
                        "give --warmup 1 or more)")  # fmt: skip
    t.set_defaults(func=run_train_step)

    d = benches.add_parser(
        "data",
        help="images/s of the device-resident loader vs torch's DataLoader",
        description=(
            "Images per second of cellnas' device-resident loader against torch.utils.data.DataLoader with\n"
            "per-sample transforms (crop, flip, normalise, cutout), workers 0 and 2 (cellnas.bench.data)."
        ),
        formatter_class=formatter,
    )
    d.add_argument("--dataset", default="synthetic-cifar", help="synthetic-cifar or a registered dataset name")
    d.add_argument("--batch", type=int, default=256, help="batch size")
    d.add_argument("--n-batches", type=int, default=50, help="batches timed per loader")
    d.add_argument("--cutout", type=int, default=16, help="cutout length (0: none)")
    d.add_argument("--workers", default="0,2", help="DataLoader num_workers values to try, comma-separated")
    d.add_argument("--data-dir", default=None, help="where the dataset lives")
    d.add_argument("--download", action="store_true", help="fetch CIFAR into --data-dir when it is missing")
    d.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    d.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the measurement")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=run_data)

    p.set_defaults(func=lambda args: p.print_help())


def _common(p, *, batch: int, channels: int, layers: int) -> None:
    p.add_argument("--batch", type=int, default=batch, help="batch size")
    p.add_argument("--channels", "-C", type=int, default=channels, help="initial channels C")
    p.add_argument("--layers", "-L", type=int, default=layers, help="number of cells")
    p.add_argument("--size", type=int, default=32, help="image height and width")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first one counts FLOPs/memory)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, alpha and data")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _device(name: str) -> str:
    from cellnas.schedule import resolve_device

    return str(resolve_device(name))


def _check(args) -> None:
    for name in ("batch", "channels", "layers", "size", "repeats"):
        if getattr(args, name) < 1:
            raise CellnasError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise CellnasError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise CellnasError(f"--threads must be >= 1, got {args.threads}")


def _load(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def _print_common(r: dict) -> None:
    load = ", ".join("n/a" if v is None else f"{v:.2f}" for v in r["load_average_1min"])
    print(f"device       {r['device']} ({r['device_name']}), {r['threads']} threads, torch {r['torch_version']}")
    print(f"load avg     {load} (1 min, before, after)")
    if "native_kernels" in r:
        why = r.get("native_kernels_reason")
        used = f"used (cellnas.native, {r.get('native_threads')} threads)"
        print("C kernels    " + (used if r["native_kernels"] else f"not used: {why}"))


def run_search_step(args) -> int:
    from cellnas.bench.search_step import bench_search_step

    _check(args)
    if args.hvp != "fd" and args.order != 2:  # the wording of `cellnas search` (search.config)
        raise CellnasError(f"--hvp {args.hvp} needs --order 2 (first order computes no Hessian-vector product)")
    if args.schedule == "processes" and not args.baseline:
        raise CellnasError("--schedule processes needs --baseline (it says how the two are timed)")
    if args.baseline and args.layers < 3:
        raise CellnasError(f"--baseline needs --layers 3 or more (got {args.layers}): with fewer cells every cell "
                           "is a reduction cell, and the textbook code differentiates the unused normal alphas")
    r = bench_search_step(
        args.order, args.batch, args.channels, args.layers, args.size, _device(args.device), threads=args.threads,
        repeats=args.repeats, warmup=args.warmup, baseline=args.baseline, hvp=args.hvp, seed=args.seed,
        schedule=args.schedule, passes=args.passes, partial_channels=args.partial_channels, edge_norm=args.edge_norm,
        amp=args.amp,
    )  # fmt: skip
    if args.json:
        print(json.dumps(r))
        return 0
    print_search_step(r)
    return 0


def print_search_step(r: dict) -> None:
    """The text form of a :func:`cellnas.bench.search_step.bench_search_step` result."""
    print(f"search step  order {r['order']}, batch {r['batch']}, C={r['channels']}, {r['layers']} cells, "
          f"{r['size']}x{r['size']}; {r['repeats']} timed after {r['warmup']} warm-up"
          + (" (candidate: twice, in two processes)" if r.get("schedule") == "processes" else ""))  # fmt: skip
    if r.get("amp", "off") != "off":
        print("candidate    forward passes under bf16 autocast (the finite-difference passes of order 2 in fp32)")
    if r.get("partial_channels", 1) > 1 or r.get("edge_norm"):
        print(f"candidate    PC-DARTS supernet: partial channels K={r['partial_channels']}"
              f"{', edge normalisation' if r['edge_norm'] else ''} (the baseline is DARTS's)")  # fmt: skip
    _print_common(r)
    print(f"supernet     {r['step_s']:.3f} s/step (median), {r['images_per_s']:.1f} images/s, "
          f"{r['flops_per_step'] / 1e9:.1f} GFLOP/step, {r['flops_per_s'] / 1e9:.2f} GFLOP/s, "
          f"peak {_mib(r['peak_mem_bytes'])}")  # fmt: skip
    if "baseline_step_s" in r:
        print(f"baseline     {r['baseline_step_s']:.3f} s/step (median), {r['baseline_images_per_s']:.1f} images/s, "
              f"{r['baseline_flops_per_step'] / 1e9:.1f} GFLOP/step, peak {_mib(r['baseline_peak_mem_bytes'])}")
        paired = "" if r["speedup_paired"] is None else f"; median of paired ratios {r['speedup_paired']:.2f}x"
        pc = r.get("partial_channels", 1) > 1 or r.get("edge_norm")
        label = "ratio       " if pc else "speed-up    "  # PC-DARTS against DARTS: two algorithms
        print(f"{label} {r['speedup']:.2f}x (ratio of medians{paired}; {r['schedule']})")
    if "passes_s" in r:
        from cellnas.bench.search_step import PASSES

        base = r.get("baseline_passes_s")
        print("passes       median s on the training batch" + (": supernet / baseline = speed-up" if base else ""))
        for p in PASSES:
            line = f"  {p:<10} {r['passes_s'][p]:8.3f}"
            if base:
                line += f" / {base[p]:8.3f} = {r['passes_speedup'][p]:.2f}x"
            print(line)


def run_train_step(args) -> int:
    from cellnas.bench.train_step import bench_train_step

    _check(args)
    if not 0.0 <= args.drop_path < 1.0:
        raise CellnasError(f"--drop-path must be in [0, 1), got {args.drop_path}")
    if args.batch < 2:
        raise CellnasError("--batch must be >= 2: batch norm cannot train on one image per batch")
    r = bench_train_step(
        args.genotype, args.batch, args.channels, args.layers, args.size, _device(args.device),
        auxiliary=not args.no_auxiliary, drop_path_prob=args.drop_path, channels_last=args.channels_last,
        amp=args.amp, compile=args.compile,
        threads=args.threads, repeats=args.repeats, warmup=args.warmup, seed=args.seed,
    )  # fmt: skip
    if args.json:
        print(json.dumps(r))
        return 0
    aux = " with the auxiliary head" if r.get("auxiliary") else ""
    print(f"train step   {r['genotype']}: batch {r['batch']}, C={r['channels']}, {r['layers']} cells, "
          f"{r['size']}x{r['size']}, {r['params'] / 1e6:.2f}M params{aux}; "
          f"{r['repeats']} timed after {r['warmup']} warm-up")
    options = [("bf16 autocast" if r["amp"] == "bf16" or (r["amp"] == "auto" and r["device"].startswith("cuda"))
                else "fp32"), "channels_last" if r["channels_last"] else "NCHW"] + (["torch.compile"] * r["compile"])
    print(f"options      {', '.join(options)}")
    _print_common(r)
    print(f"network      {r['step_s']:.3f} s/step (median), {r['images_per_s']:.1f} images/s, "
          f"{r['flops_per_step'] / 1e9:.1f} GFLOP/step, {r['flops_per_s'] / 1e9:.2f} GFLOP/s, "
          f"peak {_mib(r['peak_mem_bytes'])}")  # fmt: skip
    return 0


def run_data(args) -> int:
    from cellnas.bench.data import bench_data

    try:
        workers = tuple(int(w) for w in args.workers.split(",") if w.strip())
    except ValueError:
        raise CellnasError(f"--workers must be comma-separated integers, got {args.workers!r}") from None
    if not workers or min(workers) < 0:
        raise CellnasError(f"--workers needs at least one value >= 0, got {args.workers!r}")
    if args.batch < 1 or args.n_batches < 1:
        raise CellnasError("--batch and --n-batches must be >= 1")
    r = bench_data(args.dataset, args.batch, args.n_batches, _device(args.device), cutout=args.cutout,
                   num_workers=workers, data_dir=args.data_dir, threads=args.threads,
                   download=args.download)  # fmt: skip
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"data         {r['dataset']}, batch {r['batch_size']}, {r['n_batches']} batches, device {r['device']}, "
          f"{r['torch_threads']} threads, load avg {_load(r['load_average_1min'])} (1 min, at the end)")
    print(f"cellnas      {r['ours_images_per_s']:.0f} images/s (device-resident loader)")
    for w, rate in r["torch_dataloader_images_per_s_by_workers"].items():
        print(f"DataLoader   {rate:.0f} images/s ({w} workers)")
    print(f"ratio        {r['ratio']:.1f}x (vs the best DataLoader)")
    return 0
