"""What the typed run configurations share (:class:`cellnas.search.config.SearchConfig`,
:class:`cellnas.train.config.TrainConfig`): building one from a dict, and checking every value's type.

A config file is JSON written by hand as often as by the tool, so a value of the wrong type must stop the run with
the key, the type expected and the value found, before it reaches a constructor deep inside the network. The key is
named as it is written in ``config.json``; the command-line flag that sets it is named too where there is one (not
every key has a flag of its own name, and some have none).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from cellnas.errors import CellnasError
from cellnas.genotype import as_int

__all__ = ["config_from_dict", "config_from", "check_types", "describe_key", "absolute_paths", "recorded_data_dir",
           "SHARED_FLAGS", "AMP_CHOICES", "PATH_KEYS"]

#: ``--amp`` of search and train: ``off`` (fp32), ``bf16`` (bf16 autocast on any device), ``auto`` (bf16 on CUDA,
#: fp32 elsewhere). Resolved to a dtype by :func:`cellnas.schedule.amp_dtype`.
AMP_CHOICES = ("auto", "bf16", "off")

C = TypeVar("C")

#: Keys every run config has whose flag is not ``--<key>`` (``None``: set only by a config file or the Python API).
SHARED_FLAGS: dict[str, str | None] = {"progress": "--no-progress", "plots": "--no-plots", "extra": None}

#: Config keys that hold a folder: they take a ``str`` or any :class:`os.PathLike` (a :class:`pathlib.Path`, as ``out``
#: does), stored as ``str`` so that ``config.json`` stays plain JSON.
PATH_KEYS = ("data_dir",)


def config_from_dict(cls: type[C], d: Mapping, kind: str, tuples: tuple[str, ...] = ()) -> C:
    """``cls(**d)`` after refusing anything but a dict (a mapping) and unknown keys (naming the valid ones); lists
    under ``tuples`` become tuples."""
    if not isinstance(d, Mapping):
        raise CellnasError(f"a {kind} config must be a dict of config keys, got {d!r} ({type(d).__name__})")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CellnasError(f"unknown {kind} config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    d = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)


def config_from(
    cls: type[C],
    resolve: typing.Callable[[str | None, dict], C],
    config: Any,
    preset: str | None,
    overrides: Mapping[str, Any],
) -> C:
    """The validated config a fresh run of ``cls`` (a search or training config) starts from, as ``cellnas.search``
    and ``cellnas.train`` take it from Python; always a new object: the caller's ``config`` is neither changed nor
    filled in by validation, and no two runs share one. ``resolve(preset, values)`` is the module's
    ``resolve_config``; the caller has refused a ``config`` of the wrong type first.

    - ``config`` ``None``: ``resolve(preset, overrides)``.
    - ``config`` a dict of config keys, read as ``--config FILE`` reads a file: over ``preset`` (or the preset the
      dict names), with ``overrides`` on top. A dict that names a preset holds the values it resolved to (every
      ``config.json`` does), so another ``preset`` is refused.
    - ``config`` a ``cls``: a copy with ``overrides`` on top; ``preset`` is refused (the config holds every value).

    ``None`` values mean "not given". An unknown key, or a value of the wrong type or out of range, is refused.
    """
    changes = {k: v for k, v in overrides.items() if v is not None}
    if config is None:
        return resolve(preset, changes)
    if isinstance(config, Mapping):
        values = dict(config)
        named = values.pop("preset", None)
        if preset is not None and "preset" in config and named != preset:
            raise CellnasError(f"the config dict names its own preset ({named if named is not None else 'none'}) and "
                               f"holds the values it resolved to, so preset={preset!r} would change nothing it sets: "
                               "drop preset, or remove \"preset\" from the dict to apply it over the preset")
        return resolve(preset if preset is not None else named, {**values, **changes})
    if preset is not None:
        raise CellnasError(f"give either a config or a preset, not both (preset={preset!r}): a {cls.__name__} holds "
                           "every value already; give preset= and the changes as keyword arguments instead")
    cfg = cls.from_dict(absolute_paths({**config.to_dict(), **changes}))  # to_dict copies: never shared
    cfg.validate()
    return cfg


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in typing.get_args(tp)]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(args[0], "values")
        return f"a list of {len(args)} numbers" if all(a is float for a in args) else f"a list of {len(args)} values"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "an object"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _matches(value: Any, tp: Any) -> bool:
    if tp is type(None):
        return value is None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if tp is bool:
        return isinstance(value, (bool, np.bool_))
    if tp is int:
        return as_int(value) is not None
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp) if isinstance(tp, type) else True


def describe_key(name: str, flags: Mapping[str, str | None] | None = None) -> str:
    """``"lr" in the config (flag --lr)``: a config key as a message names it.

    ``flags``: the flag of every key whose flag is not ``--<key>``, ``None`` for a key without one; on top of
    :data:`SHARED_FLAGS`.
    """
    known = {**SHARED_FLAGS, **(flags or {})}
    flag = known[name] if name in known else "--" + name.replace("_", "-")
    return f'"{name}" in the config' + (f" (flag {flag})" if flag else "")


def check_types(cfg: Any, flags: Mapping[str, str | None] | None = None) -> None:
    """Raise :class:`CellnasError` for the first field whose value does not have its annotated type.

    Integers are accepted for float fields; numpy scalars for Python ones (a sweep over ``np.arange``). Both are
    stored as the plain Python type. Booleans are never numbers. A :data:`PATH_KEYS` field also takes an
    :class:`os.PathLike`, stored as ``str``. ``flags``: see :func:`describe_key`.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        tp, value = hints[f.name], getattr(cfg, f.name)
        if f.name in PATH_KEYS and isinstance(value, os.PathLike):
            value = os.fspath(value)
            setattr(cfg, f.name, value)
        if not _matches(value, tp):
            expected = "a path (a string or os.PathLike)" if f.name in PATH_KEYS else _describe(tp)
            if f.name in PATH_KEYS and _matches(None, tp):
                expected += " or null"
            raise CellnasError(f"{describe_key(f.name, flags)} must be {expected}, "
                               f"got {value!r} ({type(value).__name__})")  # fmt: skip
        for plain in (bool, int, float):
            if tp is plain and type(value) is not plain:
                setattr(cfg, f.name, plain(value))


def _absolute(path: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def absolute_paths(values: dict) -> dict:
    """``values`` with ``data_dir`` (a ``str`` or :class:`os.PathLike`, returned as ``str``) and an
    ``imagefolder:PATH`` dataset made absolute (``~`` expanded), so that the config saved with a run still finds its
    data from another working directory (``cellnas evaluate RUN``)."""
    out = dict(values)
    for key in PATH_KEYS:
        if isinstance(out.get(key), (str, os.PathLike)) and os.fspath(out[key]):
            out[key] = _absolute(out[key])
    dataset = out.get("dataset")
    if isinstance(dataset, str) and dataset.startswith("imagefolder:") and len(dataset) > len("imagefolder:"):
        out["dataset"] = "imagefolder:" + _absolute(dataset[len("imagefolder:") :])
    return out


def recorded_data_dir(dataset: str, data_dir: str | os.PathLike | None) -> str | None:
    """The data folder a run of ``dataset`` reads, as its ``config.json`` records it: ``data_dir`` made absolute
    (``~`` expanded); when none is given, the default folder :func:`cellnas.data.get_dataset` reads (``./data`` of
    the current directory), made absolute, for a dataset that reads files there (:func:`cellnas.data.datasets.
    reads_files`); ``None`` for the others.

    So a run started without ``--data-dir`` still finds its data when it is resumed, retrained or evaluated from
    another directory, and never reads whatever ``./data`` that directory has.
    """
    from cellnas.data.datasets import DEFAULT_DATA_DIR, reads_files

    if data_dir is not None and str(data_dir):
        return _absolute(data_dir)
    return _absolute(DEFAULT_DATA_DIR) if reads_files(dataset) else None
