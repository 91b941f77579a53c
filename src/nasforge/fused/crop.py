"""Depthwise kernels cropped to the taps that can touch the input.

On small feature maps a large kernel mostly multiplies padding: a 5×5 kernel on a 2×2 map
(the last cells of a search network on 8×8 images) reads the input with its central 3×3
taps only, and a dilated 5×5 (dilation 2, padding 4) reads it with its centre tap alone.
oneDNN's depthwise kernels are slow exactly there (measured: a 5×5 depthwise forward on
a 64×64×2×2 map, 736 µs a call against 54 µs for 3×3), so the conv runs on the cropped
kernel, which computes the same output: the cropped taps only ever meet zeros. Their
weight gradient is exactly zero, which the full conv would also give.

:func:`crop` returns the cropped conv's ``(weight, padding, dilation, (t0, t1))`` or
``None`` when nothing can be cropped (or when cropping would change the output shape;
then the full conv runs).
"""

from __future__ import annotations

import torch


def _taps(n: int, k: int, stride: int, padding: int, dilation: int) -> tuple[int, int]:
    """First and last tap (0-based) of a 1-D conv of length ``n`` that reads the input."""
    n_out = (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    last_start = (n_out - 1) * stride - padding  # input index of tap 0 at the last output
    t0 = 0
    while t0 < k and last_start + t0 * dilation < 0:
        t0 += 1
    t1 = k - 1
    while t1 >= 0 and t1 * dilation - padding > n - 1:
        t1 -= 1
    return t0, t1


def _out(n: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


_PLANS: dict[tuple, tuple[int, int, int, int] | None] = {}
_MISSING = object()


def crop(x_shape: torch.Size | tuple, w: torch.Tensor, stride: int, padding: int, dilation: int):
    """The cropped depthwise conv of ``x`` (N, C, H, W) by ``w`` (C, 1, k, k), or ``None``.

    Returns ``(w_cropped, padding, dilation, (t0, t1))``; ``w[..., t0:t1+1, t0:t1+1]`` is the
    cropped kernel, and the conv with it (same stride) has the same output as the full one.
    The decision is made once per geometry (a search step asks thousands of times).
    """
    key = (x_shape[-2], x_shape[-1], w.shape[-2], w.shape[-1], stride, padding, dilation)
    plan = _PLANS.get(key, _MISSING)
    if plan is _MISSING:
        if len(_PLANS) > 4096:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(*key)
    if plan is None:
        return None
    t0, t1, p, d = plan  # type: ignore[misc]
    return w[..., t0 : t1 + 1, t0 : t1 + 1], p, d, (t0, t1)


def _plan(H: int, W: int, kh: int, k: int, stride: int, padding: int, dilation: int) -> tuple[int, int, int, int] | None:
    """``(t0, t1, padding, dilation)`` of :func:`crop`, or None."""
    if k == 1 or kh != k:
        return None
    if min(H, W) < stride:
        return None
    rows, cols = _taps(H, k, stride, padding, dilation), _taps(W, k, stride, padding, dilation)
    t0, t1 = min(rows[0], cols[0]), max(rows[1], cols[1])
    if (t0, t1) == (0, k - 1) or t1 < t0:
        return None
    kc = t1 - t0 + 1
    p = padding - t0 * dilation
    d = dilation if kc > 1 else 1
    if p < 0 or any(_out(n, kc, stride, p, d) != _out(n, k, stride, padding, dilation) for n in (H, W)):
        return None
    return t0, t1, p, d


def uncrop_grad(gw: torch.Tensor, w: torch.Tensor, taps: tuple[int, int]) -> torch.Tensor:
    """The full kernel's gradient from the cropped one's (zero on the cropped taps)."""
    full = torch.zeros_like(w)
    full[..., taps[0] : taps[1] + 1, taps[0] : taps[1] + 1] = gw
    return full


__all__ = ["crop", "uncrop_grad"]
