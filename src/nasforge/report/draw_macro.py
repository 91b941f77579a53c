"""Drawing of an ENAS macro network (``macro`` kind) as a graphviz chain.

In the style of the ENAS paper's macro figure (Pham et al. 2018, Fig. 7): the image, one
node per layer labelled with its op, the chain edges between consecutive layers (solid),
skip connections from earlier layers (dashed, grey), the two pooling points
(``L//3 - 1``, ``2L//3 - 1``) marked, and the classifier.
"""

from __future__ import annotations

from typing import Any

from nasforge.nets.macro import pool_layers
from nasforge.report.draw import _digraph, register_drawer

_COLORS = {"conv_3x3": "lightblue", "conv_5x5": "skyblue", "sep_conv_3x3": "palegreen", "sep_conv_5x5": "darkseagreen1",
           "avg_pool_3x3": "lavender", "max_pool_3x3": "lightpink"}


def draw_macro(arch: Any) -> Any:
    """``graphviz.Digraph`` of a :class:`~nasforge.arch.macro.MacroArch`."""
    arch.validate()
    g = _digraph(arch.name or "macro")
    g.attr(rankdir="TB")
    g.node("in", "image", fillcolor="darkseagreen2")
    pools = set(pool_layers(arch.num_layers))
    prev = "in"
    for i, layer in enumerate(arch.layers):
        g.node(f"l{i}", f"{i}: {layer.op.replace('_', ' ')}", fillcolor=_COLORS.get(layer.op, "white"))
        g.edge(prev, f"l{i}")
        for j in layer.skips:
            g.edge(f"l{j}", f"l{i}", style="dashed", color="gray50")
        prev = f"l{i}"
        if i in pools:
            g.node(f"p{i}", "factorised reduction", shape="ellipse", fillcolor="khaki1")
            g.edge(prev, f"p{i}")
            prev = f"p{i}"
    g.node("out", "global pool + linear", fillcolor="palegoldenrod")
    g.edge(prev, "out")
    return g


register_drawer("macro", draw_macro)
