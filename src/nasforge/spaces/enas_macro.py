"""ENAS macro search space with shared weights (Pham et al. 2018, §2.3).

One network holds, for every layer ``i`` and every op of :data:`MACRO_OPS`, one branch
(:class:`~nasforge.nets.macro.MacroBranch`), so the weights of an op are shared by every
child that picks that op at that layer. A child (a :class:`MacroArch`) runs only its
chosen branch per layer. Defaults of the official ``cifar10_macro_search.sh``: 12 layers,
36 filters, 6 branches; the resolution halves after layers ``L//3 - 1`` and
``2L//3 - 1`` with a factorised reduction of every earlier layer (channels stay ``C``
during search, ``general_child.py``).

Skip connections: the branch output and the chosen earlier layers are concatenated and
mapped back to ``C`` channels by ReLU, 1×1 conv, BN (as ``general_child._fixed_layer``). The 1×1 conv of layer ``i`` owns a
``(C, C·(i+1))`` weight; a child uses the column blocks of its chosen inputs, so every
skip pattern shares it (the slicing trick of the micro search code's final combine).
The official macro *search* code instead sums the skip inputs (``_enas_layer``); its
fixed-arc code concatenates as here. Works at any input size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch.macro import MACRO_OPS, MacroArch, MacroLayer
from nasforge.errors import ArchError
from nasforge.nets.macro import MacroBranch, pool_layers
from nasforge.ops import FactorizedReduce


class MacroSupernet(nn.Module):
    """Shared weights of all macro children: ``forward(x, arch) -> logits``."""

    def __init__(self, num_classes: int, in_channels: int = 3, num_layers: int = 12, C: int = 36, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ArchError(f"a macro network needs at least one layer, got {num_layers}")
        self.num_layers = num_layers
        self.C = C
        self.pool_at = pool_layers(num_layers)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.branches = nn.ModuleList(nn.ModuleDict({op: MacroBranch(op, C, C) for op in MACRO_OPS}) for _ in range(num_layers))
        self.combine_w = nn.ParameterList(nn.Parameter(torch.empty(C, C * (i + 1), 1, 1)) for i in range(num_layers))
        self.combine_bn = nn.ModuleList(nn.BatchNorm2d(C) for _ in range(num_layers))
        self.reductions = nn.ModuleDict({str(p): nn.ModuleList(FactorizedReduce(C, C) for _ in range(p + 1)) for p in self.pool_at})
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(C, num_classes)
        for w in self.combine_w:
            nn.init.kaiming_normal_(w)

    def check(self, arch: MacroArch) -> None:
        arch.validate()
        if arch.num_layers != self.num_layers:
            raise ArchError(f"architecture has {arch.num_layers} layers but the search space has {self.num_layers}")

    def forward(self, x: torch.Tensor, arch: MacroArch) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        inp = self.stem(x)
        for i, layer in enumerate(arch.layers):
            h = self.branches[i][layer.op](outputs[-1] if outputs else inp)
            if layer.skips:
                blocks = [0] + [1 + j for j in layer.skips]
                w = torch.cat([self.combine_w[i][:, b * self.C : (b + 1) * self.C] for b in blocks], dim=1)
                h = self.combine_bn[i](F.conv2d(torch.relu(torch.cat([h] + [outputs[j] for j in layer.skips], dim=1)), w))
            outputs.append(h)
            if i in self.pool_at:
                outputs = [red(o) for red, o in zip(self.reductions[str(i)], outputs)]
        h = torch.relu(outputs[-1]).mean(dim=(2, 3))
        return self.classifier(self.dropout(h))


def decode_macro(actions: list) -> MacroArch:
    """Controller actions ``[op_0, skips_0, op_1, skips_1, ...]`` to a :class:`MacroArch`."""
    if len(actions) % 2:
        raise ArchError(f"macro actions must come in (op, skips) pairs, got {len(actions)} values")
    layers = [MacroLayer(MACRO_OPS[int(actions[2 * i])], sorted(int(j) for j in actions[2 * i + 1])) for i in range(len(actions) // 2)]
    return MacroArch(layers=layers, name="ENAS_macro_search")
