"""The ``macro`` kind: an ENAS macro network (Pham et al. 2018, §2.3 "Designing
Convolutional Networks").

A macro architecture is a chain of ``L`` layers. Layer ``i`` applies one of six ops to
the output of layer ``i-1`` (the stem for layer 0) and also reads the outputs of the
earlier layers listed in ``skips`` (skip connections). The six ops and their ids follow
the official code's README (melodyguan/enas@4bcfd73): 0 conv 3×3, 1 sep conv 3×3,
2 conv 5×5, 3 sep conv 5×5, 4 average pool 3×3, 5 max pool 3×3.

JSON::

    {"kind": "macro", "version": 1, "name": "ENAS_macro",
     "layers": [{"op": "conv_3x3", "skips": []}, {"op": "sep_conv_5x5", "skips": [0]}, ...]}

``skips`` of layer ``i`` are indices ``0..i-1`` (sorted, no repeats). The official
``child_fixed_arc`` string (per layer: op id, then ``i`` skip bits) is read by
:meth:`MacroArch.from_fixed_arc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nasforge.arch.base import ARCH_VERSION, check_limit, expect_type, register_kind
from nasforge.errors import ArchError

#: The six ENAS macro ops, in the README's id order (the controller's action index).
MACRO_OPS = ("conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3")


@dataclass
class MacroLayer:
    op: str
    skips: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"op": self.op, "skips": list(self.skips)}


@register_kind("macro")
@dataclass
class MacroArch:
    layers: list[MacroLayer]
    name: str = ""
    meta: dict = field(default_factory=dict)
    version: int = ARCH_VERSION
    kind = "macro"

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"kind": "macro", "version": self.version}
        if self.name:
            d["name"] = self.name
        d["layers"] = [layer.to_dict() for layer in self.layers]
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MacroArch":
        known = {"kind", "version", "name", "layers", "meta"}
        extra = set(d) - known
        if extra:
            raise ArchError(f"unknown field {sorted(extra)[0]!r} in macro architecture")
        if "layers" not in d:
            raise ArchError("missing field 'layers'")
        layers = []
        check_limit("macro_layers", len(expect_type(d["layers"], list, "layers")), "field 'layers'")  # before parsing
        for i, raw in enumerate(d["layers"]):
            expect_type(raw, dict, f"layers[{i}]")
            bad = set(raw) - {"op", "skips"}
            if bad:
                raise ArchError(f"unknown field {sorted(bad)[0]!r} in 'layers[{i}]'")
            if "op" not in raw:
                raise ArchError(f"missing field 'layers[{i}].op'")
            op = expect_type(raw["op"], str, f"layers[{i}].op")
            skips = [expect_type(s, int, f"layers[{i}].skips[]") for s in expect_type(raw.get("skips", []), list, f"layers[{i}].skips")]
            layers.append(MacroLayer(op, skips))
        return cls(
            layers=layers,
            name=expect_type(d.get("name", ""), str, "name"),
            meta=expect_type(d.get("meta", {}), dict, "meta"),
            version=d["version"],
        )

    def validate(self) -> None:
        if not self.layers:
            raise ArchError("field 'layers' is empty: a macro network needs at least one layer")
        check_limit("macro_layers", len(self.layers), "field 'layers'")
        for i, layer in enumerate(self.layers):
            if layer.op not in MACRO_OPS:
                raise ArchError(f"unknown op {layer.op!r} at 'layers[{i}].op' (known: {list(MACRO_OPS)})")
            for s in layer.skips:
                if isinstance(s, bool) or not isinstance(s, int) or not (0 <= s < i):
                    raise ArchError(f"skip index {s!r} out of range at 'layers[{i}].skips' (layer {i} can read layers 0..{i - 1})")
            if list(layer.skips) != sorted(set(layer.skips)):
                raise ArchError(f"field 'layers[{i}].skips' must be sorted without repeats, got {layer.skips}")

    def describe(self) -> str:
        lines = [f"macro architecture {self.name or '(unnamed)'}: {len(self.layers)} layers"]
        for i, layer in enumerate(self.layers):
            skips = ", ".join(str(s) for s in layer.skips) if layer.skips else "-"
            lines.append(f"  layer {i:2d}: {layer.op:<13s} skips from {skips}")
        return "\n".join(lines)

    def to_fixed_arc(self) -> list[int]:
        """The official ``child_fixed_arc`` encoding: per layer op id then ``i`` skip bits."""
        out: list[int] = []
        for i, layer in enumerate(self.layers):
            out.append(MACRO_OPS.index(layer.op))
            out.extend(1 if j in layer.skips else 0 for j in range(i))
        return out

    @classmethod
    def from_fixed_arc(cls, arc: list[int], name: str = "", **kw: Any) -> "MacroArch":
        layers, pos, i = [], 0, 0
        while pos < len(arc):
            op_id = arc[pos]
            bits = arc[pos + 1 : pos + 1 + i]
            if not (0 <= op_id < len(MACRO_OPS)) or len(bits) != i:
                raise ArchError(f"malformed fixed-arc string at layer {i}")
            layers.append(MacroLayer(MACRO_OPS[op_id], [j for j, b in enumerate(bits) if b]))
            pos += 1 + i
            i += 1
        return cls(layers=layers, name=name, **kw)
