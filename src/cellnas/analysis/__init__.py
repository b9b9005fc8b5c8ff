"""Analyses of learnt cells: topology (Shu et al. 2020), wiring evolution (Xie et al. 2021),
operation importance, motifs and constrained sampling (Wan et al. 2022)."""

import importlib as _importlib
import importlib.util as _importlib_util


def __getattr__(name: str):
    """``cellnas.analysis.<module>`` without an import of its own (PEP 562): imported on first access."""
    if name.isidentifier() and not name.startswith("__") and _importlib_util.find_spec(f"{__name__}.{name}"):
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
