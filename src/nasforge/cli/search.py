"""``nasforge search METHOD --space SPACE --data DATA --out DIR [...]``."""

from __future__ import annotations

import argparse

from nasforge.cli.common import add_data_args, add_run_args
from nasforge.search import METHODS, get_method


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run an architecture search (writes arch.json)")
    methods = p.add_subparsers(dest="method", metavar="METHOD")
    for name in METHODS:
        try:
            mod = get_method(name)
        except Exception:  # not built in this checkout
            continue
        mp = methods.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
        add_data_args(mp)
        add_run_args(mp)
        mod.add_arguments(mp)
        mp.set_defaults(func=mod.run_from_args)
