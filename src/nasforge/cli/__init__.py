"""The ``nasforge`` command line.

Each sub-command lives in its own module under :mod:`nasforge.cli` and exposes
``add_parser(subparsers)`` which registers a parser whose ``func(args) -> int`` runs it.
User errors (:class:`~nasforge.errors.NasforgeError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nasforge import __version__
from nasforge.errors import NasforgeError

#: sub-command -> module (imported lazily so ``nasforge --help`` stays fast)
COMMANDS = {
    "train": "nasforge.cli.train",
    "eval": "nasforge.cli.evaluate",
    "search": "nasforge.cli.search",
    "show": "nasforge.cli.show",
    "cost": "nasforge.cli.cost",
    "zoo": "nasforge.cli.zoo",
    "report": "nasforge.cli.report",
    "compare": "nasforge.cli.compare",
    "export": "nasforge.cli.export",
    "data": "nasforge.cli.data",
}


class UsageError(NasforgeError):
    """A malformed command line (unknown flag, bad choice, missing value)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (``nasforge: error: ...``, exit 2)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="nasforge", description="Neural architecture search: ENAS, DARTS, SNAS, BlockQNN.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    from nasforge.cli.common import add_verbosity_args

    add_verbosity_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=argparse.SUPPRESS, add_help=False)
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    only = first if first in COMMANDS else None
    parser = build_parser(only)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"nasforge: error: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv else 2
    from nasforge.cli.common import show_library_logs

    show_library_logs(getattr(args, "verbose", 0) - getattr(args, "quiet", 0))
    from nasforge.utils.malloc import tune_malloc

    tune_malloc()  # reuse freed activation memory instead of page-faulting fresh pages (utils/malloc.py)
    try:
        return int(args.func(args) or 0)
    except NasforgeError as e:
        print(f"nasforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nasforge: interrupted", file=sys.stderr)
        return 130
