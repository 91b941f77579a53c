"""NAS-Bench-201 cells as ``cell`` architectures, for the supernet searches (names kept for
their callers); the vocabulary itself is :mod:`nasforge.spaces.nb201`."""

from __future__ import annotations

from typing import Any

from nasforge.spaces.nb201 import arch_to_ops, ops_to_arch


def nb201_ops(arch: Any) -> tuple[str, ...]:
    """The 6 edge ops of a NAS-Bench-201 ``cell`` arch (edges 1←0, 2←0, 2←1, 3←0, 3←1, 3←2)."""
    return arch_to_ops(arch)


def nb201_arch(ops_per_edge: list[str], name: str, meta: dict) -> Any:
    """A NAS-Bench-201 cell as a ``cell`` arch: one input, every edge listed (``none`` kept)."""
    return ops_to_arch(ops_per_edge, name=name, meta=meta)
