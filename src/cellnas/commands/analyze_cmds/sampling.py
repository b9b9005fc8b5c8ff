"""``cellnas analyze sampling``: Random vs Prim vs Skip vs PrimSkip random cells, evaluated and compared in one
figure (Wan et al., ICLR 2022, Sec. 5, Fig. 10 form; SPEC 5.4)."""

from __future__ import annotations

import json
import sys

from cellnas.commands._evalopts import EVALUATOR_HELP, add_evaluator_args, build_evaluator, open_archive, run_batch
from cellnas.commands.analyze import check_output_dir, output_dir
from cellnas.errors import CellnasError, check_seed

LABELS = {"none": "Random", "prim": "Prim", "skip": "Skip", "primskip": "PrimSkip"}


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "sampling",
        help="sample N cells per constraint (Random/Prim/Skip/PrimSkip), evaluate, compare in one figure",
        description=(
            "Wan et al. (ICLR 2022) Sec. 5: cells sampled with no constraint (Random), only sep convs and skips\n"
            "(Prim), a residual link at node 2 (Skip), or both (PrimSkip) (SPEC 5.4; `cellnas sample`), each\n"
            "evaluated, the four error distributions drawn in one figure (sampling.png) and summarised in\n"
            "sampling.json with a Mann-Whitney U test of each constrained set against Random.\n\n"
            + EVALUATOR_HELP + "\n\n"
            "example: cellnas analyze sampling -n 75 --evaluator proxy --protocol digits-tiny --workers 2 \\\n"
            "             -o wan/sampling"
        ),
        formatter_class=formatter,
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("-n", type=int, default=100, help="cells per constraint")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (each constraint draws from its own stream)")
    p.add_argument("--constraints", default="none,prim,skip,primskip",
                   help="comma-separated constraint sets, each at most once")  # fmt: skip
    p.add_argument("--no-quirk", action="store_true",
                   help="skip/primskip: node j may also read node j-1 (needs skip or primskip in --constraints)")
    add_evaluator_args(p)
    p.set_defaults(func=run)


def _stats(values: list[float]) -> dict:
    import numpy as np

    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    return {"n": int(a.size), "mean": float(a.mean()), "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}  # fmt: skip


def run(args) -> int:
    from scipy.stats import mannwhitneyu

    from cellnas.analysis.sampling import CONSTRAINTS, sample
    from cellnas.plots.wan import plot_distributions
    from cellnas.runs import atomic_write_text

    constraints = [c.strip() for c in args.constraints.split(",") if c.strip()]
    bad = [c for c in constraints if c not in CONSTRAINTS]
    if bad or not constraints:
        raise CellnasError(
            f"--constraints: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(CONSTRAINTS)}"
        )
    twice = [c for c in dict.fromkeys(constraints) if constraints.count(c) > 1]
    if twice:
        raise CellnasError(f"--constraints: {', '.join(twice)} given more than once; name each of "
                           f"{', '.join(CONSTRAINTS)} at most once")  # fmt: skip
    if args.no_quirk and not {"skip", "primskip"} & set(constraints):
        raise CellnasError(f"--no-quirk changes the skip and primskip samplers only; it does not apply with "
                           f"--constraints {','.join(constraints)}")  # fmt: skip
    if args.n < 1:
        raise CellnasError(f"-n must be >= 1, got {args.n}")
    check_seed(args.seed, "--seed")
    evaluator = build_evaluator(args)  # checks --eval-seed, --workers and the evaluator's options
    check_output_dir(args.output)  # before the evaluations: a bad -o fails at once, and leaves nothing behind
    samples = {c: sample(c, args.n, args.seed, quirk=not args.no_quirk) for c in constraints}
    everything = [g for c in constraints for g in samples[c]]
    with open_archive(args) as archive:
        report = run_batch(evaluator, everything, args, archive, source=f"analyze-sampling:seed{args.seed}")
    report.raise_if_all_failed()
    groups: dict[str, list[float]] = {}
    doc_groups = {}
    for c in constraints:
        errs = [e for g in samples[c] if (e := report.error_of(g)) is not None]
        groups[LABELS[c]] = errs
        all_errors = [report.error_of(g) for g in samples[c]]
        doc_groups[c] = {"label": LABELS[c], **_stats(errs), "failed": sum(e is None for e in all_errors),
                         "hashes": [g.content_hash() for g in samples[c]], "errors": all_errors}  # fmt: skip
    tests = {}
    base = groups.get("Random")
    for c in constraints:
        if c != "none" and base and len(base) > 1 and len(groups[LABELS[c]]) > 1:
            u = mannwhitneyu(groups[LABELS[c]], base, alternative="two-sided")
            tests[f"{c} vs none"] = {"U": float(u.statistic), "p_value": float(u.pvalue)}
    out = output_dir(args.output)
    doc = {
        "study": "Wan et al. 2022 constrained sampling (SPEC 5.4)", "evaluator": evaluator.config(),
        "protocol": evaluator.protocol, "eval_seed": args.eval_seed, "n": args.n, "seed": args.seed,
        "quirk": not args.no_quirk, "groups": doc_groups, "mann_whitney": tests, "batch": report.summary(),
        "errors_are": "fractions (0.05 = 5 %)",
    }  # fmt: skip
    atomic_write_text(out / "sampling.json", json.dumps(doc, indent=1) + "\n")
    plot_distributions(groups, out / "sampling.png",
                       title=f"{args.n} random cells per constraint, {evaluator.protocol}")  # fmt: skip
    print(f"{'constraint':<10} {'n':>4} {'mean %':>8} {'median %':>9} {'min %':>7} {'std %':>7}  vs Random (p)")
    for c in constraints:
        s = doc_groups[c]
        p = tests.get(f"{c} vs none", {}).get("p_value")
        if s["n"]:
            print(f"{LABELS[c]:<10} {s['n']:>4} {100 * s['mean']:>8.2f} {100 * s['median']:>9.2f} "
                  f"{100 * s['min']:>7.2f} {100 * s['std']:>7.2f}  {'' if p is None else f'{p:.2g}'}")  # fmt: skip
        else:
            print(f"{LABELS[c]:<10} {0:>4}  (every evaluation failed)")
    b = report.summary()
    print(f"{b['evaluated']} evaluated, {b['reused']} reused, {b['failed']} failed in {b['wall_seconds']:.1f} s; "
          f"wrote sampling.json and sampling.png to {out}", file=sys.stderr)  # fmt: skip
    return 0
