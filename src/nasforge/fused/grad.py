"""Gradients handed on in the layout their consumers read.

A cell's output is the concatenation of its nodes along channels, so in backward each
node gets a channel slice of the output's gradient: in channels-last a strided view, which
every op that produced the node (a dozen in a supernet cell) would copy before reading it.
:func:`dense_grad` puts the copy on the node, once.
"""

from __future__ import annotations

import torch


def _format_of(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class _DenseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.fmt = _format_of(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g.contiguous(memory_format=ctx.fmt)


def dense_grad(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself in forward (a view); in backward its gradient made contiguous in ``x``'s
    memory format (no copy when it already is)."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x
    return _DenseGrad.apply(x)


__all__ = ["dense_grad"]
