"""``cellnas search``: a DARTS search (Liu et al., ICLR 2019)."""

from __future__ import annotations

import argparse
import json
import sys

from cellnas.errors import CellnasError

_FIELDS = {
    # option dest -> SearchConfig field
    "dataset": "dataset", "data_dir": "data_dir", "download": "download", "train_portion": "train_portion",
    "batch_size": "batch_size", "channels": "channels", "layers": "layers", "nodes": "nodes", "k": "k",
    "ops": "ops", "all_normal": "all_normal", "epochs": "epochs", "order": "order", "hvp": "hvp", "mode": "mode",
    "lr": "lr", "lr_min": "lr_min", "momentum": "momentum", "weight_decay": "weight_decay",
    "grad_clip": "grad_clip", "arch_lr": "arch_lr", "arch_weight_decay": "arch_weight_decay", "seed": "seed",
    "device": "device", "steps_per_epoch": "steps_per_epoch", "eval_every": "eval_every",
    "alpha_every": "alpha_every", "checkpoint_every": "checkpoint_every", "record_wiring": "record_wiring",
    "partial_channels": "partial_channels", "edge_norm": "edge_norm", "arch_warmup": "arch_warmup",
    "search_batches": "search_batches", "amp": "amp", "sample_rest": "sample_rest",
}  # fmt: skip


def register(sub, formatter) -> None:
    from cellnas.search.config import PRESETS, SearchConfig

    d = SearchConfig()
    p = sub.add_parser(
        "search",
        help="run a DARTS architecture search (default: a quick search on the embedded digits data)",
        description=(
            "DARTS search (Liu et al., ICLR 2019): continuous relaxation of the cell, bilevel optimisation of\n"
            "weights (SGD, training half of the data) and architecture α (Adam, search half), then derivation\n"
            "of the discrete cell (top-2 incoming edges per node, strongest non-`none` op).\n\n"
            "With no arguments it searches on scikit-learn's digits (8x8 grey images) on the CPU in a few\n"
            "minutes. `--preset darts-cifar10` is the paper's configuration (C=16, 8 cells, batch 64, 50 epochs,\n"
            "needs --data-dir with CIFAR-10). Every run writes a self-describing directory (config, meta,\n"
            "metrics.jsonl, alphas, genotype.json, checkpoint.pt, plots); `--resume DIR` continues it exactly.\n"
            "The summary at the end gives two times: the search time (training steps only, over every session\n"
            "of a resumed run: meta.json's search_seconds) and the time of the whole command in all (data,\n"
            "set-up, evaluation, checkpoints and plots included). Ctrl-C stops after the current step with a\n"
            "checkpoint and exits with status 130 (SIGTERM, as schedulers send it: the same, status 143).\n\n"
            "--mode dsnas samples one child network per step instead (one op per edge; Hu et al., CVPR 2020), the\n"
            "framework of Xie et al.'s wiring study: `--preset wiring-dsnas`, `wiring-dsnas-minimal`, and\n"
            "`wiring-dsnas-ablation` (edges 0-2 and 0-3 removed, 1-2 fixed to sep_conv_5x5, the rest uniform).\n\n"
            "examples:\n"
            "  cellnas search\n"
            "  cellnas search --order 2 --epochs 10 --out runs/second-order\n"
            "  cellnas search --mode dsnas --all-normal --nodes 2 --record-wiring --out runs/dsnas\n"
            "  cellnas search --preset darts-cifar10 --data-dir ~/data\n"
            "  cellnas search --resume runs/search-20261123-101500"
        ),
        formatter_class=formatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="named configuration; explicit options override it (default: none, the values below)")
    g.add_argument("--config", default=None, metavar="FILE", help="JSON file of config values (under the options)")
    g.add_argument("--out", default=None, help="run directory (default: runs/search-<timestamp>)")
    g.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its checkpoint")
    g.add_argument("--seed", type=int, default=None, help=f"seed of weights, α and data order (default {d.seed})")
    g.add_argument("--device", default=None, help=f"auto, cpu or cuda[:N] (default {d.device})")
    g.add_argument("--amp", choices=["off", "bf16", "auto"], default=None,
                   help="bf16 autocast of the forward passes: off (fp32), bf16, or auto (bf16 on CUDA only); the "
                        "finite-difference passes of --order 2 stay fp32. Opt-in: not measured on a GPU yet, and "
                        f"no faster than fp32 on the CPUs measured (default {d.amp})")  # fmt: skip
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch (default: torch's choice, one per core; on a machine shared with other "
                        "work, give the cores that are free)")  # fmt: skip
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true",
                   help="print the summary as JSON (search_seconds: training steps of every session, as in meta.json; "
                        "seconds: the whole command, this session; resumed)")  # fmt: skip
    g.add_argument("--no-plots", action="store_true", help="do not draw the figures at the end")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help=f"digits, cifar10, cifar100 or imagefolder:PATH (default {d.dataset})")  # fmt: skip
    g.add_argument("--data-dir", default=None,
                   help="where cifar-10-batches-py/ etc. live (default: ./data in the current directory; config.json "
                        "records the absolute path; digits needs no files)")  # fmt: skip
    g.add_argument("--download", action="store_true", default=None, help="download CIFAR if missing")
    g.add_argument("--train-portion", type=float, default=None,
                   help=f"fraction of the training set for the weights; the rest trains α (default {d.train_portion})")
    g.add_argument("--batch-size", type=int, default=None, help=f"batch size of both steps (default {d.batch_size})")
    g = p.add_argument_group("search space")
    g.add_argument("--channels", "-C", type=int, default=None, help=f"initial channels C (default {d.channels})")
    g.add_argument("--layers", "-L", type=int, default=None, help=f"cells in the supernet (default {d.layers})")
    g.add_argument("--nodes", type=int, default=None, help=f"intermediate nodes per cell (default {d.nodes})")
    g.add_argument("--k", type=int, default=None, help=f"inputs kept per node when deriving (default {d.k})")
    g.add_argument("--ops", default=None, help="comma-separated candidate ops (default: the 8 DARTS primitives)")
    g.add_argument("--all-normal", action="store_true", default=None, help="no reduction cells (Xie et al. 2021)")
    g.add_argument("--remove-edge", action="append", default=None, metavar="CELL:EDGE",
                   help="ablate an edge, e.g. normal:0-2 or normal:0 (edge index); repeatable. Adds to the edge "
                        "ablations of --preset and --config (an edge given here replaces their entry for it)")
    g.add_argument("--fix-edge", action="append", default=None, metavar="CELL:EDGE=OP",
                   help="fix an edge to one op, e.g. normal:1-2=sep_conv_5x5; repeatable, one op per edge. Adds to "
                        "the edge ablations of --preset and --config (an edge given here replaces their entry for "
                        "it, e.g. fixing an edge the preset removes)")  # fmt: skip
    g.add_argument("--partial-channels", type=int, default=None, metavar="K",
                   help="PC-DARTS partial channel connections: each edge runs its ops on C/K channels and passes "
                        f"the rest through (default {d.partial_channels}: off; PC-DARTS uses 4)")  # fmt: skip
    g.add_argument("--edge-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="PC-DARTS edge normalisation: a weight beta per edge, softmax over each node's inputs, "
                        "multiplied into softmax(α) when deriving")  # fmt: skip
    g = p.add_argument_group("optimisation (SPEC 1.5/1.6)")
    g.add_argument("--epochs", type=int, default=None, help=f"epochs (default {d.epochs}; paper 50)")
    g.add_argument("--order", type=int, choices=[1, 2], default=None,
                   help=f"1: first-order α-gradient; 2: unrolled second-order (default {d.order})")
    g.add_argument("--hvp", choices=["fd", "exact"], default=None,
                   help="second order: finite-difference (paper) or exact (double backward) Hessian-vector product "
                        f"(default {d.hvp})")  # fmt: skip
    g.add_argument("--mode", choices=["bilevel", "single-level", "dsnas"], default=None,
                   help="bilevel (DARTS), single-level (α and w on the same training batch), or dsnas (Hu et al., "
                        "CVPR 2020: single-level, every step samples one op per edge from softmax(α) and runs only "
                        "that child; α follows the DSNAS estimator, (Z - softmax(α)) times the chosen op's cost; "
                        f"--order 1, no PC-DARTS options) (default {d.mode})")  # fmt: skip
    g.add_argument("--sample-rest", choices=["alpha", "uniform"], default=None,
                   help="--mode dsnas only: draw the op of every edge that is neither removed nor fixed from "
                        "softmax(α), or uniformly (the edge ablation of Xie et al., SPEC 4 (c); α is then not "
                        f"updated) (default {d.sample_rest})")  # fmt: skip
    g.add_argument("--search-batches", choices=["stream", "fresh"], default=None,
                   help="architecture batches: stream (every search image once per epoch) or fresh (quark0: a new "
                        f"shuffled batch every step, with replacement across steps) (default {d.search_batches})")
    g.add_argument("--lr", type=float, default=None, help=f"weight learning rate (default {d.lr})")
    g.add_argument("--lr-min", type=float, default=None, help=f"cosine floor (default {d.lr_min}, as quark0)")
    g.add_argument("--momentum", type=float, default=None, help=f"SGD momentum (default {d.momentum})")
    g.add_argument("--weight-decay", type=float, default=None, help=f"weight decay (default {d.weight_decay})")
    g.add_argument("--grad-clip", type=float, default=None, help=f"weight gradient norm clip (default {d.grad_clip})")
    g.add_argument("--arch-lr", type=float, default=None, help=f"Adam learning rate of α (default {d.arch_lr})")
    g.add_argument("--arch-weight-decay", type=float, default=None,
                   help=f"Adam weight decay of α (default {d.arch_weight_decay})")  # fmt: skip
    g.add_argument("--arch-warmup", type=int, default=None, metavar="EPOCHS",
                   help=f"train the weights alone for the first EPOCHS epochs, then α too (default {d.arch_warmup}; "
                        "PC-DARTS 15); the search loss is still measured on the search batches, without "
                        "gradients")  # fmt: skip
    g.add_argument("--steps-per-epoch", type=int, default=None,
                   help="cap the steps of an epoch (quick tries; default: no cap, the whole training part)")
    g = p.add_argument_group("recording")
    g.add_argument("--eval-every", type=int, default=None,
                   help=f"evaluate on the search split every N epochs and after the last; 0: never (default "
                        f"{d.eval_every})")  # fmt: skip
    g.add_argument("--alpha-every", type=int, default=None,
                   help=f"also record softmax(α) every N steps (default {d.alpha_every}: once per epoch only)")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help=f"also checkpoint every N steps (default {d.checkpoint_every}: at the end of each epoch "
                        "only)")  # fmt: skip
    g.add_argument("--record-wiring", action=argparse.BooleanOptionalAction, default=None,
                   help="record the per-edge, per-op cost of Xie et al. (2021), for `cellnas analyze wiring` (the "
                        "wiring presets turn it on; --no-record-wiring turns it off)")  # fmt: skip
    p.set_defaults(func=run)


def _overrides(args) -> dict:
    from cellnas.commands.train import _read_config_file  # one reader, one set of messages for both commands

    values = _read_config_file(args.config, "search") if args.config else {}
    for dest, name in _FIELDS.items():
        v = getattr(args, dest, None)
        if v is not None:
            values[name] = v
    for item in [*(args.remove_edge or []), *(args.fix_edge or [])]:
        if ":" not in item:
            raise CellnasError(f"edge ablation {item!r} must name the cell: normal:0-2 (or normal:1-2=sep_conv_5x5)")
    remove, fix = _edge_options(args)
    if remove or fix:
        from cellnas.search.config import log, merge_ablations

        base_remove, base_fix = values.get("remove_edges", {}), values.get("fix_edges", {})
        values["remove_edges"], values["fix_edges"] = merge_ablations(base_remove, base_fix, remove, fix)
        if base_remove or base_fix:
            log.info("edge ablations of --config %s and the command line's, merged (an edge on the command line "
                     "replaces the file's entry): remove_edges %s, fix_edges %s", args.config, values["remove_edges"],
                     values["fix_edges"])  # fmt: skip
    if isinstance(values.get("ops"), str):
        values["ops"] = tuple(o.strip() for o in values["ops"].split(",") if o.strip())
    # the bar is for people at a terminal; logs and CI get one line per epoch instead
    values["progress"] = not args.no_progress and sys.stderr.isatty()
    if args.no_plots:
        values["plots"] = False
    return values


def _edge_options(args) -> tuple[dict, dict]:
    """--remove-edge and --fix-edge as ``remove_edges``/``fix_edges``, per cell type. A removal given twice counts
    once; an edge fixed to two ops is refused."""
    from cellnas.search.config import edge_key

    remove: dict = {}
    fix: dict = {}
    seen: dict = {}
    for item in args.remove_edge or []:
        cell, _, edge = item.partition(":")
        if all(edge_key(e) != edge_key(edge) for e in remove.get(cell, [])):
            remove.setdefault(cell, []).append(edge)
    for item in args.fix_edge or []:
        cell, _, rest = item.partition(":")
        edge, _, op = rest.partition("=")
        if not op:
            raise CellnasError(f"--fix-edge {item!r} must look like normal:1-2=sep_conv_5x5")
        first = seen.setdefault((cell, edge_key(edge)), (edge, op))
        if first[1] != op:
            raise CellnasError(f"--fix-edge fixes {cell} edge {first[0]} twice, to {first[1]} and to {op}; "
                               "give each edge one op")  # fmt: skip
        if first == (edge, op):
            fix.setdefault(cell, {})[edge] = op
    return remove, fix


def run(args) -> int:
    from cellnas.commands.train import set_threads
    from cellnas.search import search
    from cellnas.search.loop import RESUME_OVERRIDES

    set_threads(args.threads, args.resume)
    if args.resume and args.config:  # before reading it: its every key would be listed as one that cannot change
        raise CellnasError("--resume takes the run's own config; drop --config (only --epochs, --data-dir, --device "
                           "and --download may change on resume)")
    overrides = _overrides(args)
    if args.resume:
        extra = sorted(set(overrides) - set(RESUME_OVERRIDES))
        if extra or args.preset or args.out:
            allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDES if k not in ("progress", "plots"))
            got = [*("--" + k.replace("_", "-") for k in extra), *(["--preset"] if args.preset else []),
                   *(["--out"] if args.out else [])]  # fmt: skip
            raise CellnasError(f"--resume continues a run with its own config; only {allowed} (and --no-progress, "
                               f"--no-plots) may change (got {', '.join(got)})")  # fmt: skip
        result = search(resume=args.resume, **overrides)
    else:
        if "ops" in overrides:
            _check_ops(overrides["ops"])
        named = overrides.pop("preset", None)  # a saved config.json names its preset (or null)
        result = search(preset=args.preset or named, out=args.out, **overrides)
    _summary(result, args.json)
    return 0



def _check_ops(ops) -> None:
    from cellnas.errors import unknown_name
    from cellnas.ops import list_ops

    for op in ops:
        if op not in list_ops():
            raise unknown_name("op", op, list_ops())


def _summary(result, as_json: bool) -> None:
    from cellnas.analysis.topology import topology
    from cellnas.formats import to_darts_text
    from cellnas.genotype import CELL_TYPES

    topo = topology(result.genotype)
    unsearched = result.config.unsearched if result.config is not None else ()
    last = result.metrics[-1] if result.metrics else {}
    summary = {
        "genotype": result.genotype.to_dict(),
        "genotype_hash": result.genotype.content_hash(),
        "topology": topo,
        "search_accuracy": result.search_accuracy,
        "train_accuracy": last.get("train_acc"),
        "epochs": len(result.metrics),
        "search_seconds": round(result.search_seconds, 1),
        "seconds": round(result.seconds, 1),
        "resumed": result.resumed,  # then search_seconds counts every session and seconds this one only
        "unsearched": list(unsearched),  # cell types whose α never trained (their topology means nothing)
        "run_dir": str(result.run_dir),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    acc = f"{result.search_accuracy:.1%}" if result.search_accuracy is not None else "n/a"
    print(f"derived genotype: {to_darts_text(result.genotype)}")
    for name in CELL_TYPES:
        if name in unsearched:
            print(f"  {name} cell: not searched ({result.config.why_unsearched()})")
            continue
        print(f"  {name:<6} cell: width {topo[name]['width']:g}c, depth {topo[name]['depth']}")
    epochs = len(result.metrics)
    # --mode dsnas evaluates the argmax(α) child, not the mixture (search.dsnas)
    what = "argmax(α) child" if result.config is not None and result.config.mode == "dsnas" else "supernet"
    print(f"{what} accuracy on the search split: {acc}   ({epochs} epoch{'' if epochs == 1 else 's'})")
    # meta.json's search_seconds counts the training steps of every session; the command also loads data, builds the
    # supernet, evaluates, checkpoints and plots
    all_sessions, this_session = (", all sessions", " for this session") if result.resumed else ("", "")
    print(f"search time {result.search_seconds:.0f} s (training{all_sessions}), "
          f"{result.seconds:.0f} s in all{this_session}")
    print(f"retrain it: cellnas train {result.run_dir}")
    print(f"run directory: {result.run_dir}")
