"""``cellnas analyze convergence``: train several genotypes with one protocol and overlay their curves
(Shu et al. 2020 Fig. 13; SPEC 3.3)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cellnas.errors import CellnasError

__all__ = ["register", "run"]

_SKIP = ("seed", "progress")  # per-run seeds come from --seeds; --no-progress is added below


def register(sub, formatter) -> None:
    from cellnas.analysis.convergence import SHU_CIFAR_OVERRIDES, SHU_OVERRIDES
    from cellnas.commands.train import CONFIG_FLAGS
    from cellnas.train.config import PRESETS

    p = sub.add_parser(
        "convergence",
        help="train genotypes with one shared protocol and overlay their loss curves (Shu et al. 2020 Fig. 13)",
        description=(
            "Trains every GENOTYPE with the same protocol and --seeds through `cellnas train`, in\n"
            "OUT/<name>/seed-<s>, then plots their curves overlaid: convergence.png (test loss per epoch, one\n"
            "line per genotype, mean with a +-std band over seeds; panels by width with the base cell in each\n"
            "when the genotypes come from a `cellnas analyze variants` family) and curves.png (train/test loss\n"
            "and accuracy). Finished runs already in OUT are reused, unfinished ones resumed; runs trained\n"
            "with another protocol are refused.\n"
            "GENOTYPE: zoo name, genotype file, run directory, or a directory written by `cellnas analyze\n"
            "variants` (its index.json: the base cell and every variant).\n"
            "Protocol: the dataset's preset, then Shu et al.'s random-variant runs ("
            + ", ".join(f"{k}={v}" for k, v in SHU_OVERRIDES.items()) + "; on CIFAR-10/100 also "
            + ", ".join(f"{k}={v}" for k, v in SHU_CIFAR_OVERRIDES.items()) + ", their train.py's), then the flags.\n\n"
            "example: cellnas analyze variants DARTS_V2 -o fam --per-bin 1 --widths 2,3.5\n"
            "         cellnas analyze convergence fam --dataset digits --epochs 5 --seeds 0,1 --out conv"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotypes", nargs="+", metavar="GENOTYPE", help="genotypes to compare")
    p.add_argument("--out", "-o", metavar="DIR", default="runs/convergence", help="study directory")
    p.add_argument("--seeds", default="0", help="seeds of every genotype, e.g. 0,1,2 or 0-2")
    p.add_argument("--preset", default=None, help=f"training preset: {', '.join(PRESETS)} (default: the dataset's)")
    p.add_argument("--metric", default="test_loss", choices=["test_loss", "train_loss", "test_acc", "train_acc"],
                   help="what convergence.png shows (the paper: test loss)")  # fmt: skip
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (default: progress bars are shown)")
    group = p.add_argument_group("protocol (the preset's, with Shu et al.'s overrides, when not given)")
    for key, (flags, kwargs) in CONFIG_FLAGS.items():
        if key not in _SKIP:
            if key == "epochs":  # train's help mentions its --resume, which this command does not have
                kwargs = {**kwargs, "help": "epochs of every run (default: the preset's)"}
            group.add_argument(*flags, dest=key, default=None, **kwargs)
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.analysis.convergence import (
        curves,
        expand_genotypes,
        protocol,
        run_convergence,
        width_groups,
    )
    from cellnas.commands.analyze_cmds.variants import parse_seeds
    from cellnas.commands.train import CONFIG_FLAGS
    from cellnas.plots.convergence import plot_all_curves, plot_convergence

    if args.threads is not None:
        if args.threads < 1:
            raise CellnasError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if not args.dataset:
        raise CellnasError("--dataset is required (digits, cifar10, cifar100 or imagefolder:PATH)")
    seeds = parse_seeds(args.seeds, "--seeds")
    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if k not in _SKIP and k not in ("dataset", "epochs")}
    cfg = protocol(args.dataset, epochs=args.epochs, preset=args.preset, progress=args.progress, **overrides)
    entries = expand_genotypes(args.genotypes)
    t0 = time.perf_counter()
    result = run_convergence(entries, cfg, out=args.out, seeds=seeds)
    seconds = time.perf_counter() - t0
    c = curves(result.runs)
    widths = {e.name: e.info.get("width") for e in entries}
    depths = {e.name: e.info.get("depth") for e in entries}
    base = next((e.name for e in entries if e.info.get("base")), None)
    out = Path(args.out)
    groups = width_groups(entries)
    titles = None
    if groups:
        titles = [f"width {widths[g[-1]]:g}c" for g in groups]
    plot_convergence(c, out / "convergence.png", key=args.metric, groups=groups, widths=widths, titles=titles,
                     depths=depths, base=base)  # fmt: skip
    plot_all_curves(c, out / "curves.png", widths=widths, depths=depths, base=base,
                    title=f"{cfg.dataset}: {cfg.layers} cells, C={cfg.channels}, {cfg.epochs} "
                          f"epoch{'s' if cfg.epochs != 1 else ''}, seed{'s' if len(seeds) != 1 else ''} "
                          f"{','.join(map(str, seeds))}")  # fmt: skip
    print(f"{'genotype':<22} {'width':>6} {'depth':>5}  {'test loss':>17}  {'test acc %':>15}")
    for e in entries:
        last = {k: (v["mean"][-1], v["std"][-1]) for k, v in c[e.name].items()}
        w, d = e.info.get("width"), e.info.get("depth")
        # one seed: no spread to report (its std would read as a measured 0)
        loss = f"{last['test_loss'][0]:8.4f}" + (f" +- {last['test_loss'][1]:.4f}" if len(seeds) > 1 else " " * 10)
        acc = f"{100 * last['test_acc'][0]:6.2f}" + (f" +- {100 * last['test_acc'][1]:.2f}" if len(seeds) > 1 else "")
        print(f"{e.name:<22} {'' if w is None else f'{w:g}c':>6} {'' if d is None else d:>5}  {loss}  {acc}")
    status = {s: sum(r.status == s for r in result.runs) for s in ("trained", "resumed", "reused")}
    print(f"{len(result.runs)} runs ({', '.join(f'{n} {s}' for s, n in status.items() if n)}) in {seconds:.1f} s; "
          f"wrote convergence.png, curves.png, convergence.json to {out}", file=sys.stderr)  # fmt: skip
    return 0
