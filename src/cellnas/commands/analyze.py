"""``cellnas analyze ...``: the analysis studies.

Each study is a module in :mod:`cellnas.commands.analyze_cmds` defining
``register(subparsers, formatter_class)``; they are discovered automatically.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

from cellnas.errors import CellnasError

__all__ = ["register", "check_output_dir", "output_dir"]


def check_output_dir(path: str | os.PathLike, flag: str = "-o") -> Path:
    """Refuse, with a one-line :class:`CellnasError` naming ``flag``, an output directory that cannot be created
    or written: an existing file, a file among its parents, a read-only parent. Creates nothing, so a command
    can check its output first and create it (:func:`output_dir`) only once it has something to write."""
    out = Path(path)
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe == out and out.exists():
        if not out.is_dir():
            raise CellnasError(f"{flag} {str(out)!r} is an existing file, not a directory; give a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise CellnasError(f"{flag} {str(out)!r}: the directory is not writable")
    elif not probe.is_dir():
        raise CellnasError(f"{flag} {str(out)!r}: cannot create the directory, {str(probe)!r} is a file")
    elif not os.access(probe, os.W_OK | os.X_OK):
        raise CellnasError(f"{flag} {str(out)!r}: cannot create the directory, {str(probe)!r} is not writable")
    return out


def output_dir(path: str | os.PathLike, flag: str = "-o") -> Path:
    """Create the output directory ``path`` (parents too) and return it, or raise a one-line :class:`CellnasError`
    naming ``flag`` (see :func:`check_output_dir`; also for what only ``mkdir`` finds out, e.g. ``/proc/x``)."""
    out = check_output_dir(path, flag)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CellnasError(f"{flag} {str(out)!r}: cannot create the directory: {exc.strerror or exc}") from None
    return out


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
