"""``cellnas analyze importance``: operation importance of every op of one cell, or of the top fraction of the
archive (Wan et al., ICLR 2022, Sec. 3, Eq. 1, Figs. 3, 4, 8; SPEC 5.1)."""

from __future__ import annotations

import json
import math
import sys

from cellnas.commands._evalopts import EVALUATOR_HELP, add_evaluator_args, build_evaluator, open_archive, run_batch
from cellnas.commands.analyze import check_output_dir, output_dir
from cellnas.errors import CellnasError, check_finite_option


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "importance",
        help="operation importance (OI) of every op of a cell or of the archive's top architectures (Wan et al.)",
        description=(
            "OI(alpha, e := o) = mean over the neighbours alpha_m of y(alpha_m) - y(alpha) (SPEC 5.1): the\n"
            "neighbours swap the op for each other primitive (6) and rewire the edge to every other allowed\n"
            "input; y is the evaluator's test error. Positive OI: perturbing the op raises the error. An op is\n"
            "important when |OI| >= --threshold (0.1 %); the table also counts OI > +threshold and\n"
            "OI < -threshold (strict, as the reference's top- and bottom-architecture analyses). Every evaluation\n"
            "goes through the archive: those already there for the evaluator's protocol are reused, new ones are\n"
            "added (source analyze-importance); the OI vectors are stored there too (for `cellnas analyze motifs\n"
            "--oi-protocol` and `analyze ablate`).\n\n"
            "--top ranks the population: the rows of the ranking protocol except those derived by `analyze\n"
            "importance` and `analyze ablate` (OI neighbours, ablation variants: sources analyze-importance*,\n"
            "analyze-ablate*), so that a study does not grow the population of the next one (SPEC 5.1: the\n"
            "population is the evaluated set); --include-derived ranks them too.\n\n"
            "Writes importance.json (every edge: cell, node, op, input, OI, important, skip kind) and\n"
            "importance.png (OI per primitive for each cell type with the +/-threshold band; skips split into\n"
            "in0/in1 residual links and others, Fig. 8).\n\n"
            + EVALUATOR_HELP + "\n\n"
            "examples: cellnas analyze importance DARTS_V2 --evaluator surrogate --surrogate s.joblib -o oi_darts\n"
            "          cellnas analyze importance --top 0.05 --rank-protocol proxy:digits-tiny \\\n"
            "              --evaluator surrogate --surrogate s.joblib -o oi_top"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotype", nargs="?", metavar="GENOTYPE", help="one cell (zoo name, file, DARTS text)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--top", type=float, default=None, metavar="FRACTION",
                   help="instead of GENOTYPE: the best round(FRACTION * N) of the archive's N architectures "
                        "(its population: see above)")  # fmt: skip
    p.add_argument("--rank-protocol", default=None, metavar="PROTOCOL",
                   help="--top: rank by this protocol's test error (default: the evaluator's, or the only one)")
    p.add_argument("--source", default=None, metavar="PREFIX",
                   help="--top: rank only rows whose source starts so (e.g. 'analyze-sampling': one sampled "
                        "population)")  # fmt: skip
    add_include_derived_arg(p, "--top")
    p.add_argument("--threshold", type=float, default=0.001, help="important when |OI| >= this (a fraction)")
    add_evaluator_args(p, default="surrogate")
    p.set_defaults(func=run)


def add_include_derived_arg(p, applies_to: str) -> None:
    """``--include-derived``: rank the rows derived by OI studies and ablations too (see :func:`ranking_rule`)."""
    p.add_argument("--include-derived", action="store_true",
                   help=f"{applies_to}: also rank the rows stored by `analyze importance`/`analyze ablate` (OI "
                        "neighbours, ablation variants; default: left out of the population)")  # fmt: skip


def ranking_rule(args) -> str:
    """How the population was chosen, for the printed summary and the JSON."""
    rule = "every row" if args.include_derived else "rows not derived by analyze importance/ablate"
    return rule + (f", source {args.source}*" if args.source else "")


def check_fraction(value: float, flag: str) -> float:
    """``value`` when it is a fraction in (0, 1], else a one-line :class:`CellnasError` naming ``flag``."""
    if not 0 < value <= 1:  # NaN fails too
        raise CellnasError(f"{flag} must be a fraction in (0, 1], got {value}")
    return value


def choose_protocol(archive, given: str | None, preferred: str | None = None, include_derived: bool = True) -> str:
    """``given``, else ``preferred`` when the archive has rows for it, else the archive's only protocol; with
    ``include_derived=False`` only the rows of the population count (not the OI neighbours and ablation variants)."""
    names = [name for name, _ in archive.protocols()]
    if given is None and not include_derived:
        names = [name for name, _ in archive.protocols(include_derived=False)] or names
    if given is not None:
        if given not in names:
            raise CellnasError(f"no results under protocol {given!r} in {archive.path}; protocols: "
                               f"{', '.join(names) or 'none'}")  # fmt: skip
        return given
    if preferred in names:
        return preferred
    if len(names) == 1:
        return names[0]
    if not names:
        raise CellnasError(f"{archive.path} holds no evaluations: fill it with `cellnas archive evaluate` or "
                           "`cellnas analyze sampling` first")  # fmt: skip
    raise CellnasError(f"{archive.path} holds several protocols ({', '.join(names) or 'none'}): "
                       "name the one to rank by (--rank-protocol / --protocol)")  # fmt: skip


def edge_table(genotype, oi: dict[int, float], threshold: float) -> list[dict]:
    """One dict per edge position: cell, node, op, input, OI, important, skip kind, residual."""
    from cellnas.analysis.importance import is_residual, locate, skip_kind

    rows = []
    for p in sorted(oi):
        cell_type, index = locate(genotype, p)
        cell = genotype.cell(cell_type)
        op, src = cell.pairs[index]
        value = oi[p]
        rows.append({
            "position": p, "cell": cell_type, "node": 2 + index // genotype.k, "op": op, "input": src,
            "oi": None if math.isnan(value) else value,
            "important": (not math.isnan(value)) and abs(value) >= threshold,
            "skip_kind": skip_kind(cell, index) if op == "skip_connect" else None,
            "residual": is_residual(cell, index),
        })  # fmt: skip
    return rows


def summarise(edges: list[dict], threshold: float) -> dict:
    """By cell type and primitive: n, important n (and positive / negative), mean and median OI; skips by kind."""
    import numpy as np

    out: dict = {"by_primitive": {}, "skips": {}}
    for cell_type in ("normal", "reduce"):
        groups: dict[str, list[float]] = {}
        for e in edges:
            if e["cell"] == cell_type and e["oi"] is not None:
                groups.setdefault(e["op"], []).append(e["oi"])
        out["by_primitive"][cell_type] = {
            op: {"n": len(v), "important": int(sum(abs(x) >= threshold for x in v)),
                 "positive": int(sum(x > threshold for x in v)), "negative": int(sum(x < -threshold for x in v)),
                 "mean": float(np.mean(v)), "median": float(np.median(v))}  # fmt: skip
            for op, v in sorted(groups.items())
        }
    skips: dict[str, list[float]] = {"in0": [], "in1": [], "others": [], "all": []}
    for e in edges:
        if e["skip_kind"] and e["oi"] is not None:
            skips[e["skip_kind"]].append(e["oi"])
            skips["all"].append(e["oi"])
    out["skips"] = {k: {"n": len(v), "mean": float(np.mean(v)) if v else None,
                        "important": int(sum(abs(x) >= threshold for x in v))} for k, v in skips.items()}  # fmt: skip
    return out


def run(args) -> int:
    from cellnas.analysis.importance import neighbourhood, operation_importance
    from cellnas.formats import load_genotype, to_darts_text
    from cellnas.plots.wan import plot_importance
    from cellnas.runs import atomic_write_text

    if (args.genotype is None) == (args.top is None):
        raise CellnasError("give either GENOTYPE or --top FRACTION")
    if args.genotype is not None:
        for flag, value in (("--rank-protocol", args.rank_protocol), ("--source", args.source),
                            ("--include-derived", args.include_derived or None)):  # fmt: skip
            if value is not None:
                raise CellnasError(f"{flag} chooses the --top population; it does not apply with GENOTYPE")
    else:
        check_fraction(args.top, "--top")
    check_finite_option(args.threshold, "--threshold")
    if args.threshold < 0:
        raise CellnasError(f"--threshold must be >= 0, got {args.threshold}")
    evaluator = build_evaluator(args)  # checks --eval-seed, --workers and the evaluator's options
    check_output_dir(args.output)  # before the evaluations: a bad -o fails at once, and leaves nothing behind
    if args.genotype is not None:
        targets = [load_genotype(args.genotype)]
        evaluator.check(targets[0])  # before the archive is opened: a refused cell leaves no file behind
    # --top needs rows: a missing archive is "does not exist", not an empty file created here
    with open_archive(args, create=args.genotype is not None) as archive:
        if args.genotype is not None:
            rank_protocol = None
        else:
            rank_protocol = choose_protocol(archive, args.rank_protocol, evaluator.protocol, args.include_derived)
            population = archive.ranked(rank_protocol, source=args.source, include_derived=args.include_derived)
            targets = [g for g, _, _ in archive.top(rank_protocol, fraction=args.top, source=args.source,
                                                    include_derived=args.include_derived)]  # fmt: skip
            print(f"population: {len(population)} architectures under {rank_protocol} ({ranking_rule(args)}); "
                  f"top {args.top:g}: {len(targets)}", file=sys.stderr)  # fmt: skip
        for g in targets:
            evaluator.check(g)  # e.g. a surrogate of another cell size: one line, not 169 failures
        needed = []
        for g in targets:
            needed.append(g)
            n_edges = len(g.normal.pairs) + len(g.reduce.pairs)
            for p in range(n_edges):
                needed += neighbourhood(g, p)
        print(f"OI of {len(targets)} architecture(s): {len(needed)} evaluations with {evaluator.protocol} "
              f"({len({g.content_hash() for g in needed})} distinct)", file=sys.stderr)  # fmt: skip
        report = run_batch(evaluator, needed, args, archive, source="analyze-importance")
        report.raise_if_all_failed()
        cache = {h: float(m["test_error"]) for h, m in report.results.items() if m.get("test_error") is not None}

        def missing(g):
            raise CellnasError(f"no evaluation of {g.content_hash()} (it failed)")

        archs = []
        all_edges = []
        for g in targets:
            n_edges = len(g.normal.pairs) + len(g.reduce.pairs)
            oi: dict[int, float] = {}
            for p in range(n_edges):
                try:
                    oi.update(operation_importance(g, missing, positions=[p], cache=cache))
                except CellnasError:
                    oi[p] = float("nan")
            base = cache.get(g.content_hash())
            if base is not None:
                archive.put_importance(g, evaluator.protocol, {p: v for p, v in oi.items() if not math.isnan(v)}, base)
            edges = edge_table(g, oi, args.threshold)
            all_edges += edges
            archs.append({"hash": g.content_hash(), "genotype": to_darts_text(g), "test_error": base, "edges": edges})
    summary = summarise(all_edges, args.threshold)
    out = output_dir(args.output)
    doc = {
        "study": "Wan et al. 2022 operation importance (SPEC 5.1)", "evaluator": evaluator.config(),
        "protocol": evaluator.protocol, "eval_seed": args.eval_seed, "threshold": args.threshold,
        "population": {"genotype": args.genotype} if args.genotype else {
            "top": args.top, "source": args.source, "rank_protocol": rank_protocol,
            "include_derived": args.include_derived, "rule": ranking_rule(args)},
        "n_architectures": len(targets), "summary": summary, "architectures": archs, "batch": report.summary(),
        "oi_is": "mean neighbour error minus the cell's error, as a fraction (positive: the op helps)",
        "counts": {"important": "|OI| >= threshold", "positive": "OI > +threshold (strict)",
                   "negative": "OI < -threshold (strict)"},
    }  # fmt: skip
    atomic_write_text(out / "importance.json", json.dumps(doc, indent=1) + "\n")
    by_primitive = {c: {op: [e["oi"] for e in all_edges if e["cell"] == c and e["op"] == op and e["oi"] is not None]
                        for op in summary["by_primitive"][c]} for c in ("normal", "reduce")}  # fmt: skip
    skip_edges = [e for e in all_edges if e["oi"] is not None and e["skip_kind"]]
    skips = {k: [e["oi"] for e in skip_edges if k == "all" or e["skip_kind"] == k]
             for k in ("in0", "in1", "others", "all")}  # fmt: skip
    what = args.genotype or f"top {args.top:g} of {rank_protocol} ({len(targets)} archs)"
    plot_importance(by_primitive, skips, args.threshold, out / "importance.png",
                    title=f"operation importance: {what}, y = {evaluator.protocol}")  # fmt: skip
    t = format(100 * args.threshold, "g")
    important, positive, negative = f"|OI|>={t}%", f"OI>+{t}%", f"OI<-{t}%"
    w = max(len(positive), len(negative))
    print(f"{'cell':<7} {'primitive':<14} {'n':>4} {important:>10} {positive:>{w}} {negative:>{w}} "
          f"{'mean OI %':>10} {'median %':>9}")  # fmt: skip
    for c in ("normal", "reduce"):
        for op, s in summary["by_primitive"][c].items():
            print(f"{c:<7} {op:<14} {s['n']:>4} {s['important']:>10} {s['positive']:>{w}} {s['negative']:>{w}} "
                  f"{100 * s['mean']:>10.3f} {100 * s['median']:>9.3f}")  # fmt: skip
    for k, s in summary["skips"].items():
        if s["n"]:
            print(f"skip {k:<7} n={s['n']:<4} important={s['important']:<4} mean OI {100 * s['mean']:.3f} %")
    if report.failed:
        print(f"{len(report.failed)} evaluations failed; their positions have no OI", file=sys.stderr)
    print(f"wrote importance.json and importance.png to {out}", file=sys.stderr)
    return 0
