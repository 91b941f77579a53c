"""NAS-Bench-201 cells as ``cell`` architectures (one input, every edge listed), and back."""

from __future__ import annotations

from nasforge.arch import CellArch, CellGenotype


def nb201_ops(arch: CellArch) -> tuple[str, ...]:
    """The 6 edge ops of a NAS-Bench-201 ``cell`` arch (edges 1←0, 2←0, 2←1, 3←0, 3←1, 3←2)."""
    ops = {}
    for j, node in enumerate(arch.normal.nodes):
        for op, i in node:
            ops[(j + 1, i)] = op
    from nasforge.spaces.nb201_table import EDGES

    return tuple(ops.get(e, "none") for e in EDGES)


def nb201_arch(ops_per_edge: list[str], name: str, meta: dict) -> CellArch:
    """A NAS-Bench-201 cell as a ``cell`` arch: one input, every edge listed (``none`` kept)."""
    from nasforge.spaces.nb201_table import EDGES

    nodes: list[list[tuple[str, int]]] = [[], [], []]
    for (dst, src), op in zip(EDGES, ops_per_edge):
        nodes[dst - 1].append((op, src))
    return CellArch(normal=CellGenotype(nodes=nodes, concat=[3]), reduce=None, inputs=1, name=name, meta=meta)
