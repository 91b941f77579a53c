"""The 1×1 convolution of the fused ops (:func:`pw_conv`) and its backward.

On small channels-last maps it is a matrix product on the NHWC rows, elsewhere oneDNN's
convolution; see :func:`pw_conv` for the measurements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_conv_bwd = torch.ops.aten.convolution_backward

#: maps of at most this many pixels run their 1×1 convs as matrix products (below) ...
MM_MAX_PIXELS = 64
#: ... when the product has at most this many multiply-adds (N·H·W·C_in·C_out)
MM_MAX_MACS = 1 << 22


def _rows(t: torch.Tensor, other_channels: int) -> torch.Tensor | None:
    """Dense channels-last ``t`` as its ``(N·H·W, C)`` matrix (a view), when the 1×1 conv
    between its C and ``other_channels`` channels is small enough for :data:`MM_MAX_PIXELS`
    and :data:`MM_MAX_MACS`; else None."""
    if t.dim() != 4 or t.shape[2] * t.shape[3] > MM_MAX_PIXELS or t.numel() * other_channels > MM_MAX_MACS:
        return None
    if not t.is_contiguous(memory_format=torch.channels_last):
        return None
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _unrows(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    n, _, h, w = like.shape
    return m.view(n, h, w, m.shape[1]).permute(0, 3, 1, 2)


def pw_conv(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """1×1 conv without bias.

    On small channels-last maps with little work (at most :data:`MM_MAX_PIXELS` pixels and
    :data:`MM_MAX_MACS` multiply-adds: every cell of a search on 8×8 images) a matrix
    product on the NHWC rows: oneDNN's conv costs a fixed ~40 µs a call there, forward and
    backward 2.5–3× the product (64×16×8×8: 45 → 20 µs forward, 101 → 36 µs backward, one
    thread, 2026-12-03). Elsewhere the conv: on larger work a product saved 0–15% a call in
    isolation, but in whole steps it measured no faster and grew the resident memory
    (second-order search at 32×32: 14.14, 13.90 → 14.26, 14.43 s, +0.1 GB).
    """
    rows = _rows(t, w.shape[0])
    if rows is None:
        return F.conv2d(t, w)
    return _unrows(rows @ w.reshape(w.shape[0], -1).t(), t)


def _pw_backward(g: torch.Tensor, t: torch.Tensor, w: torch.Tensor, mask: tuple[bool, bool]):
    """(∂t, ∂w) of :func:`pw_conv`; ``t`` is only read for ∂w."""
    g_rows = _rows(g, w.shape[1])
    t_rows = _rows(t, w.shape[0]) if mask[1] else None
    if g_rows is not None and (t_rows is not None or not mask[1]):
        w2 = w.reshape(w.shape[0], -1)
        gt = _unrows(g_rows @ w2, g) if mask[0] else None
        gw = (g_rows.t() @ t_rows).view(w.shape) if mask[1] else None
        return gt, gw
    if not mask[1]:
        return F.conv2d(g, w.transpose(0, 1).contiguous()), None
    gt, gw, _ = _conv_bwd(g, t, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [mask[0], mask[1], False])
    return gt, gw


class CatPwFn(torch.autograd.Function):
    """``conv1x1(cat(parts, dim=1), w)`` without building the concatenation: the sum of one
    matrix product per part on its NHWC rows, each with its block of w's input channels.

    A DARTS cell's output is the channel concatenation of its nodes, read by the next
    cells' 1×1 preprocessing convs. At 2 threads ATen's channels-last cat of four
    96×36×32×32 blocks took 12 ms, four times a copy of the same bytes (each 144-byte
    block row splits cache lines). Backward gives each part its own dense gradient.
    """

    @staticmethod
    def forward(ctx, w, *parts):  # type: ignore[override]
        w2 = w.reshape(w.shape[0], -1)
        rows = [p.permute(0, 2, 3, 1).reshape(-1, p.shape[1]) for p in parts]
        out, c0 = None, 0
        for r in rows:
            wi = w2[:, c0 : c0 + r.shape[1]].t()
            out = r @ wi if out is None else out.addmm_(r, wi)
            c0 += r.shape[1]
        ctx.save_for_backward(w, *parts)
        return _unrows(out, parts[0])

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        w, *parts = ctx.saved_tensors
        w2 = w.reshape(w.shape[0], -1)
        g = g.contiguous(memory_format=torch.channels_last)
        g_rows = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1])
        grads, gws, c0 = [], [], 0
        for i, p in enumerate(parts):
            c = p.shape[1]
            grads.append(_unrows(g_rows @ w2[:, c0 : c0 + c], p) if ctx.needs_input_grad[1 + i] else None)
            if ctx.needs_input_grad[0]:
                gws.append(g_rows.t() @ p.permute(0, 2, 3, 1).reshape(-1, c))
            c0 += c
        gw = torch.cat(gws, dim=1).view(w.shape) if ctx.needs_input_grad[0] else None
        return (gw, *grads)


def cat_pw(parts: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor | None:
    """``F.conv2d(torch.cat(parts, 1), w)`` for a 1×1 ``w`` by :class:`CatPwFn`, or None when
    the parts are not dense channels-last float maps of one shape (then build the cat)."""
    p0 = parts[0]
    if p0.dim() != 4 or p0.dtype not in (torch.float32, torch.float64) or sum(p.shape[1] for p in parts) != w.shape[1]:
        return None
    for p in parts:
        if p.shape[0] != p0.shape[0] or p.shape[2:] != p0.shape[2:] or not p.is_contiguous(memory_format=torch.channels_last):
            return None
    return CatPwFn.apply(w, *parts)


__all__ = ["CatPwFn", "MM_MAX_PIXELS", "cat_pw", "pw_conv"]
