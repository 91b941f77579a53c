"""Drawing of a BlockQNN block (``block`` kind) as a graphviz DAG.

In the style of the BlockQNN paper's block figures (Zhong et al., CVPR 2018, Fig. 4/7):
the block input, one node per NSC layer labelled with its type and kernel (e.g.
``conv 3x3``, ``max pool 3x3``, ``add``, ``concat``), an edge from each predecessor, and
the output node ``concat`` fed by every layer no other layer reads. Registered with
:func:`nasforge.report.draw.register_drawer`; :func:`nasforge.report.draw.draw` writes
the ``.gv`` source (and an image where graphviz's ``dot`` is installed).
"""

from __future__ import annotations

from typing import Any

from nasforge.report.draw import _digraph, register_drawer

_COLORS = {"conv": "lightblue", "max_pool": "lightpink", "avg_pool": "lavender", "identity": "white", "add": "lightyellow", "concat": "palegoldenrod"}


def _label(row: Any) -> str:
    t = row.type
    if t == "conv":
        return f"{row.index}: conv {row.kernel}x{row.kernel}"
    if t in ("max_pool", "avg_pool"):
        return f"{row.index}: {t.replace('_', ' ')} {row.kernel}x{row.kernel}"
    return f"{row.index}: {t}"


def draw_block(arch: Any) -> Any:
    """``graphviz.Digraph`` of a :class:`~nasforge.arch.block.BlockArch`."""
    arch.validate()
    g = _digraph(arch.name or "block")
    g.attr(rankdir="TB")
    g.node("n0", "input", fillcolor="darkseagreen2")
    for r in arch.layers:
        g.node(f"n{r.index}", _label(r), fillcolor=_COLORS.get(r.type, "white"))
        for p in arch.preds(r):
            g.edge(f"n{p}", f"n{r.index}", fillcolor="gray")
    g.node("out", "output (concat)", fillcolor="palegoldenrod")
    for i in arch.output_layers():
        g.edge(f"n{i}", "out", fillcolor="gray")
    return g


register_drawer("block", draw_block)
