"""The zoo: published architectures shipped as JSON package data, loadable by name.

Each ``<name>.json`` is an architecture file (``cell`` or ``recurrent`` kind) whose
``meta.source`` names where the genotype was transcribed from (repository, commit, file)
and ``meta.reported`` holds the numbers the papers report (error, parameters, cost),
both copied from the team's reference collection (``shared/reference/genotypes.json``).
Which of these counts our networks reproduce, and how they are counted, is in
``docs/zoo.md`` and ``tests/test_zoo.py``.

Aliases: ``DARTS`` = ``DARTS_V2`` (as in DARTS ``cnn/genotypes.py``), ``ENAS`` =
``ENAS_micro_script`` (the arc released with the official ENAS code,
``scripts/cifar10_micro_final.sh``; the paper-figure transcription ``ENASNet_paper_figure``
is a third-party copy, so the verified official arc is the default), ``DARTS_RNN`` =
``DARTS_RNN_V2``, ``GDAS`` = ``GDAS_V1``, ``PC_DARTS`` = ``PC_DARTS_cifar``, ``SNAS`` =
``SNAS_mild_edge_all``. Names are matched case-insensitively.
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from nasforge.errors import ArchError

ALIASES = {
    "DARTS": "DARTS_V2",
    "DARTS_RNN": "DARTS_RNN_V2",
    "ENAS": "ENAS_micro_script",
    "ENAS_micro": "ENAS_micro_script",
    "ENAS_paper_figure": "ENASNet_paper_figure",
    "GDAS": "GDAS_V1",
    "PC_DARTS": "PC_DARTS_cifar",
    "SNAS": "SNAS_mild_edge_all",
}


@lru_cache(maxsize=None)
def _files() -> dict[str, str]:
    """name -> JSON text of every zoo file."""
    out = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(".json"):
            out[entry.name[: -len(".json")]] = entry.read_text(encoding="utf-8")
    return out


def names(include_aliases: bool = False) -> list[str]:
    """Names of the zoo architectures (sorted); with ``include_aliases`` also the aliases."""
    n = sorted(_files())
    return sorted(n + list(ALIASES)) if include_aliases else n


def resolve(name: str) -> str:
    """Canonical zoo name for ``name`` (alias or case-insensitive match), else ArchError."""
    files = _files()
    if name in files:
        return name
    if name in ALIASES:
        return ALIASES[name]
    lower = {k.lower(): k for k in list(files) + list(ALIASES)}
    if name.lower() in lower:
        return resolve(lower[name.lower()])
    close = difflib.get_close_matches(name, names(include_aliases=True), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(names())}"
    raise ArchError(f"unknown zoo architecture {name!r}{hint}")


def get_dict(name: str) -> dict:
    """The raw JSON object of zoo architecture ``name``."""
    return json.loads(_files()[resolve(name)])


def get(name: str) -> Any:
    """The architecture object (``CellArch`` / ``RecurrentArch``) of zoo entry ``name``."""
    from nasforge.arch import arch_from_dict

    canonical = resolve(name)
    return arch_from_dict(get_dict(canonical), where=f"zoo:{canonical}")


def aliases_of(name: str) -> list[str]:
    return sorted(a for a, t in ALIASES.items() if t == name)


__all__ = ["ALIASES", "aliases_of", "get", "get_dict", "names", "resolve"]
