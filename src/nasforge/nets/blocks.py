"""Networks stacked from a BlockQNN block (Zhong et al., CVPR 2018, §3.1 and Fig. 3).

A :class:`Block` runs the NSC rows of a :class:`~nasforge.arch.block.BlockArch` on a
feature map; spatial size never changes inside a block. Channel handling (the paper does
not spell it out; our choices):

- the block input is projected to ``C`` channels by ReLU-Conv1x1-BN when it has another
  width, so layer 0 always has ``C`` channels;
- ``conv`` (ReLU-Conv-BN, "pre-activation convolutional cell") outputs ``C`` channels;
  pooling (stride 1, padding k//2) and ``identity`` keep their input's channels;
- ``add`` of two inputs of different widths first projects each to ``C`` with
  ReLU-Conv1x1-BN; ``concat`` sums the widths;
- the output concatenates every layer no other layer reads, then a ReLU-Conv1x1-BN brings
  it to ``C`` channels (skipped when it already has ``C``).

Frameworks (Fig. 3): CIFAR — a 3×3 conv stem, then ``stages`` stages of ``N`` blocks,
2×2 max pooling with stride 2 between stages and the block width doubling after each
pooling (defaults ``C=32``, ``N=4``, 3 stages follow the Keras reproduction [S]);
ImageNet — a 7×7 stride-2 conv stem and 3×3 stride-2 max pooling, 4 stages of ``N=3``
blocks from ``C=64`` [S/U]. Both end with global average pooling and a classifier, and keep their weights and
activations NHWC (``channels_last``, :mod:`nasforge.nets.layout`);
``head_hidden > 0`` puts the early-stop head of the search (FC-ReLU-Dropout, [S]: FC 1024,
dropout 0.4) in front of it. Any input size and class count.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch.block import NSC_ARITY, BlockArch
from nasforge.errors import ArchError
from nasforge.nets.layout import ChannelsLast
from nasforge.ops import ReLUConvBN


def _proj(c_in: int, c_out: int) -> nn.Module:
    return ReLUConvBN(c_in, c_out, 1, 1, 0)


class Block(nn.Module):
    """One NSC block: ``(N, C_in, H, W) -> (N, C, H, W)``."""

    def __init__(self, arch: BlockArch, C_in: int, C: int):
        super().__init__()
        if arch.kind != "block":
            raise ArchError(f"a block network needs a 'block' architecture, got {arch.kind!r}")
        arch.validate()
        self.rows = arch.layers
        self.arity = [NSC_ARITY[r.type] for r in self.rows]
        self.inp = _proj(C_in, C) if C_in != C else nn.Identity()
        widths = [C]
        self.layers = nn.ModuleList()
        self.adapters = nn.ModuleList()
        for r in self.rows:
            adapt = nn.ModuleList()
            if r.type == "conv":
                op: nn.Module = ReLUConvBN(widths[r.pred1], C, r.kernel, 1, r.kernel // 2)
                w = C
            elif r.type == "max_pool":
                op = nn.MaxPool2d(r.kernel, 1, r.kernel // 2)
                w = widths[r.pred1]
            elif r.type == "avg_pool":
                op = nn.AvgPool2d(r.kernel, 1, r.kernel // 2, count_include_pad=False)
                w = widths[r.pred1]
            elif r.type == "identity":
                op = nn.Identity()
                w = widths[r.pred1]
            elif r.type == "add":
                op = nn.Identity()
                a, b = widths[r.pred1], widths[r.pred2]
                if a != b:
                    adapt.append(_proj(a, C) if a != C else nn.Identity())
                    adapt.append(_proj(b, C) if b != C else nn.Identity())
                    w = C
                else:
                    w = a
            elif r.type == "concat":
                op = nn.Identity()
                w = widths[r.pred1] + widths[r.pred2]
            else:  # pragma: no cover - validate() rejects it
                raise ArchError(f"unknown NSC layer type {r.type!r}")
            self.layers.append(op)
            self.adapters.append(adapt)
            widths.append(w)
        self.outputs = arch.output_layers()
        c_cat = sum(widths[i] for i in self.outputs)
        self.out = _proj(c_cat, C) if c_cat != C else nn.Identity()
        self.C_out = C

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.inp(x)]
        for r, op, adapt in zip(self.rows, self.layers, self.adapters):
            if r.type == "add":
                a, b = states[r.pred1], states[r.pred2]
                if len(adapt):
                    a, b = adapt[0](a), adapt[1](b)
                y = a + b
            elif r.type == "concat":
                y = torch.cat([states[r.pred1], states[r.pred2]], dim=1)
            else:
                y = op(states[r.pred1])
            states.append(y)
        out = states[self.outputs[0]] if len(self.outputs) == 1 else torch.cat([states[i] for i in self.outputs], dim=1)
        return self.out(out)


class BlockNetwork(ChannelsLast):
    """The paper's CIFAR or ImageNet framework stacked from one block; ``forward`` returns logits."""

    def __init__(
        self,
        arch: BlockArch,
        *,
        num_classes: int,
        in_channels: int = 3,
        C: int = 32,
        blocks_per_stage: int = 4,
        stages: int = 3,
        style: Literal["cifar", "imagenet"] = "cifar",
        head_hidden: int = 0,
        dropout: float = 0.0,
        channels_last: bool = True,
    ):
        super().__init__()
        if style not in ("cifar", "imagenet"):
            raise ArchError(f"unknown network style {style!r} (cifar or imagenet)")
        if blocks_per_stage < 1 or stages < 1:
            raise ArchError("a block network needs at least one stage of one block")
        if style == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, C, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(C),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        body: list[nn.Module] = []
        c_in, c = C, C
        for s in range(stages):
            if s > 0:
                body.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                c *= 2
            for _ in range(blocks_per_stage):
                body.append(Block(arch, c_in, c))
                c_in = c
        self.body = nn.Sequential(*body)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head_hidden > 0:
            self.classifier: nn.Module = nn.Sequential(
                nn.Linear(c_in, head_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(head_hidden, num_classes)
            )
        else:
            self.classifier = nn.Linear(c_in, num_classes)
        self._layout(channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.body(self.stem(self._input(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build_block_network(arch: BlockArch, *, num_classes: int, in_channels: int, input_size: int | None = None, **kw) -> BlockNetwork:
    """Like :func:`nasforge.nets.build_network` for ``block`` architectures.

    ``input_size`` is accepted for the same call signature; block networks work at any
    size (global average pooling before the classifier)."""
    return BlockNetwork(arch, num_classes=num_classes, in_channels=in_channels, **kw)
