"""``nasforge export CHECKPOINT --format torchscript|onnx [--out FILE]``: deployable model.

Exports the logits of a trained cell network (eval mode) and checks the file by
reloading it and comparing outputs with the PyTorch model (``--atol``, default 1e-5;
ONNX through onnxruntime). ``nasforge eval FILE`` scores the exported file. See
:mod:`nasforge.export`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nasforge.errors import ConfigError

SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained network to TorchScript or ONNX (checked against PyTorch)",
        description="Export the logits of a trained cell network. Beside the file it writes FILE.nasforge.json "
        "(SHA-256 and size): `nasforge eval` loads a TorchScript file only with a matching side-car, so keep the two "
        "files together when copying an export.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint.pt of a `nasforge train` run (or its run directory)")
    p.add_argument("--format", choices=("torchscript", "onnx"), required=True)
    p.add_argument("--out", default=None, help="output file (default: model.torchscript.pt / model.onnx beside the checkpoint)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=float, default=None, help="largest allowed output difference in the check (default 1e-5)")
    p.add_argument("--no-check", action="store_true", help="skip reloading and comparing outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nasforge.export import DEFAULT_ATOL, OPSET, export_checkpoint

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if args.atol is not None and not args.atol > 0:
        raise ConfigError(f"--atol must be positive, got {args.atol}")
    if args.opset is not None and args.format != "onnx":
        raise ConfigError("--opset applies to --format onnx only")
    if args.opset is not None and not 7 <= args.opset <= 20:  # what torch.onnx's TorchScript-based exporter writes
        raise ConfigError(f"--opset must be in [7, 20], got {args.opset}")
    out = Path(args.out) if args.out else path.parent / f"model{SUFFIX[args.format]}"
    if args.format == "onnx" and out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out for ONNX must end in .onnx (nasforge eval recognises ONNX files by it), got {out}")
    r = export_checkpoint(path, args.format, out, opset=OPSET if args.opset is None else args.opset, atol=DEFAULT_ATOL if args.atol is None else args.atol, check=not args.no_check)
    shape = "x".join(str(s) for s in r.meta["input"]["shape"])
    print(f"wrote {r.path} ({args.format}; input N x {shape} normalised images of {r.meta['data']['name']}, output logits)")
    if math.isnan(r.max_abs_diff):
        print(f"check: {r.checked_with}")
    else:
        print(f"check: max |exported - PyTorch| = {r.max_abs_diff:.2e} on real and random batches ({r.checked_with})")
    return 0


__all__ = ["add_parser", "run"]
