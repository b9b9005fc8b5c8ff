"""Command-line options shared by every command that evaluates architectures (``cellnas archive evaluate``,
``cellnas analyze importance|ablate|sampling``): the archive, the evaluator and its settings, the workers.

Not a command itself (the leading underscore keeps it out of command discovery).
"""

from __future__ import annotations

import json
import sys

from cellnas.errors import CellnasError, check_seed

EVALUATOR_HELP = (
    "evaluators: proxy (short training, --protocol digits-tiny|digits-short|nb301-short, --set KEY=VALUE),\n"
    "surrogate (--surrogate FILE from `cellnas archive fit-surrogate`), nb301 (--nb301-models DIR; needs\n"
    "`pip install nasbench301`), synthetic (a closed-form toy for dry runs). Results are stored in and reused\n"
    "from the archive under (genotype hash, protocol, --eval-seed)."
)


def add_archive_arg(p, required: bool = False) -> None:
    p.add_argument("--archive", metavar="FILE", default=None if required else "archive.sqlite",
                   required=required, help="the evaluation archive (SQLite)")  # fmt: skip


def add_evaluator_args(p, default: str = "proxy") -> None:
    """``--evaluator`` and its settings, ``--workers``, ``--eval-seed``, ``--archive``."""
    g = p.add_argument_group("evaluation")
    g.add_argument("--evaluator", default=default, metavar="NAME",
                   help="proxy, surrogate, nb301 or synthetic (see above)")  # fmt: skip
    g.add_argument("--protocol", default=None, metavar="NAME",
                   help="proxy: the short training protocol (default: digits-tiny)")  # fmt: skip
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="proxy: override a training setting (repeatable), e.g. --set epochs=5 --set data_dir=data")
    g.add_argument("--keep-runs", metavar="DIR", default=None,
                   help="proxy: keep the training run directories there (default: temporary, deleted)")
    g.add_argument("--surrogate", metavar="FILE", default=None, help="surrogate: the fitted model file")
    g.add_argument("--nb301-models", metavar="DIR", default=None, help="nb301: the NAS-Bench-301 model folder")
    g.add_argument("--workers", type=int, default=1,
                   help="worker processes for training-based evaluators (Ctrl-C stops the batch: what finished "
                        "stays in the archive, exit status 130)")  # fmt: skip
    g.add_argument("--eval-seed", type=int, default=0, help="evaluation (training) seed; part of the archive key")
    add_archive_arg(g)


def parse_sets(items: list[str]) -> dict:
    """``["epochs=5", "device=cpu"]`` -> ``{"epochs": 5, "device": "cpu"}`` (values parsed as JSON when they can be)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CellnasError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=5")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: The evaluator options that configure one evaluator only: (flag, attribute, the evaluator it configures).
_OWN_OPTIONS = (("--protocol", "protocol", "proxy"), ("--keep-runs", "keep_runs", "proxy"),
                ("--surrogate", "surrogate", "surrogate"), ("--nb301-models", "nb301_models", "nb301"))  # fmt: skip


def check_evaluation_args(args) -> None:
    """Refuse, before any work or any file is written, evaluation options out of range (``--workers``,
    ``--eval-seed``) and evaluator settings given to an evaluator they do not configure."""
    if args.workers < 1:
        raise CellnasError(f"--workers must be >= 1, got {args.workers}")
    check_seed(args.eval_seed, "--eval-seed")
    for flag, attr, owner in _OWN_OPTIONS:
        if getattr(args, attr, None) is not None and args.evaluator != owner:
            raise CellnasError(f"{flag} configures the {owner} evaluator; it does not apply with --evaluator "
                               f"{args.evaluator}")  # fmt: skip


def build_evaluator(args):
    """The evaluator the options name (errors are one line; options checked by :func:`check_evaluation_args`)."""
    from cellnas.evaluators import create_evaluator, list_evaluators

    name = args.evaluator
    if name not in list_evaluators():
        return create_evaluator(name)  # raises the standard "unknown evaluator" error
    sets = parse_sets(getattr(args, "set", []))
    if sets and name != "proxy":
        raise CellnasError(f"--set configures the proxy evaluator, not {name}")
    check_evaluation_args(args)
    if name == "proxy":
        ev = create_evaluator("proxy", protocol=args.protocol or "digits-tiny", keep_runs=args.keep_runs, **sets)
        ev.config()  # resolve now: a bad --set fails before any work
        return ev
    if name == "surrogate":
        if not args.surrogate:
            raise CellnasError(
                "--evaluator surrogate needs --surrogate FILE (fit one with `cellnas archive fit-surrogate`)"
            )
        return create_evaluator("surrogate", path=args.surrogate)
    if name == "nb301":
        return create_evaluator("nb301", model_dir=args.nb301_models)
    return create_evaluator(name)


def open_archive(args, create: bool = True):
    """The ``--archive`` file; with ``create=False`` a missing file is the one-line "archive X does not exist"
    (commands that read rows must not leave an empty archive behind)."""
    from cellnas.archive import Archive

    return Archive(args.archive, create=create)


def run_batch(evaluator, genotypes, args, archive, source: str | None = None):
    """:func:`~cellnas.evaluators.evaluate_batch` with the command's options; Ctrl-C or SIGTERM raise
    :class:`~cellnas.evaluators.BatchInterrupted` (exit status 130, 143 after SIGTERM) once the finished results are
    committed."""
    from cellnas.evaluators import evaluate_batch

    check_evaluation_args(args)
    return evaluate_batch(evaluator, genotypes, archive=archive, seed=args.eval_seed, workers=args.workers,
                          progress=sys.stderr.isatty(), source=source)  # fmt: skip


def report_failures(report) -> None:
    for h, err in report.failed.items():
        print(f"failed {h}: {err}", file=sys.stderr)
