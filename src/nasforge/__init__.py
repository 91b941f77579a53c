"""nasforge: neural architecture search on PyTorch (ENAS, DARTS, SNAS, BlockQNN).

The Python API (:mod:`nasforge.api`): ``search``, ``build``, ``train``, ``register_op``,
``load_arch``; errors in :mod:`nasforge.errors`. Imported lazily, so ``import nasforge``
stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "search": "",  # the package nasforge.search, callable: nasforge.api.search
    "build": "nasforge.api",
    "train": "",  # the package nasforge.train, callable: nasforge.api.train
    "load_arch": "nasforge.arch",
    "save_arch": "nasforge.arch",
    "register_op": "nasforge.ops",
    "methods": "nasforge.search.registry",
    "errors": None,
}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _API:
        raise AttributeError(f"module 'nasforge' has no attribute {name!r}")
    if not _API[name]:
        return importlib.import_module(f"nasforge.{name}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
