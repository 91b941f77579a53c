"""``nasforge cost ARCH [--data DATA] [--layers --channels --input-size --classes] [--latency]``.

Builds the final network of an architecture and prints its parameters (M, counted as
DARTS does: auxiliary head excluded), forward FLOPs and multiply-adds for one input,
and optionally its measured latency (median of repeated forward passes).

Defaults are the papers' evaluation settings for ``--data``: ``cifar10`` (default) 20
cells, C = 36, 32×32×3, 10 classes; ``imagenet`` 14 cells, C = 48, 224×224×3, 1000
classes, ImageNet-style network; ``digits`` / ``fashion-mnist`` the CIFAR setting on
their 8×8 / 28×28 gray images; ``ptb`` (recurrent cells) 850 units, 10,000 words, FLOPs
per token.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass

from nasforge.arch import load_arch
from nasforge.errors import ConfigError, NasforgeError


@dataclass(frozen=True)
class Preset:
    in_channels: int
    input_size: int
    classes: int
    layers: int
    channels: int
    style: str = "cifar"


PRESETS = {
    "cifar10": Preset(3, 32, 10, 20, 36),
    "digits": Preset(1, 8, 10, 20, 36),
    "fashion-mnist": Preset(1, 28, 10, 20, 36),
    "imagenet": Preset(3, 224, 1000, 14, 48, "imagenet"),
    "ptb": Preset(0, 1, 10000, 1, 850),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="parameters, FLOPs / multiply-adds and latency of an architecture's network")
    p.add_argument("arch", metavar="ARCH", help="architecture JSON file or zoo name")
    p.add_argument("--data", default=None, choices=sorted(PRESETS), help="settings preset (default: cifar10 for cell archs, ptb for recurrent)")
    p.add_argument("--layers", type=int, default=None, help="cells (paper: 20 CIFAR, 14 ImageNet)")
    p.add_argument("--channels", type=int, default=None, help="initial channels C (paper: 36 / 48); recurrent: embedding = hidden size (850)")
    p.add_argument("--input-size", type=int, default=None, help="image height = width")
    p.add_argument("--in-channels", type=int, default=None, help="image channels")
    p.add_argument("--classes", type=int, default=None, help="classes (recurrent: vocabulary size)")
    p.add_argument("--style", choices=["cifar", "imagenet"], default=None, help="network style for cell archs")
    p.add_argument("--latency", action="store_true", help="also measure forward latency (batch 1, median of --repeats)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cpu", help="device for --latency: cpu, cuda, cuda:N, auto")
    p.set_defaults(func=run)


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise ConfigError(f"--{name} must be a positive integer, got {v}")


def _build(arch, preset: Preset, args: argparse.Namespace):
    """(model, example input, description of the input) for any architecture kind."""
    import torch

    layers = args.layers or preset.layers
    C = args.channels or preset.channels
    size = args.input_size or preset.input_size
    in_ch = args.in_channels or preset.in_channels or 3
    classes = args.classes or preset.classes
    if arch.kind == "recurrent":
        from nasforge.nets import RNNModel

        model = RNNModel(arch, classes, C, C, C)
        return model, (torch.zeros(1, 1, dtype=torch.long), model.init_hidden(1)), f"vocabulary {classes}, {C} units, per token"
    if arch.kind == "cell":
        from nasforge.nets import build_network

        style = args.style or preset.style
        model = build_network(arch, num_classes=classes, in_channels=in_ch, input_size=size, C=C, layers=layers, auxiliary=True, style=style)
        return model, (torch.randn(1, in_ch, size, size),), f"{style} network, {layers} cells, C={C}, input 1x{in_ch}x{size}x{size}, {classes} classes"
    if arch.kind == "macro":
        mod = importlib.import_module("nasforge.nets.macro")
        model = mod.build_macro_network(arch, num_classes=classes, in_channels=in_ch, input_size=size, C=C)
        return model, (torch.randn(1, in_ch, size, size),), f"macro network, C={C}, input 1x{in_ch}x{size}x{size}, {classes} classes"
    if arch.kind == "block":
        try:
            mod = importlib.import_module("nasforge.nets.blocks")
            builder = getattr(mod, "build_block_network")
        except (ModuleNotFoundError, AttributeError):
            raise NasforgeError("cost of 'block' architectures needs nasforge.nets.blocks.build_block_network, which this install lacks") from None
        model = builder(arch, num_classes=classes, in_channels=in_ch, input_size=size, C=C)
        return model, (torch.randn(1, in_ch, size, size),), f"block network, C={C}, input 1x{in_ch}x{size}x{size}, {classes} classes"
    raise NasforgeError(f"cost does not know how to build a network for kind {arch.kind!r}")


def run(args: argparse.Namespace) -> int:
    from nasforge.cost import count_flops, count_parameters, measure_latency
    from nasforge.utils.device import resolve_device

    for name in ("layers", "channels", "input_size", "in_channels", "classes", "repeats"):
        _positive(name.replace("_", "-"), getattr(args, name))
    arch = load_arch(args.arch)
    data = args.data or ("ptb" if arch.kind == "recurrent" else "cifar10")
    if (data == "ptb") != (arch.kind == "recurrent"):
        raise ConfigError(f"--data {data} does not fit a {arch.kind!r} architecture (ptb is for recurrent cells, image data for the others)")
    model, inputs, what = _build(arch, PRESETS[data], args)
    params = count_parameters(model)
    total = count_parameters(model, exclude_aux=False)
    flops = count_flops(model, inputs)
    print(f"{arch.name or args.arch}: {what}")
    aux = f" (+{(total - params) / 1e6:.3f}M auxiliary head, not counted)" if total != params else ""
    print(f"parameters: {params / 1e6:.3f}M{aux}")
    print(f"forward: {flops.forward / 1e6:.1f}M FLOPs = {flops.macs / 1e6:.1f}M multiply-adds (torch.utils.flop_counter: convolutions and matrix products)")
    if args.latency:
        device = resolve_device(args.device)
        sec = measure_latency(model, inputs, device, repeats=args.repeats)
        print(f"latency: {sec * 1e3:.2f} ms per forward pass (batch 1, {device}, median of {args.repeats})")
    return 0
