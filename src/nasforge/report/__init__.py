"""Reports: drawings of architectures (graphviz), text descriptions, plots.

:func:`draw` and :func:`describe` are in :mod:`nasforge.report.draw`; other report
modules (plots, HTML) live beside it.
"""

from nasforge.report.draw import DRAWERS, describe, draw, graph, register_drawer

__all__ = ["DRAWERS", "describe", "draw", "graph", "register_drawer"]
