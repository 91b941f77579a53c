"""Architecture kinds and their JSON files (see :mod:`nasforge.arch.base`).

Kinds: ``cell`` and ``recurrent`` here; ``macro`` (ENAS) and ``block`` (BlockQNN) are
registered by their own modules, imported below when present.
"""

import importlib

from nasforge.arch.base import (
    ARCH_VERSION,
    arch_from_dict,
    arch_to_json,
    kinds,
    load_arch,
    load_arch_file,
    register_kind,
    save_arch,
)
from nasforge.arch.cell import CellArch, CellGenotype
from nasforge.arch.recurrent import RecurrentArch

for _mod in ("nasforge.arch.macro", "nasforge.arch.block"):
    try:
        importlib.import_module(_mod)
    except ModuleNotFoundError as _e:  # kind not built yet
        if _e.name != _mod:
            raise

__all__ = [
    "ARCH_VERSION",
    "CellArch",
    "CellGenotype",
    "RecurrentArch",
    "arch_from_dict",
    "arch_to_json",
    "kinds",
    "load_arch",
    "load_arch_file",
    "register_kind",
    "save_arch",
]
