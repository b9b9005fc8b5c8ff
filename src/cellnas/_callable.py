"""Let ``cellnas.search(...)`` and ``cellnas.train(...)`` work although both are also sub-packages, and let those
packages load their modules on first use.

After ``import cellnas.search`` Python binds the *package* to ``cellnas.search``, hiding any function
of that name; giving the package module a ``__call__`` makes both readings work.

:func:`lazy_exports` (PEP 562): a package's public names are imported from their modules when first read, so
that importing one light module of the package (``cellnas.train.config``, which the CLI's parser needs) does not
import torch with the rest: ``cellnas --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types


def make_callable(module_name: str, function_name: str) -> None:
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    module.__class__ = _CallableModule


def lazy_exports(module_name: str, exports: dict[str, str]) -> None:
    """Give the package ``module_name`` a module ``__getattr__`` that imports ``exports[name]`` (a submodule name)
    the first time ``name`` is read, and keeps the value."""
    module = sys.modules[module_name]

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{module_name}.{exports[name]}"), name)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(module), *exports})

    module.__getattr__ = __getattr__
    module.__dir__ = __dir__
