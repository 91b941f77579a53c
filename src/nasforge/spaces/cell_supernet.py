"""The cell supernet shared by DARTS, SNAS and ENAS-micro (DARTS ``cnn/model_search.py``).

API (stable; strategies talk to the supernet only through it)
---------------------------------------------------------------
``SearchCell(primitives, nodes, inputs, C_pp, C_p, C, reduction, reduction_prev, ...)``
    A cell with ``inputs`` (1 or 2) input nodes and ``nodes`` (B) intermediate nodes.
    Every intermediate node j reads **every earlier node** (inputs and earlier
    intermediate nodes) through one :class:`~nasforge.spaces.mixed_op.MixedOp` edge per
    earlier node. Edges are numbered node by node, inputs first (DARTS order)::

        edge e  ->  (node, input) = cell.edges[e]     e.g. DARTS: (2,0),(2,1),(3,0),(3,1),(3,2),...

    ``num_edges = Σ_j (inputs + j)``: 14 for DARTS (2 inputs, 4 nodes), 6 for NAS-Bench-201
    (1 input, 3 nodes), 20 for ENAS micro (2 inputs, 5 nodes). Nodes are numbered as in
    :class:`~nasforge.arch.CellArch`: 0..inputs-1 are the inputs.

``CellSupernet(num_classes, in_channels, C=16, layers=8, nodes=4, primitives=DARTS_PRIMITIVES, inputs=2, ...)``
    The DARTS search network: stem (conv 3×3 to ``stem_multiplier·C`` + BN), ``layers``
    cells with reduction cells at ``layers//3`` and ``2·layers//3`` (channels doubled
    there), global average pooling and a linear classifier. ``forward(x, weights=...)``
    or ``forward(x, choice=...)`` returns the logits:

    - **dense**: ``weights = {"normal": Tensor[num_edges, num_ops], "reduce": ...}``,
      the per-edge op weights (softmax(α) for DARTS, a Gumbel-softmax sample for SNAS).
      Each edge outputs ``Σ_k w[e, k] · op_k(x)``; ``none`` and ops whose weight is
      exactly 0 are skipped (they add nothing), so a one-hot row runs a single op.
    - **sparse**: ``choice = {"normal": [c_0, ..., c_{E-1}], "reduce": [...]}`` where
      ``c_e`` is an op index, an op name, ``None`` ("off"), or a list of op
      indices/names (several ops on the same edge, e.g. ENAS picking the same input
      twice); only the chosen ops run and their outputs are summed (weight 1). Build it
      from (op, input) node lists with :meth:`CellSupernet.choice_from_nodes`.
    - ``concat`` (optional, per cell type, sparse or dense): the intermediate nodes whose
      outputs form the cell output; the others are replaced by zeros, so the channel
      count (``nodes·C``) and the next cell's weights are unchanged. This is how ENAS'
      "loose ends only" output is expressed (zeroed slices of the 1×1 conv input are the
      same as selecting slices of its weight). Default: all intermediate nodes (DARTS).

    A node that receives nothing (every edge off) outputs zeros.

Paper/code defaults (DARTS Sec. 3.1.1 and ``model_search.py`` @f276dd3): 8 cells, C = 16,
4 nodes, stem multiplier 3, BN without affine in every op (``affine=False``), pooling ops
followed by ``BatchNorm2d(affine=False)`` inside the mixed op (``pool_bn=True``), cell
output = concatenation of the intermediate nodes. The architecture parameters are
**not** owned by the supernet: strategies own α (or a controller) and pass weights in.

Speed/memory options: ``channels_last`` (default on CPU: oneDNN's depthwise kernels are
several times faster in NHWC), ``checkpoint_cells`` (recompute each cell in backward:
activation memory of one cell instead of all; BN running statistics are updated once),
``fused`` (BN+mixing fusion, see :mod:`nasforge.spaces.mixed_op`). ``drop_prob`` (an
attribute a strategy sets; 0 by default): drop path on every edge output in training.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as tcp

from nasforge.errors import ArchError
from nasforge.nets.cell import drop_path, run_op
from nasforge.ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN
from nasforge.fused.functions import memory_format_of
from nasforge.fused.grad import dense_grad
from nasforge.fused.plan import op_plan
from nasforge.spaces.mixed_op import EdgeInput, MixedOp
from nasforge.fused.mix import node_mix

Weights = Mapping[str, torch.Tensor]
Choice = Mapping[str, Sequence[Any]]


def cell_edges(nodes: int, inputs: int) -> list[tuple[int, int]]:
    """Edges ``(node, input)`` in α-row order: node by node, each from every earlier node."""
    return [(inputs + j, i) for j in range(nodes) for i in range(inputs + j)]


@contextlib.contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Run forwards that must not move BN running statistics (momentum 0 inside)."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            saved.append((m, m.momentum))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


class SearchCell(nn.Module):
    """One searchable cell: ``inputs`` input nodes, ``nodes`` intermediate nodes, all edges.

    ``C_pp``/``C_p`` are the channels of the outputs of cell k-2/k-1 (``C_pp`` unused
    when ``inputs == 1``); they are mapped to ``C`` by DARTS' preprocessing
    (FactorizedReduce after a reduction cell, else ReLU-Conv1×1-BN). With
    ``inputs == 1`` and ``C_p == C`` there is no preprocessing (NAS-Bench-201).
    ``concat``: intermediate nodes joined at the output (default: all of them).
    """

    def __init__(
        self,
        primitives: Sequence[str],
        nodes: int,
        inputs: int,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool = False,
        reduction_prev: bool = False,
        *,
        affine: bool = False,
        pool_bn: bool = True,
        op_set: str = "darts",
        concat: Sequence[int] | None = None,
    ):
        super().__init__()
        if inputs not in (1, 2):
            raise ArchError(f"a search cell has 1 or 2 inputs, got {inputs}")
        if nodes < 1:
            raise ArchError(f"a search cell needs at least one intermediate node, got {nodes}")
        self.primitives = tuple(primitives)
        self.nodes = nodes
        self.inputs = inputs
        self.reduction = reduction
        self.C = C
        self.pre: nn.ModuleList = nn.ModuleList()
        if inputs == 2:
            self.pre.append(FactorizedReduce(C_pp, C, affine=affine) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, affine))
            self.pre.append(ReLUConvBN(C_p, C, 1, 1, 0, affine))
        elif C_p != C:
            self.pre.append(ReLUConvBN(C_p, C, 1, 1, 0, affine))
        # fused plans keep FactorizedReduce's gradient channels-last (autograd's strided-slice
        # backward makes the ReLU's NCHW, and its backward then runs on mixed layouts, ~5x slower)
        self._fast_pre = [op_plan(m) for m in self.pre]
        self.edges = cell_edges(nodes, inputs)
        self.ops = nn.ModuleList(
            MixedOp(self.primitives, C, 2 if reduction and i < inputs else 1, affine, pool_bn, op_set) for _, i in self.edges
        )
        self.concat = list(concat) if concat is not None else list(range(inputs, inputs + nodes))
        self.multiplier = len(self.concat)

    def _pre(self, i: int, x: torch.Tensor, fast: bool) -> torch.Tensor:
        return run_op(self.pre[i], self._fast_pre[i], EdgeInput(x)) if fast else self.pre[i](x)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def forward(
        self,
        s0: torch.Tensor | None,
        s1: torch.Tensor,
        weights: torch.Tensor | None = None,
        choice: Sequence[Sequence[int]] | None = None,
        concat: Sequence[int] | None = None,
        fused: bool = True,
        drop_prob: float = 0.0,
    ) -> torch.Tensor:
        """Dense (``weights[E, K]``) or sparse (``choice``: per edge a list of op indices).

        ``drop_prob`` > 0 (training only): drop path on every edge output (whole samples
        zeroed, the rest scaled by 1/keep), as SNAS' search cell does.
        """
        drop = drop_prob if self.training else 0.0
        fast = fused and self.training and torch.is_grad_enabled()
        if self.inputs == 2:
            states = [EdgeInput(self._pre(0, s0, fast)), EdgeInput(self._pre(1, s1, fast))]  # type: ignore[arg-type]
        else:
            states = [EdgeInput(self._pre(0, s1, fast) if len(self.pre) else s1)]
        if choice is None:
            assert weights is not None
            # one host sync per cell: which ops have a non-zero weight (`none` is skipped anyway)
            nonzero = (weights.detach() != 0).tolist()
            active = [[k for k, nz in enumerate(row) if nz] for row in nonzero]
        else:
            active = [list(c) for c in choice]
        e = 0
        # dense weights, fused training: each node's terms summed by one node_mix
        by_node = fast and choice is None and drop == 0.0
        for _j in range(self.nodes):
            if by_node and any(self.ops[e + i].has_tail(active[e + i]) for i in range(len(states))):
                k = weights.shape[1]  # type: ignore[union-attr]
                terms = [t for i in range(len(states)) for t in self.ops[e + i].terms(states[i], active[e + i], i * k)]
                rows = weights[e : e + len(states)]  # type: ignore[index]
                e += len(states)
                states.append(EdgeInput(node_mix(terms, rows)))
                continue
            acc, owned = None, False
            for i in range(len(states)):
                w = None if choice is not None else weights[e]  # type: ignore[index]
                out, o = self.ops[e](states[i], w, active[e], fused)
                e += 1
                if out is None:
                    continue
                if drop > 0.0:
                    out, o = drop_path(out, drop), True
                if acc is None:
                    acc, owned = out, o
                elif owned:
                    acc.add_(out)
                elif o:
                    acc, owned = out.add_(acc), True
                else:
                    acc, owned = acc + out, True
            if acc is None:
                ref, stride = states[0].x, 2 if self.reduction else 1
                shape = (ref.shape[0], self.C, -(-ref.shape[2] // stride), -(-ref.shape[3] // stride))
                acc = ref.new_zeros(shape).contiguous(memory_format=memory_format_of(ref))
            states.append(EdgeInput(acc))
        keep = self.concat if concat is None else set(concat)
        # the cat's gradient is a channel slice per node: made dense once, not by each op
        outs = [dense_grad(states[n].x) if n in keep else torch.zeros_like(states[n].x) for n in self.concat]
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


def normalise_choice(choice: Sequence[Any], primitives: Sequence[str], num_edges: int, where: str = "choice") -> list[list[int]]:
    """Per edge: op index, op name, None/"off", or a list of those -> list of op indices."""
    if len(choice) != num_edges:
        raise ArchError(f"{where} has {len(choice)} entries, the cell has {num_edges} edges")
    out: list[list[int]] = []
    for e, c in enumerate(choice):
        items = c if isinstance(c, (list, tuple)) else [c]
        idx = []
        for it in items:
            if it is None or it == "off":
                continue
            if isinstance(it, str):
                if it not in primitives:
                    raise ArchError(f"{where}[{e}]: op {it!r} is not a candidate (candidates: {list(primitives)})")
                idx.append(primitives.index(it))
            else:
                k = int(it)
                if not 0 <= k < len(primitives):
                    raise ArchError(f"{where}[{e}]: op index {k} out of range 0..{len(primitives) - 1}")
                idx.append(k)
        out.append(idx)
    return out


class SupernetBase(nn.Module):
    """What strategies need from any cell supernet: edges, op list, cell types, choices."""

    primitives: tuple[str, ...]
    nodes: int
    inputs: int
    reductions: tuple[int, ...]

    @property
    def edges(self) -> list[tuple[int, int]]:
        return cell_edges(self.nodes, self.inputs)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.primitives)

    @property
    def cell_types(self) -> tuple[str, ...]:
        return ("normal", "reduce") if self.reductions else ("normal",)

    def choice_from_nodes(self, nodes: Sequence[Sequence[tuple[str | int, int]]]) -> list[list[int]]:
        """(op, input) pairs per intermediate node (CellGenotype form) -> per-edge choice."""
        if len(nodes) != self.nodes:
            raise ArchError(f"expected {self.nodes} intermediate nodes, got {len(nodes)}")
        index = {edge: e for e, edge in enumerate(self.edges)}
        choice: list[list[int]] = [[] for _ in self.edges]
        for j, node in enumerate(nodes):
            for op, inp in node:
                e = index.get((self.inputs + j, int(inp)))
                if e is None:
                    raise ArchError(f"node {self.inputs + j} cannot read node {inp}")
                choice[e].extend(normalise_choice([op], self.primitives, 1)[0])
        return choice

    def normalise(self, choice: Choice) -> dict[str, list[list[int]]]:
        return {t: normalise_choice(choice[t], self.primitives, self.num_edges, f"choice[{t!r}]") for t in self.cell_types}

    def run_cell(self, cell: "SearchCell", s0, s1, weights, sparse, concat) -> torch.Tensor:
        kind = "reduce" if cell.reduction else "normal"
        w = None if weights is None else weights[kind]
        c = None if sparse is None else sparse[kind]
        cc = None if concat is None else concat.get(kind)
        drop = getattr(self, "drop_prob", 0.0)
        if self.checkpoint_cells and self.training and torch.is_grad_enabled():
            return _checkpointed(cell, s0, s1, w, c, cc, self.fused, drop)
        return cell(s0, s1, w, c, cc, self.fused, drop)


class CellSupernet(SupernetBase):
    """DARTS search network (``model_search.Network``) over :class:`SearchCell` s.

    Args:
        num_classes, in_channels: data set.
        C: initial channels (16); layers: cells (8); nodes: intermediate nodes (4).
        primitives: candidate ops (the 8 DARTS primitives; α's column order).
        inputs: input nodes per cell (2 = cells k-2 and k-1).
        stem_multiplier: stem width = ``stem_multiplier · C`` (3).
        reductions: indices of reduction cells (default ``(layers//3, 2·layers//3)``).
        affine: BN affine in ops (False during search); pool_bn: BN after pools (True).
        op_set: ``darts`` or ``snas`` op family (:func:`nasforge.ops.make_op`).
        channels_last, checkpoint_cells, fused: speed/memory options (module docstring).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        C: int = 16,
        layers: int = 8,
        nodes: int = 4,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        inputs: int = 2,
        *,
        stem_multiplier: int = 3,
        reductions: Sequence[int] | None = None,
        affine: bool = False,
        pool_bn: bool = True,
        op_set: str = "darts",
        channels_last: bool = True,
        checkpoint_cells: bool = False,
        fused: bool = True,
    ):
        super().__init__()
        if layers < 1:
            raise ArchError(f"the supernet needs at least one cell, got layers={layers}")
        self.primitives = tuple(primitives)
        self.nodes = nodes
        self.inputs = inputs
        self.layers = layers
        self.C = C
        self.channels_last = channels_last
        self.checkpoint_cells = checkpoint_cells
        self.fused = fused
        #: drop-path probability on every edge output in training (set by a strategy: SNAS 0.3)
        self.drop_prob = 0.0
        self.reductions = tuple(reductions) if reductions is not None else (layers // 3, 2 * layers // 3)
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reductions
            if reduction:
                C_curr *= 2
            cell = SearchCell(
                self.primitives, nodes, inputs, C_pp, C_p, C_curr, reduction, reduction_prev,
                affine=affine, pool_bn=pool_bn, op_set=op_set,
            )
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # -- forward --------------------------------------------------------------------------------
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
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, self.run_cell(cell, s0, s1, weights, sparse, concat)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1))


def _checkpointed(cell: SearchCell, s0, s1, w, c, cc, fused, drop_prob: float = 0.0) -> torch.Tensor:
    """Recompute ``cell`` in backward; the recomputation does not touch BN running stats
    (and draws the same drop-path masks: checkpoint restores the RNG state)."""
    calls = [0]

    def run(a, b, ww):
        calls[0] += 1
        ctx = frozen_bn_stats(cell) if calls[0] > 1 else contextlib.nullcontext()
        with ctx:
            return cell(a, b, ww, c, cc, fused, drop_prob)

    return tcp.checkpoint(run, s0, s1, w, use_reentrant=False)
