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
    if name == "search":
        from cellnas.search import search

        return search
    if name == "train":
        from cellnas.train import train

        return train
    raise AttributeError(f"module 'cellnas' has no attribute {name!r}")
