"""``cellnas analyze landscape``: loss contours on a filter-normalised random plane (Shu et al. 2020 Fig. 17,
Li et al. 2018; SPEC 3.4), 1-D slices, interpolation between two networks and side-by-side comparisons."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from cellnas.commands.analyze import check_output_dir
from cellnas.errors import CellnasError, check_finite_option, check_seed

__all__ = ["register", "run", "add_source_args", "add_plane_args", "parse_range", "prepare", "default_output",
           "label_of", "check_trained_run"]  # fmt: skip


def parse_range(text: str | None, default: tuple[float, float] = (-1.0, 1.0)) -> tuple[float, float]:
    """``'1'`` -> (-1, 1); ``'-0.5:1.5'`` -> (-0.5, 1.5); ``None`` -> ``default``."""
    if text is None:
        return default
    try:
        if ":" in text:
            lo, hi = (float(v) for v in text.split(":"))
        else:
            hi = float(text)
            lo = -hi
    except ValueError:
        raise CellnasError(f"--range {text!r}: expected R (for -R:R) or LO:HI, e.g. 1 or -0.5:1.5") from None
    if not all(math.isfinite(v) for v in (lo, hi, hi - lo)):  # NaN compares false with everything: check it first
        raise CellnasError(f"--range {text!r}: LO, HI and HI - LO must be finite numbers, e.g. 1 or -0.5:1.5")
    if not hi > lo:
        raise CellnasError(f"--range {text!r}: LO must be below HI")
    return lo, hi


def add_source_args(p) -> None:
    """Options shared with ``gradvar``: the evaluation data and the device."""
    p.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                   help="a `cellnas train` run directory (its final.pt, else checkpoint.pt) or a final.pt")  # fmt: skip
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: RUN/<study>)")
    p.add_argument("--split", choices=["test", "train"], default="test", help="evaluation set (the paper: test)")
    p.add_argument("--dataset", help="evaluate on this dataset (default: the one the network was trained on)")
    p.add_argument("--data-dir", metavar="DIR", help="where the dataset files are (default: the run's)")
    p.add_argument("--download", action="store_true", help="download a missing CIFAR archive")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (default: a progress bar is shown)")


#: Li et al.'s contour levels (SPEC 3.4; :data:`cellnas.plots.landscape.LEVELS`, not imported here to keep matplotlib
#: out of the command line's start-up); the options default to None so that one given with --1d or --interpolate,
#: which draw no contours, is refused instead of ignored.
LEVEL_DEFAULTS = {"vmin": 0.1, "vmax": 10.0, "vlevel": 0.5}

#: The options of :func:`add_plane_args` and their defaults (``gradvar`` resolves them only with ``--grid``).
PLANE_DEFAULTS = {"range": None, "resolution": 51, "seed": 123, "save_every": None, "restart": False}


def add_plane_args(p, resolution: int = 51, interpolate: bool = True, only_with: str | None = None) -> None:
    """Options of the filter-normalised plane, shared with ``gradvar --grid`` (``interpolate``: the command has
    ``--interpolate``). ``only_with``: the flag without which they do nothing; they then default to ``None``, so
    that :func:`plane_args_without` can tell the ones given from the defaults."""
    when = f"with {only_with}: " if only_with else ""
    p.add_argument("--range", metavar="R|LO:HI", help=f"{when}grid range of both coordinates (default -1:1"
                   + ("; with --interpolate -0.5:1.5)" if interpolate else ")"))  # fmt: skip
    p.add_argument("--resolution", type=int, default=None if only_with else resolution, metavar="N",
                   help=f"{when}points per axis" + (f" (default {resolution})" if only_with else ""))  # fmt: skip
    p.add_argument("--seed", type=int, default=None if only_with else 123,
                   help=f"{when}seed of the two random directions (default: the reference's 123)")  # fmt: skip
    p.add_argument("--save-every", type=int, metavar="K",
                   help=f"{when}write the grid every K points (default: every row)")  # fmt: skip
    p.add_argument("--restart", action="store_true", help=f"{when}discard a saved grid instead of resuming it")


def plane_args_without(args, flag: str, resolution: int = 51) -> None:
    """Refuse the plane options given without ``flag`` (they would be ignored); fill in their defaults otherwise."""
    given = [f"--{k.replace('_', '-')}" for k in PLANE_DEFAULTS if getattr(args, k) not in (None, False)]
    if not getattr(args, flag.lstrip("-").replace("-", "_")):
        if given:
            raise CellnasError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to the plane only: "
                               f"add {flag}, or leave {'it' if len(given) == 1 else 'them'} out")  # fmt: skip
        return
    if args.resolution is None:
        args.resolution = resolution
    if args.seed is None:
        args.seed = PLANE_DEFAULTS["seed"]


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "landscape",
        help="loss contours on a filter-normalised random plane (Shu et al. 2020 / Li et al. 2018)",
        description=(
            "Loss and accuracy of a trained network at theta* + a d1 + b d2 on a grid, where d1, d2 are Gaussian\n"
            "directions with filter normalisation (Li et al. 2018; biases and BN parameters get 0), seeded with\n"
            "--seed (123). BN in eval mode with the trained running statistics; the test set by default.\n"
            "Writes landscape.npz (resumable: a killed run continues where it stopped), contour.png (levels\n"
            "0.1:10 step 0.5, the paper's) and surface.png.\n"
            "  --1d             the 1-D landscape along d1: landscape_1d.npz, slice_1d.png\n"
            "  --interpolate B  theta(t) = (1-t) theta_A + t theta_B (weights and BN statistics), t in -0.5:1.5 by\n"
            "                   default: interpolate.npz, interpolate.png. BN running variances are clamped at 0\n"
            "                   where extrapolating (t < 0 or t > 1) makes them negative (recorded in the file)\n"
            "  --compare R2 ..  also the landscapes of R2 ... (same settings) and compare.png with shared levels\n\n"
            "examples: cellnas analyze landscape runs/train-x --resolution 21 --subset 200\n"
            "          cellnas analyze landscape runs/a --compare runs/b runs/c --resolution 11"
        ),
        formatter_class=formatter,
    )
    add_source_args(p)
    add_plane_args(p)
    p.add_argument("--batch-size", type=int, metavar="N", help="evaluation batch size (default: the run's, or 256)")
    p.add_argument("--subset", type=int, metavar="N", help="evaluate N images drawn with --seed (default: all)")
    p.add_argument("--max-batches", type=int, metavar="N", help="evaluate only the first N batches")
    p.add_argument("--1d", dest="one_d", action="store_true", help="the 1-D landscape along d1 only")
    p.add_argument("--interpolate", metavar="B", help="interpolate linearly towards this run or final.pt")
    p.add_argument("--compare", nargs="+", metavar="RUN", default=[], help="more runs to compare, with shared levels")
    p.add_argument("--vmin", type=float, help=f"lowest contour level (default: {LEVEL_DEFAULTS['vmin']:g})")
    p.add_argument("--vmax", type=float, help=f"contour levels stop below this (default: {LEVEL_DEFAULTS['vmax']:g})")
    p.add_argument("--vlevel", type=float, help=f"contour level step (default: {LEVEL_DEFAULTS['vlevel']:g})")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------- shared helpers


def label_of(source: Path) -> str:
    """A short name for a network: its run directory (``NAME/seed-S`` for convergence runs)."""
    run = source.parent
    if run.name.startswith("seed-") and run.parent.name:
        return f"{run.parent.name}/{run.name}"
    return run.name or str(source)


def check_trained_run(path: str, study: str) -> None:
    """Refuse, in one line naming what ``path`` is, a run directory of another kind than a single ``cellnas train``
    run (its ``meta.json`` ``kind``): a search holds no trained network, and a ``--seeds`` parent holds one run per
    seed, not a network of its own. Anything else is left to :func:`~cellnas.analysis.landscape.resolve_source`."""
    from cellnas.runs import read_json_object

    run = Path(path)
    if not run.is_dir():
        return
    meta = read_json_object(run / "meta.json") or {}
    need = f"analyze {study} needs a `cellnas train` run directory or its final.pt"
    if meta.get("kind") == "search":
        raise CellnasError(f"{path} is a `cellnas search` run, which holds no trained network; {need} (train the "
                           f"searched cell first: cellnas train {path})")  # fmt: skip
    if meta.get("kind") == "train-seeds":
        seeds = meta.get("seeds") if isinstance(meta.get("seeds"), list) else []
        runs = ", ".join(str(run / f"seed-{s}") for s in seeds) or str(run / "seed-<s>")
        raise CellnasError(f"{path} is a `cellnas train --seeds` run, one run per seed; {need}: give one of its "
                           f"seed runs ({runs})")  # fmt: skip


def default_output(source: Path, study: str) -> Path:
    return source.parent / study


def prepare(args, path: str):
    """Load the network named by ``path`` and its evaluation set: ``(model, genotype, meta, evalset, device)``."""
    from cellnas.analysis.landscape import evaluation_set, load_trained
    from cellnas.schedule import resolve_device

    if args.threads is not None:
        if args.threads < 1:
            raise CellnasError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, genotype, meta = load_trained(path, device)
    data = evaluation_set(meta, split=args.split, dataset=args.dataset, data_dir=args.data_dir,
                          download=args.download)  # fmt: skip
    return model, genotype, meta, data, device


def _eval_batches(args, meta, data, device):
    from cellnas.analysis.landscape import make_batches

    batch_size = args.batch_size or int(meta.get("config", {}).get("eval_batch_size") or 256)
    batches = make_batches(data, batch_size, subset=args.subset, max_batches=args.max_batches, seed=args.seed,
                           device=device)  # fmt: skip
    config = {"dataset": data.name, "split": data.split, "batch_size": batch_size, "subset": args.subset,
              "max_batches": args.max_batches, "n_images": sum(int(y.numel()) for _, y in batches)}  # fmt: skip
    return batches, config


def _check_levels(args):
    from cellnas.plots.landscape import contour_levels

    given = [f"--{k}" for k in LEVEL_DEFAULTS if getattr(args, k) is not None]
    if given and (args.one_d or args.interpolate):
        raise CellnasError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} the contour levels of the 2-D "
                           f"landscape, which {'--1d' if args.one_d else '--interpolate'} does not draw: leave "
                           f"{'it' if len(given) == 1 else 'them'} out")  # fmt: skip
    for flag, default in LEVEL_DEFAULTS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, default)
        check_finite_option(getattr(args, flag), f"--{flag}")
    if not (args.vlevel > 0 and args.vmax > args.vmin):
        raise CellnasError("contour levels need --vlevel > 0 and --vmax > --vmin")
    if (args.vmax - args.vmin) / args.vlevel > MAX_LEVELS:
        raise CellnasError(f"--vmin {args.vmin:g} --vmax {args.vmax:g} --vlevel {args.vlevel:g} give more than "
                           f"{MAX_LEVELS} contour levels; raise --vlevel")  # fmt: skip
    return contour_levels(args.vmin, args.vmax, args.vlevel)


#: More contour levels than this draw an unreadable figure (and a tiny --vlevel would exhaust the memory).
MAX_LEVELS = 1000


def _grid_2d(args, path: str, out: Path):
    """Compute (or resume) the 2-D landscape of one network; return ``(label, grid, seconds, (loss, acc) at
    theta*)``: the grid's values at (0, 0) where the grid has that point, else one extra evaluation at theta*."""
    from cellnas.analysis.landscape import axis, evaluate_model, loss_landscape, resolve_source, value_at_origin

    model, _, meta, data, device = prepare(args, path)
    batches, config = _eval_batches(args, meta, data, device)
    lo, hi = parse_range(args.range)
    xs = axis(lo, hi, args.resolution)
    t0 = time.perf_counter()
    grid = loss_landscape(model, batches, xs=xs, ys=xs, seed=args.seed, config=config, path=out / "landscape.npz",
                          save_every=args.save_every, restart=args.restart, progress=args.progress)  # fmt: skip
    loss, acc = value_at_origin(grid, "losses"), value_at_origin(grid, "accuracies")
    if loss is None or acc is None:
        loss, acc = evaluate_model(model, batches)  # no grid point at the origin (an even --resolution)
    return label_of(resolve_source(path)), grid, time.perf_counter() - t0, (loss, acc)


def run(args) -> int:
    from cellnas.analysis.landscape import axis, interpolation, load_trained, loss_landscape, resolve_source
    from cellnas.plots import landscape as P

    if args.resolution < 2:
        raise CellnasError(f"--resolution must be >= 2, got {args.resolution}")
    for flag in ("batch_size", "save_every", "subset", "max_batches"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise CellnasError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if sum(bool(x) for x in (args.one_d, args.interpolate, args.compare)) > 1:
        raise CellnasError("choose one of --1d, --interpolate and --compare")
    check_seed(args.seed, "--seed")
    levels = _check_levels(args)
    parse_range(args.range)  # a bad --range fails before the network is loaded
    for path in [args.run, *([args.interpolate] if args.interpolate else []), *(args.compare or [])]:
        check_trained_run(path, "landscape")
    source = resolve_source(args.run)
    out = check_output_dir(args.output if args.output else default_output(source, "landscape"))
    label = label_of(source)
    if args.interpolate:
        model, _, meta, data, device = prepare(args, args.run)
        other, _, _ = load_trained(args.interpolate, device)
        batches, config = _eval_batches(args, meta, data, device)
        config["b"] = str(resolve_source(args.interpolate))
        lo, hi = parse_range(args.range, (-0.5, 1.5))
        t0 = time.perf_counter()
        grid = interpolation(model, other, batches, ts=axis(lo, hi, args.resolution), config=config,
                             path=out / "interpolate.npz", save_every=args.save_every, restart=args.restart,
                             progress=args.progress)  # fmt: skip
        seconds = time.perf_counter() - t0
        P.plot_1d(grid.xs, grid["losses"][0], grid["accuracies"][0], out / "interpolate.png",
                  xlabel=r"$t$ ($\theta_A \to \theta_B$)", marks=((0.0, r"$\theta_A$"), (1.0, r"$\theta_B$")),
                  title=f"{label} (t=0) to {label_of(resolve_source(args.interpolate))} (t=1), "
                        f"{grid.config['split']} set")  # fmt: skip
        clamped = int(np.count_nonzero(grid["clamped_variances"]))
        if clamped:
            print(f"{clamped} of {grid.done.size} points extrapolate BN running variances below 0: clamped at 0 "
                  "(see interpolate.npz: clamped_variances)", file=sys.stderr)  # fmt: skip
        _report(grid, out, ["interpolate.npz", "interpolate.png"], seconds)
        return 0
    if args.one_d:
        model, _, meta, data, device = prepare(args, args.run)
        batches, config = _eval_batches(args, meta, data, device)
        lo, hi = parse_range(args.range)
        t0 = time.perf_counter()
        grid = loss_landscape(model, batches, xs=axis(lo, hi, args.resolution), one_d=True, seed=args.seed,
                              config=config, path=out / "landscape_1d.npz", save_every=args.save_every,
                              restart=args.restart, progress=args.progress)  # fmt: skip
        seconds = time.perf_counter() - t0
        P.plot_1d(grid.xs, grid["losses"][0], grid["accuracies"][0], out / "slice_1d.png",
                  title=f"{label}: 1-D landscape ({grid.config['split']} set, seed {args.seed})")  # fmt: skip
        _report(grid, out, ["landscape_1d.npz", "slice_1d.png"], seconds)
        return 0
    _, grid, seconds, (loss0, acc0) = _grid_2d(args, args.run, out)
    title = f"{label} ({grid.config['split']} loss, seed {args.seed})"
    P.plot_contour(grid.xs, grid.ys, grid["losses"], out / "contour.png", levels=levels, title=title)
    P.plot_surface(grid.xs, grid.ys, grid["losses"], out / "surface.png", title=title)
    files = ["landscape.npz", "contour.png", "surface.png"]
    if args.compare:
        panels = [(label, grid.xs, grid.ys, grid["losses"])]
        for i, other in enumerate(args.compare):
            other_source = resolve_source(other)
            other_out = out / "compare" / f"{i + 1}-{label_of(other_source).replace('/', '-')}" if args.output \
                else default_output(other_source, "landscape")
            other_label, other_grid, other_seconds, _ = _grid_2d(args, other, other_out)
            seconds += other_seconds
            print(f"{other_label:<24} {other_out / 'landscape.npz'}")
            panels.append((other_label, other_grid.xs, other_grid.ys, other_grid["losses"]))
        step = (levels[1] - levels[0]) if len(levels) > 1 else 0
        P.plot_compare(panels, out / "compare.png", levels=levels,
                       title=f"{grid.config['split']} loss contours, seed {args.seed} (levels {levels[0]:g}:"
                             f"{levels[-1]:g} step {step:g})")  # fmt: skip
        files.append("compare.png")
    print(f"{label:<24} loss at theta* {loss0:.4f}, accuracy {acc0:.4f}")
    _report(grid, out, files, seconds)
    return 0


def _report(grid, out: Path, files: list[str], seconds: float) -> None:
    n = grid.done.size
    bad = ~np.isfinite(grid["losses"])
    if bad.any():
        columns = grid.xs[bad.any(axis=0)]
        where = ", ".join(f"{x:g}" for x in columns[:8]) + (", ..." if len(columns) > 8 else "")
        coord = "t" if grid.config.get("kind") == "interpolate" else "alpha"
        print(f"warning: no finite loss at {int(bad.sum())} of {n} points ({coord} = {where}): left blank in the "
              "figures, with their accuracy", file=sys.stderr)  # fmt: skip
    print(f"{n} points ({grid.config.get('n_images', '?')} images each) in {seconds:.1f} s; wrote "
          f"{', '.join(files)} to {out}", file=sys.stderr)  # fmt: skip
