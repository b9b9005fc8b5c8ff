"""Let ``cellnas.search(...)`` and ``cellnas.train(...)`` work although both are also sub-packages.

After ``import cellnas.search`` Python binds the *package* to ``cellnas.search``, hiding any function
of that name; giving the package module a ``__call__`` makes both readings work.
"""

from __future__ import annotations

import sys
import types


def make_callable(module_name: str, function_name: str) -> None:
    module = sys.modules[module_name]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function_name)(*args, **kwargs)

    module.__class__ = _CallableModule
