"""``nasforge report RUN_DIR [--out DIR] [--watch SECONDS]``: an HTML report of a run.

Works for the run directory of every command (searches, training) and while the run is
still going; ``--watch`` rewrites the report every SECONDS until the run has finished
(the page reloads itself meanwhile). See :mod:`nasforge.report.build`.
"""

from __future__ import annotations

import argparse
import time

from nasforge.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="HTML report of a run: architecture drawing, curves, α heatmaps, trials",
        description="Write RUN_DIR/report/index.html (self-contained, figures embedded) and its PNGs.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `nasforge search` or `nasforge train`")
    p.add_argument("--out", default=None, help="report folder (default: RUN_DIR/report)")
    p.add_argument("--no-embed", action="store_true", help="link the PNGs from the HTML instead of embedding them")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="rewrite the report every SECONDS until the run finishes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasforge.report.build import build_report
    from nasforge.report.rundata import load_run

    if args.watch is not None and args.watch <= 0:
        raise ConfigError(f"--watch must be a positive number of seconds, got {args.watch}")
    refresh = max(1, int(round(args.watch))) if args.watch else None
    while True:
        path = build_report(args.run_dir, args.out, embed=not args.no_embed, refresh=refresh)
        print(f"wrote {path}")
        if not args.watch or load_run(args.run_dir).finished:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


__all__ = ["add_parser", "run"]
