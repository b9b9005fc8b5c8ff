"""``cellnas draw``: draw the normal and reduction cells of a genotype."""

from __future__ import annotations

import sys


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "draw",
        help="draw a genotype's normal and reduction cells (png/svg/pdf)",
        description="Draw the normal and reduction cells side by side with matplotlib: input nodes\n"
        "c_{k-2}/c_{k-1}, intermediate nodes, output c_{k}, edges labelled with their op.\n\n"
        "example: cellnas draw DARTS_V2 -o darts_v2.png",
        formatter_class=formatter,
    )
    p.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or DARTS text")
    p.add_argument("-o", "--output", required=True, help="output file: .png, .svg or .pdf")
    p.add_argument("--title", default=None, help="figure title (default: the GENOTYPE argument)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.formats import load_genotype
    from cellnas.plots.cells import draw_genotype

    g = load_genotype(args.genotype)
    title = args.title if args.title is not None else (args.genotype if len(args.genotype) < 60 else None)
    draw_genotype(g, args.output, title=title)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
