"""Let a package double as a function: ``nasforge.search`` is both the package of the search
methods and the API call ``nasforge.search("darts", ...)`` (likewise ``nasforge.train``).

Python sets ``nasforge.search`` to the subpackage as soon as it is imported, so a function
of that name in ``nasforge/__init__.py`` would be replaced; instead the package module's
class gets a ``__call__`` that forwards to the API function (imported on first call).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(module_name: str, target: str) -> None:
    """Calling module ``module_name`` calls ``target`` (``"package.module:function"``)."""
    module = sys.modules[module_name]
    mod_path, _, fn_name = target.partition(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(mod_path), fn_name)(*args, **kwargs)

    CallableModule.__call__.__doc__ = f"Calls :func:`{mod_path}.{fn_name}`."
    module.__class__ = CallableModule
