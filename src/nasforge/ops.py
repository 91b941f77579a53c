"""Candidate operations of the four papers and the zoo, in a registry by name.

Every op is built as ``make_op(name, C_in, C_out, stride, affine)`` and maps an
``(N, C_in, H, W)`` tensor to ``(N, C_out, ceil(H/stride), ceil(W/stride))``.

Definitions follow DARTS ``cnn/operations.py`` (quark0/darts@f276dd3):

- ``sep_conv_k``: (ReLU, depthwise k×k, pointwise 1×1, BN) twice, stride on the first.
- ``dil_conv_k``: ReLU, depthwise k×k dilation 2, pointwise 1×1, BN.
- ``skip_connect``: identity, or :class:`FactorizedReduce` at stride 2 (or C_in ≠ C_out).
- pools: 3×3, padding 1, ``count_include_pad=False`` for average; no parameters
  (``op_set="darts"``). SNAS's ``operations.py`` follows each pool with an affine BN
  (``op_set="snas"``).
- ``none``: zeros (strided when stride 2).
- ``conv_7x1_1x7``: ReLU, 1×7 then 7×1 convolutions, BN (AmoebaNet).
- ``conv_1x1/3x3/5x5``, NAS-Bench-201 ``nor_conv_1x1/3x3``: ReLU-Conv-BN.

Ops whose definition needs C_in = C_out (pools, identity) get a ReLU-Conv1×1-BN in front
when the channel counts differ, as NAS-Bench-201 does for its pooling op.

A user's own op is added with :func:`register_op` (``nasforge.register_op``) and is then
a candidate name like the built-ins: for ``ops`` lists of the cell searches, in ``cell``
architectures, final networks, drawings, costs and exports (see ``docs/darts.md``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import ArchError, ConfigError


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel: int | tuple, stride: int, padding: int | tuple, affine: bool = True, dilation: int = 1):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, depthwise (dilated) conv, pointwise conv, BN."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Separable conv applied twice (DARTS): the first with the stride, C_in kept inside."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] != self.C_out:
            return x.new_zeros(x.shape[0], self.C_out, x.shape[2], x.shape[3])
        return x.mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1×1 stride-2 convs on offset grids, concatenated.

    For odd sizes the shifted branch is padded at the bottom/right so both branches give
    ceil(H/2); for even sizes this is exactly DARTS' ``x[:, :, 1:, 1:]``.

    A 1×1 conv at stride 2 reads only every other row and column, so each branch is
    computed as a stride-1 1×1 conv on its subsampled grid (the even/even and odd/odd
    pixels); the result is the same, without the padded full-size copy and the full-size
    strided-conv backward (measured 15.7 → 11.9 ms forward+backward at batch 64, 32
    channels, 32×32, channels-last).
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        assert C_out % 2 == 0, "FactorizedReduce needs an even C_out"
        self.relu = nn.ReLU(inplace=False)
        # stride 1: they run on the subsampled grids (same weights as DARTS' stride-2 convs)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=1, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        even, odd = x[:, :, ::2, ::2], x[:, :, 1::2, 1::2]
        if odd.shape[-2:] != even.shape[-2:]:  # odd H or W: the shifted grid is zero-padded
            odd = F.pad(odd, (0, even.shape[-1] - odd.shape[-1], 0, even.shape[-2] - odd.shape[-2]))
        return self.bn(torch.cat([self.conv_1(even), self.conv_2(odd)], dim=1))


class Conv7x1_1x7(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C_out, C_out, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


def _channel_adapter(C_in: int, C_out: int, affine: bool) -> list[nn.Module]:
    return [] if C_in == C_out else [ReLUConvBN(C_in, C_out, 1, 1, 0, affine)]


def _pool(kind: str) -> Callable[..., nn.Module]:
    def build(C_in: int, C_out: int, stride: int, affine: bool, op_set: str) -> nn.Module:
        pool: nn.Module
        if kind == "avg":
            pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        else:
            pool = nn.MaxPool2d(3, stride=stride, padding=1)
        layers = _channel_adapter(C_in, C_out, affine) + [pool]
        if op_set == "snas":
            layers.append(nn.BatchNorm2d(C_out, affine=True))
        return layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    return build


def _skip(C_in: int, C_out: int, stride: int, affine: bool, op_set: str) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    if stride == 1:
        return ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
    return FactorizedReduce(C_in, C_out, affine)


@dataclass(frozen=True)
class OpSpec:
    name: str
    build: Callable[[int, int, int, bool, str], nn.Module]
    doc: str
    parametric: bool = True  # False: no weights (at C_in == C_out, stride 1)
    builtin: bool = True  # False: registered by the user (nasforge.register_op)


OPS: dict[str, OpSpec] = {}


def _register(name: str, build: Callable[[int, int, int, bool, str], nn.Module], doc: str, parametric: bool = True) -> None:
    OPS[name] = OpSpec(name, build, doc, parametric)


_register("none", lambda ci, co, s, a, o: Zero(ci, co, s), "zero: no connection", parametric=False)
_register("skip_connect", _skip, "identity; factorized reduce at stride 2", parametric=False)
_register("identity", _skip, "ENAS name for skip_connect", parametric=False)
_register("max_pool_3x3", _pool("max"), "3x3 max pooling, padding 1", parametric=False)
_register("avg_pool_3x3", _pool("avg"), "3x3 average pooling, padding 1, count_include_pad=False", parametric=False)
for _k in (3, 5, 7):
    _register(
        f"sep_conv_{_k}x{_k}",
        (lambda k: lambda ci, co, s, a, o: SepConv(ci, co, k, s, k // 2, a))(_k),
        f"(ReLU, depthwise {_k}x{_k}, pointwise, BN) x2",
    )
for _k in (3, 5):
    _register(
        f"dil_conv_{_k}x{_k}",
        (lambda k: lambda ci, co, s, a, o: DilConv(ci, co, k, s, k - 1, 2, a))(_k),
        f"ReLU, depthwise {_k}x{_k} dilation 2, pointwise, BN",
    )
_register("conv_7x1_1x7", lambda ci, co, s, a, o: Conv7x1_1x7(ci, co, s, a), "ReLU, 1x7 conv, 7x1 conv, BN")
for _k in (1, 3, 5):
    _register(
        f"conv_{_k}x{_k}",
        (lambda k: lambda ci, co, s, a, o: ReLUConvBN(ci, co, k, s, k // 2, a))(_k),
        f"ReLU, {_k}x{_k} conv, BN",
    )
for _k in (1, 3):
    _register(
        f"nor_conv_{_k}x{_k}",
        (lambda k: lambda ci, co, s, a, o: ReLUConvBN(ci, co, k, s, k // 2, a))(_k),
        f"NAS-Bench-201: ReLU, {_k}x{_k} conv, BN",
    )
_register(
    "factorized_reduce",
    lambda ci, co, s, a, o: FactorizedReduce(ci, co, a) if s == 2 else ReLUConvBN(ci, co, 1, 1, 0, a),
    "ReLU, two offset 1x1 stride-2 convs concatenated, BN",
)

#: Candidate lists of the papers (order matters: it is the index order of α).
DARTS_PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
ENAS_MICRO_PRIMITIVES = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
NB201_PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def make_op(name: str, C_in: int, C_out: int | None = None, stride: int = 1, affine: bool = True, op_set: str = "darts") -> nn.Module:
    """Build op ``name`` mapping ``C_in`` to ``C_out`` channels (default C_in) at ``stride``."""
    spec = OPS.get(name)
    if spec is None:
        raise ArchError(f"unknown op {name!r}: not a built-in op nor one registered with nasforge.register_op (known: {', '.join(sorted(OPS))})")
    if stride not in (1, 2):
        raise ArchError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    op = spec.build(C_in, C_in if C_out is None else C_out, stride, affine, op_set)
    if not spec.builtin and not isinstance(op, nn.Module):
        raise ConfigError(f"op {name!r}: its builder returned a {type(op).__name__}, not a torch.nn.Module")
    return op


# -- a user's own ops -------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the input of the check run by :func:`register_op`: (batch, channels, height, width)
_PROBE_SHAPE = (2, 4, 8, 8)


def register_op(
    name: str, builder: Callable[[int, int, int, bool], nn.Module], doc: str = "", *, parametric: bool = True, check: bool = True
) -> None:
    """Add a user's own candidate op ``name``, built by ``builder(C_in, C_out, stride, affine)``.

    The module it returns must map ``(N, C_in, H, W)`` to ``(N, C_out, ceil(H/stride),
    ceil(W/stride))`` for stride 1 and 2 (cells use ``C_in == C_out``), give its BNs
    ``affine=affine`` (False in the search supernet, True in final networks, as DARTS),
    and not modify its input in place (the supernet feeds one tensor to every op of a
    node). The op then works like a built-in: in ``ops`` lists of the cell searches
    (DARTS, SNAS, ENAS micro), in ``cell`` architectures, final networks, drawings, costs
    and exports (ONNX when its layers are exportable). In the supernet it runs as the
    plain module (the fused fast paths are for the built-ins). Registration lives in the
    Python process: register before loading an architecture that names the op, and in
    every worker process.

    ``check`` (default) builds the op at 4 channels, strides 1 and 2, and runs it on a
    ``(2, 4, 8, 8)`` input to check the output shape and that the input is untouched.
    Raises :class:`~nasforge.errors.ConfigError` for a bad or taken name, a builder that
    is not callable, or a failed check.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"op name {name!r} must be a letter or '_' followed by letters, digits or '_'")
    if name in OPS:
        what = "a built-in op" if OPS[name].builtin else "already registered"
        raise ConfigError(f"op name {name!r} is {what}: choose another name" + ("" if OPS[name].builtin else " or unregister_op it first"))
    if not callable(builder):
        raise ConfigError(f"op {name!r}: the builder must be callable as builder(C_in, C_out, stride, affine), got a {type(builder).__name__}")
    spec = OpSpec(name, lambda ci, co, s, a, o: builder(ci, co, s, a), doc or "user op", parametric, builtin=False)
    if check:
        _check_op(spec)
    OPS[name] = spec


def unregister_op(name: str) -> None:
    """Remove an op added with :func:`register_op` (built-ins cannot be removed)."""
    spec = OPS.get(name)
    if spec is None or spec.builtin:
        raise ConfigError(f"op {name!r} is {'a built-in op' if spec else 'not registered'}: only ops added with register_op can be removed")
    del OPS[name]


def is_builtin_op(name: str) -> bool:
    """True for the ops defined here (the fused supernet paths know only these)."""
    spec = OPS.get(name)
    return spec is not None and spec.builtin


def _check_op(spec: OpSpec) -> None:
    n, c, h, w = _PROBE_SHAPE
    for stride in (1, 2):
        call = f"op {spec.name!r}: builder({c}, {c}, {stride}, False)"
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))
        x0 = x.clone()
        try:
            op = spec.build(c, c, stride, False, "darts")
            if not isinstance(op, nn.Module):
                raise ConfigError(f"{call} returned a {type(op).__name__}, not a torch.nn.Module")
            with torch.no_grad():
                y = op(x)
        except ConfigError:
            raise
        except Exception as e:  # the user's code: report it in one line
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConfigError(f"{call} and a forward on a {tuple(x.shape)} input failed ({type(e).__name__}: {msg})") from e
        want = (n, c, -(-h // stride), -(-w // stride))
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ConfigError(f"{call} maps a {tuple(x.shape)} input to {got}, expected {want}")
        if not torch.equal(x, x0):
            raise ConfigError(f"op {spec.name!r} modifies its input in place: the supernet shares that tensor with other ops")


def check_ops(names: Sequence[str], where: str = "ops") -> tuple[str, ...]:
    """Validate a candidate list for a cell search: registered names, no duplicates, at least
    one op other than ``none``. Returns it as a tuple (the α column order)."""
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise ConfigError(f"{where} must be a list of op names, got {names!r}")
    if not names:
        raise ConfigError(f"{where} is empty: give at least one op name")
    for op in names:
        if not isinstance(op, str) or op not in OPS:
            raise ConfigError(
                f"unknown op {op!r} in {where} (known: {', '.join(sorted(OPS))}; add your own with nasforge.register_op)"
            )
    dup = sorted({op for op in names if list(names).count(op) > 1})
    if dup:
        raise ConfigError(f"{where} lists {dup[0]!r} more than once")
    if all(op == "none" for op in names):
        raise ConfigError(f"{where} needs at least one op other than 'none'")
    return tuple(names)


def parse_ops(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (the ``--ops`` flag); names are checked by :func:`check_ops`."""
    return [t.strip() for t in str(text).split(",") if t.strip()]
