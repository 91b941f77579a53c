"""Memory-saving autograd functions for the candidate ops of a cell supernet.

A search step keeps every op output of every edge of every cell alive until backward;
on CPU at the DARTS setting that is most of the memory. These functions compute exactly
what the modules compute (same parameters, same BN running-statistic updates) but save
less for backward and recompute the cheap rest there:

- :class:`DwPw` (depthwise conv then 1×1 conv, the body of ``dil_conv`` and of each half of
  ``sep_conv``) saves only its input, usually a node state's shared ReLU that is alive
  anyway; the depthwise output is recomputed in backward (a depthwise forward is cheap:
  its backward is what costs).
- :class:`BnReluDwPw` (the middle of ``sep_conv``: BN(affine=False), ReLU, depthwise,
  1×1) saves the normalised x̂ only, instead of the BN input, the ReLU output and the
  depthwise output.
- :class:`BnMix` (the closing BN(affine=False) times the op's mixing weight) saves x̂ only.
- :class:`MaxPoolRecompute` saves its input (a node state) instead of int64 indices
  (only in the opt-in ``lean`` plan).
- :class:`FactorizedReduceFn` (the convs of ``skip_connect`` at stride 2) saves the two
  subsampled grids, half of its input, and writes its input gradient in one tensor.
- :func:`avg_pool3`: 3×3 average pooling without padded entries counted, as a depthwise
  conv with a ones kernel times the reciprocal window count (oneDNN's depthwise conv is
  several times faster than ATen's channels-last average pooling, both ways).
- :func:`dw_conv_backward`: the backward of a depthwise conv with dilation 2 runs as
  plain convs on the four polyphase components (oneDNN's dilated depthwise backward is
  several times slower than the plain one on CPU; its forward is fast and kept), and a
  5×5 weight gradient is assembled from two 5×3 ones (:func:`_dw_weight_grad`).
- In passes that need no weight gradient (DARTS' α-only passes run with the weights'
  ``requires_grad`` off), nothing is recomputed and no weight gradient is computed.

Measured per call on the project's 2-core CPU (channels-last, batch 64, 16 channels,
32×32; see ``benchmarks/``): dilated 5×5 backward 36 ms native → 13 ms on phases; 5×5
depthwise weight gradient 4.7–6.1 ms native → 1.6 ms; 3×3 average pooling forward
2.1 ms → 0.5 ms as a conv.

Which parts of an op use them is decided by :mod:`nasforge.fused.plan`.

None of them supports double backward: the exact-HVP reference in the tests runs the
supernet with ``fused=False`` (plain modules).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.fused.bn import batch_norm_backward, bn_train
from nasforge.fused.pointwise import _pw_backward, pw_conv
from nasforge.fused.crop import crop, uncrop_grad

_conv_bwd = torch.ops.aten.convolution_backward


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _split_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) NHWC, even H and W -> (2N, 2C, H/2, W/2) NHWC: row phases as batch, column
    phases as channels (``[a·N + n, b·C + c, h, w] = x[n, c, 2h + a, 2w + b]``).

    The column split is a free view in NHWC; the row split copies whole rows.
    """
    N, C, H, W = x.shape
    p = x.permute(0, 2, 3, 1).reshape(N, H // 2, 2, W // 2, 2 * C).permute(2, 0, 1, 3, 4)
    return p.reshape(2 * N, H // 2, W // 2, 2 * C).permute(0, 3, 1, 2)


def _pair_columns(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) NHWC, even W -> (N, 2C, H, W/2) NHWC view: column pairs as channels (no copy)."""
    N, C, H, W = t.shape
    return t.permute(0, 2, 3, 1).reshape(N, H, W // 2, 2 * C).permute(0, 3, 1, 2)


def _dw_weight_grad(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """∂w of a stride-1, 'same'-padded, undilated depthwise conv.

    oneDNN's depthwise weight gradient is fast only for kernels at most 3 wide (measured on
    this CPU: 5×5 takes ~4× a 5×3). A 5×5 one is assembled from two 5×3 ones: column taps
    −1, 0, +1 directly; taps −2, 0, +2 from the same call on the column-paired view of x and
    g (NHWC, even width), where one step is two columns and each channel's kernel is shared
    by its two column phases. Only from width 8 on: on narrower maps the split is slower
    than the native 5×5 (4×4, 32 channels: 526 vs 224 µs).
    """
    C, k = w.shape[0], w.shape[-1]
    mask = [False, True, False]
    if k == 5 and w.shape[-2] == 5 and x.shape[-1] % 2 == 0 and x.shape[-1] >= 8 and memory_format_of(x) == torch.channels_last:
        odd = _conv_bwd(g, x, w[..., 1:4], None, [1, 1], [2, 1], [1, 1], False, [0, 0], C, mask)[1]
        w2 = w[..., ::2].repeat(2, 1, 1, 1)
        even = _conv_bwd(_pair_columns(g), _pair_columns(x), w2, None, [1, 1], [2, 1], [1, 1], False, [0, 0], 2 * C, mask)[1]
        even = even[:C] + even[C:]
        return torch.cat([even[..., :1], odd, even[..., 2:]], dim=-1)
    p = (k - 1) // 2
    return _conv_bwd(g, x, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], C, mask)[1]


def dw_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, dilation: int) -> torch.Tensor:
    """Depthwise conv; on maps smaller than the kernel, with the taps that read only
    padding cropped off (:mod:`nasforge.fused.crop`: same output)."""
    c = crop(x.shape, w, stride, padding, dilation)
    if c is not None:
        w, padding, dilation, _ = c
    if w.shape[-1] == 1 and w.shape[-2] == 1 and stride == 1 and padding == 0:
        return x * w.view(1, -1, 1, 1)  # a per-channel scale (oneDNN: ~30 µs a call on any size)
    return F.conv2d(x, w, None, stride, padding, dilation, w.shape[0])


def dw_conv_backward(
    g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: int, padding: int, dilation: int, mask: tuple[bool, bool]
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(∂x, ∂w) of :func:`dw_conv`, avoiding oneDNN's slow dilated depthwise backward.

    Dilation 2 (odd k, padding k−1): at stride 1, ∂x is the same conv of g with the kernel
    flipped (a fast dilated *forward*), and ∂w comes from one plain depthwise conv over the
    four polyphase components of x and g (row phases stacked in the batch, column phases as
    channels, NHWC; kernel shared by both column phases); at stride 2 only the even
    rows/columns of x are read, so both come from a plain conv on them. Undilated, stride
    1, 'same' padding: ∂x is the flipped-kernel forward too (3×3, 36 channels, 32×32,
    batch 96: both gradients 4.0 → 3.6 ms), and a 5×5 ∂w comes from
    :func:`_dw_weight_grad`. The phase route is taken even when the phases are smaller than
    the kernel (dilated 3×3 on 4×4, 32 channels: 935 µs native, 297 µs on phases). A kernel
    larger than the map is cropped first (:mod:`nasforge.fused.crop`). Anything else: native.
    """
    c = crop(x.shape, w, stride, padding, dilation)
    if c is not None:
        gx, gw = dw_conv_backward(g, x, c[0], stride, c[1], c[2], mask)
        return gx, None if gw is None else uncrop_grad(gw, w, c[3])
    k = w.shape[-1]
    groups = w.shape[0]
    fmt = memory_format_of(x)
    g = g.contiguous(memory_format=fmt)
    if k == 1 and w.shape[-2] == 1 and stride == 1 and padding == 0:  # a per-channel scale
        gx = g * w.view(1, -1, 1, 1) if mask[0] else None
        gw = (g * x).sum((0, 2, 3)).view(w.shape) if mask[1] else None
        return gx, gw
    N, _, H, W = x.shape
    if dilation == 2 and k % 2 == 1 and padding == k - 1:
        p = (k - 1) // 2
        if stride == 1:
            gx = dw_conv(g, w.flip(-2, -1), 1, padding, 2) if mask[0] else None
            gw = None
            if mask[1]:
                if H % 2 == 0 and W % 2 == 0 and fmt == torch.channels_last:
                    gw2 = _dw_weight_grad(_split_rows(g), _split_rows(x), w.repeat(2, 1, 1, 1))
                    gw = gw2.view(2, *w.shape).sum(0)
                else:
                    gw = _conv_bwd(g, x, w, None, [1, 1], [padding, padding], [2, 2], False, [0, 0], groups, [False, True, False])[1]
            return gx, gw
        if stride == 2:
            xe = x[:, :, ::2, ::2].contiguous(memory_format=fmt)
            gxe, gw, _ = _conv_bwd(g, xe, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], groups, [mask[0], mask[1], False])
            gx = None
            if gxe is not None:
                gx = torch.zeros_like(x)
                gx[:, :, ::2, ::2] = gxe
            return gx, gw
    if stride == 1 and dilation == 1 and k % 2 == 1 and padding == (k - 1) // 2:
        # ∂x: the 'same' conv of g with the flipped kernel, on the fast forward kernel
        gx = dw_conv(g, w.flip(-2, -1), 1, padding, 1) if mask[0] else None
        gw = None
        if mask[1]:
            gw = _dw_weight_grad(g, x, w) if k == 5 else _conv_bwd(g, x, w, None, [1, 1], [padding, padding], [1, 1], False, [0, 0], groups, [False, True, False])[1]
        return gx, gw
    gx, gw, _ = _conv_bwd(g, x, w, None, [stride, stride], [padding, padding], [dilation, dilation], False, [0, 0], groups, [mask[0], mask[1], False])
    return gx, gw


class DwPw(torch.autograd.Function):
    """``conv1x1(dwconv(x))``; saves x and the weights, recomputes the depthwise output."""

    @staticmethod
    def forward(ctx, x, w_dw, w_pw, stride: int, padding: int, dilation: int):  # type: ignore[override]
        ctx.conf = (stride, padding, dilation)
        ctx.save_for_backward(x, w_dw, w_pw)
        return pw_conv(dw_conv(x, w_dw, stride, padding, dilation), w_pw)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, w_dw, w_pw = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_x, need_wdw, need_wpw = ctx.needs_input_grad[:3]
        # the depthwise output is recomputed only when the 1×1 weight needs its gradient
        t = dw_conv(x, w_dw, stride, padding, dilation) if need_wpw else x
        gt, gw_pw = _pw_backward(g, t, w_pw, (True, need_wpw))
        del t
        gx, gw_dw = dw_conv_backward(gt, x, w_dw, stride, padding, dilation, (need_x, need_wdw))
        return gx, gw_dw, gw_pw, None, None, None


def _bn_normalise(z: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂ and 1/σ of a training-mode BN without affine; updates the running statistics as BN does."""
    xhat, _mean, invstd = bn_train(z, bn)
    return xhat, invstd


_CONSTS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _zeros_ones(C: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (C, dtype, device)
    if key not in _CONSTS:
        _CONSTS[key] = (torch.zeros(C, dtype=dtype, device=device), torch.ones(C, dtype=dtype, device=device))
    return _CONSTS[key]


def _bn_backward(g: torch.Tensor, xhat: torch.Tensor, scale: torch.Tensor, mask: tuple[bool, bool]):
    """BN backward fed x̂ (mean 0, 1/σ = 1) with per-channel ``scale`` as weight.

    Returns ``(scale · (g − mean g − x̂·mean(g·x̂)), Σ g·x̂ per channel)``.
    """
    zeros, ones = _zeros_ones(xhat.shape[1], scale.dtype, scale.device)
    gz, gscale, _ = batch_norm_backward(
        g.contiguous(memory_format=memory_format_of(xhat)), xhat, scale.to(xhat.dtype), zeros, ones, (mask[0], mask[1], False)
    )
    return gz, gscale


class BnReluDwPw(torch.autograd.Function):
    """``conv1x1(dwconv(relu(BN(z))))`` for a training-mode BN; saves x̂ only.

    ``gamma``/``beta`` are the BN's affine weight and bias (``None`` for BN(affine=False),
    the search supernets' BN); ``relu(γ·x̂ + β)`` and the depthwise output are recomputed
    in backward for the weights' gradients.
    """

    @staticmethod
    def forward(ctx, z, w_dw, w_pw, gamma, beta, bn: nn.BatchNorm2d, stride: int, padding: int, dilation: int):  # type: ignore[override]
        xhat, invstd = _bn_normalise(z, bn)
        ctx.conf = (stride, padding, dilation)
        ctx.affine = gamma is not None
        ctx.save_for_backward(xhat, invstd, w_dw, w_pw, gamma, beta)
        a = _affine(xhat, gamma, beta)
        return pw_conv(dw_conv(F.relu(a), w_dw, stride, padding, dilation), w_pw)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        xhat, invstd, w_dw, w_pw, gamma, beta = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        need_z, need_wdw, need_wpw = ctx.needs_input_grad[:3]
        need_affine = ctx.affine and (ctx.needs_input_grad[3] or ctx.needs_input_grad[4])
        a = _affine(xhat, gamma, beta) if ctx.affine else xhat
        # relu(a) and its depthwise output are recomputed only for the weights' gradients
        y = F.relu(a) if (need_wdw or need_wpw) else a.new_empty(0)
        t = dw_conv(y, w_dw, stride, padding, dilation) if need_wpw else a
        gt, gw_pw = _pw_backward(g, t, w_pw, (True, need_wpw))
        del t
        gy, gw_dw = dw_conv_backward(gt, y if need_wdw else a, w_dw, stride, padding, dilation, (need_z or need_affine, need_wdw))
        del y
        gz = ggamma = gbeta = None
        if need_z or need_affine:
            ga = torch.ops.aten.threshold_backward(gy, a, 0.0)  # relu'(a)
            del gy, a
            scale = invstd * gamma if ctx.affine else invstd
            gz, ggamma = _bn_backward(ga, xhat, scale, (bool(need_z), bool(need_affine)))
            if need_affine:
                gbeta = ga.sum((0, 2, 3))
        return gz, gw_dw, gw_pw, ggamma, gbeta, None, None, None, None


def _affine(xhat: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None) -> torch.Tensor:
    """``γ·x̂ + β`` per channel (x̂ itself without affine)."""
    if gamma is None:
        return xhat
    return torch.addcmul(beta.view(1, -1, 1, 1), xhat, gamma.view(1, -1, 1, 1))


class BnMix(torch.autograd.Function):
    """``w · BN_train(z)`` for BN without affine; saves only x̂ (and the per-channel 1/σ).
    Given ``acc`` (an edge's running sum, owned by the caller), ``acc += w · BN_train(z)``
    in place instead.

    Backward, with g the output gradient: ``∂w = Σ g·x̂`` and
    ``∂z = w/σ · (g − mean(g) − x̂·mean(g·x̂))``, both from one BN-backward call.
    """

    @staticmethod
    def forward(ctx, z, w, bn: nn.BatchNorm2d, acc=None):  # type: ignore[override]
        xhat, invstd = _bn_normalise(z, bn)
        ctx.save_for_backward(xhat, invstd, w)
        if acc is None:
            return xhat * w
        ctx.mark_dirty(acc)  # acc += w·x̂ in one pass: no temporary, no separate add
        return acc.addcmul_(xhat, w)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        xhat, invstd, w = ctx.saved_tensors
        mask = (bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]))
        gz, gw = _bn_backward(g, xhat, invstd * w, mask)
        grad_w = gw.sum().reshape(w.shape) if mask[1] else None  # Σ g·x̂ over all channels
        if len(ctx.needs_input_grad) == 3:  # called without acc
            return (gz if mask[0] else None), grad_w, None
        return (gz if mask[0] else None), grad_w, None, (g if ctx.needs_input_grad[3] else None)


class FactorizedReduceFn(torch.autograd.Function):
    """``cat(conv1x1(x[::2, ::2]), conv1x1(x[1::2, 1::2]))``: the convs of
    :class:`~nasforge.ops.FactorizedReduce` (odd sizes: the odd grid zero-padded).

    Saves the two subsampled grids (half of x) instead of x; backward writes the input
    gradient once into the two grids of a zero tensor, where autograd would build and add
    one full-size tensor per branch.
    """

    @staticmethod
    def forward(ctx, x, w1, w2):  # type: ignore[override]
        fmt = memory_format_of(x)
        even = x[:, :, ::2, ::2].contiguous(memory_format=fmt)
        odd = x[:, :, 1::2, 1::2]
        ctx.odd_hw = tuple(odd.shape[-2:])
        if odd.shape[-2:] != even.shape[-2:]:
            odd = F.pad(odd, (0, even.shape[-1] - odd.shape[-1], 0, even.shape[-2] - odd.shape[-2]))
        odd = odd.contiguous(memory_format=fmt)
        ctx.save_for_backward(even, odd, w1, w2)
        ctx.x_shape = x.shape
        return torch.cat([F.conv2d(even, w1), F.conv2d(odd, w2)], dim=1)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        even, odd, w1, w2 = ctx.saved_tensors
        need_x, need_w1, need_w2 = ctx.needs_input_grad[:3]
        fmt = memory_format_of(even)
        h = w1.shape[0]
        ge, gw1, _ = _conv_bwd(g[:, :h].contiguous(memory_format=fmt), even, w1, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_x, need_w1, False])
        go, gw2, _ = _conv_bwd(g[:, h:].contiguous(memory_format=fmt), odd, w2, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_x, need_w2, False])
        gx = None
        if need_x:
            gx = torch.empty(ctx.x_shape, dtype=g.dtype, device=g.device, memory_format=fmt).zero_()
            gx[:, :, ::2, ::2] = ge
            oh, ow = ctx.odd_hw
            gx[:, :, 1::2, 1::2] = go[:, :, :oh, :ow]
        return gx, gw1, gw2


_POOL_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def avg_pool3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)`` as a depthwise ones-conv."""
    N, C, H, W = x.shape
    key = (C, H, W, stride, x.dtype, x.device)
    if key not in _POOL_CACHE:
        if len(_POOL_CACHE) > 256:
            _POOL_CACHE.clear()
        ones = torch.ones(C, 1, 3, 3, dtype=x.dtype, device=x.device)
        count = F.conv2d(torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device), ones[:1], None, stride, 1)
        _POOL_CACHE[key] = (ones, count.reciprocal())
    ones, rcount = _POOL_CACHE[key]
    return F.conv2d(x, ones, None, stride, 1, 1, C) * rcount


class MaxPoolRecompute(torch.autograd.Function):
    """``max_pool2d`` that saves its input instead of the int64 argmax indices."""

    @staticmethod
    def forward(ctx, x, kernel: int, stride: int, padding: int):  # type: ignore[override]
        ctx.conf = ([kernel, kernel], [stride, stride], [padding, padding])
        ctx.save_for_backward(x)
        return F.max_pool2d(x, kernel, stride, padding)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        k, s, p = ctx.conf
        _, idx = torch.ops.aten.max_pool2d_with_indices(x, k, s, p, [1, 1], False)
        gx = torch.ops.aten.max_pool2d_with_indices_backward(g.contiguous(memory_format=memory_format_of(x)), x, k, s, p, [1, 1], False, idx)
        return gx, None, None, None
