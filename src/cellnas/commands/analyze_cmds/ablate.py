"""``cellnas analyze ablate``: the verification experiments of Wan et al. (ICLR 2022; SPEC 5.2): reduce-cell
variants (Finding 2) and disabling operations in OI order (Finding 1), through any evaluator."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

import numpy as np

from cellnas.commands._evalopts import EVALUATOR_HELP, add_evaluator_args, build_evaluator, open_archive, run_batch
from cellnas.commands.analyze import check_output_dir, output_dir
from cellnas.commands.analyze_cmds.importance import (
    add_include_derived_arg,
    check_fraction,
    choose_protocol,
    ranking_rule,
)
from cellnas.errors import CellnasError, check_seed

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
            "importance`): by default those computed with the evaluator's protocol (--oi-protocol chooses\n"
            "another; 'any': each cell's vector under the evaluator's protocol, else its latest, with a warning\n"
            "when protocols mix), and are computed here with the evaluator when missing. ablate.json names the\n"
            "protocol of each cell's OI vector.\n\n"
            "Architectures: GENOTYPE arguments, or --random N drawn (seeded) from the best --top fraction of the\n"
            "archive's population (the rows of the ranking protocol except OI neighbours and ablation variants\n"
            "stored by `analyze importance`/`analyze ablate`; --include-derived ranks them too). Writes\n"
            "ablate.json, ablate_reduce.png, ablate_disable.png.\n\n"
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
    p.add_argument("--top", type=float, default=None, metavar="FRACTION",
                   help="--random: draw from this top fraction (default: 0.05)")  # fmt: skip
    p.add_argument("--rank-protocol", default=None, metavar="PROTOCOL", help="--random: rank by this protocol")
    p.add_argument("--source", default=None, metavar="PREFIX", help="--random: only rows whose source starts so")
    add_include_derived_arg(p, "--random")
    p.add_argument("--seed", type=int, default=None,
                   help="--random: selection seed (RandomState, as the reference; default: 0)")  # fmt: skip
    p.add_argument("--max-ops", type=int, default=None, help="disable: up to this many ops (default: 8)")
    p.add_argument("--oi-protocol", default=None, metavar="PROTOCOL",
                   help="disable: the stored OI vectors to order the ops by (default: the evaluator's protocol; "
                        "'any': the evaluator's, else each cell's latest)")  # fmt: skip
    add_evaluator_args(p)
    p.set_defaults(func=run)


def _check_args(args) -> None:
    """Refuse, before any work, options out of range and options that do not apply to the chosen experiment."""
    if args.genotypes and args.random is not None:
        raise CellnasError("give GENOTYPE arguments or --random N, not both")
    if not args.genotypes and args.random is None:
        raise CellnasError("give GENOTYPE arguments or --random N (architectures drawn from the archive's top)")
    if args.genotypes:
        for flag, value in (("--top", args.top), ("--rank-protocol", args.rank_protocol), ("--source", args.source),
                            ("--seed", args.seed), ("--include-derived", args.include_derived or None)):  # fmt: skip
            if value is not None:
                raise CellnasError(f"{flag} (how --random N draws from the archive) does not apply with GENOTYPE "
                                   "arguments; drop one of the two")  # fmt: skip
    else:
        if args.random < 1:
            raise CellnasError(f"--random must be >= 1, got {args.random}")
        check_fraction(args.top if args.top is not None else 0.05, "--top")
        check_seed(args.seed if args.seed is not None else 0, "--seed")
    if args.kind == "reduce":
        for flag, value in (("--max-ops", args.max_ops), ("--oi-protocol", args.oi_protocol)):
            if value is not None:
                raise CellnasError(f"{flag} configures the op-disabling experiment; it does not apply with --kind "
                                   "reduce (use --kind disable or both)")  # fmt: skip
    if args.max_ops is not None and args.max_ops < 1:
        raise CellnasError(f"--max-ops must be >= 1, got {args.max_ops}")


def _load(args):
    """The GENOTYPE arguments, duplicates dropped (with a note)."""
    from cellnas.formats import load_genotype

    archs = {}
    for spec in args.genotypes:
        g = load_genotype(spec)
        archs.setdefault(g.content_hash(), (spec, g))
    if len(archs) < len(args.genotypes):
        print(f"note: {len(args.genotypes) - len(archs)} duplicate architecture(s) dropped; ablating "
              f"{len(archs)}: {', '.join(spec for spec, _ in archs.values())}", file=sys.stderr)  # fmt: skip
    return [g for _, g in archs.values()]


def _draw(args, archive, evaluator):
    """``--random N``: N cells drawn with ``RandomState(--seed)`` from the top ``--top`` of the population."""
    top, seed = (0.05 if args.top is None else args.top), (0 if args.seed is None else args.seed)
    protocol = choose_protocol(archive, args.rank_protocol, evaluator.protocol, args.include_derived)
    pool = [g for g, _, _ in archive.top(protocol, fraction=top, source=args.source,
                                         include_derived=args.include_derived)]  # fmt: skip
    if args.random > len(pool):
        raise CellnasError(f"--random {args.random}: the top {top:g} of {protocol} ({ranking_rule(args)}) holds only "
                           f"{len(pool)} cells")  # fmt: skip
    picks = np.random.RandomState(seed).choice(len(pool), size=args.random, replace=False)
    return [pool[i] for i in sorted(picks)], protocol


def _stored_oi(args, archive, evaluator, archs) -> dict[str, tuple[str, dict[int, float]]]:
    """``{hash: (protocol, OI vector)}`` of the stored vectors of ``archs`` that ``--oi-protocol`` selects."""
    if args.oi_protocol == "any":
        stored = archive.importance(prefer=evaluator.protocol)
    else:
        stored = archive.importance(args.oi_protocol or evaluator.protocol)
    return {g.content_hash(): stored[g.content_hash()] for g in archs if g.content_hash() in stored}


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

    _check_args(args)
    max_ops = 8 if args.max_ops is None else args.max_ops
    evaluator = build_evaluator(args)  # checks --eval-seed, --workers and the evaluator's options
    check_output_dir(args.output)  # before the evaluations: a bad -o fails at once, and leaves nothing behind
    do_reduce = args.kind in ("reduce", "both")
    do_disable = args.kind in ("disable", "both")
    if do_disable and evaluator.name in ("surrogate", "nb301"):
        print(f"note: the {evaluator.name} evaluator was not fitted on cells with 'none' ops; its errors for "
              "disabled ops are extrapolations (nb301 refuses them)", file=sys.stderr)  # fmt: skip
    rank_protocol = None
    if args.genotypes:
        archs = _load(args)
        for g in archs:
            evaluator.check(g)  # before the archive is opened: a refused cell leaves no file behind
    # --random needs rows: a missing archive is "does not exist", not an empty file created here
    with open_archive(args, create=args.random is None) as archive:
        if args.random is not None:
            archs, rank_protocol = _draw(args, archive, evaluator)
            for g in archs:
                evaluator.check(g)
        if do_disable:
            n_ops = min(len(g.normal.pairs) + len(g.reduce.pairs) for g in archs)
            if max_ops > n_ops:
                print(f"note: --max-ops {max_ops}: the cells have {n_ops} ops; disabling up to {n_ops}",
                      file=sys.stderr)  # fmt: skip
        oi_of: dict[str, dict[int, float]] = {}
        oi_from: dict[str, str] = {}  # hash -> the protocol of its OI vector
        if do_disable:
            stored = _stored_oi(args, archive, evaluator, archs)
            oi_of = {h: oi for h, (_, oi) in stored.items()}
            oi_from = {h: prot for h, (prot, _) in stored.items()}
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
                    oi_from[g.content_hash()] = evaluator.protocol
            mixed = Counter(oi_from.values())
            if len(mixed) > 1:
                print(f"warning: the ops are ordered by OI vectors of {len(mixed)} protocols: "
                      f"{', '.join(f'{p} ({n} cells)' for p, n in mixed.most_common())}; ablate.json names each "
                      f"cell's (--oi-protocol {evaluator.protocol} uses one)", file=sys.stderr)  # fmt: skip
        plans = []
        for g in archs:
            plan = {"original": g}
            if do_reduce:
                plan["reduce"] = reduce_variants(g)
            if do_disable:
                plan["disable"] = {o: disabling_sequence(g, oi_of[g.content_hash()], o, max_ops) for o in ORDERS}
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
        "selection": {"genotypes": args.genotypes, "random": args.random,
                      "top": None if args.random is None else (0.05 if args.top is None else args.top),
                      "seed": None if args.random is None else (0 if args.seed is None else args.seed),
                      "source": args.source, "include_derived": args.include_derived,
                      "rule": None if args.random is None else ranking_rule(args)},
        "oi_protocol": None if not do_disable else (args.oi_protocol or evaluator.protocol),
        "oi_protocols": dict(Counter(oi_from.values())),
        "architectures": [], "batch": report.summary(), "errors_are": "fractions; null = evaluation failed",
        "red<-skip": "reduction cell := skip_connect on every edge, with the reduction cell's own wiring",
    }  # fmt: skip
    for plan, base in zip(plans, originals):
        g = plan["original"]
        entry = {"hash": g.content_hash(), "genotype": to_darts_text(g), "test_error": _nan_none(base)}
        if do_reduce:
            entry["reduce"] = {k: _nan_none(_value(report, v)) for k, v in plan["reduce"].items()}
        if do_disable:
            entry["oi_protocol"] = oi_from[g.content_hash()]
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
