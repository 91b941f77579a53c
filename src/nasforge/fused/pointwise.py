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


__all__ = ["MM_MAX_PIXELS", "pw_conv"]
