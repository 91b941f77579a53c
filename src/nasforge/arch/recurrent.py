"""The ``recurrent`` kind: a DARTS/ENAS recurrent cell.

Node 0 is ``s0``, computed from ``(x_t, h_{t-1})`` by the highway input layer. Each
further node ``i`` (1..N) reads one earlier node and applies an activation through a
highway step. ``concat`` lists the nodes averaged to give ``h_t``.

JSON::

    {"kind": "recurrent", "version": 1, "name": "DARTS_RNN_V2",
     "nodes": [["sigmoid", 0], ["relu", 1], ...], "concat": [1, 2, ..., 8]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasforge.arch.base import ARCH_VERSION, check_limit, expect_type, register_kind
from nasforge.errors import ArchError

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


@register_kind("recurrent")
@dataclass
class RecurrentArch:
    nodes: list[tuple[str, int]]
    concat: list[int]
    name: str = ""
    meta: dict = field(default_factory=dict)
    version: int = ARCH_VERSION
    kind = "recurrent"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": "recurrent", "version": self.version}
        if self.name:
            d["name"] = self.name
        d["nodes"] = [[a, i] for a, i in self.nodes]
        d["concat"] = list(self.concat)
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecurrentArch":
        known = {"kind", "version", "name", "nodes", "concat", "meta"}
        extra = set(d) - known
        if extra:
            raise ArchError(f"unknown field {sorted(extra)[0]!r} in recurrent architecture")
        if "nodes" not in d:
            raise ArchError("missing field 'nodes'")
        nodes = []
        check_limit("recurrent_nodes", len(expect_type(d["nodes"], list, "nodes")), "field 'nodes'")  # before parsing
        for k, n in enumerate(d["nodes"]):
            if not isinstance(n, (list, tuple)) or len(n) != 2:
                raise ArchError(f"field 'nodes[{k}]' must be a pair [activation, input], got {n!r}")
            nodes.append((expect_type(n[0], str, f"nodes[{k}][0]"), expect_type(n[1], int, f"nodes[{k}][1]")))
        concat = [expect_type(c, int, "concat[]") for c in expect_type(d.get("concat"), list, "concat")]
        return cls(
            nodes=nodes,
            concat=concat,
            name=expect_type(d.get("name", ""), str, "name"),
            meta=expect_type(d.get("meta", {}), dict, "meta"),
            version=d["version"],
        )

    def validate(self) -> None:
        if not self.nodes:
            raise ArchError("field 'nodes' is empty: a recurrent cell needs at least one node")
        check_limit("recurrent_nodes", len(self.nodes), "field 'nodes'")
        for k, (act, inp) in enumerate(self.nodes):
            node = k + 1
            if act not in ACTIVATIONS:
                raise ArchError(f"unknown activation {act!r} at 'nodes[{k}]' (known: {list(ACTIVATIONS)})")
            if not (0 <= inp < node):
                raise ArchError(f"input index {inp} out of range at 'nodes[{k}]' (node {node} can read 0..{node - 1})")
        n = len(self.nodes)
        if not self.concat:
            raise ArchError("field 'concat' is empty")
        if len(self.concat) > n + 1:
            raise ArchError(f"field 'concat' has {len(self.concat)} entries but the cell has only {n + 1} nodes")
        for c in self.concat:
            if not (0 <= c <= n):
                raise ArchError(f"concat index {c} out of range (nodes 0..{n})")
