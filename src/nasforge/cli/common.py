"""Flags shared by several sub-commands."""

from __future__ import annotations

import argparse


def add_data_args(p: argparse.ArgumentParser, default: str | None = "digits") -> None:
    p.add_argument("--data", default=default, help="dataset: digits (built in), fashion-mnist, cifar10, ptb, a word corpus folder, "
                   "or your own images: a folder with one sub-folder per class, or an .npz file (x_train, y_train)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: $NASFORGE_DATA/<dataset>)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (config.yaml, metrics.jsonl, checkpoint.pt, ...)")
    p.add_argument("--config", default=None, help="YAML file of config keys (flags override it)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic kernels (bit-exact resume on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
