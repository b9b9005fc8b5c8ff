"""``cellnas zoo``: list the published cells."""

from __future__ import annotations

import json


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "zoo",
        help="list the published cells (DARTS_V1/V2, NASNet, AmoebaNet, ENAS, ...)",
        description="List the published genotypes shipped with cellnas, with their width/depth (Shu et al. 2020).\n"
        "Use any name wherever a command takes GENOTYPE, e.g. `cellnas info DARTS_V2`.",
        formatter_class=formatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.analysis.topology import topology
    from cellnas.zoo import ALIASES, ZOO

    rows = []
    for name, g in ZOO.items():
        topo = topology(g)
        aliases = [a for a, t in ALIASES.items() if t == name]
        rows.append({"name": name, "aliases": aliases, "hash": g.content_hash(), "nodes": g.normal.n_nodes, **topo})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<16} {'nodes':>5}  {'normal w/d':>10}  {'reduce w/d':>10}  hash")
    for r in rows:
        n, rd = r["normal"], r["reduce"]
        alias = f"  (= {', '.join(r['aliases'])})" if r["aliases"] else ""
        print(
            f"{r['name']:<16} {r['nodes']:>5}  {n['width']:>6g}c/{n['depth']:<2}  {rd['width']:>6g}c/{rd['depth']:<2}  "
            f"{r['hash']}{alias}"
        )
    return 0
