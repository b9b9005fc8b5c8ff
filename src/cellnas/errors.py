"""User-facing errors.

Anything raised as :class:`CellnasError` (or a subclass) is a problem with the
user's input or environment; the CLI prints its message as one line on stderr
and exits non-zero, without a traceback (``--debug`` shows it).
"""

from __future__ import annotations

__all__ = [
    "CellnasError",
    "GenotypeError",
    "FormatError",
    "DataError",
    "RunError",
    "unknown_name",
    "check_seed",
    "check_finite_option",
]


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


def check_seed(value: int, flag: str = "--seed") -> int:
    """``value`` when NumPy and torch accept it as a seed (0 <= value < 2**32), else a :class:`CellnasError` naming
    ``flag`` (instead of NumPy's traceback)."""
    if isinstance(value, bool) or not 0 <= int(value) < 2**32:
        raise CellnasError(f"{flag} must be >= 0 and < 2**32, got {value}")
    return int(value)


def check_finite_option(value: float, flag: str) -> float:
    """``value`` when it is a finite number, else a :class:`CellnasError` naming ``flag`` (NaN and infinities compare
    false with everything, so range checks let them through)."""
    import math

    if not math.isfinite(value):
        raise CellnasError(f"{flag} must be a finite number, got {value}")
    return value
