"""``cellnas analyze ablate``: the verification experiments of Wan et al. (ICLR 2022; SPEC 5.2): reduce-cell
variants (Finding 2) and disabling operations in OI order (Finding 1), through any evaluator."""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from cellnas.commands._evalopts import EVALUATOR_HELP, add_evaluator_args, build_evaluator, open_archive, run_batch
from cellnas.commands.analyze import check_output_dir, output_dir
from cellnas.commands.analyze_cmds.importance import choose_protocol
from cellnas.errors import CellnasError

KINDS = ("reduce", "disable", "both")


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "ablate",
        help="reduce-cell variants and OI-ordered op disabling, evaluated (Wan et al. Findings 1-2)",
        description=(
            "Finding 2 (--kind reduce): for each architecture, red<-nor (reduction cell := normal cell),\n"
            "nor<-red, red<-skip (reduction cell := all skip_connect with its own wiring) and nor<-skip,\n"
            "compared with the original (paired t-test and Wilcoxon test over the architectures).\n"
            "Finding 1 (--kind disable): the 16 ops sorted by OI; the first k = 1..--max-ops replaced by none,\n"
            "lowest OI first and highest OI first. OI vectors come from the archive (`cellnas analyze\n"
            "importance`, --oi-protocol) or are computed here with the evaluator when missing.\n\n"
            "Architectures: GENOTYPE arguments, or --random N drawn (seeded) from the best --top fraction of the\n"
            "archive. Writes ablate.json, ablate_reduce.png, ablate_disable.png.\n\n"
            + EVALUATOR_HELP + "\n\n"
            "example: cellnas analyze ablate --random 10 --top 0.2 --rank-protocol proxy:digits-tiny \\\n"
            "             --evaluator proxy --protocol digits-tiny --workers 2 -o ablate"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotypes", nargs="*", metavar="GENOTYPE", help="cells to ablate (zoo names, files, ...)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--kind", choices=KINDS, default="both", help="which experiment")
    p.add_argument("--random", type=int, default=None, metavar="N", help="N architectures from the archive's top")
    p.add_argument("--top", type=float, default=0.05, metavar="FRACTION", help="--random: draw from this top fraction")
    p.add_argument("--rank-protocol", default=None, metavar="PROTOCOL", help="--random: rank by this protocol")
    p.add_argument("--source", default=None, metavar="PREFIX", help="--random: only rows whose source starts so")
    p.add_argument("--seed", type=int, default=0, help="--random: selection seed (RandomState, as the reference)")
    p.add_argument("--max-ops", type=int, default=8, help="disable: up to this many ops")
    p.add_argument("--oi-protocol", default="any", metavar="PROTOCOL",
                   help="disable: stored OI vectors to order the ops by ('any': the latest of each cell)")
    add_evaluator_args(p)
    p.set_defaults(func=run)


def _select(args, archive, evaluator):
    from cellnas.formats import load_genotype

    if args.genotypes and args.random is not None:
        raise CellnasError("give GENOTYPE arguments or --random N, not both")
    if args.genotypes:
        archs = {}
        for spec in args.genotypes:
            g = load_genotype(spec)
            archs.setdefault(g.content_hash(), (spec, g))
        if len(archs) < len(args.genotypes):
            print(f"note: {len(args.genotypes) - len(archs)} duplicate architecture(s) dropped; ablating "
                  f"{len(archs)}: {', '.join(spec for spec, _ in archs.values())}", file=sys.stderr)  # fmt: skip
        return [g for _, g in archs.values()], None
    if args.random is None:
        raise CellnasError("give GENOTYPE arguments or --random N (architectures drawn from the archive's top)")
    if args.random < 1:
        raise CellnasError(f"--random must be >= 1, got {args.random}")
    protocol = choose_protocol(archive, args.rank_protocol, evaluator.protocol)
    pool = [g for g, _, _ in archive.top(protocol, fraction=args.top, source=args.source)]
    if args.random > len(pool):
        raise CellnasError(f"--random {args.random}: the top {args.top:g} of {protocol} holds only {len(pool)} cells")
    picks = np.random.RandomState(args.seed).choice(len(pool), size=args.random, replace=False)
    return [pool[i] for i in sorted(picks)], protocol


def _value(report, g):
    e = report.error_of(g)
    return float("nan") if e is None else e


def run(args) -> int:
    from cellnas.analysis.ablation import (
        ORDERS,
        REDUCE_VARIANTS,
        disabling_sequence,
        paired_comparison,
        reduce_variants,
    )
    from cellnas.analysis.importance import neighbourhood, operation_importance
    from cellnas.formats import to_darts_text
    from cellnas.plots.wan import plot_disabling, plot_reduce_ablation
    from cellnas.runs import atomic_write_text

    if args.max_ops < 1:
        raise CellnasError(f"--max-ops must be >= 1, got {args.max_ops}")
    if args.eval_seed < 0:
        raise CellnasError(f"--eval-seed must be >= 0, got {args.eval_seed}")
    evaluator = build_evaluator(args)
    check_output_dir(args.output)  # before the evaluations: a bad -o fails at once, and leaves nothing behind
    do_reduce = args.kind in ("reduce", "both")
    do_disable = args.kind in ("disable", "both")
    if do_disable and evaluator.name in ("surrogate", "nb301"):
        print(f"note: the {evaluator.name} evaluator was not fitted on cells with 'none' ops; its errors for "
              "disabled ops are extrapolations (nb301 refuses them)", file=sys.stderr)  # fmt: skip
    with open_archive(args) as archive:
        archs, rank_protocol = _select(args, archive, evaluator)
        for g in archs:
            evaluator.check(g)
        if do_disable:
            n_ops = min(len(g.normal.pairs) + len(g.reduce.pairs) for g in archs)
            if args.max_ops > n_ops:
                print(f"note: --max-ops {args.max_ops}: the cells have {n_ops} ops; disabling up to {n_ops}",
                      file=sys.stderr)  # fmt: skip
        oi_of: dict[str, dict[int, float]] = {}
        if do_disable:
            stored = archive.importance(None if args.oi_protocol == "any" else args.oi_protocol)
            oi_of = {g.content_hash(): stored[g.content_hash()][1] for g in archs if g.content_hash() in stored}
            lacking = [g for g in archs if g.content_hash() not in oi_of]
            if lacking:
                needed = [m for g in lacking for p in range(len(g.normal.pairs) + len(g.reduce.pairs))
                          for m in [g, *neighbourhood(g, p)]]  # fmt: skip
                n_distinct = len({m.content_hash() for m in needed})
                print(f"computing OI of {len(lacking)} cell(s) with {evaluator.protocol} ({n_distinct} evaluations)",
                      file=sys.stderr)  # fmt: skip
                rep = run_batch(evaluator, needed, args, archive, source="analyze-ablate:oi")
                cache = {h: float(m["test_error"]) for h, m in rep.results.items() if m.get("test_error") is not None}

                def missing(g):
                    raise CellnasError(f"no evaluation of {g.content_hash()} (it failed)")

                for g in lacking:
                    try:
                        oi = operation_importance(g, missing, cache=cache)
                    except CellnasError as exc:
                        raise CellnasError(f"cannot order the ops of {g.content_hash()}: {exc}") from None
                    archive.put_importance(g, evaluator.protocol, oi, cache.get(g.content_hash()))
                    oi_of[g.content_hash()] = oi
        plans = []
        for g in archs:
            plan = {"original": g}
            if do_reduce:
                plan["reduce"] = reduce_variants(g)
            if do_disable:
                plan["disable"] = {o: disabling_sequence(g, oi_of[g.content_hash()], o, args.max_ops) for o in ORDERS}
            plans.append(plan)
        everything = []
        for plan in plans:
            everything.append(plan["original"])
            everything += list(plan.get("reduce", {}).values())
            for seq in plan.get("disable", {}).values():
                everything += [v for _, v in seq]
        report = run_batch(evaluator, everything, args, archive, source="analyze-ablate")
        report.raise_if_all_failed()
    out = output_dir(args.output)
    originals = [_value(report, p["original"]) for p in plans]
    doc: dict = {
        "study": "Wan et al. 2022 verification experiments (SPEC 5.2)", "evaluator": evaluator.config(),
        "protocol": evaluator.protocol, "eval_seed": args.eval_seed, "rank_protocol": rank_protocol,
        "selection": {"genotypes": args.genotypes, "random": args.random, "top": args.top, "seed": args.seed},
        "architectures": [], "batch": report.summary(), "errors_are": "fractions; null = evaluation failed",
        "red<-skip": "reduction cell := skip_connect on every edge, with the reduction cell's own wiring",
    }  # fmt: skip
    for plan, base in zip(plans, originals):
        g = plan["original"]
        entry = {"hash": g.content_hash(), "genotype": to_darts_text(g), "test_error": _nan_none(base)}
        if do_reduce:
            entry["reduce"] = {k: _nan_none(_value(report, v)) for k, v in plan["reduce"].items()}
        if do_disable:
            entry["oi"] = {str(k): v for k, v in oi_of[g.content_hash()].items()}
            entry["disable"] = {o: [{"disabled": pos, "test_error": _nan_none(_value(report, v))} for pos, v in seq]
                                for o, seq in plan["disable"].items()}  # fmt: skip
        doc["architectures"].append(entry)
    if do_reduce:
        errors = {"original": originals}
        errors.update({k: [_value(report, p["reduce"][k]) for p in plans] for k in REDUCE_VARIANTS})
        doc["reduce_summary"] = {k: paired_comparison(originals, errors[k]) for k in REDUCE_VARIANTS}
        plot_reduce_ablation(errors, out / "ablate_reduce.png",
                             title=f"reduce-cell ablation, {len(plans)} cells, {evaluator.protocol}")  # fmt: skip
        print(f"{'variant':<10} {'n':>3} {'mean err %':>10} {'diff %':>8} {'t-test p':>9} {'wilcoxon p':>11}")
        print(f"{'original':<10} {len(plans):>3} {100 * np.nanmean(originals):>10.2f}")
        for k in REDUCE_VARIANTS:
            s = doc["reduce_summary"][k]
            diff = "-" if s["mean_difference"] is None else f"{100 * s['mean_difference']:+.2f}"
            print(f"{k:<10} {s['n']:>3} {100 * np.nanmean(errors[k]):>10.2f} {diff:>8} {_p(s['t_test_p']):>9} "
                  f"{_p(s['wilcoxon_p']):>11}")  # fmt: skip
    if do_disable:
        curves = {o: np.asarray([[base] + [_value(report, v) for _, v in p["disable"][o]]
                                 for p, base in zip(plans, originals)]) for o in ORDERS}  # fmt: skip
        doc["disable_summary"] = {
            o: {"k": list(range(c.shape[1])), "mean": [_nan_none(x) for x in np.nanmean(c, 0)],
                "std": [_nan_none(x) for x in np.nanstd(c, 0)]}
            for o, c in curves.items()
        }  # fmt: skip
        plot_disabling(curves, out / "ablate_disable.png",
                       title=f"disabling ops by OI, {len(plans)} cells, {evaluator.protocol}")  # fmt: skip
        print("ops disabled:      " + " ".join(f"{k:>6}" for k in range(curves['ascending'].shape[1])))
        for o, c in curves.items():
            print(f"{o + ' err %':<18} " + " ".join(f"{100 * x:>6.2f}" for x in np.nanmean(c, 0)))
    atomic_write_text(out / "ablate.json", json.dumps(doc, indent=1) + "\n")
    if report.failed:
        print(f"{len(report.failed)} evaluations failed (null in ablate.json)", file=sys.stderr)
    print(f"wrote ablate.json and figures to {out}", file=sys.stderr)
    return 0


def _nan_none(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _p(x) -> str:
    return "-" if x is None else f"{x:.3g}"
