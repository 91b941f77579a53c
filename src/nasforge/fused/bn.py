"""Training-mode batch norm on channels-last CPU tensors, free of false sharing.

ATen's channels-last BN kernels reduce a ``(pixels, C)`` matrix row by row into one
``threads × C`` buffer of partial sums. When a row of C values is not a whole number of
64-byte cache lines (C = 36 or 72 floats: DARTS's final networks at C = 36), two threads
write the same cache line for every pixel, and the kernels get slower with more threads:
a 96×36×32×32 BN took 4.1 ms forward and 8.6 ms backward at 2 threads against 2.3 and
3.2 ms at one (2026-12-03, Intel Xeon).

:func:`batch_norm_train` and :func:`batch_norm_backward` compute the same thing with the
matrix viewed as ``(pixels/k, k·C)``, ``k·C`` a whole number of lines: ATen reduces the k
interleaved groups of rows per channel without false sharing, the k partial statistics
are combined per channel (mean of the group means; group variances plus the spread of
the group means), and the normalisation and the input gradient are one or two
per-channel affine passes. 1.4 and 2.2 ms at 2 threads for the case above. Used only
where it pays: more than one thread, a dense channels-last CPU float tensor, C·itemsize
not a multiple of 64; everything else calls ATen's kernels unchanged. Values equal ATen's
up to float rounding (another summation order).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

_LINE = 64  # bytes per cache line
_aten = torch.ops.aten


def _groups(z: torch.Tensor) -> int:
    """k for :func:`_grouped`, or 0 when ATen's kernels are used as they are."""
    if z.dim() != 4:
        return 0
    k = _LINE // math.gcd(z.shape[1] * z.element_size(), _LINE)
    if k == 1:  # whole-line channel rows (16, 32, 64 float32 channels): the common case first
        return 0
    if z.device.type != "cpu" or z.dtype not in (torch.float32, torch.float64):
        return 0
    if torch.get_num_threads() < 2 or not z.is_contiguous(memory_format=torch.channels_last):
        return 0
    pixels = z.numel() // max(z.shape[1], 1)
    return k if k > 1 and pixels % k == 0 and pixels >= k else 0


def _grouped(z: torch.Tensor, k: int) -> torch.Tensor:
    """A view of channels-last ``z`` as ``(pixels/k, k·C, 1, 1)``: k interleaved row groups."""
    n, c, h, w = z.shape
    return z.permute(0, 2, 3, 1).view(n * h * w // k, k * c, 1, 1)


def _channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


def batch_stats(z, running_mean, running_var, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and biased variance of a training-mode BN, without
    normalising (one read of ``z`` less than a BN forward); the running statistics, when
    given, updated in place as ATen's BN updates them (unbiased variance)."""
    k = _groups(z)
    if not k:
        return torch.batch_norm_update_stats(z, running_mean, running_var, momentum)
    c = z.shape[1]
    gmean, gvar = torch.batch_norm_update_stats(_grouped(z, k), None, None, 0.0)
    gmean, gvar = gmean.view(k, c), gvar.view(k, c)
    mean = gmean.mean(0)
    var = gvar.mean(0) + (gmean - mean).square_().mean(0)  # biased, as BN normalises
    if running_mean is not None:
        m = z.numel() // c
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * (m / max(m - 1, 1))).to(running_var.dtype), momentum)  # unbiased, as ATen
    return mean, var


def batch_norm_train(z, weight, bias, running_mean, running_var, momentum: float, eps: float):
    """``torch.native_batch_norm(z, weight, bias, running_mean, running_var, True, momentum,
    eps)``: ``(output, batch mean, 1/σ)``, the running statistics updated in place."""
    if not _groups(z):
        return torch.native_batch_norm(z, weight, bias, running_mean, running_var, True, momentum, eps)
    mean, var = batch_stats(z, running_mean, running_var, momentum)
    invstd = (var + eps).rsqrt_()
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return torch.addcmul(_channel(shift), z, _channel(scale)), mean, invstd


def batch_norm_backward(g, z, weight, mean, invstd, mask):
    """``torch.ops.aten.native_batch_norm_backward`` of a training-mode BN: ``(∂z, ∂γ, ∂β)``,
    each None where ``mask`` says it is not needed; ``g`` dense in ``z``'s memory format."""
    k = _groups(z)
    if not k or not g.is_contiguous(memory_format=torch.channels_last):
        return _aten.native_batch_norm_backward(g, z, weight, None, None, mean, invstd, True, 0.0, list(mask))
    c = z.shape[1]
    # per channel Σg and Σg·x̂ (x̂ from the given statistics), summed over the k groups
    _, gx_hat, gsum = _aten.native_batch_norm_backward(
        _grouped(g, k), _grouped(z, k), None, None, None, mean.repeat(k), invstd.repeat(k), True, 0.0, [False, True, True]
    )
    gx_hat, gsum = gx_hat.view(k, c).sum(0), gsum.view(k, c).sum(0)
    gz = None
    if mask[0]:
        m = z.numel() // c
        s = invstd if weight is None else invstd * weight
        a, b = gsum / m, gx_hat / m
        # ∂z = s·(g − a − x̂·b) = s·g + t·z + u per channel
        t = -s * invstd * b
        u = s * (invstd * mean * b - a)
        gz = torch.addcmul(_channel(u), z, _channel(t)).addcmul_(g, _channel(s))
    return gz, (gx_hat if mask[1] else None), (gsum if mask[2] else None)


class BatchNormFn(torch.autograd.Function):
    """A training-mode ``nn.BatchNorm2d`` by :func:`batch_norm_train` (module ``bn`` given
    for its running statistics); saves its input and the batch statistics, as ATen does."""

    @staticmethod
    def forward(ctx, z, weight, bias, bn: nn.BatchNorm2d):  # type: ignore[override]
        out, mean, invstd = bn_train(z, bn, weight, bias)
        ctx.save_for_backward(z, weight, mean, invstd)
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        z, weight, mean, invstd = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = (bool(need[0]), bool(weight is not None and need[1]), bool(need[2]))
        gz, gw, gb = batch_norm_backward(g.contiguous(memory_format=torch.channels_last), z, weight, mean, invstd, mask)
        return gz, gw, gb, None


def bn_momentum(bn: nn.BatchNorm2d) -> float:
    """The momentum ``nn.BatchNorm2d`` would use this step, counting the step as it does."""
    momentum = 0.0 if bn.momentum is None else float(bn.momentum)
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average, as nn.BatchNorm2d
            momentum = 1.0 / float(bn.num_batches_tracked)
    return momentum


def bn_train(z: torch.Tensor, bn: nn.BatchNorm2d, weight=None, bias=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training-mode BN of ``z`` with the given affine ``weight``/``bias`` (None: none):
    ``(output, batch mean, 1/σ)``; updates ``bn``'s running statistics as ``nn.BatchNorm2d``
    does (by :func:`batch_norm_train`)."""
    return batch_norm_train(z, weight, bias, bn.running_mean, bn.running_var, bn_momentum(bn), bn.eps)


def batch_norm_module(bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)``; for an ``nn.BatchNorm2d`` in training with running statistics, where
    :func:`batch_norm_train` avoids ATen's false sharing, by :class:`BatchNormFn`."""
    if type(bn) is nn.BatchNorm2d and bn.training and bn.track_running_stats and _groups(x):
        return BatchNormFn.apply(x, bn.weight, bn.bias, bn)
    return bn(x)


__all__ = ["BatchNormFn", "batch_norm_backward", "batch_stats", "batch_norm_module", "batch_norm_train", "bn_momentum", "bn_train"]
