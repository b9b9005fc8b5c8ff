"""cellnas: search, train and understand cell-based neural architectures.

The public entry points are importable lazily so that ``import cellnas`` stays cheap
(torch is only imported by the modules that build networks). Every submodule and subpackage is an
attribute of the package without an import of its own (PEP 562): ``import cellnas`` then
``cellnas.cpu.keep_freed_memory()`` imports :mod:`cellnas.cpu` on that first access, and only then.
"""

from __future__ import annotations

import importlib as _importlib
import importlib.util as _importlib_util
from types import ModuleType as _ModuleType

__version__ = "0.1.0"

__all__ = ["__version__", "Genotype", "Cell", "search", "train"]


def _submodules() -> list[str]:
    """The names of this package's submodules and subpackages (found on disk, nothing imported)."""
    import pkgutil

    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def _submodule(name: str) -> _ModuleType | None:
    """``cellnas.<name>`` imported, when ``name`` is a submodule or subpackage of cellnas, else None."""
    if not name.isidentifier() or name.startswith("__"):
        return None
    if _importlib_util.find_spec(f"{__name__}.{name}") is None:
        return None
    # import_module binds the module as an attribute of the package: later reads do not come back here
    return _importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str):
    if name in ("Genotype", "Cell"):
        from cellnas import genotype

        return getattr(genotype, name)
    module = _submodule(name)  # cellnas.search and cellnas.train are callable packages: cellnas.search(...)
    if module is not None:
        return module
    raise AttributeError(
        f"module 'cellnas' has no attribute {name!r}; its names: {', '.join(__all__)}, and the submodules "
        f"{', '.join(_submodules())}"
    )


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_submodules()))
