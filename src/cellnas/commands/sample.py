"""``cellnas sample``: constrained random DARTS cells and edit distances (Wan et al., ICLR 2022; SPEC 5.4)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cellnas.errors import CellnasError, check_seed

DEFAULT_N = 10
#: constraints whose sampler has the quirk, and whose constraint set has a residual link (SPEC 5.4)
_SKIP_CONSTRAINTS = ("skip", "primskip")

#: options of one mode only: (attribute, flag, what the option is for)
_SAMPLING_ONLY = (("n", "-n", "the number of samples"), ("seed", "--seed", "the sampling seed"),
                  ("no_quirk", "--no-quirk", "a sampling option; the edit distance never requires the quirk"),
                  ("output", "-o", "the sample files; --distance prints to stdout"),
                  ("format", "--format", "the format of the samples"),
                  ("replace", "--replace", "replaces earlier samples in -o"))  # fmt: skip
_DISTANCE_ONLY = (("residual", "--residual", "the Skip reading of the edit distance"),
                  ("cells", "--cells", "the cells the edit distance counts"))  # fmt: skip


def _given(args, attr: str) -> bool:
    value = getattr(args, attr)
    return value is not None and value is not False  # not `in (None, False)`: -n 0 / --seed 0 are given


def _warn(text: str) -> None:
    print(f"cellnas sample: warning: {text}", file=sys.stderr)


def check_options(args) -> None:
    """Refuse options that do not apply to the mode (sampling, or --distance), warn about harmless ones."""
    if args.distance is not None:
        for attr, flag, what in _SAMPLING_ONLY:
            if _given(args, attr):
                raise CellnasError(f"{flag} ({what}) does not apply with --distance; drop one of the two")
        if args.residual is not None and args.constraint not in _SKIP_CONSTRAINTS:
            _warn(f"--residual has no effect with --constraint {args.constraint}: only skip and primskip "
                  "have a residual link")  # fmt: skip
        return
    for attr, flag, what in _DISTANCE_ONLY:
        if _given(args, attr):
            raise CellnasError(f"{flag} ({what}) needs --distance GENOTYPE; it does not apply to sampling")
    if args.replace and args.output is None:
        _warn("--replace has no effect without -o: the samples go to standard output")
    if args.no_quirk and args.constraint not in _SKIP_CONSTRAINTS:
        _warn(f"--no-quirk has no effect with --constraint {args.constraint}: only the skip and primskip samplers "
              "have the quirk")  # fmt: skip


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
            "(DARTS_V2 -> 13).\n"
            "-o DIR refuses a directory that already holds samples of the constraint (a new set would\n"
            "overwrite some files and leave others, two seeds in one set); --replace replaces them all.\n"
            "Sampling options (-n, --seed, --no-quirk, -o, --replace, --format) are refused with --distance,\n"
            "and the distance options (--residual, --cells) without it.\n\n"
            "examples: cellnas sample --constraint primskip -n 100 --seed 0 -o samples/\n"
            "          cellnas sample --distance DARTS_V2 --constraint primskip\n"
            "          cellnas sample --distance DARTS_V2 --constraint primskip --residual node2 --cells normal,reduce"
        ),
        formatter_class=formatter,
    )
    p.add_argument("--constraint", choices=("none", "prim", "skip", "primskip"), default="none",
                   help="constraint set")  # fmt: skip
    # options that apply to one mode only default to None, so that run() can tell whether they were given
    p.add_argument("-n", type=int, default=None, help=f"sampling: number of samples (default: {DEFAULT_N})")
    p.add_argument("--seed", type=int, default=None, help="sampling: random seed (default: 0)")
    p.add_argument("--no-quirk", action="store_true",
                   help="sampling, skip/primskip: node j may also read node j-1")  # fmt: skip
    p.add_argument("-o", "--output", metavar="DIR", default=None, help="sampling: write one file per sample into DIR")
    p.add_argument("--replace", action="store_true",
                   help="sampling, -o: replace the samples of --constraint already in DIR (default: refuse to write "
                        "into a directory that holds some)")  # fmt: skip
    p.add_argument("--format", choices=("json", "darts"), default=None,
                   help="sampling: output format (default: darts text on stdout, json files with -o)")  # fmt: skip
    p.add_argument("--distance", metavar="GENOTYPE", default=None,
                   help="instead of sampling, the edit distance of GENOTYPE to the constraint set")  # fmt: skip
    p.add_argument("--residual", choices=("node2", "any"), default=None,
                   help="--distance, skip/primskip: Skip means any residual link (a skip from an input; reproduces "
                        "Table 2) or node 2 = skip(0)+skip(1) (the sampler's set) (default: any)")  # fmt: skip
    p.add_argument("--cells", default=None,
                   help="--distance: cell types to edit and count, comma-separated (default: normal, which "
                        "reproduces Table 2; or normal,reduce)")  # fmt: skip
    p.set_defaults(func=run)


def _distance(args) -> int:
    from cellnas.analysis.sampling import DEFAULT_DISTANCE_CELLS, DEFAULT_RESIDUAL, edit_distance
    from cellnas.formats import load_genotype, to_darts_text
    from cellnas.genotype import CELL_TYPES

    text = ",".join(DEFAULT_DISTANCE_CELLS) if args.cells is None else args.cells
    named = [c.strip() for c in text.split(",") if c.strip()]
    valid = ", ".join(sorted(CELL_TYPES))
    if not named:
        raise CellnasError(f"--cells names no cell type; valid choices: {valid}")
    twice = sorted({c for c in named if named.count(c) > 1})
    if twice:
        raise CellnasError(f"--cells {text!r} names {', '.join(twice)} more than once; give each cell type once "
                           f"(valid choices: {valid})")  # fmt: skip
    cells = tuple(named)
    residual = args.residual or DEFAULT_RESIDUAL
    g = load_genotype(args.distance)
    dist, nearest = edit_distance(g, args.constraint, residual=residual, cells=cells)
    print(f"edit distance to {args.constraint} (residual={residual}, cells={','.join(cells)}): {dist}")
    for name in cells:
        for i, (old, new) in enumerate(zip(g.cell(name).pairs, nearest.cell(name).pairs)):
            if old != new:
                print(f"  {name} node {2 + i // 2}, edge {i}: {old[0]}({old[1]}) -> {new[0]}({new[1]})")
    print(f"nearest: {to_darts_text(nearest)}")
    return 0


def run(args) -> int:
    check_options(args)
    if args.distance is not None:
        return _distance(args)
    from cellnas.analysis.sampling import sample
    from cellnas.commands.analyze import output_dir
    from cellnas.formats import dumps, save_genotype, to_json

    n = DEFAULT_N if args.n is None else args.n
    seed = 0 if args.seed is None else args.seed
    from cellnas.analysis.sampling import MAX_SAMPLES

    if not 1 <= n <= MAX_SAMPLES:
        raise CellnasError(f"-n must be from 1 to {MAX_SAMPLES} (every sample is held in memory), got {n}")
    check_seed(seed)
    out = None if args.output is None else output_dir(args.output)  # before sampling: a bad -o fails at once
    earlier = [] if out is None else _earlier_samples(out, args.constraint)
    if earlier and not args.replace:
        raise CellnasError(f"-o {str(out)!r} already holds {_describe(earlier, args.constraint)}; a new set would "
                           "overwrite some of them and mix two sets: choose another -o, or give --replace to replace "
                           "them")  # fmt: skip
    genotypes = sample(args.constraint, n, seed, quirk=not args.no_quirk)
    if out is None:
        if args.format == "json":
            print(json.dumps([to_json(g) for g in genotypes], indent=2))
        else:
            for g in genotypes:
                print(dumps(g, "darts"))
        return 0
    fmt = args.format or "json"
    suffix = ".json" if fmt == "json" else ".txt"
    width = max(3, len(str(n - 1)))
    written = [save_genotype(g, out / f"{args.constraint}_{i:0{width}d}{suffix}", fmt=fmt)
               for i, g in enumerate(genotypes)]  # fmt: skip
    # --replace: the earlier samples the new set did not overwrite go, so that the directory holds one set
    for path in set(earlier) - set(written):
        path.unlink(missing_ok=True)
    replaced = f", replacing {_describe(earlier, args.constraint)}" if earlier else ""
    print(f"wrote {len(genotypes)} {args.constraint} samples (seed {seed}) to {out}{replaced}", file=sys.stderr)
    return 0


def _earlier_samples(out: Path, constraint: str) -> list[Path]:
    """The sample files of ``constraint`` that an earlier ``cellnas sample -o`` wrote into ``out`` (any count, any
    format), sorted by name."""
    pattern = re.compile(rf"{re.escape(constraint)}_\d+\.(json|txt)")
    return sorted(p for p in out.iterdir() if pattern.fullmatch(p.name) and p.is_file())


def _describe(files: list[Path], constraint: str) -> str:
    """'2 none samples (none_000.json .. none_001.json)'."""
    span = files[0].name if len(files) == 1 else f"{files[0].name} .. {files[-1].name}"
    return f"{len(files)} {constraint} sample{'s' if len(files) != 1 else ''} ({span})"
