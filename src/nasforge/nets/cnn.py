"""Final CNNs built from a ``cell`` architecture: CIFAR style and ImageNet (mobile) style.

Both follow quark0/darts@f276dd3 ``cnn/model.py`` (``NetworkCIFAR``, ``NetworkImageNet``),
used for evaluation in DARTS §3.3 / App. A.2 and by SNAS (``model_edge_all.py``):

- CIFAR: stem Conv3×3 (``in_channels`` → 3C) + BN; ``layers`` cells; cells ``layers//3``
  and ``2*layers//3`` are reduction cells that double C; auxiliary head after cell
  ``2*layers//3``; global average pooling and a Linear classifier. Paper setting:
  20 cells, C = 36 (DARTS §3.3).
- ImageNet: ``stem0`` = Conv3×3 s2 (→ C/2), BN, ReLU, Conv3×3 s2 (→ C), BN; ``stem1`` =
  ReLU, Conv3×3 s2, BN; the first cell sees a "reduced" previous input; reductions as
  above; auxiliary head after cell ``2*layers//3``. Paper setting: 14 cells, C = 48,
  224×224 (DARTS §3.4 "mobile setting").

Differences from the official code, none of which changes the parameter count:
the final pooling is adaptive (DARTS ImageNet uses ``AvgPool2d(7)``, which is the
same at 224×224), and the auxiliary heads pool adaptively when the feature map is not
DARTS's (see :class:`AuxiliaryHeadCIFAR`), so any input size works.

``forward(x)`` returns ``(logits, aux_logits)``; ``aux_logits`` is ``None`` unless the
network has an auxiliary head and is in training mode. The ``drop_path_prob``
attribute is read at every forward (DARTS sets it each epoch to ``0.2 * epoch / epochs``).

Both keep their weights and activations channels-last (NHWC) by default
(``channels_last=True``, :mod:`nasforge.nets.layout`); training runs the cells' fused
path (:mod:`nasforge.nets.cell`), and a cell output's ReLU, read by the next two cells
and the auxiliary head, is computed once.

One-input (NAS-Bench-201-style) cells without a ``reduce`` cell get NAS-Bench-201's
fixed residual reduction block *in addition* to the ``layers`` cells, at the same
places (before cells ``layers//3`` and ``2*layers//3``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch.cell import CellArch
from nasforge.errors import ArchError
from nasforge.fused.bn import batch_norm_module
from nasforge.fused.plan import EdgeInput
from nasforge.nets.cell import Cell, ResNetReduction
from nasforge.nets.layout import ChannelsLast


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS ``AuxiliaryHeadCIFAR``: ReLU, AvgPool5 s3, Conv1×1→128, BN, ReLU, Conv2×2→768,
    BN, ReLU, Linear. DARTS assumes an 8×8 input (→ 2×2 → 1×1). Here the pooled map is
    brought to 2×2 adaptively when it is not already: at 8×8 this is exactly DARTS's."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        x = x if relu_done else F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        if tuple(x.shape[-2:]) != (2, 2):
            x = F.adaptive_avg_pool2d(x, 2)
        x = self.features(x)
        return self.classifier(x.flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS ``AuxiliaryHeadImageNet`` (input 7×7 at 224×224): ReLU, AvgPool5 s2, Conv1×1→128,
    BN, ReLU, Conv2×2→768, ReLU, Linear. DARTS omits the BN after the 2×2 conv ("omitted
    ... due to a typo", kept out for consistency with the paper); so do we."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor, relu_done: bool = False) -> torch.Tensor:
        x = x if relu_done else F.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        if tuple(x.shape[-2:]) != (2, 2):
            x = F.adaptive_avg_pool2d(x, 2)
        x = self.features(x)
        return self.classifier(x.flatten(1))


def reduction_layers(layers: int) -> set[int]:
    """Indices of reduction cells: ``layers//3`` and ``2*layers//3`` (DARTS)."""
    return {layers // 3, 2 * layers // 3}


class _CellNetwork(ChannelsLast):
    """Shared cell stack; subclasses build the stem and set ``aux_cls``."""

    aux_cls: type = AuxiliaryHeadCIFAR

    def _build_cells(
        self, arch: CellArch, C_prev_prev: int, C_prev: int, C: int, layers: int, reduction_prev: bool, num_classes: int, auxiliary: bool
    ) -> int:
        self.cells = nn.ModuleList()
        self._aux_index = 2 * layers // 3
        C_curr = C
        C_aux = C_prev
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                C_curr *= 2
            if reduction and arch.reduce is None and arch.inputs == 1:
                # NAS-Bench-201: fixed residual block, then the normal cell at the new width
                block = ResNetReduction(C_prev, C_curr)
                self.cells.append(block)
                C_prev_prev, C_prev = C_prev, C_curr
                reduction = False
            genotype = arch.reduce if (reduction and arch.reduce is not None) else arch.normal
            cell = Cell(
                genotype, C_prev_prev, C_prev, C_curr,
                reduction=reduction, reduction_prev=reduction_prev, inputs=arch.inputs, op_set=arch.op_set,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self._aux_index:
                C_aux = C_prev
                self._aux_module = len(self.cells) - 1
        self.auxiliary = auxiliary
        if auxiliary:
            self.auxiliary_head = self.aux_cls(C_aux, num_classes)
        self.classifier = nn.Linear(C_prev, num_classes)
        return C_prev

    @property
    def activation_factor(self) -> float | None:
        """Share of the operator outputs the fused training path keeps for backward, for
        :mod:`nasforge.memory`'s estimate (measured about 0.4, with margin); None (the
        generic factor) when some cell runs the plain modules."""
        return 0.55 if all(getattr(c, "fused", False) for c in self.cells) else None

    def _run_cells(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.training and torch.is_grad_enabled() and all(getattr(c, "fused", False) for c in self.cells):
            return self._run_cells_fused(s0, s1)
        aux = None
        for k, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if k == self._aux_module and self.auxiliary and self.training:
                aux = self.auxiliary_head(s1)
        out = F.adaptive_avg_pool2d(s1, 1).flatten(1)
        return self.classifier(out), aux

    def _run_cells_fused(self, s0: torch.Tensor, s1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`_run_cells` in training with fused cells: a cell output's ReLU (read by the
        next two cells and the auxiliary head) is computed once."""
        aux = None
        e0 = e1 = EdgeInput(s1)
        if s0 is not s1:
            e0 = EdgeInput(s0)
        cells = list(self.cells)
        for k, cell in enumerate(cells):
            # a cell output read only through ReLUs (the next two cells, the auxiliary head):
            # build relu(output) from the nodes' shared ReLUs and never the output itself
            relu_only = all(c.reads_relu_only for c in cells[k + 1 : k + 3]) and k + 1 < len(cells)
            if relu_only:  # as the nodes' ReLUs: 1×1 convs read them without a concatenation
                e0, e1 = e1, EdgeInput.of_relu_parts(cell.relu_parts(e0, e1, self.drop_path_prob))
            else:
                e0, e1 = e1, EdgeInput(cell.forward_fused(e0, e1, self.drop_path_prob))
            if k == self._aux_module and self.auxiliary:
                aux = self.auxiliary_head(e1.relu, relu_done=True)
        out = F.adaptive_avg_pool2d(e1.x, 1).flatten(1)
        return self.classifier(out), aux


def _stem(stem: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``stem(x)``, its BNs by :func:`batch_norm_module` (ATen's kernels share cache lines
    between threads at channel counts such as 108 or 24)."""
    for m in stem:
        x = batch_norm_module(m, x) if isinstance(m, nn.BatchNorm2d) else m(x)
    return x


class NetworkCIFAR(_CellNetwork):
    """DARTS ``NetworkCIFAR`` from any ``cell`` architecture (see module docstring)."""

    aux_cls = AuxiliaryHeadCIFAR
    stem_multiplier = 3

    def __init__(
        self, arch: CellArch, *, num_classes: int, in_channels: int, C: int, layers: int,
        auxiliary: bool = False, drop_path_prob: float = 0.0, channels_last: bool = True,
    ):
        super().__init__()
        self.drop_path_prob = drop_path_prob
        C_stem = self.stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        self._build_cells(arch, C_stem, C_stem, C, layers, False, num_classes, auxiliary)
        self._layout(channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = _stem(self.stem, self._input(x))
        return self._run_cells(s, s)


class NetworkImageNet(_CellNetwork):
    """DARTS ``NetworkImageNet`` from any ``cell`` architecture (see module docstring)."""

    aux_cls = AuxiliaryHeadImageNet

    def __init__(
        self, arch: CellArch, *, num_classes: int, in_channels: int, C: int, layers: int,
        auxiliary: bool = False, drop_path_prob: float = 0.0, channels_last: bool = True,
    ):
        super().__init__()
        self.drop_path_prob = drop_path_prob
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self._build_cells(arch, C, C, C, layers, arch.inputs == 2, num_classes, auxiliary)
        self._layout(channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0 = _stem(self.stem0, self._input(x))
        s1 = _stem(self.stem1, s0)
        return self._run_cells(s0, s1)


def build_network(
    arch: CellArch,
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    C: int,
    layers: int,
    auxiliary: bool = False,
    drop_path_prob: float = 0.0,
    style: str = "cifar",
    channels_last: bool = True,
) -> nn.Module:
    """Build the evaluation network of a ``cell`` architecture.

    ``style="cifar"`` is DARTS ``NetworkCIFAR`` (paper: ``C=36, layers=20``),
    ``style="imagenet"`` is DARTS ``NetworkImageNet`` (paper: ``C=48, layers=14``,
    ``input_size=224``). ``input_size`` is checked (≥ 1) but the networks accept any
    size at run time. ``channels_last`` (default): weights and activations NHWC.
    """
    if getattr(arch, "kind", None) != "cell":
        raise ArchError(f"build_network needs a 'cell' architecture, got kind {getattr(arch, 'kind', type(arch).__name__)!r}")
    arch.validate()
    for name, v in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size), ("C", C), ("layers", layers)):
        if not isinstance(v, int) or v < 1:
            raise ArchError(f"build_network: {name} must be a positive integer, got {v!r}")
    kw = dict(num_classes=num_classes, in_channels=in_channels, C=C, layers=layers, auxiliary=auxiliary, drop_path_prob=drop_path_prob, channels_last=channels_last)
    if style == "cifar":
        return NetworkCIFAR(arch, **kw)
    if style == "imagenet":
        if C < 2 or C % 2:
            raise ArchError(f"build_network: imagenet style needs an even C >= 2 (stem halves it), got {C}")
        return NetworkImageNet(arch, **kw)
    raise ArchError(f"build_network: unknown style {style!r} (expected 'cifar' or 'imagenet')")
