"""``cellnas convert``: move a genotype between formats."""

from __future__ import annotations

import sys


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a genotype between cellnas JSON, DARTS text, NNabla JSON and NAS-Bench-301 config",
        description="Convert GENOTYPE (zoo name, file in any supported format, run directory, or DARTS text)\n"
        "to another format. Formats: json (cellnas, versioned), darts (Genotype(...) text),\n"
        "nnabla (arch_normal/arch_reduction JSON), nb301 (NAS-Bench-301 configuration).\n\n"
        "example: cellnas convert DARTS_V2 --to nnabla -o DARTS_arch.json",
        formatter_class=formatter,
    )
    p.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or DARTS text")
    p.add_argument("--to", required=True, choices=["json", "darts", "nnabla", "nb301"], help="output format")
    p.add_argument("-o", "--output", default=None, help="output file (default: standard output)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.formats import dumps, load_genotype, save_genotype

    g = load_genotype(args.genotype)
    if args.output:
        save_genotype(g, args.output, fmt=args.to)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(dumps(g, args.to))
    return 0
