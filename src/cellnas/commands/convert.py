"""``cellnas convert``: move a genotype between formats."""

from __future__ import annotations

import sys
from pathlib import Path

from cellnas.errors import CellnasError


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
    p.add_argument("-o", "--output", default=None,
                   help="output file, replaced when it exists; never the input (default: standard output)")  # fmt: skip
    p.set_defaults(func=run)


def _input_file(spec: str) -> Path | None:
    """The file GENOTYPE is read from, as :func:`~cellnas.formats.load_genotype` finds it (a run directory's
    ``genotype.json``), or ``None`` when it names no file (a zoo name, DARTS text)."""
    try:
        path = Path(spec)
        path = path / "genotype.json" if path.is_dir() else path
        return path if path.is_file() else None
    except (OSError, ValueError):  # DARTS text too long for a path, a NUL byte
        return None


def _check_output(output: str, spec: str) -> None:
    """Refuse an empty -o and one naming the input file (same file after resolving links): converting a file onto
    itself would replace the genotype it holds with another format's text."""
    if not output.strip():
        raise CellnasError("-o is empty; give the output file (or leave -o out for standard output)")
    source = _input_file(spec)
    try:
        same = source is not None and Path(output).exists() and Path(output).samefile(source)
    except OSError:
        same = False
    if same:
        raise CellnasError(f"-o {output} is the input file {source}; converting would overwrite it: give another "
                           "output file (or leave -o out for standard output)")  # fmt: skip


def run(args) -> int:
    from cellnas.formats import dumps, load_genotype, save_genotype

    if args.output is not None:
        _check_output(args.output, args.genotype)
    g = load_genotype(args.genotype)
    if args.output is not None:
        save_genotype(g, args.output, fmt=args.to)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(dumps(g, args.to))
    return 0
