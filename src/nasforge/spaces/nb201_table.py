"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a lookup table.

The cell has 4 nodes (node 0 = input); node j takes one edge from every earlier node,
each edge one of :data:`~nasforge.ops.NB201_PRIMITIVES`, so 5^6 = 15,625 cells. A cell
is written ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` and is encoded here as the tuple of
its 6 edge ops in the order (1←0, 2←0, 2←1, 3←0, 3←1, 3←2).

The table shipped in ``$NASFORGE_DATA/nas-bench-201/nb201_hp12_accuracies.csv`` holds
the 12-epoch accuracies (percent) of every cell; reading it needs no pandas.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from nasforge.errors import ArchError, DataError
from nasforge.ops import NB201_PRIMITIVES

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
METRICS = ("cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val", "imagenet-test", "imagenet-val")
TABLE_FILE = "nb201_hp12_accuracies.csv"


def ops_to_cellstr(ops: tuple[str, ...] | list[str]) -> str:
    if len(ops) != 6:
        raise ArchError(f"a NAS-Bench-201 cell has 6 edges, got {len(ops)}")
    for op in ops:
        if op not in NB201_PRIMITIVES:
            raise ArchError(f"unknown NAS-Bench-201 op {op!r} (known: {list(NB201_PRIMITIVES)})")
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
    ops_to_cellstr(out)  # validates op names
    return out


def index_to_ops(index: int) -> tuple[str, ...]:
    """Mixed-radix decoding (5 ops per edge) used to enumerate the space; not NB201's own index."""
    ops = []
    for _ in EDGES:
        index, r = divmod(index, len(NB201_PRIMITIVES))
        ops.append(NB201_PRIMITIVES[r])
    return tuple(ops)


def default_table_path(path: str | os.PathLike | None = None) -> Path:
    if path is not None:
        p = Path(path)
        return p / TABLE_FILE if p.is_dir() else p
    root = os.environ.get("NASFORGE_DATA")
    if not root:
        raise DataError("NAS-Bench-201 table not given: pass its path or set NASFORGE_DATA to the data folder")
    return Path(root) / "nas-bench-201" / TABLE_FILE


@dataclass
class NB201Table:
    """All 15,625 cells: ``accuracy(ops, metric)`` in percent."""

    rows: dict[tuple[str, ...], dict[str, float]]
    index: dict[tuple[str, ...], int]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "NB201Table":
        p = default_table_path(path)
        if not p.is_file():
            raise DataError(f"NAS-Bench-201 table not found: {p}")
        rows: dict[tuple[str, ...], dict[str, float]] = {}
        index: dict[tuple[str, ...], int] = {}
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("arch", "cellstr", *METRICS) if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"NAS-Bench-201 table {p} lacks column {missing[0]!r}")
            for r in reader:
                ops = cellstr_to_ops(r["cellstr"])
                rows[ops] = {m: float(r[m]) for m in METRICS}
                index[ops] = int(r["arch"])
        return cls(rows=rows, index=index)

    def __len__(self) -> int:
        return len(self.rows)

    def accuracy(self, ops: tuple[str, ...] | list[str] | str, metric: str = "cifar10-val") -> float:
        if metric not in METRICS:
            raise DataError(f"unknown NAS-Bench-201 metric {metric!r} (known: {list(METRICS)})")
        key = cellstr_to_ops(ops) if isinstance(ops, str) else tuple(ops)
        if key not in self.rows:
            raise ArchError(f"cell {ops!r} is not in the NAS-Bench-201 table")
        return self.rows[key][metric]

    def best(self, metric: str = "cifar10-val") -> tuple[tuple[str, ...], float]:
        ops = max(self.rows, key=lambda k: self.rows[k][metric])
        return ops, self.rows[ops][metric]
