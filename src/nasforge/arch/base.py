"""Architecture files: plain JSON with ``kind`` and ``version``, one class per kind.

Every kind is a dataclass with ``to_dict``/``from_dict`` (exact round-trip) and
``validate`` (raises :class:`ArchError` naming the offending field). Kinds register
themselves with :func:`register_kind`; :func:`arch_from_dict` dispatches on ``kind``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

from nasforge.errors import ArchError
from nasforge.utils.io import atomic_write_text

ARCH_VERSION = 1

#: Size limits of an architecture, far above every published one (zoo/*.json and the
#: papers: at most 5 intermediate nodes per cell, 2 edges per node (SNAS edge_all: 5),
#: 11 recurrent nodes, 24 ENAS macro layers, BlockQNN blocks of <= 23 NSC rows). They
#: stop a malformed or hostile file (say 100,000 nodes) before a network is built from it.
#: Each can be raised with the environment variable ``NASFORGE_ARCH_LIMIT_<NAME>``
#: (e.g. ``NASFORGE_ARCH_LIMIT_CELL_NODES=200``).
ARCH_LIMITS: dict[str, int] = {
    "cell_nodes": 64,  # intermediate nodes per cell
    "edges_per_node": 256,  # (op, input) edges into one cell node
    "recurrent_nodes": 64,  # nodes of a recurrent cell
    "macro_layers": 256,  # layers of an ENAS macro network
    "nsc_rows": 64,  # NSC rows of a BlockQNN block
}

#: largest architecture JSON file read (bytes); the published ones are < 10 kB
MAX_ARCH_FILE_BYTES = 16 * 1024 * 1024


def arch_limit(name: str) -> int:
    """The limit ``name`` of :data:`ARCH_LIMITS`, or its ``NASFORGE_ARCH_LIMIT_<NAME>`` override."""
    env = os.environ.get(f"NASFORGE_ARCH_LIMIT_{name.upper()}")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ArchError(f"NASFORGE_ARCH_LIMIT_{name.upper()} must be an integer, got {env!r}") from None
        if value >= 1:
            return value
    return ARCH_LIMITS[name]


def check_limit(name: str, count: int, what: str) -> None:
    """Raise :class:`ArchError` when ``count`` exceeds the limit ``name``."""
    top = arch_limit(name)
    if count > top:
        raise ArchError(
            f"{what} has {count} entries, more than the limit of {top} "
            f"(raise it with NASFORGE_ARCH_LIMIT_{name.upper()} if this is intended)"
        )


class Architecture(Protocol):
    kind: ClassVar[str]

    def to_dict(self) -> dict: ...

    def validate(self) -> None: ...


_KINDS: dict[str, Any] = {}


def register_kind(kind: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return deco


def kinds() -> list[str]:
    return sorted(_KINDS)


def arch_from_dict(d: Any, where: str = "architecture") -> Any:
    """Validate the envelope (``kind``, ``version``) and build the architecture."""
    if not isinstance(d, dict):
        raise ArchError(f"{where}: expected a JSON object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind is None:
        raise ArchError(f"{where}: missing field 'kind' (one of {kinds()})")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ArchError(f"{where}: wrong kind {kind!r} (expected one of {kinds()})")
    version = d.get("version")
    if version is None:
        raise ArchError(f"{where}: missing field 'version'")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1 or version > ARCH_VERSION:
        raise ArchError(f"{where}: unsupported version {version!r} (this nasforge reads version <= {ARCH_VERSION})")
    try:
        arch = _KINDS[kind].from_dict(d)
    except ArchError as e:
        raise ArchError(f"{where}: {e}") from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ArchError(f"{where}: malformed {kind} architecture ({type(e).__name__}: {e})") from None
    try:
        arch.validate()
    except ArchError as e:
        raise ArchError(f"{where}: {e}") from None
    return arch


def arch_to_json(arch: Any) -> str:
    arch.validate()
    return json.dumps(arch.to_dict(), indent=2) + "\n"


def save_arch(arch: Any, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, arch_to_json(arch))
    return path


def load_arch_file(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ArchError(f"architecture file not found: {p}")
    size = p.stat().st_size
    if size > MAX_ARCH_FILE_BYTES:
        raise ArchError(f"{p}: {size} bytes is too large for an architecture file (limit {MAX_ARCH_FILE_BYTES})")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ArchError(f"{p}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise ArchError(f"{p}: not a text file") from None
    except RecursionError:
        raise ArchError(f"{p}: JSON nested too deeply") from None
    return arch_from_dict(d, where=str(p))


def load_arch(ref: str | Path) -> Any:
    """Load an architecture from a JSON file path or a zoo name (e.g. ``DARTS_V2``)."""
    ref_s = str(ref)
    p = Path(ref_s)
    if p.suffix == ".json" or p.exists() or "/" in ref_s:
        return load_arch_file(p)
    from nasforge.zoo import get as zoo_get

    return zoo_get(ref_s)


def expect_type(value: Any, tp: type | tuple, field: str) -> Any:
    if isinstance(value, bool) and tp in (int, (int,)):
        raise ArchError(f"field {field!r} must be {getattr(tp, '__name__', tp)}, got {value!r}")
    if not isinstance(value, tp):
        name = tp.__name__ if isinstance(tp, type) else "/".join(t.__name__ for t in tp)
        raise ArchError(f"field {field!r} must be {name}, got {type(value).__name__} {value!r}")
    return value
