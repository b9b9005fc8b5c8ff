"""``cellnas analyze gradvar``: gradient variance at the trained weights and over the loss-landscape plane
(Shu et al. 2020 Fig. 22; SPEC 3.5)."""

from __future__ import annotations

import sys
import time

from cellnas.errors import CellnasError, check_seed

__all__ = ["register", "run"]


def register(sub, formatter) -> None:
    from cellnas.analysis.gradvar_options import BN_MODES, DEFAULTS, NORMALIZATIONS  # no torch: parser only
    from cellnas.commands.analyze_cmds.landscape import add_plane_args, add_source_args

    p = sub.add_parser(
        "gradvar",
        help="gradient variance at the trained weights / over the landscape plane (Shu et al. 2020)",
        description=(
            "Var(g) = (1/B) sum_b ||g_b - mean_b g_b||^2 over B mini-batches of the evaluation set (SPEC 3.5),\n"
            "g_b the full parameter gradient of the mean cross-entropy on batch b. The paper does not give B, the\n"
            "batch size, the normalisation or the BN mode: they are options, and recorded in every output.\n"
            "Batches: --batches independent draws of --batch-size distinct images (--batch-seed), the same at\n"
            "every grid point. --bn eval (default) uses the trained running statistics (the function whose loss\n"
            "the contours show); --bn train uses batch statistics, as SGD sees them (running stats restored).\n"
            "Writes gradvar.json (at theta*); with --grid also gradvar.npz (resumable) and gradvar_surface.png,\n"
            "over the plane of `cellnas analyze landscape` (same --seed, same directions).\n\n"
            "example: cellnas analyze gradvar runs/train-x --grid --resolution 11"
        ),
        formatter_class=formatter,
    )
    add_source_args(p)
    add_plane_args(p, resolution=51, interpolate=False, only_with="--grid")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], metavar="N", help="mini-batch size")
    p.add_argument("--batches", type=int, default=DEFAULTS["num_batches"], metavar="B", help="number of mini-batches")
    p.add_argument("--batch-seed", type=int, default=DEFAULTS["batch_seed"], help="seed of the mini-batch draws")
    p.add_argument("--normalize", choices=NORMALIZATIONS, default=DEFAULTS["normalize"],
                   help="per-parameter: divide by the number of parameters that get a gradient")  # fmt: skip
    p.add_argument("--bn", choices=BN_MODES, default=DEFAULTS["bn"], help="BN mode while differentiating")
    p.add_argument("--grid", action="store_true", help="also over the filter-normalised plane (3-D surface)")
    p.add_argument("--log-z", action="store_true", help="with --grid: surface of log10 of the variance")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.analysis.gradvar import gradient_variance, gradvar_grid, sample_batches
    from cellnas.analysis.landscape import axis, resolve_source
    from cellnas.commands.analyze import check_output_dir, output_dir
    from cellnas.commands.analyze_cmds.landscape import (
        check_trained_run,
        default_output,
        label_of,
        parse_range,
        plane_args_without,
        prepare,
    )
    from cellnas.runs import atomic_write_json

    # every argument is checked before the network is loaded or anything is computed
    if args.batch_size < 1:
        raise CellnasError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.batches < 2:
        raise CellnasError(f"--batches must be >= 2 for a variance, got {args.batches}")
    check_seed(args.batch_seed, "--batch-seed")
    if args.log_z and not args.grid:
        raise CellnasError("--log-z applies to the surface of --grid only: add --grid, or leave it out")
    plane_args_without(args, "--grid")
    if args.grid:
        check_seed(args.seed, "--seed")
        if args.resolution < 2:
            raise CellnasError(f"--resolution must be >= 2, got {args.resolution}")
        if args.save_every is not None and args.save_every < 1:
            raise CellnasError(f"--save-every must be >= 1, got {args.save_every}")
        lo, hi = parse_range(args.range)
    check_trained_run(args.run, "gradvar")
    source = resolve_source(args.run)
    out = check_output_dir(args.output if args.output else default_output(source, "gradvar"))
    label = label_of(source)
    model, _, meta, data, device = prepare(args, args.run)
    batches = sample_batches(data, args.batch_size, args.batches, seed=args.batch_seed, device=device)
    output_dir(out)
    settings = {"dataset": data.name, "split": data.split, "batch_size": args.batch_size, "num_batches": args.batches,
                "batch_seed": args.batch_seed, "normalize": args.normalize, "bn": args.bn}  # fmt: skip
    t0 = time.perf_counter()
    point = gradient_variance(model, batches, normalize=args.normalize, bn=args.bn)
    seconds = time.perf_counter() - t0
    report = {"source": str(source), "label": label, "settings": settings, "at_trained_weights": point.to_dict(),
              "seconds": seconds}  # fmt: skip
    files = ["gradvar.json"]
    print(f"{label:<24} Var(g) {point.variance:.6g} ({args.normalize}; raw {point.raw_variance:.6g}, "
          f"||mean g||^2 {point.mean_grad_sqnorm:.6g}, {point.n_params} parameters, {args.batches} batches of "
          f"{args.batch_size}, BN {args.bn})")  # fmt: skip
    if args.grid:
        from cellnas.plots.landscape import plot_surface

        xs = axis(lo, hi, args.resolution)
        t0 = time.perf_counter()
        grid = gradvar_grid(model, batches, xs=xs, ys=xs, seed=args.seed, normalize=args.normalize, bn=args.bn,
                            config=settings, path=out / "gradvar.npz", save_every=args.save_every,
                            restart=args.restart, progress=args.progress)  # fmt: skip
        grid_seconds = time.perf_counter() - t0
        seconds += grid_seconds
        unit = ", per parameter" if args.normalize == "per-parameter" else ""
        title = (f"{label}: gradient variance{unit}\n({data.split}, {args.batches} batches of {args.batch_size}, "
                 f"BN {args.bn}, seed {args.seed})")  # fmt: skip
        plot_surface(grid.xs, grid.ys, grid["variances"], out / "gradvar_surface.png", log=args.log_z,
                     zlabel="Var(g)", title=title)  # fmt: skip
        report["grid"] = {"file": "gradvar.npz", "range": [lo, hi], "resolution": args.resolution, "seed": args.seed,
                          "seconds": grid_seconds}  # fmt: skip
        files += ["gradvar.npz", "gradvar_surface.png"]
    atomic_write_json(out / "gradvar.json", report)
    print(f"wrote {', '.join(files)} to {out} in {seconds:.1f} s", file=sys.stderr)
    return 0
