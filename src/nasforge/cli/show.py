"""``nasforge show ARCH|ZOO_NAME [--draw FILE]``: describe an architecture, optionally draw it."""

from __future__ import annotations

import argparse

from nasforge.arch import load_arch


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="describe an architecture (text), optionally draw it with graphviz")
    p.add_argument("arch", metavar="ARCH", help="architecture JSON file or zoo name (see `nasforge zoo`)")
    p.add_argument("--draw", metavar="FILE", default=None, help="also draw it: FILE.png/.svg/.pdf (needs graphviz `dot`) or FILE.gv (DOT source)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasforge.report.draw import describe, draw

    arch = load_arch(args.arch)
    print(describe(arch))
    meta = getattr(arch, "meta", None) or {}
    if meta.get("source"):
        print(f"source: {meta['source']}")
    if args.draw:
        out = draw(arch, args.draw)
        print(f"drawing: {out}")
    return 0
