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
    "check_int",
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


def _as_int(value: object) -> int | None:
    """``value`` as an ``int`` when it is an integer (Python or NumPy; not a bool, a float or a string), else None."""
    import operator

    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        return None


def check_seed(value: int, flag: str = "--seed") -> int:
    """``value`` when NumPy and torch accept it as a seed (an integer, 0 <= value < 2**32), else a
    :class:`CellnasError` naming ``flag`` (instead of NumPy's traceback, or ``int()``'s on a string)."""
    seed = _as_int(value)
    if seed is None:
        raise CellnasError(f"{flag} must be an integer >= 0 and < 2**32, got {value!r} (type {type(value).__name__})")
    if not 0 <= seed < 2**32:
        raise CellnasError(f"{flag} must be >= 0 and < 2**32, got {value}")
    return seed


def check_int(value: int, name: str, minimum: int | None = None, maximum: int | None = None, why: str = "") -> int:
    """``value`` when it is an integer (Python or NumPy, not a bool) in [``minimum``, ``maximum``] (either bound
    may be None), else a :class:`CellnasError` naming ``name`` (an argument or a flag) with ``why`` (what the value
    counts, shown in parentheses) and the bounds: ``n (the number of samples) must be an integer >= 1, got -1``."""
    bounds = " and ".join(b for b in (f">= {minimum}" if minimum is not None else "",
                                      f"<= {maximum}" if maximum is not None else "") if b)  # fmt: skip
    subject = f"{name} ({why})" if why else name
    wanted = f"an integer {bounds}".rstrip()
    number = _as_int(value)
    if number is None:
        raise CellnasError(f"{subject} must be {wanted}, got {value!r} (type {type(value).__name__})")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise CellnasError(f"{subject} must be {wanted}, got {value}")
    return number


def check_finite_option(value: float, flag: str) -> float:
    """``value`` when it is a finite number, else a :class:`CellnasError` naming ``flag`` (NaN and infinities compare
    false with everything, so range checks let them through)."""
    import math

    if isinstance(value, (bool, str)):
        raise CellnasError(f"{flag} must be a finite number, got {value!r} (type {type(value).__name__})")
    try:
        finite = math.isfinite(value)
    except TypeError:
        raise CellnasError(f"{flag} must be a finite number, got {value!r} (type {type(value).__name__})") from None
    if not finite:
        raise CellnasError(f"{flag} must be a finite number, got {value}")
    return value
