"""The NAS-Bench-201 cell space as a supernet (Dong & Yang, ICLR 2020, Sec. 2).

Skeleton of NAS-Bench-201 (``TinyNetwork`` / the DARTS baseline ``TinyNetworkDARTS`` of
D-X-Y/AutoDL-Projects): stem conv 3×3 + BN (C = 16), three stages of ``N`` searchable
cells with C = 16, 32, 64, a residual reduction block (ResNet basic block, stride 2)
between stages, then BN + ReLU, global average pooling and a linear classifier. The
benchmark uses N = 5; the default here is N = 1 so that a CPU search is quick.

The searchable cell is :class:`~nasforge.spaces.cell_supernet.SearchCell` with one input,
3 intermediate nodes, an edge from every earlier node (6 edges) with the 5
NAS-Bench-201 ops, BN without affine, no BN after pooling, and output = the last node.
All cells share one α (``weights={"normal": Tensor[6, 5]}``). Same forward API as
:class:`~nasforge.spaces.cell_supernet.CellSupernet` (dense weights or sparse choice).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from nasforge.ops import NB201_PRIMITIVES, ReLUConvBN
from nasforge.spaces.cell_supernet import Choice, SearchCell, SupernetBase, Weights


class ResidualReduction(nn.Module):
    """NAS-Bench-201's ``ResNetBasicblock`` at stride 2: two ReLU-Conv3×3-BN + avgpool/1×1 shortcut."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, affine=True)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine=True)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Supernet(SupernetBase):
    """NAS-Bench-201 search network; ``cells_per_stage`` = N (benchmark: 5)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        C: int = 16,
        cells_per_stage: int = 1,
        nodes: int = 3,
        primitives: Sequence[str] = NB201_PRIMITIVES,
        *,
        channels_last: bool = True,
        checkpoint_cells: bool = False,
        fused: bool = True,
    ):
        super().__init__()
        self.primitives = tuple(primitives)
        self.nodes = nodes
        self.inputs = 1
        self.reductions = ()
        self.C = C
        self.channels_last = channels_last
        self.checkpoint_cells = checkpoint_cells
        self.fused = fused
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.blocks = nn.ModuleList()
        C_curr = C
        for stage in range(3):
            if stage > 0:
                self.blocks.append(ResidualReduction(C_curr, 2 * C_curr))
                C_curr *= 2
            for _ in range(cells_per_stage):
                self.blocks.append(
                    SearchCell(self.primitives, nodes, 1, C_curr, C_curr, C_curr, affine=False, pool_bn=False, concat=[nodes])
                )
        self.lastact = nn.Sequential(nn.BatchNorm2d(C_curr), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_curr, num_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def cells(self) -> list[SearchCell]:
        return [b for b in self.blocks if isinstance(b, SearchCell)]

    def forward(
        self,
        x: torch.Tensor,
        weights: Weights | None = None,
        choice: Choice | None = None,
        concat: Mapping[str, Sequence[int]] | None = None,
    ) -> torch.Tensor:
        if (weights is None) == (choice is None):
            raise ValueError("pass exactly one of weights= (dense) or choice= (sparse)")
        sparse = None if choice is None else self.normalise(choice)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        s = self.stem(x)
        for block in self.blocks:
            if isinstance(block, SearchCell):
                s = self.run_cell(block, None, s, weights, sparse, concat)
            else:
                s = block(s)
        return self.classifier(self.global_pooling(self.lastact(s)).flatten(1))
