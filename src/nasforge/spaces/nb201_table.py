"""NAS-Bench-201 (Dong & Yang, ICLR 2020) as a lookup table.

The vocabulary (edges, primitives, cell string <-> ops <-> ``cell`` arch, the table's
columns) is :mod:`nasforge.spaces.nb201`; its names stay importable from here.

The table shipped in ``$NASFORGE_DATA/nas-bench-201/nb201_hp12_accuracies.csv`` holds
the 12-epoch accuracies (percent) of every cell; reading it needs no pandas.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from nasforge.errors import ArchError, DataError
from nasforge.spaces.nb201 import (  # noqa: F401  (re-exported: the vocabulary lives in spaces/nb201.py)
    EDGES,
    METRICS,
    cellstr_to_ops,
    check_metric,
    index_to_ops,
    ops_to_cellstr,
)

TABLE_FILE = "nb201_hp12_accuracies.csv"


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
