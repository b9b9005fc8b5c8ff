"""The ``cellnas`` command line.

Each subcommand lives in its own module under :mod:`cellnas.commands` and defines
``register(subparsers)``; modules are discovered automatically, so adding a command
never touches this file. Library code never sees argparse (STYLE 4).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from cellnas import __version__
from cellnas.errors import CellnasError

__all__ = ["main", "build_parser"]

log = logging.getLogger("cellnas")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the hand-made line breaks of descriptions.

    Options whose default is ``None``/``False`` (resolved later from a preset) say their
    real default in their own help text, so no "(default: None)" is appended to them.
    """

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):  # 0 is shown
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cellnas",
        description=(
            "Search, train and understand cell-based neural architectures.\n\n"
            "Start with `cellnas search` (a DARTS search on the embedded digits data set),\n"
            "`cellnas zoo` (published cells) and `cellnas info DARTS_V2`.\n"
            "GENOTYPE arguments accept a zoo name, a genotype file (cellnas JSON, DARTS text,\n"
            "NNabla JSON, NAS-Bench-301 JSON), a run directory, or DARTS `Genotype(...)` text."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"cellnas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="more log messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import cellnas.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"cellnas.commands.{info.name}")
        module.register(sub, _Formatter)
    return parser


#: Commands whose torch threads run for minutes: they warn when other work already occupies the cores
#: (:func:`cellnas.cpu.busy_warning`). ``CELLNAS_BUSY_CHECK=0`` turns the check off.
BUSY_CHECKED = frozenset({"search", "train", "evaluate", "bench"})


def _warn_if_busy(args) -> None:
    import os

    if os.environ.get("CELLNAS_BUSY_CHECK", "1") == "0":
        return
    import torch

    device = getattr(args, "device", None)
    if (isinstance(device, str) and device.startswith("cuda")) or (device != "cpu" and torch.cuda.is_available()):
        return  # the work runs on the GPU
    from cellnas.cpu import busy_warning

    threads = getattr(args, "threads", None)
    if threads is None and getattr(args, "resume", None):
        from cellnas.runs import resume_threads

        threads = resume_threads(args.resume, None)  # what the resume will use (commands.train.set_threads)
    threads = threads or torch.get_num_threads()
    message = busy_warning(threads)
    if message:
        logging.getLogger("cellnas").warning("warning: %s", message)


def main(argv: list[str] | None = None) -> int:
    """The ``cellnas`` command. Ctrl-C at any point (parsing, the imports of torch, set-up) ends with one line and
    exit status 130, never a traceback (``--debug`` shows it)."""
    try:
        return _main(argv)
    except BaseException as exc:  # before (or after) the command's own handler in _main applies
        if not interrupted(exc):
            raise
        words = list(sys.argv[1:] if argv is None else argv)
        if "--debug" in words:
            raise
        print(f"{_command_of(words)}: interrupted", file=sys.stderr)
        return 130


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C (or SIGTERM, :func:`cellnas.runs.sigterm_as_sigint`): a :class:`KeyboardInterrupt`,
    or an error it caused on its way out. A signal that arrives while a C extension initialises (scipy's, as
    scikit-learn imports it) comes back as ``ImportError: initialization failed`` caused by the KeyboardInterrupt."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _command_of(words: list[str]) -> str:
    """``cellnas <command>`` as the command line names it, without parsing it (``cellnas`` when it names none)."""
    for word in words:
        if word == "--":
            break
        if not word.startswith("-"):
            return f"cellnas {word}" if word.replace("-", "_").isidentifier() else "cellnas"
    return "cellnas"


def _main(argv: list[str] | None) -> int:
    from cellnas.runs import RunInterrupted, Termination, sigterm_as_sigint  # here: a Ctrl-C meanwhile is caught

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from cellnas.cpu import keep_freed_memory

    keep_freed_memory()  # fewer page faults between training steps; CELLNAS_MALLOC=default turns it off
    if args.command in BUSY_CHECKED:
        _warn_if_busy(args)
    # a scheduler's SIGTERM stops a run as Ctrl-C does (checkpoint kept, workers ended); it exits 143, Ctrl-C 130
    signals = Termination()
    try:
        with sigterm_as_sigint() as signals:
            result = args.func(args)
    except RunInterrupted as exc:  # Ctrl-C, caught by a run that kept its checkpoint: the message says how to resume
        if args.debug:
            raise
        print(f"cellnas {args.command}: {'SIGTERM received; ' if signals.received else ''}{exc}", file=sys.stderr)
        return signals.exit_status
    except CellnasError as exc:
        if args.debug:
            raise
        print(f"cellnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except BaseException as exc:  # Ctrl-C or SIGTERM, also as the ImportError it causes inside a C extension's import
        if args.debug or not interrupted(exc):
            raise
        print(f"cellnas {args.command}: {'terminated (SIGTERM)' if signals.received else 'interrupted'}",
              file=sys.stderr)  # fmt: skip
        return signals.exit_status
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
