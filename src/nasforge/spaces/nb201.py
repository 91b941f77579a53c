"""The NAS-Bench-201 vocabulary (Dong & Yang, ICLR 2020): edges, primitives, the cell
string and the conversions between a cell string, its 6 edge ops and a ``cell`` arch.

The cell has 4 nodes (node 0 = the cell input); node j takes one edge from every earlier
node, each edge one of :data:`PRIMITIVES`, so 5^6 = 15,625 cells. A cell is written
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (NAS-Bench-201's ``arch_str``) and is encoded
here as the tuple of its 6 edge ops in the order of :data:`EDGES`
(1←0, 2←0, 2←1, 3←0, 3←1, 3←2). As an architecture file it is a 1-input ``cell`` arch
whose normal genotype lists every edge (``none`` kept) and concatenates node 3 only.

The table's columns (:data:`METRICS`) are ``<data set>-val`` / ``<data set>-test`` for
the three data sets of the benchmark (:data:`DATASETS`: CIFAR-10, CIFAR-100,
ImageNet16-120); searches select by a ``-val`` column and report the matching ``-test``
column (:func:`test_metric`).
"""

from __future__ import annotations

from typing import Any, Sequence

from nasforge.errors import ArchError, ConfigError
from nasforge.ops import NB201_PRIMITIVES

#: candidate ops of every edge (NAS-Bench-201 order)
PRIMITIVES: tuple[str, ...] = tuple(NB201_PRIMITIVES)
#: edges (destination node, source node) in the order of the 6-op encoding
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
N_EDGES = len(EDGES)
#: data sets of the table (``imagenet`` = ImageNet16-120)
DATASETS = ("cifar10", "cifar100", "imagenet")
#: table columns (accuracy in percent)
METRICS = ("cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val", "imagenet-test", "imagenet-val")


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ConfigError(f"unknown NAS-Bench-201 metric {metric!r} (known: {', '.join(METRICS)})")
    return metric


def test_metric(metric: str) -> str:
    """The test column of ``metric``'s data set (``cifar100-val`` -> ``cifar100-test``)."""
    return check_metric(metric).rsplit("-", 1)[0] + "-test"


test_metric.__test__ = False  # type: ignore[attr-defined]  (not a pytest test)


def check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    if len(ops) != N_EDGES:
        raise ArchError(f"a NAS-Bench-201 cell has {N_EDGES} edges, got {len(ops)}")
    for op in ops:
        if op not in PRIMITIVES:
            raise ArchError(f"unknown NAS-Bench-201 op {op!r} (known: {list(PRIMITIVES)})")
    return ops


def ops_to_cellstr(ops: Sequence[str]) -> str:
    ops = check_ops(ops)
    nodes = []
    for j in (1, 2, 3):
        nodes.append("|" + "|".join(f"{ops[k]}~{i}" for k, (dst, i) in enumerate(EDGES) if dst == j) + "|")
    return "+".join(nodes)


def cellstr_to_ops(cellstr: str) -> tuple[str, ...]:
    ops: dict[tuple[int, int], str] = {}
    parts = cellstr.split("+")
    if len(parts) != 3:
        raise ArchError(f"malformed NAS-Bench-201 cell string {cellstr!r}")
    for j, part in enumerate(parts, start=1):
        for tok in filter(None, part.strip("|").split("|")):
            op, _, src = tok.partition("~")
            if not src.isdigit():
                raise ArchError(f"malformed edge {tok!r} in NAS-Bench-201 cell string")
            ops[(j, int(src))] = op
    try:
        out = tuple(ops[e] for e in EDGES)
    except KeyError as e:
        raise ArchError(f"NAS-Bench-201 cell string {cellstr!r} misses edge {e.args[0]}") from None
    return check_ops(out)


def index_to_ops(index: int) -> tuple[str, ...]:
    """Mixed-radix decoding (5 ops per edge) used to enumerate the space; not NB201's own index."""
    ops = []
    for _ in EDGES:
        index, r = divmod(index, len(PRIMITIVES))
        ops.append(PRIMITIVES[r])
    return tuple(ops)


def ops_to_arch(ops: Sequence[str], name: str = "", meta: dict | None = None) -> Any:
    """A NAS-Bench-201 cell as a ``cell`` arch: one input, every edge listed (``none`` kept)."""
    from nasforge.arch.cell import CellArch, CellGenotype

    ops = check_ops(ops)
    nodes: list[list[tuple[str, int]]] = [[], [], []]
    for (dst, src), op in zip(EDGES, ops):
        nodes[dst - 1].append((op, src))
    return CellArch(normal=CellGenotype(nodes=nodes, concat=[3]), reduce=None, inputs=1, name=name, meta=dict(meta or {}))


def arch_to_ops(arch: Any) -> tuple[str, ...]:
    """The 6 edge ops of a NAS-Bench-201 ``cell`` arch (a missing edge reads ``none``)."""
    ops = {}
    for j, node in enumerate(arch.normal.nodes):
        for op, i in node:
            ops[(j + 1, i)] = op
    return tuple(ops.get(e, "none") for e in EDGES)
