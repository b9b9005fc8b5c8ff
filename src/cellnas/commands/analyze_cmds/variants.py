"""``cellnas analyze variants``: topology/op variants of a cell (Shu et al., ICLR 2020; SPEC 3.2)."""

from __future__ import annotations

import json
import sys

from cellnas.commands.analyze import output_dir
from cellnas.errors import CellnasError

KINDS = ("family", "random_ops", "random_conn", "widest")


def parse_seeds(text: str) -> list[int]:
    """'1-10' -> 1..10; '1,4,7' -> [1, 4, 7]; ranges and lists combine ('1-3,8'). Seeds are >= 0."""
    seeds: list[int] = []
    try:
        for part in filter(None, (x.strip() for x in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first:
                raise ValueError
            seeds += range(first, last + 1)
    except ValueError:
        raise CellnasError(f"--seeds {text!r}: expected non-negative seeds such as '1-10' or '1,2,5'") from None
    if not seeds:
        raise CellnasError(f"--seeds {text!r} names no seed")
    return seeds


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "variants",
        help="random-op / random-connection / widest variants and the c1..c12 width family (Shu et al. 2020)",
        description=(
            "Variants of a cell with its ops or its wiring changed (Shu, Wang, Cai, ICLR 2020):\n"
            "  family       c1..c12: random re-wirings binned by normal-cell width (2, 2.5, 3, 3.5c), 3 per bin.\n"
            "               Width increases from bin to bin; within a width bin depth does not increase (distinct\n"
            "               depths where the bin offers them, deepest first), but across bins it may rise again\n"
            "               (DARTS_V2: c3 depth 3, c4 depth 5). Shu et al.'s README says width increases and\n"
            "               depth decreases from c1 to c12 (SPEC 3.2). A RE-CREATION: the paper's genotypes are\n"
            "               unpublished; each member is random_conn(GENOTYPE, seed) for its recorded seed.\n"
            "  random_ops   the reference random_ops for every --seeds value (*_OPS1..10)\n"
            "  random_conn  the reference random_conn for every --seeds value (*_CONN1..10)\n"
            "  widest       every node reads one edge from each input (Shu et al.'s *_ADAPT cells): *_WIDEST,\n"
            "               or *_ADAPT where it is the published cell of the zoo (NASNet, AmoebaNet, SNAS_MILD;\n"
            "               ENAS's published cell reads input 0 twice at node 3: index.json lists the difference)\n\n"
            "Writes one cellnas JSON genotype per variant, index.json (name, file, width, depth, seed)\n"
            "and variants.png (the normal cells, base first).\n\n"
            "example: cellnas analyze variants DARTS_V2 -o darts_family\n"
            "         cellnas analyze variants DARTS_V2 -o darts_conn --kind random_conn --seeds 1-10"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or DARTS text")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--kind", choices=KINDS, default="family", help="which variants")
    p.add_argument("--seeds", default="1-10", help="seeds for random_ops/random_conn, e.g. 1-10 or 1,3,5")
    p.add_argument("--seed", type=int, default=0, help="first candidate seed of the width family")
    p.add_argument("--widths", default="2,2.5,3,3.5", help="family: normal-cell widths in units of c")
    p.add_argument("--per-bin", type=int, default=3, help="family: variants per width")
    p.add_argument("--max-tries", type=int, default=2000, help="family: candidate seeds to try")
    p.add_argument("--keep-reduce", action="store_true", help="family: keep the reduction cell (default: re-wire it)")
    p.set_defaults(func=run)


def _base_name(spec: str) -> str:
    from pathlib import Path

    from cellnas.zoo import ALIASES, ZOO

    lookup = {k.lower(): k for k in list(ZOO) + list(ALIASES)}
    if spec.lower() in lookup and not Path(spec).exists():
        return lookup[spec.lower()]
    path = Path(spec)
    return path.stem if path.exists() and path.is_file() else "base"


def _published_adapt(name: str) -> tuple[str, object] | None:
    """The name and genotype of Shu et al.'s published widest cell of ``name`` (``<name>_ADAPT`` in the zoo, SNAS_MILD
    -> SNAS_ADAPT), or ``None`` when there is none."""
    from cellnas.zoo import ZOO

    adapt = f"{name.removesuffix('_MILD')}_ADAPT"
    return (adapt, ZOO[adapt]) if adapt in ZOO else None


def run(args) -> int:
    from cellnas.analysis import variants as V
    from cellnas.analysis.topology import topology
    from cellnas.formats import load_genotype, save_genotype
    from cellnas.plots.variants import plot_cell_grid
    from cellnas.runs import atomic_write_text

    if args.kind == "family":
        try:
            widths = tuple(float(w) for w in args.widths.split(","))
        except ValueError:
            raise CellnasError(f"--widths {args.widths!r}: expected numbers such as 2,2.5,3,3.5") from None
    seeds = parse_seeds(args.seeds) if args.kind in ("random_ops", "random_conn") else []
    base = load_genotype(args.genotype)
    name = _base_name(args.genotype)
    out = output_dir(args.output)

    items: list[tuple[str, object, int | None]] = []  # (name, genotype, seed)
    if args.kind == "family":
        family = V.width_family(base, widths=widths, per_bin=args.per_bin, seed=args.seed,
                                max_tries=args.max_tries, rewire_reduce=not args.keep_reduce)  # fmt: skip
        items = [(v.name, v.genotype, v.seed) for v in family]
    elif args.kind in ("random_ops", "random_conn"):
        fn = V.random_ops if args.kind == "random_ops" else V.random_conn
        suffix = "OPS" if args.kind == "random_ops" else "CONN"
        items = [(f"{name}_{suffix}{s}", fn(base, s), s) for s in seeds]
    else:
        wide = V.widest(base)
        published = _published_adapt(name)
        # named after Shu et al.'s published cell only when it is that cell (ENAS's differs in one edge)
        label = f"{name}_ADAPT" if published is not None and published[1] == wide else f"{name}_WIDEST"
        items = [(label, wide, None)]

    def entry(label, g, seed):
        file = f"{label}.json"
        save_genotype(g, out / file, fmt="json")
        topo = topology(g)
        return {"name": label, "file": file, "width": topo["normal"]["width"], "depth": topo["normal"]["depth"],
                "reduce_width": topo["reduce"]["width"], "reduce_depth": topo["reduce"]["depth"],
                "seed": seed, "hash": g.content_hash()}  # fmt: skip

    index = {
        "kind": args.kind,
        "base": entry(name, base, None),
        "variants": [entry(label, g, seed) for label, g, seed in items],
        "width_unit": "c (channels of one intermediate node); width/depth are of the normal cell (SPEC 3.1)",
    }
    if args.kind == "widest" and (published := _published_adapt(name)) is not None:
        adapt, g = published
        differ = [f"{t} node {i + 2}" for t in ("normal", "reduce")
                  for i, (a, b) in enumerate(zip(g.cell(t).nodes, items[0][1].cell(t).nodes)) if a != b]  # fmt: skip
        index["published"] = {"name": adapt, "same": not differ, "differs_in": differ}
    if args.kind == "family":
        index["note"] = (
            "re-creation of Shu et al.'s c1..c12: each member is random_conn(base, seed); the paper's own "
            "genotypes are unpublished"
        )
        index["family"] = {"widths": args.widths, "per_bin": args.per_bin, "seed": args.seed,
                           "max_tries": args.max_tries, "rewire_reduce": not args.keep_reduce}  # fmt: skip
    atomic_write_text(out / "index.json", json.dumps(index, indent=2) + "\n")
    cells = [(name, base.normal)] + [(label, g.normal) for label, g, _ in items]
    plot_cell_grid(cells, out / "variants.png", title=f"{name}: {args.kind} variants (normal cells)")
    for e in index["variants"]:
        print(f"{e['name']:<20} width {e['width']:g}c  depth {e['depth']}  {e['file']}")
    print(f"wrote {len(items)} variants, index.json and variants.png to {out}", file=sys.stderr)
    return 0
