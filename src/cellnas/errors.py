"""User-facing errors.

Anything raised as :class:`CellnasError` (or a subclass) is a problem with the
user's input or environment; the CLI prints its message as one line on stderr
and exits non-zero, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

__all__ = ["CellnasError", "GenotypeError", "FormatError", "DataError", "RunError", "unknown_name"]


class CellnasError(Exception):
    """Base class of every error whose message is meant for the user."""


class GenotypeError(CellnasError, ValueError):
    """An invalid genotype: the message names the cell, node and edge at fault."""


class FormatError(CellnasError, ValueError):
    """A file or string that is not a genotype in any supported format."""


class DataError(CellnasError):
    """Missing, corrupt or unusable data."""


class RunError(CellnasError):
    """A run directory or checkpoint that cannot be used as asked."""


def unknown_name(kind: str, name: str, valid) -> CellnasError:
    """The standard 'unknown X' error, listing the valid choices (STYLE: registries)."""
    choices = ", ".join(sorted(valid))
    err = CellnasError(f"unknown {kind} {name!r}; valid choices: {choices}")
    return err
