"""``cellnas info``: size, cost and topology of a genotype's network, or of the search supernet.

Parameter counts follow DARTS (auxiliary head excluded; SPEC 1.4, 2.4) and are also given with the
auxiliary head (Shu et al.'s convention, SPEC 3.3). Multiply-adds use the rule of
:mod:`cellnas.counting` (conv + linear only, batch 1, auxiliary head excluded).

A cell whose output is constant (e.g. only ``none`` edges) is still described, with a warning (on stderr,
and under ``warnings`` in the JSON): its width/depth describe wiring that carries no signal, and building
its network (``cellnas train``) warns that training can teach it nothing when the network's output would not
depend on its input.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from cellnas.errors import CellnasError, unknown_name

__all__ = ["DATASETS", "DatasetInfo", "register", "run", "info_genotype", "info_supernet"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a network needs to know about a data set, and the default network size for it."""

    num_classes: int
    in_channels: int
    image_size: int
    kind: str  # network kind: 'cifar' or 'imagenet'
    channels: int  # default C of the evaluation network
    layers: int  # default number of cells of the evaluation network


#: cifar: the DARTS evaluation setting (SPEC 2.2); imagenet: the mobile setting (SPEC 2.3);
#: digits: scikit-learn's 8x8 grey digits with the search-size network (C=16, 8 cells).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(10, 3, 32, "cifar", 36, 20),
    "cifar100": DatasetInfo(100, 3, 32, "cifar", 36, 20),
    "imagenet": DatasetInfo(1000, 3, 224, "imagenet", 48, 14),
    "digits": DatasetInfo(10, 1, 8, "cifar", 16, 8),
}

_SUPERNET_C, _SUPERNET_LAYERS = 16, 8
_MAC_RULE = "batch 1, conv + linear multiply-adds only, auxiliary head excluded"


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "info",
        help="parameters, multiply-adds and cell width/depth of a genotype's network (or of the supernet)",
        description=(
            "Build the evaluation network of GENOTYPE for a data set and report its size:\n"
            "  params           weight parameters, auxiliary head excluded (as DARTS reports them)\n"
            "  params_with_aux  the same with the auxiliary head (as Shu et al. count them)\n"
            f"  macs             multiply-adds of one image ({_MAC_RULE})\n"
            "  width/depth      of the normal and reduction cells (Shu et al. 2020; width in units of c)\n\n"
            "Default network sizes: cifar10/cifar100 C=36, 20 cells; imagenet C=48, 14 cells (224x224);\n"
            "digits (8x8 grey) C=16, 8 cells. With --supernet, report the DARTS search network instead\n"
            f"(default C={_SUPERNET_C}, {_SUPERNET_LAYERS} cells, the 8 DARTS ops, 4 nodes).\n\n"
            "examples:\n  cellnas info DARTS_V2\n  cellnas info NASNet --dataset imagenet --json\n"
            "  cellnas info --supernet --dataset digits"
        ),
        formatter_class=formatter,
    )
    p.add_argument(
        "genotype",
        metavar="GENOTYPE",
        nargs="?",
        default=None,
        help="zoo name, genotype file, run directory or DARTS Genotype(...) text (omit with --supernet)",
    )
    p.add_argument("--supernet", action="store_true", help="describe the DARTS search supernet instead of a genotype")
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=list(DATASETS),
        help="sets classes, input channels and image size (and the default --channels/--layers)",
    )
    p.add_argument(
        "--channels",
        "-C",
        type=int,
        default=None,
        help="initial channels C (default: 36 cifar, 48 imagenet, 16 digits; 16 with --supernet)",
    )
    p.add_argument(
        "--layers",
        "-L",
        type=int,
        default=None,
        help="number of cells (default: 20 cifar, 14 imagenet, 8 digits; 8 with --supernet)",
    )
    p.add_argument("--partial-channels", type=int, default=1, metavar="K",
                   help="with --supernet: PC-DARTS's partial channel connections (each edge on C/K channels)")
    p.add_argument("--edge-norm", action="store_true", help="with --supernet: PC-DARTS's edge normalisation (beta)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _dataset(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_name("dataset", name, DATASETS) from None


def _check_positive(what: str, value: int) -> None:
    if value < 1:
        raise CellnasError(f"{what} must be >= 1, got {value}")


def info_genotype(spec: str, dataset: str = "cifar10", channels: int | None = None, layers: int | None = None) -> dict:
    """The report of ``cellnas info GENOTYPE`` as a dict (the ``--json`` output)."""
    from cellnas.analysis.topology import topology
    from cellnas.counting import count_macs, count_params
    from cellnas.formats import load_genotype
    from cellnas.network import build_network, signal_report
    from cellnas.zoo import ALIASES, ZOO

    ds = _dataset(dataset)
    C = ds.channels if channels is None else channels
    L = ds.layers if layers is None else layers
    _check_positive("--channels", C)
    _check_positive("--layers", L)
    g = load_genotype(spec)
    zoo_names = {k.lower(): ALIASES.get(k, k) for k in list(ZOO) + list(ALIASES)}
    name = zoo_names.get(spec.lower(), None if "Genotype(" in spec or spec.lstrip().startswith("{") else spec)
    net = build_network(
        g, ds.kind, num_classes=ds.num_classes, C=C, layers=L, auxiliary=True, in_channels=ds.in_channels,
        allow_constant_output=True,
    )  # fmt: skip
    return {
        "genotype": {"name": name, "hash": g.content_hash()},
        "dataset": dataset,
        "network": "NetworkImageNet" if ds.kind == "imagenet" else "NetworkCIFAR",
        "input_shape": [ds.in_channels, ds.image_size, ds.image_size],
        "num_classes": ds.num_classes,
        "channels": C,
        "layers": L,
        "params": count_params(net, exclude_aux=True),
        "params_with_aux": count_params(net, exclude_aux=False),
        "macs": count_macs(net, (ds.in_channels, ds.image_size, ds.image_size)),
        "mac_rule": _MAC_RULE,
        "cells": topology(g),
        "warnings": signal_report(g, L)[0],
    }


def info_supernet(
    dataset: str = "cifar10",
    channels: int | None = None,
    layers: int | None = None,
    partial_channels: int = 1,
    edge_norm: bool = False,
) -> dict:
    """The report of ``cellnas info --supernet`` as a dict (the ``--json`` output); ``partial_channels`` and
    ``edge_norm`` describe PC-DARTS's supernet."""
    from cellnas.counting import count_macs, count_params
    from cellnas.supernet import SearchNetwork, SearchSpace

    ds = _dataset(dataset)
    C = _SUPERNET_C if channels is None else channels
    L = _SUPERNET_LAYERS if layers is None else layers
    _check_positive("--channels", C)
    _check_positive("--layers", L)
    space = SearchSpace()
    net = SearchNetwork(C=C, num_classes=ds.num_classes, layers=L, space=space, in_channels=ds.in_channels,
                        partial_channels=partial_channels, edge_norm=edge_norm)  # fmt: skip
    return {
        "supernet": True,
        "dataset": dataset,
        "input_shape": [ds.in_channels, ds.image_size, ds.image_size],
        "num_classes": ds.num_classes,
        "channels": C,
        "layers": L,
        "partial_channels": partial_channels,
        "edge_norm": edge_norm,
        "space": {**space.to_dict(), "n_edges": space.n_edges, "cells": space.cell_count(),
                  "genotypes": space.cell_count() ** 2},
        "params": count_params(net),
        "alphas": sum(p.numel() for p in net.arch_parameters()),
        "macs": count_macs(net, (ds.in_channels, ds.image_size, ds.image_size)),
        "mac_rule": _MAC_RULE + "; every candidate op of every edge runs",
    }


def _millions(n: int) -> str:
    return f"{n:,} ({n / 1e6:.2f}M)"


def run(args) -> int:
    if args.supernet and args.genotype is not None:
        raise CellnasError("give either GENOTYPE or --supernet, not both")
    if not args.supernet and (args.partial_channels != 1 or args.edge_norm):
        raise CellnasError("--partial-channels and --edge-norm describe the search supernet: add --supernet")
    if args.supernet:
        report = info_supernet(args.dataset, args.channels, args.layers, args.partial_channels, args.edge_norm)
    elif args.genotype is None:
        raise CellnasError("missing GENOTYPE (a zoo name such as DARTS_V2, a file, a run directory) or --supernet")
    else:
        report = info_genotype(args.genotype, args.dataset, args.channels, args.layers)
        for warning in report["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    shape = "x".join(str(s) for s in report["input_shape"])
    if args.supernet:
        sp = report["space"]
        pc = report["partial_channels"] > 1 or report["edge_norm"]
        kind = "PC-DARTS" if pc else "DARTS"
        extra = (f"; partial channels K={report['partial_channels']}" if report["partial_channels"] > 1 else "") + (
            "; edge normalisation" if report["edge_norm"] else "")  # fmt: skip
        print(f"supernet     {kind} search network, C={report['channels']}, {report['layers']} cells{extra}")
        print(f"space        {sp['n_nodes']} nodes, {sp['n_edges']} edges, k={sp['k']}, ops: {', '.join(sp['ops'])}")
        print(f"cells        {sp['cells']:,} discrete cells per cell type, {sp['genotypes']:.3g} genotypes "
              "(normal x reduce; SPEC 1.9)")  # fmt: skip
        print(f"dataset      {report['dataset']}: {report['num_classes']} classes, input {shape}")
        excluded = "alpha and beta" if report["edge_norm"] else "alpha"
        print(f"params       {_millions(report['params'])} weights ({excluded} excluded)")
        what = "alpha and beta, normal + reduce" if report["edge_norm"] else "normal + reduce"
        print(f"alphas       {report['alphas']} architecture parameters ({what})")
        print(f"MACs         {_millions(report['macs'])} ({report['mac_rule']})")
        return 0
    g = report["genotype"]
    title = g["name"] or "(genotype text)"
    print(f"genotype     {title}  hash {g['hash']}")
    print(
        f"network      {report['network']}, C={report['channels']}, {report['layers']} cells; "
        f"{report['dataset']}: {report['num_classes']} classes, input {shape}"
    )
    print(f"params       {_millions(report['params'])} auxiliary head excluded (as DARTS reports)")
    print(f"params+aux   {_millions(report['params_with_aux'])} auxiliary head included")
    print(f"MACs         {_millions(report['macs'])} ({report['mac_rule']})")
    for cell in ("normal", "reduce"):
        t = report["cells"][cell]
        print(f"{cell + ' cell':<12} width {t['width']:g}c, depth {t['depth']}")
    return 0
