"""``cellnas sample``: constrained random DARTS cells and edit distances (Wan et al., ICLR 2022; SPEC 5.4)."""

from __future__ import annotations

import json
import sys

from cellnas.errors import CellnasError


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "sample",
        help="random DARTS genotypes under the Prim/Skip/PrimSkip constraints, or the edit distance to them",
        description=(
            "Constrained random sampling of Wan et al. (ICLR 2022): normal and reduction cells drawn\n"
            "independently by the same rule, concat [2,3,4,5].\n"
            "  none      2 distinct inputs per node, ops uniform over the 7 non-none primitives\n"
            "  prim      ops uniform over skip_connect, sep_conv_3x3, sep_conv_5x5\n"
            "  skip      node 2 = skip_connect(0) + skip_connect(1) (the residual link)\n"
            "  primskip  skip wiring, the other 6 ops sep_conv_3x3 / sep_conv_5x5\n"
            "By default Skip/PrimSkip reproduce the reference sampler's quirk (node j >= 3 never reads\n"
            "node j-1); --no-quirk draws from all predecessors.\n\n"
            "With --distance GENOTYPE, print the edit distance (edges whose op and/or input change)\n"
            "to the constraint set and the nearest genotype in it. Default reading: Skip = at least one\n"
            "residual link (a skip from an input) anywhere in the cell, counted on the normal cell only:\n"
            "it reproduces the distances of Wan et al.'s Table 2 (DARTS_V2 1, BANANAS 1; SPEC 5.5).\n"
            "--residual node2 --cells normal,reduce measures the distance to the sampler's own set\n"
            "(DARTS_V2 -> 13).\n\n"
            "examples: cellnas sample --constraint primskip -n 100 --seed 0 -o samples/\n"
            "          cellnas sample --distance DARTS_V2 --constraint primskip\n"
            "          cellnas sample --distance DARTS_V2 --constraint primskip --residual node2 --cells normal,reduce"
        ),
        formatter_class=formatter,
    )
    p.add_argument("--constraint", choices=("none", "prim", "skip", "primskip"), default="none",
                   help="constraint set")  # fmt: skip
    p.add_argument("-n", type=int, default=10, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-quirk", action="store_true", help="skip/primskip: node j may also read node j-1")
    p.add_argument("-o", "--output", metavar="DIR", default=None, help="write one file per sample into DIR")
    p.add_argument("--format", choices=("json", "darts"), default=None,
                   help="output format (default: darts text on stdout, json files with -o)")  # fmt: skip
    p.add_argument("--distance", metavar="GENOTYPE", default=None,
                   help="instead of sampling, the edit distance of GENOTYPE to the constraint set")  # fmt: skip
    p.add_argument("--residual", choices=("node2", "any"), default="any",
                   help="--distance: Skip means any residual link (a skip from an input; reproduces Table 2) or "
                        "node 2 = skip(0)+skip(1) (the sampler's set)")  # fmt: skip
    p.add_argument("--cells", default="normal",
                   help="--distance: cell types to edit and count (normal reproduces Table 2; normal,reduce)")
    p.set_defaults(func=run)


def _distance(args) -> int:
    from cellnas.analysis.sampling import edit_distance
    from cellnas.formats import load_genotype, to_darts_text
    from cellnas.genotype import CELL_TYPES

    cells = tuple(dict.fromkeys(c.strip() for c in args.cells.split(",") if c.strip()))  # each cell type once
    if not cells:
        raise CellnasError(f"--cells names no cell type; valid choices: {', '.join(sorted(CELL_TYPES))}")
    g = load_genotype(args.distance)
    dist, nearest = edit_distance(g, args.constraint, residual=args.residual, cells=cells)
    print(f"edit distance to {args.constraint} (residual={args.residual}, cells={','.join(cells)}): {dist}")
    for name in cells:
        for i, (old, new) in enumerate(zip(g.cell(name).pairs, nearest.cell(name).pairs)):
            if old != new:
                print(f"  {name} node {2 + i // 2}, edge {i}: {old[0]}({old[1]}) -> {new[0]}({new[1]})")
    print(f"nearest: {to_darts_text(nearest)}")
    return 0


def run(args) -> int:
    if args.distance is not None:
        if args.output is not None:
            raise CellnasError("--distance prints to stdout; it does not take -o")
        return _distance(args)
    from pathlib import Path

    from cellnas.analysis.sampling import sample
    from cellnas.formats import dumps, save_genotype, to_json

    if args.n < 1:
        raise CellnasError(f"-n must be at least 1, got {args.n}")
    if not 0 <= args.seed < 2**32:
        raise CellnasError(f"--seed must be >= 0 and < 2**32, got {args.seed}")
    genotypes = sample(args.constraint, args.n, args.seed, quirk=not args.no_quirk)
    if args.output is None:
        if args.format == "json":
            print(json.dumps([to_json(g) for g in genotypes], indent=2))
        else:
            for g in genotypes:
                print(dumps(g, "darts"))
        return 0
    fmt = args.format or "json"
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".json" if fmt == "json" else ".txt"
    width = max(3, len(str(args.n - 1)))
    for i, g in enumerate(genotypes):
        save_genotype(g, out / f"{args.constraint}_{i:0{width}d}{suffix}", fmt=fmt)
    print(f"wrote {len(genotypes)} {args.constraint} samples (seed {args.seed}) to {out}", file=sys.stderr)
    return 0
