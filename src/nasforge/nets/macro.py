"""A concrete ENAS macro network built from a ``macro`` architecture.

Pham et al. 2018, §2.3 and the official code (melodyguan/enas@4bcfd73,
``src/cifar10/general_child.py``):

- stem: 3×3 conv to ``C`` channels + BN;
- layer ``i`` applies its op to layer ``i-1``'s output. Each op is a *branch*: a
  1×1 conv-BN-ReLU to ``C`` channels (``inp_conv``), then a ``k×k`` conv (``conv_k``) or a
  depthwise-separable ``k×k`` conv (``sep_conv_k``) with BN-ReLU, or a 3×3 pool with
  stride 1 (``avg_pool_3x3``/``max_pool_3x3``);
- skip connections: the branch output and the outputs of the layers in ``skips`` are
  concatenated and ReLU, 1×1 conv, BN map them back to ``C`` channels (``_fixed_layer``);
- pooling: after layers ``L//3 - 1`` and ``2L//3 - 1`` every earlier layer's output is
  halved in resolution with a factorised reduction; in the final (fixed-arc) network the
  channel count doubles there, in the search network it stays ``C`` (``general_child``);
- head: ReLU, global average pool, dropout (``keep_prob`` 1.0 in the macro scripts), linear.

Weights and activations are NHWC (``channels_last``, :mod:`nasforge.nets.layout`); in
training the separable convs' depthwise→1×1 and the factorised reductions run as the
memory-saving functions of :mod:`nasforge.fused`.

Where the code differs: in fixed-arc mode ``general_child`` builds op ids 0-3 as a
1×1 conv followed by a *full* k×k conv (no separable conv), and ids 4/5 as a 1×1 conv and
a pool. We build separable convs as the paper's search space describes. The search
network (ENAS code, ``_enas_layer``) *sums* the skip inputs; we use concatenation + 1×1
conv in both (see :mod:`nasforge.spaces.enas_macro`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nasforge.arch.macro import MACRO_OPS, MacroArch
from nasforge.errors import ArchError
from nasforge.fused.plan import Plan, fused_plan, run_plan
from nasforge.nets.layout import ChannelsLast
from nasforge.ops import FactorizedReduce


def conv_bn_relu(C_in: int, C_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(C_in, C_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(C_out), nn.ReLU(inplace=False))


class MacroBranch(nn.Module):
    """One of the six ENAS macro ops mapping ``C_in`` to ``C`` channels at stride 1."""

    def __init__(self, op: str, C_in: int, C: int):
        super().__init__()
        if op not in MACRO_OPS:
            raise ArchError(f"unknown macro op {op!r} (known: {list(MACRO_OPS)})")
        self.op = op
        self.inp_conv = conv_bn_relu(C_in, C, 1)
        k = 5 if "5x5" in op else 3
        body: nn.Module
        if op.startswith("conv_"):
            body = conv_bn_relu(C, C, k)
        elif op.startswith("sep_conv_"):
            body = nn.Sequential(
                nn.Conv2d(C, C, k, padding=k // 2, groups=C, bias=False),
                nn.Conv2d(C, C, 1, bias=False),
                nn.BatchNorm2d(C),
                nn.ReLU(inplace=False),
            )
        elif op == "avg_pool_3x3":
            body = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        else:
            body = nn.MaxPool2d(3, stride=1, padding=1)
        self.body = body
        #: training path of the separable conv (depthwise→1×1 saving only its input)
        self._plan: Plan | None = fused_plan(body) if op.startswith("sep_conv_") else None
        self.fused = True  # False: the plain modules (the reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp_conv(x)
        if self.fused and self._plan is not None and self.training and torch.is_grad_enabled():
            return run_plan(self._plan, self.body, h)
        return self.body(h)


_FR_PLAN: Plan = (("factorized_reduce", (0,)),)


def pool_layers(num_layers: int) -> list[int]:
    """Layers after which the resolution halves: ``[L//3 - 1, 2L//3 - 1]`` (ENAS code)."""
    return sorted({p for p in (num_layers // 3 - 1, 2 * num_layers // 3 - 1) if 0 <= p < num_layers - 1})


class MacroNetwork(ChannelsLast):
    """Final ENAS macro network; ``forward(x)`` returns ``(logits, None)`` like the cell nets."""

    def __init__(self, arch: MacroArch, num_classes: int, in_channels: int = 3, C: int = 36, dropout: float = 0.0, double_channels: bool = True, channels_last: bool = True):
        super().__init__()
        arch.validate()
        self.arch = arch
        self.drop_path_prob = 0.0  # interface of the cell networks; unused here
        self.pool_at = pool_layers(arch.num_layers)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.branches = nn.ModuleList()
        self.combines = nn.ModuleList()
        self.reductions = nn.ModuleDict()
        widths: list[int] = []  # channels of each layer's output (as currently stored)
        c_cur = C
        for i, layer in enumerate(arch.layers):
            c_prev = widths[i - 1] if i > 0 else C
            self.branches.append(MacroBranch(layer.op, c_prev, c_cur))
            if layer.skips:
                c_cat = c_cur + sum(widths[j] for j in layer.skips)
                self.combines.append(nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_cat, c_cur, 1, bias=False), nn.BatchNorm2d(c_cur)))
            else:
                self.combines.append(nn.Identity())
            widths.append(c_cur)
            if i in self.pool_at:
                c_next = c_cur * 2 if double_channels else c_cur
                self.reductions[str(i)] = nn.ModuleList(FactorizedReduce(w, c_next) for w in widths)
                widths = [c_next] * len(widths)
                c_cur = c_next
        self.classifier = nn.Linear(c_cur, num_classes)
        self.dropout = nn.Dropout(dropout)
        self.fused = True  # False: the plain modules (the reference)
        self._layout(channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = self.stem(self._input(x))
        outputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.arch.layers):
            h = self.branches[i](outputs[-1] if outputs else out)
            if layer.skips:
                h = self.combines[i](torch.cat([h] + [outputs[j] for j in layer.skips], dim=1))
            outputs.append(h)
            if i in self.pool_at:
                fast = self.fused and self.training and torch.is_grad_enabled()
                outputs = [run_plan(_FR_PLAN, red, o) if fast else red(o) for red, o in zip(self.reductions[str(i)], outputs)]
        h = torch.relu(outputs[-1]).mean(dim=(2, 3))
        return self.classifier(self.dropout(h)), None


def build_macro_network(arch: MacroArch, num_classes: int, in_channels: int = 3, input_size: int = 32, C: int = 36, dropout: float = 0.0) -> MacroNetwork:
    """Final network for a ``macro`` arch (any input size: global pooling at the end).

    ENAS ``cifar10_macro_final.sh``: 24 layers, ``C = 96``; search: 12 layers, ``C = 36``.
    ``input_size`` is accepted for the common network-builder signature; the network
    works at any size ≥ 1 (factorised reductions pad odd sizes).
    """
    if input_size < 1:
        raise ArchError(f"input size must be positive, got {input_size}")
    return MacroNetwork(arch, num_classes=num_classes, in_channels=in_channels, C=C, dropout=dropout)
