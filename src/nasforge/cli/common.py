"""Flags shared by several sub-commands."""

from __future__ import annotations

import argparse
import logging
import sys


class StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests may swap)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def show_library_logs(verbosity: int = 0) -> None:
    """Library messages (``logging``) to stderr: info by default, ``-q`` warnings, ``-v`` debug; idempotent."""
    level = logging.INFO if verbosity == 0 else logging.WARNING if verbosity < 0 else logging.DEBUG
    root = logging.getLogger("nasforge")
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        h = StderrHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(h)
    root.setLevel(level)
    root.propagate = False


def add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    p.add_argument("--data", default=default, help="dataset: digits (built in), fashion-mnist, cifar10, ptb, a word corpus folder, "
                   "or your own images: a folder with one sub-folder per class, or an .npz file (x_train, y_train)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: $NASFORGE_DATA/<dataset>)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """The run folder and how a command treats it (every command that writes a run)."""
    p.add_argument("--out", required=True, help="run directory (config.yaml, metrics.jsonl, checkpoint.pt, arch.json)")
    p.add_argument("--config", default=None, help="YAML file of config keys (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace whatever --out holds (default: refuse a non-empty folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_verbosity_args(p)


def add_verbosity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="count", default=argparse.SUPPRESS, help="fewer messages (warnings and errors only)")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more messages (debug)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    add_output_args(p)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic kernels (bit-exact resume on CPU)")
