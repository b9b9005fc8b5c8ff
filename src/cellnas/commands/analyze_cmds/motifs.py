"""``cellnas analyze motifs``: frequent subgraphs (motifs) of the archive's top cells, ranked by normalised
support (Wan et al., ICLR 2022, Sec. 4, Table 1; SPEC 5.3)."""

from __future__ import annotations

import json
import sys
from collections import Counter

from cellnas.commands._evalopts import add_archive_arg, open_archive
from cellnas.commands.analyze_cmds.importance import add_include_derived_arg, choose_protocol
from cellnas.errors import CellnasError, check_finite_option, check_seed

DEFAULT_MIN_SUPPORT = 0.05


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "motifs",
        help="frequent subgraphs of the archive's top cells, ranked by normalised support (Wan et al.)",
        description=(
            "Cell graphs of the best --top fraction of the archive's population (the rows of the ranking\n"
            "protocol except OI neighbours and ablation variants stored by `analyze importance`/`analyze ablate`;\n"
            "--include-derived ranks them too) (SPEC 5.3: inputs labelled input1/input2, intermediate nodes\n"
            "'op', no output node, edges labelled by op), optionally pruned to the important ops first\n"
            "(--oi-protocol: OI vectors stored by `cellnas analyze importance` with that evaluator protocol, or\n"
            "'any': each cell's vector under the ranking protocol, else its latest, with a warning when protocols\n"
            "mix; motifs.json names each cell's; edges with OI below --weight-thres dropped, then isolated\n"
            "nodes). Every subgraph with 2..6 nodes in at least\n"
            "round(--min-support x n) of the n graphs (a fraction in (0, 1], converted as the reference does: 0.05\n"
            "of 2589 is 129; or in at least --min-count graphs) is found (exhaustively; gSpan in the reference), then\n"
            "ranked by norm_support = support / ref_incidence, where ref_incidence ('ref') counts the random\n"
            "reference subgraphs (one per cell, as many edges as its pruned graph) that contain the motif as a\n"
            "node-induced subgraph (the reference's DiGraphMatcher test; support counts any occurrence). A motif in\n"
            "none of them has ref 0 and norm_support = support / 0: shown 'not in ref' (null in motifs.json), it\n"
            "ranks first, by support. Without an OI pre-filter the reference subgraphs are the whole cells and\n"
            "norm_support is not informative.\n"
            "Shapes: the reference runs gSpan in directed mode, which grows patterns along out-edges only and so\n"
            "finds the out-trees (no node fed by two edges of the motif): --shapes gspan (default) keeps those, as\n"
            "the reference; --shapes connected keeps every connected subgraph (e.g. a node and both its inputs).\n"
            "--ref-edges randint gives each reference subgraph randint(n) edges (0..n-1), as the reference code's\n"
            "--normal_only run does, instead of the n edges the paper describes (default: same).\n\n"
            "Writes motifs.json and motifs.png (the top --show motifs).\n\n"
            "example: cellnas analyze motifs --protocol proxy:digits-tiny --top 0.05 --oi-protocol any -o motifs"
        ),
        formatter_class=formatter,
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--protocol", default=None, help="rank the archive by this protocol (default: the only one)")
    p.add_argument("--top", type=float, default=0.05, metavar="FRACTION", help="fraction of the ranked archive")
    p.add_argument("--source", default=None, metavar="PREFIX",
                   help="rank only rows whose source starts so (e.g. 'analyze-sampling')")
    p.add_argument("--cell", choices=("normal", "reduce"), default="normal", help="which cell (the paper: normal)")
    add_include_derived_arg(p, "--top")
    p.add_argument("--oi-protocol", default=None, metavar="PROTOCOL",
                   help="pre-filter with the OI vectors stored under this evaluator protocol ('any': each cell's "
                        "under the ranking protocol, else its latest)")  # fmt: skip
    p.add_argument("--weight-thres", type=float, default=None,
                   help="pre-filter (--oi-protocol): keep edges with OI >= this (default: 0.001)")  # fmt: skip
    support = p.add_mutually_exclusive_group()
    support.add_argument("--min-support", type=float, default=None, metavar="FRACTION",
                         help="keep motifs in at least this fraction of the graphs, in (0, 1]: round(FRACTION x n) "
                              "of the n graphs, as the reference (default: 0.05, the paper's)")  # fmt: skip
    support.add_argument("--min-count", type=int, default=None, metavar="N",
                         help="keep motifs in at least N graphs, 1..n (instead of --min-support)")  # fmt: skip
    p.add_argument("--min-nodes", type=int, default=2, help="smallest motif (nodes, 2..6)")
    p.add_argument("--max-nodes", type=int, default=6, help="largest motif (nodes, 2..6)")
    p.add_argument("--shapes", choices=("gspan", "connected"), default="gspan",
                   help="motif shapes: the out-trees the reference's directed gSpan finds, or every connected "
                        "subgraph")  # fmt: skip
    p.add_argument("--ref-edges", choices=("same", "randint"), default="same",
                   help="edges of a reference subgraph: as many as its pruned graph (the paper), or randint of that "
                        "(the reference code's --normal_only run)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the reference subgraphs")
    p.add_argument("--show", type=int, default=9, help="motifs to print and draw (>= 1)")
    add_archive_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.analysis.motifs import cell_graph, mine, rank, reference_subgraphs, support_count
    from cellnas.commands.analyze import check_output_dir, output_dir
    from cellnas.formats import to_darts_text
    from cellnas.plots.wan import plot_motifs
    from cellnas.runs import atomic_write_text

    if not 0 < args.top <= 1:
        raise CellnasError(f"--top must be in (0, 1], got {args.top}")
    for flag in ("min_nodes", "max_nodes"):
        if not 2 <= getattr(args, flag) <= 6:
            raise CellnasError(f"--{flag.replace('_', '-')} must be in 2..6, got {getattr(args, flag)}")
    if args.min_nodes > args.max_nodes:
        raise CellnasError(f"--min-nodes {args.min_nodes} is above --max-nodes {args.max_nodes}")
    if args.min_support is not None and not 0 < args.min_support <= 1:
        hint = f"; for a number of graphs use --min-count {args.min_support:g}" if args.min_support > 1 else ""
        raise CellnasError(f"--min-support must be a fraction in (0, 1], got {args.min_support:g}{hint}")
    if args.min_count is not None and args.min_count < 1:
        raise CellnasError(f"--min-count must be >= 1, got {args.min_count}")
    if args.min_support == 1:
        print("cellnas analyze motifs: warning: --min-support 1 keeps the motifs found in every graph (100 %); "
              "before 2026-12-02 it meant a count of 1, which is now --min-count 1", file=sys.stderr)  # fmt: skip
    fraction = DEFAULT_MIN_SUPPORT if args.min_support is None and args.min_count is None else args.min_support
    if args.show < 1:
        raise CellnasError(f"--show must be >= 1, got {args.show}")
    check_seed(args.seed, "--seed")
    if args.weight_thres is not None:
        if args.oi_protocol is None:
            raise CellnasError("--weight-thres is the OI pre-filter's threshold; it does not apply without "
                               "--oi-protocol PROTOCOL")  # fmt: skip
        check_finite_option(args.weight_thres, "--weight-thres")
    weight_thres = 0.001 if args.weight_thres is None else args.weight_thres
    check_output_dir(args.output)
    with open_archive(args, create=False) as archive:
        protocol = choose_protocol(archive, args.protocol, include_derived=args.include_derived)
        top = archive.top(protocol, fraction=args.top, source=args.source, include_derived=args.include_derived)
        stored = None
        if args.oi_protocol is not None:
            if args.oi_protocol == "any":
                stored = archive.importance(prefer=protocol)
            else:
                stored = archive.importance(args.oi_protocol)
            if not stored:
                known = ", ".join(f"{p} ({n})" for p, n in archive.importance_protocols()) or "none"
                raise CellnasError(f"no OI vectors under {args.oi_protocol!r} in {args.archive} (stored: {known}); "
                                   "compute them with `cellnas analyze importance --top ...`")  # fmt: skip
    genotypes = [g for g, _, _ in top]
    if args.min_count is not None and args.min_count > len(genotypes):
        raise CellnasError(f"--min-count {args.min_count} is above the {len(genotypes)} graphs mined (the top "
                           f"{args.top:g} of {protocol}); give at most {len(genotypes)}")  # fmt: skip
    full = [cell_graph(g, cell_type=args.cell) for g in genotypes]
    if stored is not None:
        lacking = [g.content_hash() for g in genotypes if g.content_hash() not in stored]
        if lacking:
            same = (f" --source {args.source}" if args.source else "") + (" --include-derived" if args.include_derived
                                                                         else "")  # fmt: skip
            raise CellnasError(
                f"{len(lacking)} of the {len(genotypes)} top cells have no stored OI (e.g. {lacking[0]}); run "
                f"`cellnas analyze importance --top {args.top:g} --rank-protocol {protocol}{same}` first"
            )
        graphs = [cell_graph(g, oi=stored[g.content_hash()][1], threshold=weight_thres, cell_type=args.cell)
                  for g in genotypes]  # fmt: skip
        oi_from = Counter(stored[g.content_hash()][0] for g in genotypes)
        if len(oi_from) > 1:
            print(f"warning: the OI pre-filter mixes vectors of {len(oi_from)} protocols: "
                  f"{', '.join(f'{p} ({n} cells)' for p, n in oi_from.most_common())}; motifs.json names each "
                  "cell's (--oi-protocol PROTOCOL uses one)", file=sys.stderr)  # fmt: skip
    else:
        graphs = full
    out = output_dir(args.output)
    threshold = (support_count(len(graphs), min_count=args.min_count) if args.min_count is not None
                 else support_count(len(graphs), fraction))  # fmt: skip
    motifs = mine(graphs, min_count=threshold, min_nodes=args.min_nodes, max_nodes=args.max_nodes, shapes=args.shapes)
    reference = reference_subgraphs(full, [g.number_of_edges() for g in graphs], seed=args.seed, edges=args.ref_edges)
    ranked = rank(motifs, reference)
    doc = {
        "study": "Wan et al. 2022 frequent subgraph mining (SPEC 5.3)", "archive": str(args.archive),
        "rank_protocol": protocol, "top": args.top, "source": args.source, "include_derived": args.include_derived,
        "n_graphs": len(graphs), "cell": args.cell,
        "oi_prefilter": None if stored is None else {"protocol": args.oi_protocol, "weight_thres": weight_thres,
                                                     "protocols": dict(Counter(stored[g.content_hash()][0]
                                                                               for g in genotypes)),
                                                     "edges_kept": sum(g.number_of_edges() for g in graphs),
                                                     "edges_total": sum(g.number_of_edges() for g in full)},
        "min_support": fraction, "min_count": threshold, "min_nodes": args.min_nodes, "max_nodes": args.max_nodes,
        "shapes": args.shapes, "ref_edges": args.ref_edges, "seed": args.seed,
        "motifs": [{"rank": i + 1, "description": m.description, "nodes": list(m.key[0]),
                    "edges": [list(e) for e in m.key[1]], "support": m.support,
                    "support_fraction": m.support_fraction, "ref_incidence": m.ref_incidence,
                    "norm_support": None if m.norm_support == float("inf") else m.norm_support,
                    "in_reference": m.ref_incidence > 0}
                   for i, m in enumerate(ranked)],
        "norm_support_null": "no reference subgraph holds the motif as an induced subgraph (support / 0); ranked first",
        "cells": [{"hash": g.content_hash(), "genotype": to_darts_text(g), "test_error": e,
                   "oi_protocol": None if stored is None else stored[g.content_hash()][0]} for g, e, _ in top],
    }  # fmt: skip
    atomic_write_text(out / "motifs.json", json.dumps(doc, indent=1) + "\n")
    shown = ranked[: args.show]
    plot_motifs(shown, out / "motifs.png",
                title=f"top motifs of the best {len(graphs)} {args.cell} cells ({protocol})")  # fmt: skip
    rule = f"{fraction:g} ({threshold} of {len(graphs)})" if fraction is not None else f"{threshold} of {len(graphs)}"
    print(f"{len(ranked)} motifs with support >= {rule} in {len(graphs)} {args.cell} cells "
          f"(top {args.top:g} of {protocol})")  # fmt: skip
    print(f"{'#':>3} {'support':>8} {'%':>5} {'ref':>5} {'norm':>11}  motif")
    for i, m in enumerate(shown):
        norm = "not in ref" if m.ref_incidence == 0 else f"{m.norm_support:.2f}"
        print(f"{i + 1:>3} {m.support:>8} {100 * m.support_fraction:>5.0f} {m.ref_incidence:>5} {norm:>11}  "
              f"{m.description}")  # fmt: skip
    if any(m.ref_incidence == 0 for m in shown):
        print(f"('not in ref': none of the {len(reference)} reference subgraphs holds the motif as an induced "
              "subgraph, so norm = support / 0; these rank first, by support)")  # fmt: skip
    print(f"wrote motifs.json and motifs.png to {out}", file=sys.stderr)
    return 0
