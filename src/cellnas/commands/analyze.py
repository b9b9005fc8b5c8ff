"""``cellnas analyze ...``: the analysis studies.

Each study is a module in :mod:`cellnas.commands.analyze_cmds` defining
``register(subparsers, formatter_class)``; they are discovered automatically.
"""

from __future__ import annotations

import importlib
import pkgutil


def register(sub, formatter) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse cells and runs (topology variants, landscapes, wiring, importance, motifs)",
        description="Studies of learnt cells: Shu et al. (ICLR 2020), Xie et al. (AISTATS 2021),\n"
        "Wan et al. (ICLR 2022).",
        formatter_class=formatter,
    )
    studies = p.add_subparsers(dest="study", metavar="STUDY")
    import cellnas.commands.analyze_cmds as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_") and not info.ispkg:
            importlib.import_module(f"{pkg.__name__}.{info.name}").register(studies, formatter)
    p.set_defaults(func=lambda args: p.print_help())
