"""Which parts of a candidate op run as the autograd functions of :mod:`nasforge.fused.functions`.

:func:`fused_plan` matches runs of leaf modules (depthwise→1×1, BN→ReLU→depthwise→1×1,
3×3 pooling, FactorizedReduce) once, when the op is built; :func:`run_plan` computes the
op body by that plan in training. A plan names leaves by index and holds no module, so
copies of an op stay independent.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.ops import FactorizedReduce
from nasforge.fused.bn import batch_norm_module
from nasforge.fused.chain import DwPwBnChain
from nasforge.fused.functions import BnReluDwPw, DwPw, FactorizedReduceFn, MaxPoolRecompute, avg_pool3


def _leaves(m: nn.Module) -> list[nn.Module]:
    if isinstance(m, nn.Sequential):
        return [leaf for child in m for leaf in _leaves(child)]
    return [m]


def _is_dw(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d and m.bias is None and m.groups == m.in_channels == m.out_channels
        and m.kernel_size[0] == m.kernel_size[1] and m.stride[0] == m.stride[1]
        and m.padding[0] == m.padding[1] and m.dilation[0] == m.dilation[1] and m.padding_mode == "zeros"
    )


def is_pw_conv(m: nn.Module) -> bool:
    """A 1×1 conv without bias, stride 1, one group."""
    return type(m) is nn.Conv2d and m.bias is None and m.kernel_size == (1, 1) and m.stride == (1, 1) and m.padding == (0, 0) and m.groups == 1


def leaf_of(body: nn.Module, i: int) -> nn.Module:
    """Leaf ``i`` of ``body`` as plans number them (nested ``nn.Sequential`` flattened)."""
    return _leaves(body)[i]


def _is_bn(m: nn.Module) -> bool:
    """A BatchNorm2d with running statistics (affine or not: BnReluDwPw handles both)."""
    return type(m) is nn.BatchNorm2d and m.track_running_stats


def _is_avgpool3(m: nn.Module) -> bool:
    return (
        type(m) is nn.AvgPool2d and m.kernel_size in (3, (3, 3)) and m.padding in (1, (1, 1))
        and not m.ceil_mode and not m.count_include_pad and m.divisor_override is None
    )


def _is_maxpool3(m: nn.Module) -> bool:
    return (
        type(m) is nn.MaxPool2d and m.kernel_size in (3, (3, 3)) and m.padding in (1, (1, 1))
        and m.dilation in (1, (1, 1)) and not m.ceil_mode and not m.return_indices
    )


Plan = tuple[tuple[str, tuple[int, ...]], ...]


def _is_factorized_reduce(m: nn.Module) -> bool:
    return type(m) is FactorizedReduce and m.conv_1.bias is None and m.conv_2.bias is None


def fused_plan(body: nn.Module, lean: bool = False, start: int = 0) -> Plan | None:
    """How to compute ``body`` (training mode) with the functions above, or None.

    ``body`` is flattened into its leaf modules (nested ``nn.Sequential``); the runs
    depthwise→1×1, BN→ReLU→depthwise→1×1, 3×3 average pooling and
    FactorizedReduce are replaced,
    other leaves are called as they are; with ``lean``, 3×3 max pooling too
    (:class:`MaxPoolRecompute`: −8 bytes per output element, +1 pooling forward in
    backward; off by default: the memory targets are met without it and time is not).
    The plan names leaves by index (it holds no
    module, so copies of the op stay independent). None when nothing would be replaced.
    Leaves before ``start`` are left out of the plan (the caller applies them).
    """
    leaves = _leaves(body)
    plan: list[tuple[str, tuple[int, ...]]] = []
    replaced, i = False, start
    while i < len(leaves):
        if isinstance(leaves[i], nn.Identity):
            i += 1
            continue
        nxt = [j for j in range(i, len(leaves)) if not isinstance(leaves[j], nn.Identity)][:4]
        a = [leaves[j] for j in nxt]
        if len(a) == 4 and _is_bn(a[0]) and type(a[1]) is nn.ReLU and _is_dw(a[2]) and is_pw_conv(a[3]):
            plan.append(("bn_relu_dwpw", (nxt[0], nxt[2], nxt[3])))
            i, replaced = nxt[3] + 1, True
        elif len(a) >= 2 and _is_dw(a[0]) and is_pw_conv(a[1]):
            plan.append(("dwpw", (nxt[0], nxt[1])))
            i, replaced = nxt[1] + 1, True
        elif _is_maxpool3(a[0]) and lean:
            plan.append(("maxpool", (i,)))
            i, replaced = i + 1, True
        elif _is_avgpool3(a[0]):
            plan.append(("avgpool", (i,)))
            i, replaced = i + 1, True
        elif _is_factorized_reduce(a[0]):
            plan.append(("factorized_reduce", (i,)))
            i, replaced = i + 1, True
        else:
            plan.append(("module", (i,)))
            i += 1
    return tuple(plan) if replaced else None


def run_plan(plan: Plan, body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``body(x)`` by :func:`fused_plan`'s plan."""
    leaves = _leaves(body)
    for kind, idx in plan:
        if kind == "dwpw":
            dw, pw = leaves[idx[0]], leaves[idx[1]]
            x = DwPw.apply(x, dw.weight, pw.weight, dw.stride[0], dw.padding[0], dw.dilation[0])
        elif kind == "bn_relu_dwpw":
            bn, dw, pw = leaves[idx[0]], leaves[idx[1]], leaves[idx[2]]
            if not bn.training:
                x = pw(dw(F.relu(bn(x))))
                continue
            x = BnReluDwPw.apply(x, dw.weight, pw.weight, bn.weight, bn.bias, bn, dw.stride[0], dw.padding[0], dw.dilation[0])
        elif kind == "chain":
            conf, bns, weights = [], [], []
            for j in range(0, len(idx), 3):
                dw, pw, bn = leaves[idx[j]], leaves[idx[j + 1]], leaves[idx[j + 2]]
                if not bn.training:
                    break
                conf.append((dw.stride[0], dw.padding[0], dw.dilation[0]))
                bns.append(bn)
                weights += [dw.weight, pw.weight, bn.weight, bn.bias]
            else:
                x = DwPwBnChain.apply(x, tuple(conf), tuple(bns), *weights)
                continue
            for j in range(0, len(idx), 3):  # eval-mode BN: the plain modules
                x = leaves[idx[j + 2]](leaves[idx[j + 1]](leaves[idx[j]](F.relu(x) if j else x)))
        elif kind == "maxpool":
            pool = leaves[idx[0]]
            x = MaxPoolRecompute.apply(x, 3, pool.stride if isinstance(pool.stride, int) else pool.stride[0], 1)
        elif kind == "avgpool":
            pool = leaves[idx[0]]
            x = avg_pool3(x, pool.stride if isinstance(pool.stride, int) else pool.stride[0])
        elif kind in ("factorized_reduce", "factorized_reduce_after_relu"):
            fr = leaves[idx[0]]
            x = fr.relu(x) if kind == "factorized_reduce" else x
            x = batch_norm_module(fr.bn, FactorizedReduceFn.apply(x, fr.conv_1.weight, fr.conv_2.weight))
        elif isinstance(leaves[idx[0]], nn.BatchNorm2d):
            x = batch_norm_module(leaves[idx[0]], x)
        else:
            x = leaves[idx[0]](x)
    return x


def _chain(leaves: list[nn.Module]) -> tuple[int, ...] | None:
    """Indices (dw, pw, bn per stage) when ``leaves`` is exactly ``dw, pw, BN`` stages joined
    by ReLUs (a final network's sep/dil conv after its leading ReLU), else None."""
    out: list[int] = []
    i = 0
    while True:
        if i + 3 > len(leaves) or not (_is_dw(leaves[i]) and is_pw_conv(leaves[i + 1]) and _is_bn(leaves[i + 2])):
            return None
        out += [i, i + 1, i + 2]
        i += 3
        if i == len(leaves):
            return tuple(out)
        if type(leaves[i]) is not nn.ReLU:
            return None
        i += 1


def op_plan(op: nn.Module) -> tuple[bool, Plan | None]:
    """``(pre_relu, plan)`` of a whole built-in op of a final network, for :func:`run_plan`.

    ``pre_relu``: the op opens with a ReLU (sep/dil conv, ReLU-Conv-BN, factorized reduce),
    which the caller applies once per node state and shares between the ops reading it;
    the plan then computes the rest (a sep/dil conv as one :class:`DwPwBnChain`), so ``run_plan(plan, op, relu(x))`` equals ``op(x)``
    in training mode. ``plan`` is None when the op runs best as its own module (then
    ``pre_relu`` is False and the caller runs ``op(x)``). The op is not modified.
    """
    if _is_factorized_reduce(op) and isinstance(op.relu, nn.ReLU):
        return True, (("factorized_reduce_after_relu", (0,)),)
    leaves = _leaves(op)
    if len(leaves) > 1 and type(leaves[0]) is nn.ReLU:
        chain = _chain(leaves[1:])
        if chain is not None:
            return True, (("chain", tuple(1 + j for j in chain)),)
        rest = fused_plan(op, start=1)
        return True, rest if rest is not None else tuple(("module", (i,)) for i in range(1, len(leaves)))
    return False, fused_plan(op)  # e.g. 3×3 average pooling as a depthwise conv


def pooling_key(body: nn.Module, stride: int) -> tuple[str, int] | None:
    """``("max"|"avg", stride)`` when ``body`` is exactly one 3×3 pooling (a candidate op's
    body once its BN tail is cut off): its output depends on the input alone, so every op
    reading the same state can share it (:meth:`EdgeInput.shared`)."""
    leaves = [leaf for leaf in _leaves(body) if not isinstance(leaf, nn.Identity)]
    if len(leaves) != 1:
        return None
    if _is_maxpool3(leaves[0]):
        return "max", stride
    if _is_avgpool3(leaves[0]):
        return "avg", stride
    return None


class EdgeInput:
    """A node state and its ReLU, computed at most once and shared by every op reading it;
    likewise its poolings (:meth:`shared`)."""

    __slots__ = ("x", "_relu", "_shared", "relu_parts")

    def __init__(self, x: torch.Tensor):
        self.x = x
        self._relu: torch.Tensor | None = None
        self._shared: dict | None = None
        #: the ReLU as channel blocks (a cell's nodes), when known so; else None
        self.relu_parts: list[torch.Tensor] | None = None

    @classmethod
    def of_relu_parts(cls, parts: list[torch.Tensor]) -> "EdgeInput":
        """A state known only by its ReLU, given as channel blocks: readers that can (a 1×1
        conv, :func:`~nasforge.fused.pointwise.cat_pw`) read the blocks; the concatenation
        is built only for the others."""
        inp = cls.__new__(cls)
        inp.x, inp._relu, inp._shared, inp.relu_parts = None, None, None, list(parts)
        return inp

    @property
    def unjoined_parts(self) -> list[torch.Tensor] | None:
        """The ReLU's channel blocks while their concatenation has not been built, else None."""
        return self.relu_parts if self._relu is None else None

    def shared(self, key, compute) -> torch.Tensor:
        """``compute()`` once per ``key`` for this state (a pooling of ``x``: same output
        for every op asking, and one backward for all of them)."""
        if self._shared is None:
            self._shared = {}
        out = self._shared.get(key)
        if out is None:
            out = self._shared[key] = compute()
        return out

    @property
    def relu(self) -> torch.Tensor:
        if self._relu is None:
            if self.relu_parts is not None:
                self._relu = torch.cat(self.relu_parts, dim=1) if len(self.relu_parts) > 1 else self.relu_parts[0]
            else:
                self._relu = F.relu(self.x)
        return self._relu
