"""cellnas: search, train and understand cell-based neural architectures.

The public entry points are importable lazily so that ``import cellnas`` stays cheap
(torch is only imported by the modules that build networks).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "Genotype", "Cell", "search", "train"]


def __getattr__(name: str):
    if name in ("Genotype", "Cell"):
        from cellnas import genotype

        return getattr(genotype, name)
    if name in ("search", "train"):
        import importlib

        return importlib.import_module(f"cellnas.{name}")  # callable packages: cellnas.search(...)
    raise AttributeError(f"module 'cellnas' has no attribute {name!r}")
