"""The ``cell`` kind: a normal and a reduction cell (DARTS/ENAS-micro/SNAS/NAS-Bench-201).

A cell has ``inputs`` input nodes (2 for DARTS-style cells: index 0 = output of cell k-2,
1 = output of cell k-1; 1 for NAS-Bench-201 cells) followed by intermediate nodes.
Intermediate node j (numbered from ``inputs``) is a list of ``(op, input)`` edges whose
outputs are summed; ``input`` is any earlier node. ``concat`` lists the nodes joined
(channel concatenation) at the cell output. DARTS cells have two edges per node; SNAS
``edge_all`` cells list every edge (``none`` = no edge); NAS-Bench-201 cells have one
input and one edge from every earlier node, output = the last node.

JSON::

    {"kind": "cell", "version": 1, "name": "DARTS_V2",
     "normal": {"nodes": [[["sep_conv_3x3", 0], ["sep_conv_3x3", 1]], ...], "concat": [2, 3, 4, 5]},
     "reduce": {...}, "inputs": 2, "op_set": "darts", "meta": {...}}

``op_set`` selects op-family details that change parameters: ``darts`` (pools carry no
parameters) or ``snas`` (pools followed by an affine BN, as in SNAS's ``operations.py``).
``reduce`` may be ``null`` for spaces without reduction cells (NAS-Bench-201 uses fixed
residual reduction blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasforge.arch.base import ARCH_VERSION, check_limit, expect_type, register_kind
from nasforge.errors import ArchError

OP_SETS = ("darts", "snas")


@dataclass
class CellGenotype:
    nodes: list[list[tuple[str, int]]]
    concat: list[int]

    def to_dict(self) -> dict:
        return {"nodes": [[[op, i] for op, i in node] for node in self.nodes], "concat": list(self.concat)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "CellGenotype":
        expect_type(d, dict, where)
        if "nodes" not in d:
            raise ArchError(f"missing field '{where}.nodes'")
        nodes_raw = expect_type(d["nodes"], list, f"{where}.nodes")
        check_limit("cell_nodes", len(nodes_raw), f"field '{where}.nodes'")  # before parsing a huge file
        nodes = []
        for j, node in enumerate(nodes_raw):
            expect_type(node, list, f"{where}.nodes[{j}]")
            edges = []
            for e, edge in enumerate(node):
                f = f"{where}.nodes[{j}][{e}]"
                if not isinstance(edge, (list, tuple)) or len(edge) != 2:
                    raise ArchError(f"field {f!r} must be a pair [op, input], got {edge!r}")
                op, inp = edge
                expect_type(op, str, f"{f}[0]")
                expect_type(inp, int, f"{f}[1]")
                edges.append((op, inp))
            nodes.append(edges)
        concat = expect_type(d.get("concat"), list, f"{where}.concat")
        for c in concat:
            expect_type(c, int, f"{where}.concat[]")
        return cls(nodes=nodes, concat=list(concat))

    @classmethod
    def from_pairs(cls, pairs: list, concat: list[int], per_node: int = 2) -> "CellGenotype":
        """From the flat DARTS genotype list (``per_node`` pairs per intermediate node)."""
        if len(pairs) % per_node:
            raise ArchError(f"genotype has {len(pairs)} pairs, not a multiple of {per_node}")
        nodes = [[(op, int(i)) for op, i in pairs[k : k + per_node]] for k in range(0, len(pairs), per_node)]
        return cls(nodes=nodes, concat=list(concat))

    def validate(self, where: str, inputs: int, allowed_ops: set[str] | None) -> None:
        if not self.nodes:
            raise ArchError(f"field '{where}.nodes' is empty: a cell needs at least one intermediate node")
        check_limit("cell_nodes", len(self.nodes), f"field '{where}.nodes'")
        for j, node in enumerate(self.nodes):
            check_limit("edges_per_node", len(node), f"field '{where}.nodes[{j}]'")
        n_total = inputs + len(self.nodes)
        for j, node in enumerate(self.nodes):
            node_id = inputs + j
            if not node:
                raise ArchError(f"node {node_id} in '{where}' has no edge")
            for e, (op, inp) in enumerate(node):
                if allowed_ops is not None and op not in allowed_ops:
                    raise ArchError(
                        f"unknown op {op!r} at '{where}.nodes[{j}][{e}]': not a built-in op; "
                        "if it is your own, register it with nasforge.register_op before loading"
                    )
                if not (0 <= inp < node_id):
                    raise ArchError(
                        f"input index {inp} out of range at '{where}.nodes[{j}][{e}]' "
                        f"(node {node_id} can read nodes 0..{node_id - 1})"
                    )
        if not self.concat:
            raise ArchError(f"field '{where}.concat' is empty")
        for c in self.concat:
            if not (0 <= c < n_total):
                raise ArchError(f"concat index {c} out of range in '{where}.concat' (nodes 0..{n_total - 1})")
        if len(set(self.concat)) != len(self.concat):
            raise ArchError(f"duplicate node in '{where}.concat': {self.concat}")


@register_kind("cell")
@dataclass
class CellArch:
    normal: CellGenotype
    reduce: CellGenotype | None
    inputs: int = 2
    name: str = ""
    op_set: str = "darts"
    meta: dict = field(default_factory=dict)
    version: int = ARCH_VERSION
    kind = "cell"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": "cell", "version": self.version}
        if self.name:
            d["name"] = self.name
        d["inputs"] = self.inputs
        d["op_set"] = self.op_set
        d["normal"] = self.normal.to_dict()
        d["reduce"] = self.reduce.to_dict() if self.reduce is not None else None
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CellArch":
        known = {"kind", "version", "name", "inputs", "op_set", "normal", "reduce", "meta"}
        extra = set(d) - known
        if extra:
            raise ArchError(f"unknown field {sorted(extra)[0]!r} in cell architecture")
        if "normal" not in d:
            raise ArchError("missing field 'normal'")
        inputs = expect_type(d.get("inputs", 2), int, "inputs")
        reduce = d.get("reduce")
        return cls(
            normal=CellGenotype.from_dict(d["normal"], "normal"),
            reduce=None if reduce is None else CellGenotype.from_dict(reduce, "reduce"),
            inputs=inputs,
            name=expect_type(d.get("name", ""), str, "name"),
            op_set=expect_type(d.get("op_set", "darts"), str, "op_set"),
            meta=expect_type(d.get("meta", {}), dict, "meta"),
            version=d["version"],
        )

    def validate(self) -> None:
        from nasforge.ops import OPS

        if self.inputs not in (1, 2):
            raise ArchError(f"field 'inputs' must be 1 or 2, got {self.inputs}")
        if self.op_set not in OP_SETS:
            raise ArchError(f"field 'op_set' must be one of {list(OP_SETS)}, got {self.op_set!r}")
        allowed = set(OPS)
        self.normal.validate("normal", self.inputs, allowed)
        if self.reduce is not None:
            self.reduce.validate("reduce", self.inputs, allowed)

    def cells(self) -> dict[str, CellGenotype]:
        out = {"normal": self.normal}
        if self.reduce is not None:
            out["reduce"] = self.reduce
        return out

    def edges(self, cell: str = "normal") -> list[tuple[int, str, int]]:
        g = self.normal if cell == "normal" else self.reduce
        assert g is not None
        return [(self.inputs + j, op, i) for j, node in enumerate(g.nodes) for op, i in node]

    @classmethod
    def from_darts_genotype(
        cls, normal: list, normal_concat: list[int], reduce: list, reduce_concat: list[int], name: str = "", **kw: Any
    ) -> "CellArch":
        """From DARTS' ``Genotype`` fields (two (op, input) pairs per node)."""
        return cls(
            normal=CellGenotype.from_pairs(normal, normal_concat),
            reduce=CellGenotype.from_pairs(reduce, reduce_concat),
            name=name,
            **kw,
        )
