"""Search strategies, one module per paper, found by name.

Each strategy module exposes:

- ``add_arguments(parser)``: its own flags (the common ones are added by the CLI:
  ``--space --data --data-dir --out --config --epochs --seed --device --resume``);
- ``run_from_args(args) -> int``: build the config (defaults < YAML < flags), run, and
  write ``arch.json``, ``metrics.jsonl``, ``checkpoint.pt``, ``config.yaml`` in ``--out``.

Strategy classes follow the contract in ``docs/architecture.md``: built from a config
dataclass, ``run(...)`` returns the derived architecture, ``state_dict()``/
``load_state_dict()`` cover every piece of state so ``--resume`` continues exactly.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nasforge.errors import ConfigError

METHODS = {
    "darts": "nasforge.search.darts",
    "snas": "nasforge.search.snas",
    "enas": "nasforge.search.enas",
    "blockqnn": "nasforge.search.blockqnn",
    "random": "nasforge.search.random_search",
}


def get_method(name: str) -> ModuleType:
    if name not in METHODS:
        raise ConfigError(f"unknown search method {name!r} (known: {', '.join(METHODS)})")
    try:
        return importlib.import_module(METHODS[name])
    except ModuleNotFoundError as e:
        if e.name == METHODS[name]:
            raise ConfigError(f"search method {name!r} is not available in this build") from None
        raise
