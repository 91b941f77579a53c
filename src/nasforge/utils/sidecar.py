"""Checksum side-cars: ``FILE.nasforge.json`` records the SHA-256 and size of ``FILE``.

``nasforge export`` writes one beside every exported model; :mod:`nasforge.export` loads
a TorchScript file only when its side-car matches (TorchScript runs code from the file
when loaded). A side-car is a checksum, not a signature: it shows that ``FILE`` is the
file nasforge wrote there, unchanged, not who wrote it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nasforge.utils.io import atomic_write_json

SIDECAR_SUFFIX = ".nasforge.json"
SIDECAR_FORMAT = "nasforge-export-sidecar"


def sidecar_path(path: str | Path) -> Path:
    """``FILE.nasforge.json``, the side-car of ``FILE``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_sidecar(path: str | Path, kind: str) -> Path:
    """Write ``FILE.nasforge.json`` (atomically) for the finished file ``path``."""
    path = Path(path)
    side = sidecar_path(path)
    atomic_write_json(side, {"format": SIDECAR_FORMAT, "version": 1, "file": path.name, "export_format": kind,
                             "size": path.stat().st_size, "sha256": sha256_file(path)})
    return side


def sidecar_problem(path: str | Path, *, required: bool) -> str | None:
    """``None`` when ``path``'s side-car matches it (or is absent and not ``required``),
    else a short phrase saying what is wrong."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        return f"no side-car {side.name} from nasforge export beside it" if required else None
    try:
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        info = None
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT or not isinstance(info.get("sha256"), str):
        return f"its side-car {side.name} is not one written by nasforge export"
    if info.get("size") != path.stat().st_size or info["sha256"] != sha256_file(path):
        return f"its SHA-256 does not match {side.name}, so it changed after export"
    return None
