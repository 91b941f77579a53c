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
  ops of all edges reading that state;
- the BN(affine=False) that closes an op is fused with its mixing weight
  (:class:`_BNMix`): one saved tensor (x̂) instead of BN's input plus the product's input;
- the weighted outputs are accumulated in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.ops import FactorizedReduce, make_op

class _BNMix(torch.autograd.Function):
    """``w · BN_train(z)`` for BN without affine; saves only x̂ (and the per-channel 1/σ).

    Forward: ``native_batch_norm`` (which also updates the running statistics, unbiased
    variance, like ``nn.BatchNorm2d``) then the product. Backward, with g the output
    gradient: ``∂w = Σ g·x̂`` and ``∂z = w/σ · (g − mean(g) − x̂·mean(g·x̂))``, both from
    one ``native_batch_norm_backward`` call fed x̂ as its input (mean 0, 1/σ = 1) and
    ``w/σ`` as its per-channel weight. No double backward: the exact-HVP reference in the
    tests uses ``fused=False``.
    """

    @staticmethod
    def forward(ctx, z, w, running_mean, running_var, momentum: float, eps: float):  # type: ignore[override]
        xhat, _mean, invstd = torch.native_batch_norm(z, None, None, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(xhat, invstd, w)
        return xhat * w

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        xhat, invstd, w = ctx.saved_tensors
        C = xhat.shape[1]
        scale = (invstd * w).to(xhat.dtype)
        zeros = torch.zeros(C, dtype=invstd.dtype, device=invstd.device)
        ones = torch.ones(C, dtype=invstd.dtype, device=invstd.device)
        mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]), False]
        gz, gw, _ = torch.ops.aten.native_batch_norm_backward(g.contiguous(memory_format=_fmt(xhat)), xhat, scale, None, None, zeros, ones, True, 0.0, mask)
        grad_w = None
        if ctx.needs_input_grad[1]:
            # native grad_weight = Σ g · (x̂ − 0)·1 per channel
            grad_w = gw.sum().reshape(w.shape)
        return (gz if mask[0] else None), grad_w, None, None, None, None


def _fmt(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def bn_mix(z: torch.Tensor, w: torch.Tensor | None, bn: nn.BatchNorm2d, fused: bool = True) -> torch.Tensor:
    """``w · bn(z)`` for a BN without affine, fused in training mode when ``fused``."""
    if w is None:
        return bn(z)
    if bn.training and fused:
        return _BNMix.apply(z, w, bn.running_mean, bn.running_var, float(bn.momentum or 0.0), bn.eps)
    return bn(z) * w


class PolyphaseDilatedConv(nn.Conv2d):
    """A depthwise conv with dilation 2 (DARTS ``dil_conv``), computed without dilation.

    Same parameters and result as ``nn.Conv2d(C, C, k, stride, padding=k-1, dilation=2,
    groups=C)``. At stride 2 only the even rows/columns of the input are read, so the conv
    is a plain k×k conv (padding (k-1)/2) on ``x[:, :, ::2, ::2]``. At stride 1 (even sizes, at
    least 2k) each of the four polyphase components ``x[:, :, i::2, j::2]`` is convolved with a
    plain k×k kernel and the results interleaved: oneDNN's dilated depthwise kernels are
    several times slower than the plain ones on CPU.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "PolyphaseDilatedConv":
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None)
        new.weight = conv.weight
        if conv.bias is not None:
            new.bias = conv.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        k = self.kernel_size[0]
        pad = (k - 1) // 2
        if self.stride[0] == 2:
            return F.conv2d(x[:, :, ::2, ::2], self.weight, self.bias, 1, pad, 1, self.groups)
        N, C, H, W = x.shape
        if H % 2 or W % 2 or H // 2 < k or W // 2 < k:  # measured: slower on tiny phases
            return super().forward(x)
        fmt = _fmt(x)
        xp = x.reshape(N, C, H // 2, 2, W // 2, 2).permute(3, 5, 0, 1, 2, 4).reshape(4 * N, C, H // 2, W // 2)
        y = F.conv2d(xp.contiguous(memory_format=fmt), self.weight, self.bias, 1, pad, 1, self.groups)
        y = y.reshape(2, 2, N, -1, H // 2, W // 2).permute(2, 3, 4, 0, 5, 1).reshape(N, -1, H, W)
        return y.contiguous(memory_format=fmt)


def _use_polyphase(op: nn.Module) -> None:
    """Swap every depthwise dilation-2 conv with odd kernel in ``op`` for :class:`PolyphaseDilatedConv`."""
    for m in list(op.modules()):
        for name, child in list(m.named_children()):
            if (
                type(child) is nn.Conv2d
                and child.dilation == (2, 2)
                and child.groups == child.in_channels
                and child.kernel_size[0] == child.kernel_size[1]
                and child.kernel_size[0] % 2 == 1
                and child.padding == (child.kernel_size[0] - 1, child.kernel_size[0] - 1)
            ):
                setattr(m, name, PolyphaseDilatedConv.from_conv(child))


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


class EdgeInput:
    """A node state and its ReLU, computed at most once and shared by every op reading it."""

    __slots__ = ("x", "_relu")

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._relu: torch.Tensor | None = None

    @property
    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu


class CandidateOp(nn.Module):
    """One candidate op, split into (shared ReLU) → body → (fused BN tail)."""

    def __init__(self, name: str, C: int, stride: int, affine: bool, pool_bn: bool, op_set: str):
        super().__init__()
        self.name = name
        op = make_op(name, C, C, stride, affine=affine, op_set=op_set)
        if pool_bn and "pool" in name:
            op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
        body, split = split_op(op)
        _use_polyphase(body)
        self.body = body
        self.pre_relu = split.pre_relu
        self.tail = split.tail_bn  # registered as a sub-module when not None

    def forward(self, inp: EdgeInput, w: torch.Tensor | None = None, fused: bool = True) -> torch.Tensor:
        """``w · op(x)``; ``w=None`` gives ``op(x)`` (which may be ``x`` itself for identity)."""
        h = self.body(inp.relu if self.pre_relu else inp.x)
        if self.tail is not None:
            return bn_mix(h, w, self.tail, fused)
        return h if w is None else h * w


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
            y = self.ops[k](inp, None if w is None else w[k], fused)
            if out is None:
                out, owned = y, not (y is inp.x or y is inp._relu)
            elif owned:
                out.add_(y)
            else:
                out, owned = out + y, True
        return out, owned
