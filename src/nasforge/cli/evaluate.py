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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained checkpoint: test accuracy or perplexity")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt of a `nasforge train` run (or its run directory), or a file written by `nasforge export`")
    add_data_args(p, default=None)
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--batch-size", type=int, default=None, help="default: the run's evaluation batch size")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasforge.train.common import CHECKPOINT
    from nasforge.train.evaluate import evaluate_checkpoint

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    from nasforge.export import evaluate_exported, is_exported  # a file written by `nasforge export`

    evaluate = evaluate_exported if is_exported(path) else evaluate_checkpoint
    r = evaluate(path, args.data, args.data_dir, device=args.device, batch_size=args.batch_size, split=args.split)
    if args.json:
        print(json.dumps(r))
    elif r["kind"] == "cnn":
        print(f"{r['split']} accuracy: {100 * r['accuracy']:.2f}% ({args.split} loss {r['loss']:.4f}, {r['images']} images, {r['data']}; epoch {r['epoch']})")
    else:
        print(f"{r['split']} perplexity: {r['perplexity']:.2f} ({args.split} loss {r['loss']:.4f}, {r['data']}; epoch {r['epoch']})")
    return 0
