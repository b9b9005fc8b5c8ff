"""``cellnas archive``: the evaluation archive (Wan et al., ICLR 2022 work on populations of evaluated
architectures; SPEC 5.1, 5.4, 6): add, list, export, import, evaluate, fit a surrogate, summary."""

from __future__ import annotations

import json
import sys

from cellnas.commands._evalopts import (
    EVALUATOR_HELP,
    add_archive_arg,
    add_evaluator_args,
    build_evaluator,
    open_archive,
    report_failures,
    run_batch,
)
from cellnas.errors import CellnasError, check_seed


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "archive",
        help="the evaluation archive: add/list/export/import results, evaluate many cells, fit a surrogate",
        description=(
            "An SQLite file (default archive.sqlite) with one row per (genotype hash, protocol, seed):\n"
            "the genotype, test/val error (fractions), params, training seconds, other metrics, the\n"
            "protocol's config, times. Safe with several writers at once; batches resume where they stopped.\n\n"
            "examples: cellnas archive evaluate --sample none -n 100 --evaluator proxy --workers 2\n"
            "          cellnas archive list --protocol proxy:digits-tiny --sort test_error --limit 10\n"
            "          cellnas archive fit-surrogate --protocol proxy:digits-tiny -o surrogate.joblib\n"
            "          cellnas archive import results.csv --protocol my-cifar10-600ep\n"
            "          cellnas archive add DARTS_V2 --protocol wan2022-table2 --test-error 0.0244"
        ),
        formatter_class=formatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    a = actions.add_parser(
        "add", help="store one result by hand", formatter_class=formatter,
        description="The values are checked as `archive import` checks them: test/val error are fractions in\n"
        "[0, 1], params and seconds are finite and >= 0, the seed is >= 0; a metric given twice with two values\n"
        "(--test-error 0.1 --metric test_error=0.9) is refused.\n"
        "A result already stored for this genotype, protocol and seed is kept, as `archive import` keeps it:\n"
        "the command then writes nothing, names the stored values and exits with status 2; --replace\n"
        "overwrites it (and says what it replaced).",
    )  # fmt: skip
    a.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or DARTS text")
    a.add_argument("--protocol", required=True, help="what the numbers mean (e.g. my-cifar10-600ep)")
    a.add_argument("--test-error", type=float, default=None, help="test error as a fraction (0.0244 = 2.44 %%)")
    a.add_argument("--val-error", type=float, default=None, help="validation error as a fraction")
    a.add_argument("--params", type=float, default=None, help="parameter count")
    a.add_argument("--seconds", type=float, default=None, help="training time in seconds")
    a.add_argument("--metric", action="append", default=[], metavar="KEY=VALUE", help="any other metric")
    a.add_argument("--seed", type=int, default=0, help="seed of the result")
    a.add_argument("--replace", action="store_true",
                   help="overwrite a result already stored (default: keep it, write nothing and exit 2)")  # fmt: skip
    add_archive_arg(a)
    a.set_defaults(func=_add)

    ls = actions.add_parser("list", help="list results with filters and sorting", formatter_class=formatter)
    _filters(ls)
    ls.add_argument("--limit", type=int, default=20, help="rows to show (0: all)")
    ls.add_argument("--format", choices=("table", "darts", "json"), default="table", help="output format")
    add_archive_arg(ls)
    ls.set_defaults(func=_list)

    ex = actions.add_parser(
        "export", help="write results (or OI vectors) to CSV or JSON", formatter_class=formatter,
        description="Writes the evaluations that match the filters, with their source, config and times\n"
        "(created_at, updated_at): `archive import` reads the file back as it was, times included, so that\n"
        "export -> import -> export gives the same file. The format follows FILE's suffix: .csv or .json\n"
        "(any other is refused). --importance writes the operation-importance vectors\n"
        "(`analyze importance`) instead: hash, protocol (of the evaluator that computed them), genotype,\n"
        "base_error, oi ({edge position: OI}); `archive import --importance` reads them back.",
    )  # fmt: skip
    ex.add_argument("output", metavar="FILE", help="a .csv or .json file (the suffix names the format)")
    _filters(ex)
    ex.add_argument("--limit", type=int, default=0, help="rows to write (0: all)")
    ex.add_argument("--importance", action="store_true",
                    help="write the OI vectors instead of the evaluations (filters: --protocol, --hash)")  # fmt: skip
    add_archive_arg(ex)
    ex.set_defaults(func=_export)

    im = actions.add_parser(
        "import", help="read results from a CSV (or a JSON export)", formatter_class=formatter,
        description=(
            "CSV columns: genotype (DARTS Genotype(...) text, a zoo name, a genotype file, or cellnas/NB301/\n"
            "NNabla JSON), optional protocol and seed (>= 0), test_error/val_error (fractions in [0, 1]),\n"
            "params, seconds (>= 0), config (JSON), source (else import:FILE), created_at and updated_at (ISO\n"
            "8601 times, kept as written; else the import's time); any other column is kept as an extra metric.\n"
            "A file written by `archive export` (.csv, or .json: a list of such rows) imports as is, its sources\n"
            "and times included. A row already stored (same genotype, protocol and seed) is kept as it is, times\n"
            "included; --replace gives it the file's values and updated_at (and the earlier created_at).\n"
            "--importance imports OI vectors written by `archive export --importance`, their updated_at included\n"
            "(a vector already stored for a genotype and protocol is kept unless --replace). One transaction: a bad\n"
            "line imports nothing and is named; a line without any metric is a bad line. A line repeating an\n"
            "earlier line of the file (same genotype, protocol and seed) is ignored and reported when its values\n"
            "are the same (its times aside), and refused (both lines named) when they differ."
        ),
    )  # fmt: skip
    im.add_argument("input", metavar="FILE", help="CSV file, or a .json file written by `archive export`")
    im.add_argument("--protocol", default=None, help="protocol of rows without a protocol column")
    im.add_argument("--seed", type=int, default=None, help="seed of rows without a seed column (default: 0)")
    im.add_argument("--replace", action="store_true", help="overwrite rows already present (default: keep them)")
    im.add_argument("--importance", action="store_true",
                    help="the file holds OI vectors (`archive export --importance`), not evaluations")  # fmt: skip
    add_archive_arg(im)
    im.set_defaults(func=_import)

    ev = actions.add_parser(
        "evaluate", help="evaluate many genotypes (files, zoo names or fresh samples) into the archive",
        formatter_class=formatter, description="Evaluates what the archive lacks, in parallel for training "
        "evaluators; interrupted batches resume.\n\n" + EVALUATOR_HELP,
    )  # fmt: skip
    ev.add_argument("genotypes", nargs="*", metavar="GENOTYPE",
                    help="zoo names, genotype files, or directories of genotype files")  # fmt: skip
    ev.add_argument("--sample", choices=("none", "prim", "skip", "primskip"), default=None,
                    help="also evaluate -n random cells under this constraint (Wan et al., SPEC 5.4)")  # fmt: skip
    ev.add_argument("-n", type=int, default=None, help="--sample: number of cells (default: 100)")
    ev.add_argument("--seed", type=int, default=None, help="--sample: sampling seed (default: 0)")
    add_evaluator_args(ev)
    ev.set_defaults(func=_evaluate)

    fs = actions.add_parser(
        "fit-surrogate", help="fit a gradient-boosting surrogate on the archive", formatter_class=formatter,
        description="One-hot edge/op encoding (NB301 edge slots + op counts), held-out Kendall tau and RMSE,\n"
        "then refitted on every row (--no-refit keeps the training-split model). Use the file with\n"
        "--evaluator surrogate --surrogate FILE.",
    )  # fmt: skip
    fs.add_argument("--protocol", required=True, help="fit on this protocol's results")
    fs.add_argument("-o", "--output", required=True, metavar="FILE", help="model file (joblib)")
    fs.add_argument("--metric", default="test_error", help="target metric")
    fs.add_argument("--model", choices=("gbr", "hgb"), default="gbr",
                    help="GradientBoostingRegressor or HistGradientBoostingRegressor")  # fmt: skip
    fs.add_argument("--features", choices=("edges", "edges+counts"), default="edges+counts", help="encoding")
    fs.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction for tau/RMSE")
    fs.add_argument("--no-refit", action="store_true", help="keep the model fitted on the training split")
    fs.add_argument("--seed", type=int, default=0, help="split and model seed")
    fs.add_argument("--source", default=None, metavar="PREFIX",
                    help="only rows whose source starts so (`archive info` lists the sources)")  # fmt: skip
    add_archive_arg(fs)
    fs.set_defaults(func=_fit)

    info = actions.add_parser("info", help="protocols, row counts, failures and OI vectors", formatter_class=formatter)
    add_archive_arg(info)
    info.set_defaults(func=_info)
    p.set_defaults(func=lambda args: p.print_help())


def _filters(p) -> None:
    p.add_argument("--protocol", default=None, help="only this protocol")
    p.add_argument("--seed", type=int, default=None, help="only this seed (>= 0)")
    p.add_argument("--hash", default=None, metavar="PREFIX", help="only genotypes whose hash starts so")
    p.add_argument("--max-error", type=float, default=None,
                   help="only test_error <= this (a fraction in [0, 1], as stored: 0.03 = 3 %%)")
    p.add_argument("--sort", default=None, metavar="KEY[:desc]",
                   help="test_error, params, seconds, updated_at ...; descending: KEY:desc (or --sort=-KEY)")
    p.add_argument("--source", default=None, metavar="PREFIX",
                   help="only rows whose source starts so (e.g. 'sample', 'analyze-sampling', 'import')")


def _check_filters(args) -> None:
    """Refuse filter values no row can have (a negative seed, an error outside [0, 1]) instead of matching nothing."""
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if args.max_error is not None:
        if not 0 <= args.max_error <= 1:  # NaN too
            hint = " (a percentage? divide by 100)" if 1 < args.max_error <= 100 else ""
            raise CellnasError(f"--max-error must be a test error fraction in [0, 1], got {args.max_error:g}{hint}")


def _select(args, archive):
    return archive.records(protocol=args.protocol, seed=args.seed, hash_prefix=args.hash, sort=args.sort,
                           limit=args.limit or None, max_test_error=args.max_error, source=args.source)  # fmt: skip


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _shown(metrics: dict) -> str:
    """``test_error=0.0244, params=3349342``."""
    return ", ".join(f"{k}={v}" for k, v in metrics.items()) or "no metric"


def _first(hashes, n: int = 5) -> str:
    """The first ``n`` of ``hashes``, then how many more."""
    hashes = list(hashes)
    return ", ".join(hashes[:n]) + (f" and {len(hashes) - n} more" if len(hashes) > n else "")


def _add(args) -> int:
    from cellnas.archive import check_result
    from cellnas.formats import load_genotype

    g = load_genotype(args.genotype)
    metrics = {k: getattr(args, k) for k in ("test_error", "val_error", "params", "seconds")}
    metrics = {k: v for k, v in metrics.items() if v is not None}
    given = {k: f"--{k.replace('_', '-')} {v}" for k, v in metrics.items()}  # how each value was given
    for item in args.metric:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CellnasError(f"--metric {item!r}: expected KEY=VALUE")
        x = _number(value)
        if key in metrics and metrics[key] != x:
            raise CellnasError(f"{key} is given twice with different values: {given[key]} and --metric {item}; "
                               "give one value")  # fmt: skip
        metrics[key], given[key] = x, f"--metric {item}"
    if not metrics:
        raise CellnasError("give at least one metric (--test-error, --val-error, --params, --seconds or --metric)")
    check_result(metrics, args.seed)  # the checks of `archive import`
    where = f"under {args.protocol} (seed {args.seed}) in {args.archive}"
    with open_archive(args) as archive:
        if args.replace:
            old = archive.get(g, args.protocol, seed=args.seed)
            archive.put(g, args.protocol, metrics, seed=args.seed, source="add", replace=True)
        elif not archive.put(g, args.protocol, metrics, seed=args.seed, source="add", replace=False):
            old = archive.get(g, args.protocol, seed=args.seed)
            stored = "" if old is None else f" ({_shown(old.metrics())})"
            raise CellnasError(f"{g.content_hash()}{_listed_as(g, old)} already has a result {where}{stored}: "
                               "kept it, nothing written; give --replace to overwrite it")  # fmt: skip
        else:
            old = None
    if old is not None:
        print(f"replaced {g.content_hash()}{_listed_as(g, old)} {where}: {_shown(old.metrics())} -> {_shown(metrics)}")
    else:
        print(f"stored {g.content_hash()} {where}")
    return 0


def _listed_as(g, old) -> str:
    """How a stored row of ``g``'s architecture listed in another order is named (empty when it is ``g``'s own)."""
    if old is None or old.hash == g.content_hash():
        return ""
    return f" (stored as {old.hash}: the same architecture, its inputs listed in another order)"


def _fmt(x, spec: str) -> str:
    """``x`` formatted with ``spec``; a missing value is a ``-`` right-aligned to the spec's width."""
    if x is not None:
        return format(x, spec)
    width = "".join(c for c in spec.split(".")[0] if c.isdigit())
    return "-".rjust(int(width or 1))


def _check_limit(args) -> None:
    if args.limit < 0:
        raise CellnasError(f"--limit must be >= 0 (0: all), got {args.limit}")


def _list(args) -> int:
    from cellnas.formats import to_darts_text

    _check_limit(args)
    _check_filters(args)

    with open_archive(args, create=False) as archive:
        records = _select(args, archive)
        total = archive.count(args.protocol)
        if args.protocol is not None and total == 0:
            raise CellnasError(f"no rows under protocol {args.protocol!r} in {args.archive}; "
                               f"{_protocols_present(archive)}")  # fmt: skip
    if args.format == "json":
        print(json.dumps([r.flat("json") for r in records], indent=1))
        return 0
    if args.format == "darts":
        for r in records:
            print(to_darts_text(r.genotype))
        return 0
    print(f"{'hash':<16}  {'protocol':<28} {'seed':>4} {'test_err':>9} {'params':>9} {'seconds':>8}  updated")
    for r in records:
        print(f"{r.hash:<16}  {r.protocol[:28]:<28} {r.seed:>4} {_fmt(r.test_error, '9.4f')} "
              f"{_fmt(r.params, '9d')} {_fmt(r.seconds, '8.1f')}  {r.updated_at}")  # fmt: skip
    print(f"({len(records)} of {total} rows)", file=sys.stderr)
    return 0


def _export(args) -> int:
    from cellnas.archive import export_format

    _check_limit(args)
    export_format(args.output)  # before any query: a name without .csv or .json is refused at once
    if args.importance:
        return _export_importance(args)
    _check_filters(args)
    with open_archive(args, create=False) as archive:
        records = _select(args, archive)
        if not records:
            known = "" if args.protocol is None or args.protocol in {n for n, _ in archive.protocols()} \
                else f"; {_protocols_present(archive)}"
            raise CellnasError(f"no rows of {args.archive} match the filters{known}; nothing written")
        archive.export(args.output, records)
    print(f"wrote {len(records)} rows to {args.output}", file=sys.stderr)
    return 0


def _export_importance(args) -> int:
    """``archive export --importance``: the OI vectors (the ``importance`` table)."""
    given = [flag for flag, value in (("--seed", args.seed), ("--max-error", args.max_error), ("--sort", args.sort),
                                      ("--source", args.source), ("--limit", args.limit or None)) if value is not None]
    if given:
        raise CellnasError(f"{given[0]} filters evaluations; it does not apply with --importance (OI vectors: "
                           "--protocol, --hash)")  # fmt: skip
    with open_archive(args, create=False) as archive:
        rows = archive.importance_rows(args.protocol, args.hash)
        if not rows:
            known = ", ".join(f"{p} ({n})" for p, n in archive.importance_protocols()) or "none"
            raise CellnasError(f"no OI vectors of {args.archive} match the filters (stored: {known}); nothing "
                               "written")  # fmt: skip
        archive.export_importance(args.output, rows)
    print(f"wrote {len(rows)} OI vectors to {args.output}", file=sys.stderr)
    return 0


def _import(args) -> int:
    from pathlib import Path

    if not Path(args.input).is_file():
        why = "is not a file" if Path(args.input).exists() else "does not exist"
        raise CellnasError(f"cannot import {args.input}: it {why}")
    if args.seed is not None:
        check_seed(args.seed, "--seed")
    if args.importance:
        for flag, value in (("--protocol", args.protocol), ("--seed", args.seed)):
            if value is not None:
                raise CellnasError(f"{flag} does not apply with --importance: an OI file names the protocol of each "
                                   "vector")  # fmt: skip
        archive = open_archive(args)  # opened on the first write: a file refused whole leaves no archive behind
        try:
            result = archive.import_importance(args.input, replace=args.replace)
        finally:
            archive.close()
        kept = f" ({result.kept} already present, kept; --replace overwrites them)" if result.kept else ""
        print(f"imported {result.written} OI vectors into {args.archive}{kept}")
        return 0
    archive = open_archive(args)  # opened on the first write: a file refused whole leaves no archive behind
    try:
        result = archive.import_csv(args.input, protocol=args.protocol, seed=args.seed or 0, replace=args.replace)
    finally:
        archive.close()
    notes = []
    if result.kept:
        notes.append(f"{result.kept} already present, kept; --replace overwrites them")
    if result.duplicates:
        n = len(result.duplicates)
        notes.append(f"{n} duplicate row{'s' if n > 1 else ''} in the file ignored: {_first(result.duplicates)}")
    if result.merged:
        n = len(result.merged)
        pairs = [f"{new} as {old}" for new, old in result.merged]
        notes.append(f"{n} row{'s' if n > 1 else ''} of architectures stored with their inputs listed in another "
                     f"order went to the stored row{'s' if n > 1 else ''}: {_first(pairs)}")  # fmt: skip
    print(f"imported {result.written} rows into {args.archive}" + (f" ({'; '.join(notes)})" if notes else ""))
    return 0


def _collect_genotypes(specs: list[str]) -> list:
    """The genotypes of GENOTYPE arguments: what `cellnas analyze convergence` accepts (zoo names, genotype files,
    run directories, a `cellnas analyze variants` directory with its index.json), read by the same function, plus
    a plain directory of genotype files (.json, .txt)."""
    from pathlib import Path

    from cellnas.analysis.convergence import expand_genotypes
    from cellnas.formats import load_genotype

    out = []
    for spec in specs:
        path = Path(spec)
        plain_dir = path.is_dir() and not (path / "genotype.json").is_file() and not (path / "index.json").is_file()
        if plain_dir:
            files = sorted(f for f in path.iterdir() if f.suffix in (".json", ".txt") and f.is_file())
            if not files:
                raise CellnasError(f"directory {path} holds no genotype files (.json, .txt)")
            out += [load_genotype(f) for f in files]
        else:
            out += [e.genotype for e in expand_genotypes([spec])]
    return out


def _evaluate(args) -> int:
    from cellnas.analysis.sampling import MAX_SAMPLES, sample

    if args.sample:
        n, seed = 100 if args.n is None else args.n, check_seed(args.seed or 0, "--seed")
        if not 1 <= n <= MAX_SAMPLES:
            raise CellnasError(f"-n must be from 1 to {MAX_SAMPLES} (every sample is held in memory), got {n}")
    else:
        for flag, value in (("-n", args.n), ("--seed", args.seed)):
            if value is not None:
                raise CellnasError(f"{flag} (a sampling option) needs --sample CONSTRAINT; it does not apply to "
                                   "GENOTYPE arguments")  # fmt: skip
    evaluator = build_evaluator(args)  # checks the evaluation options: nothing is sampled or written before
    genotypes = _collect_genotypes(args.genotypes)
    source = "evaluate"
    if args.sample:
        genotypes += sample(args.sample, n, seed)
        source = f"sample:{args.sample}:seed{seed}"
    if not genotypes:
        raise CellnasError("nothing to evaluate: give GENOTYPE arguments or --sample CONSTRAINT")
    with open_archive(args) as archive:
        report = run_batch(evaluator, genotypes, args, archive, source=source)
    report_failures(report)
    s = report.summary()
    per = s["mean_seconds_per_evaluation"]
    print(f"{evaluator.protocol}: {s['evaluated']} evaluated, {s['reused']} already in {args.archive}, "
          f"{s['failed']} failed; {s['wall_seconds']:.1f} s wall"
          + (f", {per:.2f} s per evaluation in a worker" if per is not None else ""))  # fmt: skip
    return 1 if report.failed and not report.results else 0


def _protocols_present(archive) -> str:
    names = [name for name, _ in archive.protocols()]
    return f"protocols present: {', '.join(names)}" if names else "the archive holds no evaluations"


def _fit(args) -> int:
    from pathlib import Path

    from cellnas.evaluators.surrogate import MIN_ROWS, fit_surrogate, split_encodable

    if Path(args.output).is_dir():
        raise CellnasError(f"-o {args.output} is a directory; give the surrogate file's name, "
                           f"e.g. {Path(args.output) / 'surrogate.joblib'}")  # fmt: skip
    check_seed(args.seed, "--seed")
    with open_archive(args, create=False) as archive:
        ranked = archive.ranked(args.protocol, args.metric, source=args.source)
        if not ranked and args.source and archive.ranked(args.protocol, args.metric):
            sources = ", ".join(f"{src} ({n})" for src, n in archive.sources(args.protocol) if src) or "none named"
            raise CellnasError(f"no {args.metric} under protocol {args.protocol!r} in {args.archive} among the rows "
                               f"whose source starts with {args.source!r} (--source); sources of {args.protocol!r}: "
                               f"{sources}")  # fmt: skip
        if not ranked:
            which = f" from source {args.source!r}* (--source)" if args.source else ""
            raise CellnasError(f"no {args.metric}{which} under protocol {args.protocol!r} in {args.archive}; "
                               f"{_protocols_present(archive)}")  # fmt: skip
    n_nodes, keep, refused = split_encodable([g for g, _, _ in ranked], args.features)
    if refused:
        reasons = list(dict.fromkeys(refused.values()))
        why = reasons[0] + (f" and {len(reasons) - 1} other reasons" if len(reasons) > 1 else "")
        skipped = f"({why}): {_first(ranked[i][0].content_hash() for i in refused)}"
        if len(keep) < MIN_ROWS:
            raise CellnasError(f"only {len(keep)} of {len(ranked)} rows with {args.metric} under protocol "
                               f"{args.protocol!r} can be encoded by one surrogate {skipped}; a surrogate needs at "
                               f"least {MIN_ROWS}")  # fmt: skip
        print(f"warning: skipped {len(refused)} of {len(ranked)} rows that a surrogate of {n_nodes}-node cells "
              f"cannot encode {skipped}; fitting on the other {len(keep)}", file=sys.stderr)  # fmt: skip
        ranked = [ranked[i] for i in keep]
    model = fit_surrogate([(g, v) for g, v, _ in ranked], args.protocol, metric=args.metric, model=args.model,
                          features=args.features, test_fraction=args.test_fraction, seed=args.seed,
                          refit=not args.no_refit)  # fmt: skip
    model.save(args.output)
    s = model.summary()
    if s["kendall_tau"] is not None:
        print(f"held-out ({s['n_test']} architectures): Kendall tau {s['kendall_tau']:.3f}, "
              f"Spearman {s['spearman']:.3f}, RMSE {s['rmse']:.4f}")  # fmt: skip
    elif s["n_test"]:
        print(f"held-out ({s['n_test']} architectures): Kendall tau and Spearman undefined (constant predictions "
              f"or targets), RMSE {s['rmse']:.4f}")  # fmt: skip
    print(f"wrote {args.output} (fitted on {s['n_train']} architectures; protocol {model.protocol})")
    if model.is_constant([g for g, _, _ in ranked]):
        print(f"warning: this surrogate predicts the same {args.metric} for every architecture of the archive "
              f"({len(ranked)} rows are too few for --model {args.model}): it cannot rank anything", file=sys.stderr)
    return 0


def _info(args) -> int:
    with open_archive(args, create=False) as archive:
        protocols = archive.protocols()
        failures = archive.failures()
        oi = archive.importance_protocols()
        sources = archive.sources()
    print(f"{args.archive}: {sum(n for _, n in protocols)} rows")
    for name, n in protocols:
        print(f"  {name:<40} {n:>7} rows")
    if failures:
        print(f"failures: {len(failures)} (retried by the next evaluation)")
    for name, n in oi:
        print(f"OI vectors: {name:<36} {n:>7}")
    if sources:
        print("sources: " + ", ".join(f"{src or '(none)'} ({n})" for src, n in sources))
    return 0
