"""A discrete cell built from a ``cell`` architecture (DARTS ``cnn/model.py`` ``Cell``).

Liu et al., "DARTS" (ICLR 2019) §2.1 and quark0/darts@f276dd3 ``cnn/model.py``:

- the two cell inputs are the outputs of cells k-2 and k-1, preprocessed to ``C`` channels:
  ``preprocess0`` is a :class:`~nasforge.ops.FactorizedReduce` when cell k-1 was a
  reduction cell (so both inputs have the same resolution), else ReLU-Conv1×1-BN;
  ``preprocess1`` is ReLU-Conv1×1-BN;
- an op reading input 0 or 1 of a reduction cell has stride 2, every other op stride 1;
- an intermediate node is the SUM of all its edges (DARTS has two per node; SNAS
  ``model_edge_all.py`` sums all edges listed, up to ``inputs + j`` per node); ``none``
  edges contribute zero and are not built (a node whose edges are all ``none`` is zero);
- the cell output is the channel concatenation of the ``concat`` nodes;
- in training, drop path (Zoph et al. 2018, DARTS ``utils.drop_path``) zeroes each
  non-identity edge's output per sample with probability ``drop_prob`` and rescales by
  ``1/(1-drop_prob)``.

Training runs a faster path that computes the same function (``fused=True``, the
default; ``fused=False`` or eval mode runs the plain modules): the ReLU that opens most
ops is applied once per node state and shared by every op reading it (a cell output read
only through ReLUs is handed on as its nodes' ReLUs, :meth:`Cell.relu_parts`, which the
next cells' 1×1 preprocessing convs read block by block without a concatenation); inside the ops,
depthwise→1×1 and BN→ReLU→depthwise→1×1 runs and FactorizedReduce run as the
memory-saving autograd functions of :mod:`nasforge.fused` (what the search supernets
use), with their faster backward routes; and drop path is folded into the node sum
(``total + h·mask/keep`` in one pass, with the same random draws as before). The
modules and their parameters are the same either way, so ``state_dict`` is too.

One-input cells (NAS-Bench-201, ``inputs=1``) have no ``preprocess0``; ``preprocess1`` is
built only when the channel count changes (NAS-Bench-201 cells map C to C unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from nasforge.arch.cell import CellGenotype
from nasforge.errors import ArchError
from nasforge.fused.plan import EdgeInput, Plan, is_pw_conv, leaf_of, op_plan, run_plan
from nasforge.fused.pointwise import cat_pw
from nasforge.ops import FactorizedReduce, ReLUConvBN, is_builtin_op, make_op


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob``, scale the rest by ``1/keep``."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def _drop_scale(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """The per-sample factor of :func:`drop_path` (0 or ``1/keep``), same random draw."""
    keep = 1.0 - drop_prob
    return torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep).div_(keep)


def _planned(op: nn.Module, builtin: bool = True) -> tuple[bool, Plan | None]:
    return op_plan(op) if builtin else (False, None)


def run_op(op: nn.Module, fast: tuple[bool, Plan | None], inp: EdgeInput) -> torch.Tensor:
    """``op`` applied to the state ``inp`` in training by its fused plan ``fast`` (from
    :func:`~nasforge.fused.plan.op_plan`), reading the state's shared ReLU; ``op(inp.x)``
    when it has no plan."""
    pre_relu, plan = fast
    if plan is None:
        return op(inp.x)
    parts = inp.unjoined_parts if pre_relu else None
    if parts is not None and plan[0][0] == "module":
        conv = leaf_of(op, plan[0][1][0])
        if is_pw_conv(conv):  # ReLU-Conv1×1-BN reading a cell's nodes
            z = cat_pw(parts, conv.weight)
            if z is not None:
                return run_plan(plan[1:], op, z)
    return run_plan(plan, op, inp.relu if pre_relu else inp.x)


class Cell(nn.Module):
    """Discrete cell: ``forward(s0, s1, drop_prob)`` (``s0`` ignored for one-input cells)."""

    def __init__(
        self,
        genotype: CellGenotype,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        *,
        reduction: bool,
        reduction_prev: bool,
        inputs: int = 2,
        op_set: str = "darts",
    ):
        super().__init__()
        self.reduction = reduction
        self.inputs = inputs
        if inputs == 2:
            self.preprocess0: nn.Module = (
                FactorizedReduce(C_prev_prev, C) if reduction_prev else ReLUConvBN(C_prev_prev, C, 1, 1, 0)
            )
            self.preprocess1: nn.Module = ReLUConvBN(C_prev, C, 1, 1, 0)
        else:
            self.preprocess0 = nn.Identity()
            self.preprocess1 = nn.Identity() if C_prev == C else ReLUConvBN(C_prev, C, 1, 1, 0)
        self.concat = list(genotype.concat)
        if reduction and any(c < inputs for c in self.concat):
            raise ArchError(f"a reduction cell cannot concatenate its input nodes (concat {self.concat}): they are not reduced")
        self.multiplier = len(self.concat)
        self.fused = True
        self._fast_pre = [_planned(m) for m in (self.preprocess0, self.preprocess1)]
        self._fast: list[tuple[bool, Plan | None]] = []
        self.ops = nn.ModuleList()
        #: per node: list of (index into self.ops, input node)
        self.plan: list[list[tuple[int, int]]] = []
        for node in genotype.nodes:
            edges = [(op, i) for op, i in node if op != "none"] or [node[0]]  # all-none node: keep one zero op
            plan = []
            for op_name, inp in edges:
                stride = 2 if reduction and inp < inputs else 1
                plan.append((len(self.ops), inp))
                self.ops.append(make_op(op_name, C, C, stride, affine=True, op_set=op_set))
                self._fast.append(_planned(self.ops[-1], is_builtin_op(op_name)))
            self.plan.append(plan)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        if self.fused and self.training and torch.is_grad_enabled():
            return self.forward_fused(EdgeInput(s0), EdgeInput(s1), drop_prob)
        if self.inputs == 2:
            states = [self.preprocess0(s0), self.preprocess1(s1)]
        else:
            states = [self.preprocess1(s1)]
        for plan in self.plan:
            total = None
            for k, inp in plan:
                op = self.ops[k]
                h = op(states[inp])
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)

    def forward_fused(self, s0: EdgeInput, s1: EdgeInput, drop_prob: float = 0.0) -> torch.Tensor:
        """:meth:`forward` in training, by the fused plans (module docstring). The inputs
        carry their ReLU, so a network computes each cell output's ReLU once for the two
        cells that read it."""
        states = self._nodes(s0, s1, drop_prob)
        return torch.cat([states[i].x for i in self.concat], dim=1)

    def relu_parts(self, s0: EdgeInput, s1: EdgeInput, drop_prob: float = 0.0) -> list[torch.Tensor]:
        """``relu(forward_fused(...))`` for readers that apply ReLU first, as its channel
        blocks (the concatenated nodes' shared ReLUs, not concatenated; the output itself is
        never built): the next cells' 1×1 preprocessing convs read them block by block
        (:func:`~nasforge.fused.pointwise.cat_pw`)."""
        states = self._nodes(s0, s1, drop_prob)
        return [states[i].relu for i in self.concat]

    def _nodes(self, s0: EdgeInput, s1: EdgeInput, drop_prob: float) -> list[EdgeInput]:
        if self.inputs == 2:
            states = [
                EdgeInput(run_op(self.preprocess0, self._fast_pre[0], s0)),
                EdgeInput(run_op(self.preprocess1, self._fast_pre[1], s1)),
            ]
        else:
            states = [EdgeInput(run_op(self.preprocess1, self._fast_pre[1], s1))]
        for plan in self.plan:
            total = None
            for k, inp in plan:
                op = self.ops[k]
                h = run_op(op, self._fast[k], states[inp])
                if drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    scale = _drop_scale(h, drop_prob)
                    total = h * scale if total is None else torch.addcmul(total, h, scale)
                else:
                    total = h if total is None else total + h
            states.append(EdgeInput(total))
        return states

    @property
    def reads_relu_only(self) -> bool:
        """Whether both inputs are read through a leading ReLU only (then the cells before
        may hand over :meth:`EdgeInput.of_relu_parts` states)."""
        return self.inputs == 2 and self._fast_pre[0][0] and self._fast_pre[1][0]


class ResNetReduction(nn.Module):
    """NAS-Bench-201's fixed reduction block (``ResNetBasicblock`` stride 2), for one-input
    cell architectures without a ``reduce`` cell: ReLU-Conv3×3(s2)-BN, ReLU-Conv3×3-BN,
    plus a shortcut AvgPool(2)-Conv1×1."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0, ceil_mode=True), nn.Conv2d(C_in, C_out, 1, bias=False)
        )
        self.multiplier = 1

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        return self.conv_b(self.conv_a(s1)) + self.shortcut(s1)
