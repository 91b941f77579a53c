"""Flags shared by several sub-commands."""

from __future__ import annotations

import argparse
import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests may swap)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_library_logs() -> None:
    """Show the library's INFO logs (per-epoch progress lines) on stderr; idempotent."""
    root = logging.getLogger("nasforge")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)


def add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    p.add_argument("--data", default=default, help="dataset: digits (built in), fashion-mnist, cifar10, ptb, or a word corpus folder")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: $NASFORGE_DATA/<dataset>)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    show_library_logs()  # the commands that write a run report their epochs through logging
    p.add_argument("--out", required=True, help="run directory (config.yaml, metrics.jsonl, checkpoint.pt, ...)")
    p.add_argument("--config", default=None, help="YAML file of config keys (flags override it)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (default: refuse a folder that holds files)")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic kernels (bit-exact resume on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
