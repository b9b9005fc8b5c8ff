"""``cellnas analyze wiring RUN_DIR [RUN_DIR2]``: the wiring evolution of a search (Xie et al., AISTATS 2021;
SPEC 4), edge ablations (SPEC 4 (c)) included."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from cellnas.analysis.wiring import DEFAULT_MARGIN
from cellnas.commands.analyze import output_dir


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "wiring",
        help="how edges grow during a search: `none` vs the other ops, growth order, width, costs",
        description=(
            "Wiring evolution of a differentiable search (Xie et al., AISTATS 2021).\n\n"
            "Reads a search run directory and writes, into --out (default: RUN_DIR/wiring/):\n"
            "  wiring_edges_<cell>.png  per edge, softmax(α) of `none` vs the strongest other op, and the\n"
            "                           time the edge is first selected (its best op leads `none` by more\n"
            "                           than --margin);\n"
            "  wiring_growth.png        edges selected over time (grow vs prune) and the derived cell's\n"
            "                           width/depth per epoch; with two runs (e.g. bilevel and single-level)\n"
            "                           both are drawn side by side;\n"
            "  wiring_cost.png          mean cost C = dL/dZ per op, first vs last epoch (needs a search run\n"
            "                           with --record-wiring); C(none) = 0, so an op beats `none` only where\n"
            "                           its cost is negative;\n"
            "  wiring_cost_epochs.png   the same cost per op at every epoch (the paper's ablation figure 10b;\n"
            "                           needs --record-wiring);\n"
            "  wiring_cell_cost_<cell>.png\n"
            "                           the same cost per op in each cell of the type, against the cell's\n"
            "                           position in the network, first vs last epoch (wiring_cost.png is\n"
            "                           their sum; needs wiring.npz, written by --record-wiring);\n"
            "  wiring_output_cost.png   the output-level cost -z_y + Σ softmax(z)_i z_i, the loss and the\n"
            "                           prediction entropy per epoch, correct vs wrong samples (cost = loss -\n"
            "                           entropy per sample, <= 0 when correct; needs wiring.npz);\n"
            "  wiring_child_<cell>.png  --mode dsnas runs only: the sampled children, per edge the share of\n"
            "                           steps whose child ran an op other than `none`, the mean number of edges a\n"
            "                           child wired per epoch, and the edges of the argmax(α) child over time;\n"
            "  wiring_summary.json      the numbers behind the figures.\n"
            "A run searched with edge ablations (--remove-edge, --fix-edge; read from its config.json) is analysed\n"
            "through the op weights it used: a removed edge has no op, is never selected and is left out of the\n"
            "counts; a fixed edge has its fixed op and is selected throughout. The cost means are over the free\n"
            "edges (neither removed nor fixed), and each fixed edge's op is drawn apart. Every figure names the\n"
            "ablations in its title.\n"
            "With two runs the per-run figures end in the run directory's name (wiring_edges_normal_bilevel.png,\n"
            "wiring_cost_single.png), or in _1-NAME and _2-NAME when both directories have the same name.\n\n"
            "example:\n"
            "  cellnas search --preset wiring --dataset digits --channels 8 --epochs 20 --out runs/bilevel\n"
            "  cellnas search --preset wiring --dataset digits --channels 8 --epochs 20 --mode single-level \\\n"
            "      --out runs/single\n"
            "  cellnas analyze wiring runs/bilevel runs/single\n"
            "  cellnas search --preset wiring-dsnas-minimal --dataset digits --channels 8 --epochs 20 \\\n"
            "      --out runs/dsnas\n"
            "  cellnas analyze wiring runs/dsnas"
        ),
        formatter_class=formatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search run directories (one or two)")
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR/wiring)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="an edge is selected when its strongest op beats `none` by more than this softmax "
                        "probability, in [0, 1) (default: %(default)g, which clears the chance lead of the "
                        "initialisation; 0: any lead)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from cellnas.analysis.wiring import load_run, wiring_summary
    from cellnas.errors import CellnasError
    from cellnas.plots.wiring import (
        plot_cell_costs,
        plot_cost_epochs,
        plot_costs,
        plot_edges,
        plot_growth,
        plot_output_costs,
        plot_sampled_child,
    )
    from cellnas.runs import atomic_write_json

    if not (math.isfinite(args.margin) and 0 <= args.margin < 1):
        raise CellnasError(f"--margin must be a number >= 0 and < 1 (a softmax probability), got {args.margin}")
    if len(args.runs) > 2:
        raise CellnasError(f"give one or two search run directories, got {len(args.runs)}")
    for r in args.runs:
        if not Path(r).exists():
            raise CellnasError(f"{r} does not exist")
    if len(args.runs) == 2 and Path(args.runs[0]).resolve() == Path(args.runs[1]).resolve():
        raise CellnasError(f"{args.runs[0]} is given twice; compare two different runs")
    runs = [load_run(r) for r in args.runs]
    out = output_dir(args.out if args.out else runs[0]["dir"] / "wiring", "--out")
    pairs = [(r, wiring_summary(r, args.margin)) for r in runs]
    written = []
    names = [r["dir"].resolve().name for r in runs]
    for i, (r, s) in enumerate(pairs):
        # per-run figures named by run directory (and position, when two runs share a directory name)
        suffix = "" if len(pairs) == 1 else f"_{names[i]}" if len(set(names)) == len(names) else f"_{i + 1}-{names[i]}"
        for cell in s["cells"]:
            written.append(plot_edges(r, s, cell, out / f"wiring_edges_{cell}{suffix}.png"))
        if "cost" in s:
            written.append(plot_costs(s, out / f"wiring_cost{suffix}.png"))
            written.append(plot_cost_epochs(s, out / f"wiring_cost_epochs{suffix}.png"))
        for cell in s.get("cell_cost", {}).get("layers", {}):
            if any(cell in cells for cells in s["cell_cost"]["last_epoch"].values()):
                written.append(plot_cell_costs(s, cell, out / f"wiring_cell_cost_{cell}{suffix}.png"))
        if "output_cost" in s:
            written.append(plot_output_costs(s, out / f"wiring_output_cost{suffix}.png"))
        for cell in s.get("sampled_child", {}):
            if cell in s["cells"]:
                written.append(plot_sampled_child(s, cell, out / f"wiring_child_{cell}{suffix}.png"))
    written.append(plot_growth(pairs, out / "wiring_growth.png"))
    for r, s in pairs:
        note = _missing_records(r, s)
        if note:
            print(note, file=sys.stderr)
    summaries = [s for _, s in pairs]
    written.append(atomic_write_json(out / "wiring_summary.json", summaries if len(summaries) > 1 else summaries[0]))
    if args.json:
        print(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
        return 0
    for s in summaries:
        print(f"{s['run']} ({s['mode']}):")
        for cell, info in s["cells"].items():
            if "live_edges" in info:
                fixed = " ".join(f"{e}={op}" for e, op in info["fixed_edges"].items())
                print(f"  {cell}: ablated: removed {' '.join(info['removed_edges']) or '-'}; fixed {fixed or '-'} "
                      f"(counted as selected throughout); costs averaged over {' '.join(info['free_edges']) or '-'}")
            counts = info["selected_count"]
            first = info["input_edges_first"]
            pattern = f"free edges: {info['pattern']}" if "live_edges" in info else info["pattern"]
            print(f"  {cell}: selected edges {counts[0]} -> {counts[-1]} ({pattern}); "
                  f"above `none` from the start: {' '.join(info['selected_at_start']) or '-'}; grown in order: "
                  f"{' '.join(info['growth_order']) or '-'}"
                  + (f"; {first:.0%} of the first half leave an input node" if first is not None else ""))
            child = s.get("sampled_child", {}).get(cell)
            if child:
                wired = [v for v in child["mean_edges"] if v is not None]
                print(f"  {cell}: sampled child wires {wired[0]:.2f} -> {wired[-1]:.2f} of {child['live_edges']} "
                      f"edges per step ({child['pattern']}); argmax(α) child {child['argmax_edges'][0]} -> "
                      f"{child['argmax_edges'][-1]} edges ({child['argmax_pattern']})")  # fmt: skip
        for phase, groups in s.get("output_cost", {}).items():
            if phase == "epochs":
                continue
            last = {g: groups[g]["cost"][-1] for g in ("correct", "wrong", "all")}
            print(f"  output cost, {phase} batches, last epoch: "
                  + ", ".join(f"{g} {v:+.3f}" if v is not None else f"{g} -" for g, v in last.items()))
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def _missing_records(run: dict, summary: dict) -> str | None:
    """A one-line note naming the figures a run's records cannot give, and how to get them (None: all there)."""
    if "cost" not in summary:
        return (f"note: {run['dir']} was searched without --record-wiring: wiring_cost.png, wiring_cost_epochs.png, "
                "wiring_cell_cost_<cell>.png and wiring_output_cost.png need its cost records; search again with "
                "--record-wiring (first-order or single-level) to get them")  # fmt: skip
    if run.get("wiring") is None:
        return (f"note: {run['dir']} has no wiring.npz (recorded by an older cellnas): wiring_cell_cost_<cell>.png "
                "and wiring_output_cost.png need it; search again with --record-wiring to get them")  # fmt: skip
    return None
