"""The mixed operation on one edge of a cell supernet (DARTS Sec. 2.2, eq. 2).

``MixedOp`` holds every candidate op of one edge and returns ``Σ_k w_k · op_k(x)`` for
per-op weights ``w`` (softmax(α) for DARTS, a Gumbel-softmax sample for SNAS), or the
plain sum of a few chosen ops (a sparse, discrete choice: ENAS micro, a derived child).

Ops come from :func:`nasforge.ops.make_op` (BN without affine during search, DARTS
``model_search.py``) and, as in DARTS' ``MixedOp``, pooling ops are followed by
``BatchNorm2d(affine=False)`` when ``pool_bn`` is set. The result is the same function as
DARTS' ``MixedOp``; the work is organised differently to save time and memory on CPU:

- ``none`` is never computed (it adds zero), nor is any op whose weight is exactly 0;
- the ReLU that opens most ops (sep/dil conv, ReLU-Conv-BN, factorized reduce) is cut off
  the op and applied once per node state by the cell (:class:`EdgeInput`), shared by all
  ops of all edges reading that state; so are the 3×3 poolings (computed once per node
  state, one backward for all the edges reading it);
- with dense weights (DARTS, SNAS without drop path) the cell sums each node in one
  :func:`~nasforge.fused.mix.node_mix` over the terms of all its edges (:meth:`MixedOp.terms`):
  an op's closing BN(affine=False) costs its statistics and one pass ``out += s·z``;
  otherwise (edge by edge) that BN is fused with its mixing weight
  (:class:`~nasforge.fused.functions.BnMix`): one saved tensor (x̂) instead of BN's
  input plus the product's input;
- inside the ops, depthwise→1×1 runs and BN→ReLU→depthwise→1×1 runs save only what cannot
  be recomputed cheaply, average pooling runs as a depthwise ones-conv, and the slow
  oneDNN depthwise backward cases (dilated; 5×5 weight gradient) take faster routes
  (:mod:`nasforge.fused.functions`);
- the weighted outputs are accumulated in place.

With ``fused=False`` (or in eval mode, or without autograd) the plain modules run: that
is the reference, and the only path that supports double backward. Ops registered by the
user (:func:`nasforge.ops.register_op`) always run as their plain module: nothing is cut
off them, no pooling BN is added, and their output is never modified in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.ops import FactorizedReduce, is_builtin_op, make_op
from nasforge.fused.functions import BnMix
from nasforge.fused.mix import Term
from nasforge.fused.plan import EdgeInput, fused_plan, pooling_key, run_plan


def bn_mix(
    z: torch.Tensor, w: torch.Tensor | None, bn: nn.BatchNorm2d, fused: bool = True, acc: torch.Tensor | None = None
) -> torch.Tensor:
    """``w · bn(z)`` for a BN without affine, fused in training mode when ``fused``;
    with ``acc`` (modified in place) ``acc + w · bn(z)``."""
    if w is not None and bn.training and fused:
        return BnMix.apply(z, w, bn, acc)
    y = bn(z) if w is None else bn(z) * w
    return y if acc is None else acc.add_(y)


@dataclass
class _Split:
    pre_relu: bool
    tail_bn: nn.BatchNorm2d | None


def _first_leaf(m: nn.Module) -> tuple[nn.Module | None, str | None]:
    """(parent, name) of the first leaf of nested ``nn.Sequential`` modules."""
    parent, name = None, None
    while isinstance(m, nn.Sequential) and len(m) > 0:
        parent, name = m, "0"
        m = m[0]
    return parent, name


def _last_leaf(m: nn.Module) -> tuple[nn.Module | None, str | None]:
    parent, name = None, None
    while isinstance(m, nn.Sequential) and len(m) > 0:
        parent, name = m, str(len(m) - 1)
        m = m[len(m) - 1]
    return parent, name


def split_op(op: nn.Module) -> tuple[nn.Module, _Split]:
    """Cut the leading ReLU and the trailing BN(affine=False) off ``op`` (in place).

    Returns the op body and what was cut, so that ``tail(body(relu(x) if pre_relu else x))``
    equals ``op(x)``.
    """
    pre_relu, tail = False, None
    if isinstance(op, FactorizedReduce):
        op.relu = nn.Identity()
        pre_relu = True
        if not op.bn.affine:
            tail, op.bn = op.bn, nn.Identity()
        return op, _Split(pre_relu, tail)
    if isinstance(op, nn.ReLU):  # not produced by the registry, but keep it exact
        return nn.Identity(), _Split(True, None)
    parent, name = _first_leaf(op)
    if parent is not None and isinstance(getattr(parent, name), nn.ReLU):
        setattr(parent, name, nn.Identity())
        pre_relu = True
    parent, name = _last_leaf(op)
    if parent is not None:
        last = getattr(parent, name)
        if isinstance(last, nn.BatchNorm2d) and not last.affine:
            tail = last
            setattr(parent, name, nn.Identity())
    elif isinstance(op, nn.BatchNorm2d) and not op.affine:
        return nn.Identity(), _Split(False, op)
    return op, _Split(pre_relu, tail)


class CandidateOp(nn.Module):
    """One candidate op, split into (shared ReLU) → body → (fused BN tail)."""

    def __init__(self, name: str, C: int, stride: int, affine: bool, pool_bn: bool, op_set: str):
        super().__init__()
        self.name = name
        op = make_op(name, C, C, stride, affine=affine, op_set=op_set)
        #: a user's op: run as built; its output may alias its input (never add to it in place)
        self.may_alias = not is_builtin_op(name)
        if self.may_alias:
            self.body, self.pre_relu, self.tail, self.plan, self.pool_key = op, False, None, None, None
            return
        if pool_bn and "pool" in name:
            op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
        body, split = split_op(op)
        self.body = body
        self.pre_relu = split.pre_relu
        self.tail = split.tail_bn  # registered as a sub-module when not None
        self.plan = fused_plan(body)
        #: a 3×3 pooling: computed once per node state and shared by the edges reading it
        self.pool_key = pooling_key(body, stride)

    @property
    def returns_shared(self) -> bool:
        """True when ``forward(inp)`` (no weight) returns a pooling shared with other edges."""
        return self.pool_key is not None and self.tail is None

    def body_output(self, inp: EdgeInput, fused: bool = True) -> torch.Tensor:
        """The op's output before its BN tail (the whole output when it has none)."""
        x = inp.relu if self.pre_relu else inp.x
        if fused and self.plan is not None and self.training and torch.is_grad_enabled():
            if self.pool_key is None:
                return run_plan(self.plan, self.body, x)
            return inp.shared(self.pool_key, lambda: run_plan(self.plan, self.body, x))
        if self.pool_key is not None:
            return inp.shared(self.pool_key, lambda: self.body(x))
        return self.body(x)

    def term(self, inp: EdgeInput, index: int) -> Term:
        """This op as a term of its node's sum (:func:`~nasforge.fused.mix.node_mix`):
        ``(output before the BN tail, index of its weight, tail BN or None)``; fused
        training mode only."""
        return self.body_output(inp, True), index, self.tail

    def forward(
        self, inp: EdgeInput, w: torch.Tensor | None = None, fused: bool = True, acc: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``w · op(x)``; ``w=None`` gives ``op(x)`` (which may be ``x`` itself for identity).

        With ``acc`` (a tensor the caller owns) the result is added to it in place and
        ``acc`` returned, fused into one pass where the op allows (:class:`BnMix`, addcmul).
        """
        h = self.body_output(inp, fused)
        if self.tail is not None:
            return bn_mix(h, w, self.tail, fused, acc)
        if acc is None:
            return h if w is None else h * w
        return acc.add_(h) if w is None else acc.addcmul_(h, w)


class MixedOp(nn.Module):
    """All candidate ops of one edge (DARTS ``MixedOp``), ``none`` never computed."""

    def __init__(self, primitives: Sequence[str], C: int, stride: int, affine: bool = False, pool_bn: bool = True, op_set: str = "darts"):
        super().__init__()
        self.primitives = tuple(primitives)
        self.stride = stride
        self.C = C
        self.ops = nn.ModuleList(CandidateOp(p, C, stride, affine, pool_bn, op_set) for p in self.primitives)
        self.none_index = self.primitives.index("none") if "none" in self.primitives else -1

    def forward(
        self, inp: EdgeInput, w: torch.Tensor | None, active: Sequence[int], fused: bool = True
    ) -> tuple[torch.Tensor | None, bool]:
        """Sum of ``w[k] · op_k(x)`` over ``k in active`` (``w=None``: unweighted sum).

        Returns ``(tensor or None when nothing ran, owned)``; ``owned`` is False when the
        tensor is an input (identity op, unweighted) and must not be modified in place.
        """
        out: torch.Tensor | None = None
        owned = False
        for k in active:
            if k == self.none_index:
                continue
            if owned:
                out = self.ops[k](inp, None if w is None else w[k], fused, acc=out)
                continue
            op = self.ops[k]
            y = op(inp, None if w is None else w[k], fused)
            if out is None:
                out, owned = y, not (y is inp.x or y is inp._relu or (w is None and (op.may_alias or op.returns_shared)))
            else:
                out, owned = out + y, True
        return out, owned

    def terms(self, inp: EdgeInput, active: Sequence[int], offset: int) -> list[Term]:
        """The active ops (``none`` left out) as terms of the node's sum (fused training
        mode), op k's weight at index ``offset + k`` of the node's flattened weights."""
        return [self.ops[k].term(inp, offset + k) for k in active if k != self.none_index]

    def has_tail(self, active: Sequence[int]) -> bool:
        """Whether an active op ends in a BN without affine (a :func:`node_mix` BN term)."""
        return any(self.ops[k].tail is not None for k in active if k != self.none_index)
