"""The ``block`` kind: a BlockQNN block written in Network Structure Code (NSC).

Zhong et al., "Practical Block-wise Neural Network Architecture Generation", CVPR 2018,
§3.1 and Table 1 (and the TPAMI version, arXiv 1808.05584). A block is a list of NSC rows
``(index, type, kernel, pred1, pred2)``:

======  ============  ==========  ==========================================
code    type          kernel      predecessors
======  ============  ==========  ==========================================
1       ``conv``      1, 3, 5     pred1 (pre-activation ReLU-Conv-BN)
2       ``max_pool``  1, 3        pred1
3       ``avg_pool``  1, 3        pred1
4       ``identity``  0           pred1
5       ``add``       0           pred1, pred2 (elemental add)
6       ``concat``    0           pred1, pred2 (channel concat)
7       ``terminal``  0           none (ends the block)
======  ============  ==========  ==========================================

Layer indices run 1, 2, ... in row order; predecessor 0 is the block input and a row may
only read earlier rows (so the block is a DAG by construction). Unused fields are 0
(pred2 of one-input layers, both preds of ``terminal``). Layers that no other layer
reads are concatenated into the block output. An optional ``terminal`` row may close the
block (the agent always emits one); it must be the last row.

JSON::

    {"kind": "block", "version": 1, "name": "",
     "rows": [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 0, 0], [3, "add", 0, 1, 2], [4, "terminal", 0, 0, 0]]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nasforge.arch.base import ARCH_VERSION, check_limit, expect_type, register_kind
from nasforge.errors import ArchError

#: NSC type name -> the paper's type code (Table 1)
NSC_TYPES: dict[str, int] = {
    "conv": 1,
    "max_pool": 2,
    "avg_pool": 3,
    "identity": 4,
    "add": 5,
    "concat": 6,
    "terminal": 7,
}
#: legal kernel sizes per type (Table 1); 0 = the field is unused
NSC_KERNELS: dict[str, tuple[int, ...]] = {
    "conv": (1, 3, 5),
    "max_pool": (1, 3),
    "avg_pool": (1, 3),
    "identity": (0,),
    "add": (0,),
    "concat": (0,),
    "terminal": (0,),
}
#: number of predecessors each type reads
NSC_ARITY: dict[str, int] = {"conv": 1, "max_pool": 1, "avg_pool": 1, "identity": 1, "add": 2, "concat": 2, "terminal": 0}


class NSCRow(NamedTuple):
    index: int
    type: str
    kernel: int
    pred1: int
    pred2: int

    def describe(self) -> str:
        t = self.type
        if t == "terminal":
            return f"{self.index}: terminal"
        if t == "conv":
            return f"{self.index}: conv{self.kernel}x{self.kernel}({self.pred1})"
        if t in ("max_pool", "avg_pool"):
            return f"{self.index}: {t}{self.kernel}x{self.kernel}({self.pred1})"
        if NSC_ARITY[t] == 2:
            return f"{self.index}: {t}({self.pred1},{self.pred2})"
        return f"{self.index}: {t}({self.pred1})"


def check_row(row: NSCRow, position: int) -> None:
    """Validate one row at 1-based ``position``; the message names the row and field."""
    where = f"rows[{position - 1}]"
    if row.type not in NSC_TYPES:
        raise ArchError(f"unknown NSC layer type {row.type!r} at {where} (known: {', '.join(NSC_TYPES)})")
    if row.index != position:
        raise ArchError(f"{where}.index is {row.index}, expected {position} (rows are numbered 1, 2, ... in order)")
    if row.kernel not in NSC_KERNELS[row.type]:
        raise ArchError(f"{where}.kernel {row.kernel} is not valid for {row.type!r} (allowed: {list(NSC_KERNELS[row.type])})")
    arity = NSC_ARITY[row.type]
    for name, pred, used in (("pred1", row.pred1, arity >= 1), ("pred2", row.pred2, arity >= 2)):
        if not used:
            if pred != 0:
                raise ArchError(f"{where}.{name} must be 0 for {row.type!r} (field unused), got {pred}")
            continue
        if pred < 0:
            raise ArchError(f"{where}.{name} {pred} is negative (0 = block input)")
        if pred >= row.index:
            raise ArchError(
                f"{where}.{name} {pred} does not point to an earlier layer (layer {row.index} may read 0..{row.index - 1}; "
                "a forward or self reference would make a cycle)"
            )


@register_kind("block")
@dataclass
class BlockArch:
    rows: list[NSCRow]
    name: str = ""
    meta: dict = field(default_factory=dict)
    version: int = ARCH_VERSION
    kind = "block"

    # ---- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": "block", "version": self.version}
        if self.name:
            d["name"] = self.name
        d["rows"] = [list(r) for r in self.rows]
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BlockArch":
        known = {"kind", "version", "name", "rows", "meta"}
        extra = set(d) - known
        if extra:
            raise ArchError(f"unknown field {sorted(extra)[0]!r} in block architecture")
        if "rows" not in d:
            raise ArchError("missing field 'rows'")
        raw = expect_type(d["rows"], list, "rows")
        check_limit("nsc_rows", len(raw), "field 'rows'")  # before parsing
        rows = []
        for i, r in enumerate(raw):
            f = f"rows[{i}]"
            if not isinstance(r, (list, tuple)) or len(r) != 5:
                raise ArchError(f"field {f!r} must be [index, type, kernel, pred1, pred2], got {r!r}")
            idx, typ, k, p1, p2 = r
            expect_type(idx, int, f"{f}.index")
            expect_type(typ, str, f"{f}.type")
            expect_type(k, int, f"{f}.kernel")
            expect_type(p1, int, f"{f}.pred1")
            expect_type(p2, int, f"{f}.pred2")
            rows.append(NSCRow(idx, typ, k, p1, p2))
        return cls(
            rows=rows,
            name=expect_type(d.get("name", ""), str, "name"),
            meta=expect_type(d.get("meta", {}), dict, "meta"),
            version=d["version"],
        )

    @classmethod
    def from_rows(cls, rows: list, **kw: Any) -> "BlockArch":
        return cls(rows=[NSCRow(*r) for r in rows], **kw)

    def validate(self) -> None:
        if not self.rows:
            raise ArchError("field 'rows' is empty: a block needs at least one layer")
        check_limit("nsc_rows", len(self.rows), "field 'rows'")
        for pos, r in enumerate(self.rows, start=1):
            row = r if isinstance(r, NSCRow) else NSCRow(*r)
            check_row(row, pos)
            if row.type == "terminal" and pos != len(self.rows):
                raise ArchError(f"rows[{pos - 1}] is 'terminal' but is not the last row")
        if not self.layers:
            raise ArchError("the block has no layer before 'terminal'")

    # ---- graph ------------------------------------------------------------------------
    @property
    def layers(self) -> list[NSCRow]:
        """The rows that compute something (every row but a closing ``terminal``)."""
        return [NSCRow(*r) for r in self.rows if r[1] != "terminal"]

    def preds(self, row: NSCRow) -> list[int]:
        return [row.pred1, row.pred2][: NSC_ARITY[row.type]]

    def output_layers(self) -> list[int]:
        """Layers no other layer reads: concatenated into the block output (§3.1)."""
        used = {p for r in self.layers for p in self.preds(r)}
        return [r.index for r in self.layers if r.index not in used]

    def edges(self) -> list[tuple[int, int]]:
        """DAG edges (src, dst); node 0 is the input, ``len(layers)+1`` the output concat."""
        out = len(self.layers) + 1
        e = [(p, r.index) for r in self.layers for p in self.preds(r)]
        e += [(i, out) for i in self.output_layers()]
        return e

    def density(self) -> float:
        """Edges / nodes of the block DAG (input, layers and output node), eq. 7's 'Density'."""
        return len(self.edges()) / (len(self.layers) + 2)

    def key(self) -> str:
        """Canonical string for de-duplication in the trial store."""
        return ";".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]}" for r in self.rows)

    def describe(self) -> str:
        body = " ".join(NSCRow(*r).describe() for r in self.layers)
        return f"block[{body} | out=concat{tuple(self.output_layers())}]"
