"""Drawings (graphviz) and text descriptions of architectures, for every kind.

A drawer is ``fn(arch) -> graphviz.Digraph`` registered per kind with
:func:`register_drawer`. ``cell`` and ``recurrent`` drawers are here, in the style of
the DARTS paper figures (DARTS ``cnn/visualize.py``): inputs ``c_{k-2}``, ``c_{k-1}``
(or ``x_t``, ``h_{t-1}``), intermediate nodes numbered from 0, one edge per op labelled
with its name (``none`` edges left out), the output ``c_{k}`` / ``h_t``. ``macro``
(ENAS) and ``block`` (BlockQNN) drawers live in ``report/draw_macro.py`` and
``report/draw_block.py`` and are imported on first use when present.

The graphviz Python package only writes DOT source; images need the ``dot`` binary.
:func:`draw` always writes the ``.gv`` source next to the requested file and raises a
:class:`~nasforge.errors.NasforgeError` for image formats when ``dot`` is missing.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from nasforge.errors import NasforgeError

#: kind -> drawer
DRAWERS: dict[str, Callable[[Any], Any]] = {}
_LAZY = {"macro": "nasforge.report.draw_macro", "block": "nasforge.report.draw_block"}
IMAGE_FORMATS = ("png", "svg", "pdf")


def register_drawer(kind: str, fn: Callable[[Any], Any]) -> None:
    """Register ``fn(arch) -> graphviz.Digraph`` as the drawer of architectures of ``kind``."""
    DRAWERS[kind] = fn


def _drawer(kind: str) -> Callable[[Any], Any]:
    if kind not in DRAWERS and kind in _LAZY:
        try:
            importlib.import_module(_LAZY[kind])
        except ModuleNotFoundError as e:
            if e.name != _LAZY[kind]:
                raise
    if kind not in DRAWERS:
        raise NasforgeError(f"no drawing available for architectures of kind {kind!r}")
    return DRAWERS[kind]


def _digraph(name: str) -> Any:
    import graphviz

    g = graphviz.Digraph(name, format="png")
    g.attr(rankdir="LR")
    g.attr("node", style="filled,rounded", shape="rect", fontname="helvetica", fontsize="16", height="0.5", width="0.5", penwidth="2")
    g.attr("edge", fontname="helvetica", fontsize="14")
    return g


def _cell_subgraph(g: Any, genotype: Any, inputs: int, prefix: str, title: str) -> None:
    with g.subgraph(name=f"cluster_{prefix}") as sg:
        sg.attr(label=title, style="rounded", color="gray")
        in_names = ["c_{k-2}", "c_{k-1}"] if inputs == 2 else ["c_{k-1}"]
        ids = [f"{prefix}_in{i}" for i in range(inputs)]
        for nid, label in zip(ids, in_names):
            sg.node(nid, label, fillcolor="darkseagreen2")
        for j in range(len(genotype.nodes)):
            ids.append(f"{prefix}_n{j}")
            sg.node(ids[-1], str(inputs + j), fillcolor="lightblue")
        out = f"{prefix}_out"
        sg.node(out, "c_{k}", fillcolor="palegoldenrod")
        for j, node in enumerate(genotype.nodes):
            for op, i in node:
                if op != "none":
                    sg.edge(ids[i], ids[inputs + j], label=op, fillcolor="gray")
        for c in genotype.concat:
            sg.edge(ids[c], out, fillcolor="gray")


def _draw_cell(arch: Any) -> Any:
    g = _digraph(arch.name or "cell")
    for title, genotype in arch.cells().items():
        _cell_subgraph(g, genotype, arch.inputs, title, f"{arch.name} {title} cell".strip())
    return g


def _draw_recurrent(arch: Any) -> Any:
    g = _digraph(arch.name or "recurrent")
    g.node("x", "x_{t}", fillcolor="darkseagreen2")
    g.node("h", "h_{t-1}", fillcolor="darkseagreen2")
    for k in range(len(arch.nodes) + 1):
        g.node(f"n{k}", str(k), fillcolor="lightblue")
    g.edge("x", "n0", fillcolor="gray")
    g.edge("h", "n0", fillcolor="gray")
    for k, (act, pred) in enumerate(arch.nodes):
        g.edge(f"n{pred}", f"n{k + 1}", label=act, fillcolor="gray")
    g.node("out", "h_{t} (mean)", fillcolor="palegoldenrod")
    for c in arch.concat:
        g.edge(f"n{c}", "out", fillcolor="gray")
    return g


register_drawer("cell", _draw_cell)
register_drawer("recurrent", _draw_recurrent)


def graph(arch: Any) -> Any:
    """The ``graphviz.Digraph`` of ``arch`` (any kind with a registered drawer)."""
    return _drawer(arch.kind)(arch)


def draw(arch: Any, path: str | Path, format: str | None = None) -> Path:
    """Draw ``arch`` to ``path``; returns the file written.

    ``format`` is ``png``/``svg``/``pdf`` (default: from the suffix of ``path``, else
    ``png``) or ``gv``/``dot`` for the DOT source only. The source is always written to
    ``path`` with suffix ``.gv`` first; image output needs graphviz's ``dot`` binary.
    """
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "png").lower()
    if fmt not in IMAGE_FORMATS + ("gv", "dot"):
        raise NasforgeError(f"unknown drawing format {fmt!r} (expected one of png, svg, pdf, gv)")
    g = graph(arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    gv = path.with_suffix(".gv") if fmt in IMAGE_FORMATS else path
    gv.write_text(g.source, encoding="utf-8")
    if fmt not in IMAGE_FORMATS:
        return gv
    dot = shutil.which("dot")
    if dot is None:
        raise NasforgeError(f"graphviz 'dot' program not found, cannot write {fmt}; wrote the DOT source to {gv} (install graphviz, or render it elsewhere)")
    out = path if path.suffix.lstrip(".").lower() == fmt else path.with_suffix(f".{fmt}")
    proc = subprocess.run([dot, f"-T{fmt}", str(gv), "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NasforgeError(f"graphviz 'dot' failed on {gv}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'exit ' + str(proc.returncode)}")
    return out


def _describe_cell(arch: Any) -> str:
    lines = [f"cell architecture {arch.name or '(unnamed)'}: {arch.inputs} input node(s), op_set {arch.op_set}"]
    names = ["c_{k-2}", "c_{k-1}"] if arch.inputs == 2 else ["c_{k-1}"]
    for title, g in arch.cells().items():
        lines.append(f"  {title} cell:")
        for j, node in enumerate(g.nodes):
            node_id = arch.inputs + j
            terms = [f"{op}({names[i] if i < arch.inputs else 'node ' + str(i)})" for op, i in node if op != "none"]
            lines.append(f"    node {node_id} = " + (" + ".join(terms) if terms else "0 (all edges none)"))
        lines.append(f"    output = concat(nodes {', '.join(map(str, g.concat))})")
    if arch.reduce is None:
        lines.append("  no reduction cell (fixed reduction blocks)")
    return "\n".join(lines)


def _describe_recurrent(arch: Any) -> str:
    lines = [f"recurrent architecture {arch.name or '(unnamed)'}: {len(arch.nodes)} nodes after s0"]
    lines.append("    node 0 = highway(x_t, h_{t-1})")
    for k, (act, pred) in enumerate(arch.nodes):
        lines.append(f"    node {k + 1} = highway_{act}(node {pred})")
    lines.append(f"    h_t = mean(nodes {', '.join(map(str, arch.concat))})")
    return "\n".join(lines)


_DESCRIBERS: dict[str, Callable[[Any], str]] = {"cell": _describe_cell, "recurrent": _describe_recurrent}


def describe(arch: Any) -> str:
    """Readable text of ``arch``: ``arch.describe()`` when the class has one, else a
    listing for ``cell``/``recurrent``, else the JSON of ``to_dict()``."""
    if callable(getattr(arch, "describe", None)):
        return str(arch.describe())
    fn = _DESCRIBERS.get(getattr(arch, "kind", ""))
    if fn is not None:
        return fn(arch)
    d = arch.to_dict() if hasattr(arch, "to_dict") else arch
    return f"{getattr(arch, 'kind', 'architecture')} architecture:\n" + json.dumps(d, indent=2)
