"""``nasforge eval CHECKPOINT [--data DATA] [--data-dir DIR]``: score a trained network.

Rebuilds the network from the checkpoint alone and prints its test accuracy (cell
networks) or test perplexity (language models), the same figure ``nasforge train``
prints at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasforge.cli.common import add_data_args
from nasforge.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained checkpoint: test accuracy or perplexity",
        description="Score a trained network. Checkpoints are read with torch.load(weights_only=True) (tensors and "
        "plain data only, no code). A TorchScript file is loaded only when it comes from `nasforge export`: its "
        "side-car FILE.nasforge.json must sit beside it and match the file's SHA-256 (loading TorchScript runs code "
        "from the file; the side-car is a checksum, not a signature, so evaluate only exports you made or trust). "
        "ONNX files run in onnxruntime; their side-car is checked when present.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt of a `nasforge train` run (or its run directory), or a file written by `nasforge export` (TorchScript: with its FILE.nasforge.json side-car)")
    add_data_args(p, default=None)
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's evaluation batch size")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasforge.train.common import CHECKPOINT
    from nasforge.train.evaluate import evaluate_checkpoint

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    from nasforge.exported import evaluate_exported, is_exported  # a file written by `nasforge export`

    evaluate = evaluate_exported if is_exported(path) else evaluate_checkpoint
    r = evaluate(path, args.data, args.data_dir, device=args.device, batch_size=args.batch_size, split=args.split)
    if args.json:
        print(json.dumps(r))
    elif r["kind"] == "cnn":
        print(f"{r['split']} accuracy: {100 * r['accuracy']:.2f}% ({args.split} loss {r['loss']:.4f}, {r['images']} images, {r['data']}; epoch {r['epoch']})")
    else:
        print(f"{r['split']} perplexity: {r['perplexity']:.2f} ({args.split} loss {r['loss']:.4f}, {r['data']}; epoch {r['epoch']})")
    return 0
