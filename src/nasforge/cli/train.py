"""``nasforge train ARCH|ZOO_NAME --data DATA --out DIR [...]``: train a final network.

A ``cell`` architecture is trained as a CNN (:func:`nasforge.train.train_cnn`, DARTS's
CIFAR evaluation recipe), a ``recurrent`` one as a language model
(:func:`nasforge.train.train_lm`, DARTS's PTB recipe). Config: defaults < ``--config``
YAML < flags. ``--resume`` continues ``OUT/checkpoint.pt`` with the run's own config.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from nasforge.arch import load_arch
from nasforge.cli.common import add_data_args, add_run_args
from nasforge.config import load_yaml, resolve, to_dict
from nasforge.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network from an architecture file or zoo name (writes metrics.jsonl, checkpoint.pt)",
        description="Train a final network from scratch: cell architectures as CNNs (DARTS evaluation), "
        "recurrent ones as language models (DARTS PTB). Prints the test accuracy / perplexity at the end.",
    )
    p.add_argument("arch", metavar="ARCH", help="architecture JSON file or zoo name (see `nasforge zoo`)")
    add_data_args(p, default=None)
    add_run_args(p)
    p.add_argument("--layers", type=int, default=None, help="cells in the network (paper: 20)")
    p.add_argument("--channels", type=int, default=None, help="initial channels C (paper: 36); for a recurrent cell the embedding/hidden size (paper: 850)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (paper: 0.025 CNN, 20 LM)")
    p.add_argument("--input-size", type=int, default=None, help="image networks: resize images to this side (default: as stored)")
    p.add_argument("--no-memory-check", dest="memory_check", action="store_false", default=None,
                   help="skip the peak-memory estimate that stops a run too large for the available memory (config memory_check: false)")
    p.set_defaults(func=run)


def _flags(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "data": args.data,
        "data_dir": args.data_dir,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "deterministic": args.deterministic,
        "lr": args.lr,
    }
    flags["memory_check"] = getattr(args, "memory_check", None)
    if kind != "recurrent":
        flags.update(layers=args.layers, channels=args.channels, input_size=args.input_size)
    else:
        if args.layers is not None:
            raise ConfigError("--layers applies to cell networks; a recurrent cell has one layer")
        flags.update(emsize=args.channels, nhid=args.channels)
    if flags["data"] is not None and Path(flags["data"]).exists():  # a folder or an .npz file
        flags["data"] = os.path.abspath(flags["data"])
    return {k: v for k, v in flags.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from nasforge.train.common import CHECKPOINT, merge_resume_config, read_training_checkpoint
    from nasforge.train.config import LMConfig, TrainConfig

    arch = load_arch(args.arch)
    kind = getattr(arch, "kind", None)
    if kind not in ("cell", "macro", "block", "recurrent"):
        raise ConfigError(f"nasforge train handles cell, macro, block and recurrent architectures, not {kind!r}")
    cls = LMConfig if kind == "recurrent" else TrainConfig
    flags = _flags(args, kind)
    cfg = resolve(cls, args.config, flags)
    out = Path(args.out)
    if args.resume:
        ckpt_path = out / CHECKPOINT
        ckpt = read_training_checkpoint(ckpt_path, "lm" if kind == "recurrent" else "cnn")
        if ckpt["arch"] != arch.to_dict():
            raise ConfigError(f"--resume: architecture {args.arch} is not the one trained in {out}")
        explicit = {**(load_yaml(args.config) if args.config else {}), **flags}
        cfg = merge_resume_config(cls, ckpt["config"], to_dict(cfg), explicit, ckpt_path)
    show = not args.no_progress
    if kind != "recurrent":
        from nasforge.train.cnn import train_cnn

        train_cnn(arch, cfg, out, resume=args.resume, overwrite=args.overwrite, show_progress=show, log=print)
    else:
        from nasforge.train.lm import train_lm

        train_lm(arch, cfg, out, resume=args.resume, overwrite=args.overwrite, show_progress=show, log=print)
    return 0
