"""``cellnas analyze variants``: topology/op variants of a cell (Shu et al., ICLR 2020; SPEC 3.2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cellnas.commands.analyze import check_output_dir, output_dir
from cellnas.errors import CellnasError, check_seed

__all__ = ["KINDS", "DEFAULTS", "APPLIES_TO", "parse_seeds", "register", "run"]

KINDS = ("family", "random_ops", "random_conn", "widest")

#: Defaults of the options that apply to some kinds only; they default to None so that a given one can be told
#: from the default (and refused where it would be ignored), and are filled in from here.
DEFAULTS = {"seeds": "1-10", "seed": 0, "widths": "2,2.5,3,3.5", "per_bin": 3, "max_tries": 2000, "keep_reduce": False}

#: The kinds each of those options applies to.
APPLIES_TO = {"seeds": ("random_ops", "random_conn"), "seed": ("family",), "widths": ("family",),
              "per_bin": ("family",), "max_tries": ("family",), "keep_reduce": ("family",)}  # fmt: skip


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'1-10' -> 1..10; '1,4,7' -> [1, 4, 7]; ranges and lists combine ('1-3,8'). Seeds are in [0, 2**32), as NumPy's
    and torch's; a bad one is a :class:`CellnasError` naming ``flag``."""
    parts: list[tuple[int, int]] = []
    try:
        for part in filter(None, (x.strip() for x in text.split(","))):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first:
                raise ValueError
            parts.append((first, last))
    except ValueError:
        raise CellnasError(f"{flag} {text!r}: expected non-negative seeds such as '1-10' or '1,2,5'") from None
    if not parts:
        raise CellnasError(f"{flag} {text!r} names no seed")
    for _, last in parts:  # before a range is expanded: '0-99999999999' must not fill the memory first
        check_seed(last, flag)
    seeds = [s for first, last in parts for s in range(first, last + 1)]
    if len(set(seeds)) != len(seeds):
        seen: set[int] = set()
        twice = next(s for s in seeds if s in seen or seen.add(s))
        raise CellnasError(f"{flag} {text!r} names seed {twice} twice; give each seed once")
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
            "               or the zoo's name where it is the published cell (NASNet_ADAPT, AmoebaNet_ADAPT,\n"
            "               SNAS_ADAPT from SNAS_MILD;\n"
            "               ENAS's published cell reads input 0 twice at node 3: index.json lists the difference)\n\n"
            "Writes one cellnas JSON genotype per variant, index.json (name, file, width, depth, seed)\n"
            "and variants.png (the normal cells, base first). A DIR that already holds variants (index.json)\n"
            "or any of these files is refused; --replace replaces them (and removes the earlier variants that\n"
            "the new index does not list).\n\n"
            "example: cellnas analyze variants DARTS_V2 -o darts_family\n"
            "         cellnas analyze variants DARTS_V2 -o darts_conn --kind random_conn --seeds 1-10"
        ),
        formatter_class=formatter,
    )
    p.add_argument("genotype", metavar="GENOTYPE", help="zoo name, genotype file, run directory or DARTS text")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--kind", choices=KINDS, default="family", help="which variants")
    d = DEFAULTS
    p.add_argument("--seeds", help=f"random_ops/random_conn: seeds, e.g. 1-10 or 1,3,5 (default: {d['seeds']})")
    p.add_argument("--seed", type=int, help=f"family: first candidate seed (default: {d['seed']})")
    p.add_argument("--widths", help="family: normal-cell widths in units of c, from 1 to the number of intermediate "
                   f"nodes in steps of 0.5 (default: {d['widths']})")  # fmt: skip
    p.add_argument("--per-bin", type=int, help=f"family: variants per width (default: {d['per_bin']})")
    p.add_argument("--max-tries", type=int, help=f"family: candidate seeds to try (default: {d['max_tries']})")
    p.add_argument("--keep-reduce", action="store_true", help="family: keep the reduction cell (default: re-wire it)")
    p.add_argument("--replace", action="store_true",
                   help="replace the variants already in DIR (default: refuse a DIR that holds some)")  # fmt: skip
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


def _options_of_kind(args) -> None:
    """Refuse an option that does not apply to ``--kind`` (it would be silently ignored); fill in the defaults of
    the ones that apply."""
    for key, kinds in APPLIES_TO.items():
        given = getattr(args, key) not in (None, False)
        if given and args.kind not in kinds:
            flag = f"--{key.replace('_', '-')}"
            hint = {"seeds": " (the family's first candidate seed is --seed)",
                    "seed": " (random_ops/random_conn take --seeds)"}.get(key, "")  # fmt: skip
            raise CellnasError(f"{flag} applies to --kind {' and '.join(kinds)} only, not {args.kind}: leave it "
                               f"out{hint}")  # fmt: skip
        if getattr(args, key) is None:
            setattr(args, key, DEFAULTS[key])


def _earlier_files(out: Path) -> set[str]:
    """The genotype files an earlier ``analyze variants`` listed in ``out``'s index.json (base and variants) that are
    still there: plain ``.json`` names only, so a damaged index cannot name a file elsewhere."""
    from cellnas.runs import read_json_object

    index = read_json_object(out / "index.json") or {}
    entries = [index.get("base"), *(index.get("variants") if isinstance(index.get("variants"), list) else [])]
    files = {e.get("file") for e in entries if isinstance(e, dict)}
    return {f for f in files if isinstance(f, str) and f.endswith(".json") and f == Path(f).name
            and f != "index.json" and (out / f).is_file()}  # fmt: skip


def _earlier_output(out: Path) -> str | None:
    """What an earlier ``analyze variants`` left in ``out`` (its index.json), in words; ``None`` when nothing."""
    from cellnas.runs import read_json_object

    if not (out / "index.json").exists():
        return None
    index = read_json_object(out / "index.json") or {}
    variants = index.get("variants") if isinstance(index.get("variants"), list) else None
    base = index.get("base") if isinstance(index.get("base"), dict) else {}
    if variants is None or not isinstance(index.get("kind"), str):
        return "an index.json"
    of = f" of {base['name']}" if isinstance(base.get("name"), str) else ""
    return (f"the {index['kind']} variants{of} written by an earlier `analyze variants` (index.json, "
            f"{len(variants)} variant{'s' if len(variants) != 1 else ''})")


def _listed(files: list[str]) -> str:
    """'c1.json, c2.json and 3 more'."""
    head = ", ".join(files[:3])
    return head if len(files) <= 3 else f"{head} and {len(files) - 3} more"


def _figure_title(name: str, args, n: int) -> str:
    """What variants.png shows: the normal cells only, though most kinds change the reduction cell too."""
    what = {"family": "width family (random_conn re-wirings)", "random_ops": "random_ops variants",
            "random_conn": "random_conn variants", "widest": "widest re-wiring"}[args.kind]  # fmt: skip
    reduce = {"family": "reduction cells kept" if args.keep_reduce else "reduction cells re-wired too",
              "random_ops": "reduction cells' ops redrawn too", "random_conn": "reduction cells re-wired too",
              "widest": "reduction cell made widest too"}[args.kind]  # fmt: skip
    return f"{name}: {what}, {n} variant{'s' if n != 1 else ''} (normal cells shown; {reduce})"


def run(args) -> int:
    from cellnas.analysis import variants as V
    from cellnas.analysis.topology import topology
    from cellnas.formats import load_genotype, save_genotype
    from cellnas.plots.variants import plot_cell_grid
    from cellnas.runs import atomic_write_text

    _options_of_kind(args)
    if args.kind == "family":
        try:
            widths = tuple(float(w) for w in args.widths.split(","))
        except ValueError:
            raise CellnasError(f"--widths {args.widths!r}: expected numbers such as 2,2.5,3,3.5") from None
    seeds = parse_seeds(args.seeds) if args.kind in ("random_ops", "random_conn") else []
    check_output_dir(args.output)
    earlier = _earlier_output(Path(args.output))
    if earlier is not None and not args.replace:  # before the family search: refused at once
        raise CellnasError(f"-o {str(args.output)!r} already holds {earlier}; choose another -o, or give --replace "
                           "to replace them")  # fmt: skip
    base = load_genotype(args.genotype)
    name = _base_name(args.genotype)

    items: list[tuple[str, object, int | None]] = []  # (name, genotype, seed)
    if args.kind == "family":
        # checks the request first (V.check_family), then searches: nothing is written unless it succeeds
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
        label = published[0] if published is not None and published[1] == wide else f"{name}_WIDEST"
        items = [(label, wide, None)]
    new_files = [f"{label}.json" for label in [name, *(label for label, _, _ in items)]]
    new_files += ["index.json", "variants.png"]
    clash = [f for f in new_files if (Path(args.output) / f).exists()]
    if clash and not args.replace:
        raise CellnasError(f"-o {str(args.output)!r} already holds {_listed(clash)}, which this would overwrite; "
                           "choose another -o, or give --replace to replace them")  # fmt: skip
    stale = _earlier_files(Path(args.output)) - set(new_files) if args.replace else set()
    out = output_dir(args.output)

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
    cells = [(f"{name} (base)", base.normal)]
    cells += [(label if seed is None or args.kind != "family" else f"{label} (seed {seed})", g.normal)
              for label, g, seed in items]  # fmt: skip
    plot_cell_grid(cells, out / "variants.png", title=_figure_title(name, args, len(items)))
    for file in sorted(stale):  # --replace: the earlier variants the new index does not list
        (out / file).unlink(missing_ok=True)
    for e in index["variants"]:
        print(f"{e['name']:<20} width {e['width']:g}c  depth {e['depth']}  {e['file']}")
    replaced = f", replacing {earlier or _listed(clash)}" if earlier or clash else ""
    print(f"wrote {len(items)} variants, index.json and variants.png to {out}{replaced}", file=sys.stderr)
    return 0
