"""A supernet node's weighted sum in one pass per term (DARTS Sec. 2.2, eq. 1–2).

A node of a cell supernet is ``Σ_edges Σ_ops w_k · op_k(x)``, and most candidate ops end
in a BN without affine (DARTS ``model_search.py``), so most terms are ``w · BN_train(z)``.
Term by term, each costs a BN forward (statistics, then a pass writing x̂) and a pass
adding ``w · x̂`` to the sum. :class:`NodeMix` takes all terms of a node at once:

- each BN term needs only its statistics (:func:`~nasforge.fused.bn.batch_stats`: no
  pass writing x̂): ``w · x̂ = s·z + b`` per channel with
  ``s = w/σ`` and ``b = −s·μ``;
- the shifts of all terms are summed per channel and added with the first term, so the
  node costs one pass per term (``out += s·z``) and no separate normalise pass;
- the per-channel vector arithmetic of all terms runs batched, once per node.

It saves each BN term's input z (a conv output freed otherwise; a pooling shared by
every edge reading its node) where term-by-term fusion saved a separate x̂ per term.
Backward: ``∂z = w/σ · (g − mean(g) − x̂·mean(g·x̂))`` and ``∂w = Σ g·x̂`` from one
BN-backward call per term, x̂ recomputed inside it from z and the saved statistics.

The running statistics of each BN are updated exactly as a training-mode
``nn.BatchNorm2d`` updates them. Values equal the term-by-term sum up to float rounding
(another summation order). No double backward.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from nasforge.fused.bn import batch_norm_backward, batch_stats, bn_momentum
from nasforge.fused.functions import memory_format_of

#: one term: (tensor, index of its weight in the flattened weights or None, BN without
#: affine or None): ``w·bn(h)``, ``w·h`` or ``h``
Term = tuple[torch.Tensor, "int | None", "nn.BatchNorm2d | None"]


_INDEX_CACHE: dict[tuple, torch.Tensor] = {}


def _const(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.tensor(values)`` made once per (values, dtype, device): a node's layout repeats
    every step, and a fresh tensor would be a host-to-device copy per node on CUDA."""
    key = (values, dtype, device)
    out = _INDEX_CACHE.get(key)
    if out is None:
        if len(_INDEX_CACHE) > 1024:
            _INDEX_CACHE.clear()
        out = _INDEX_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a·b).sum()`` in one pass when both are dense in the same layout."""
    if a.stride() == b.stride() and a.shape == b.shape:
        if a.is_contiguous():
            return torch.dot(a.reshape(-1), b.reshape(-1))
        if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last):
            return torch.dot(a.permute(0, 2, 3, 1).reshape(-1), b.permute(0, 2, 3, 1).reshape(-1))
    return (a * b).sum()


class NodeMix(torch.autograd.Function):
    """``Σ_i w_i·BN_i(z_i) + Σ_j w_j·h_j + Σ_l h_l`` (BN without affine, training mode).

    ``apply(layout, weights, *tensors)``: ``layout`` gives per term ``(bn or None, index
    or None)``, the index of its weight in ``weights.reshape(-1)`` (the node's rows of the
    architecture weights, so that no per-op indexing enters the autograd graph);
    ``tensors`` are the terms' tensors.
    """

    @staticmethod
    def forward(ctx, layout, weights, *hs):  # type: ignore[override]
        wflat = weights.reshape(-1)
        bn_terms = [i for i, (bn, _) in enumerate(layout) if bn is not None]
        means, variances = [], []
        for i in bn_terms:
            bn = layout[i][0]
            m, v = batch_stats(hs[i], bn.running_mean, bn.running_var, bn_momentum(bn))
            means.append(m)
            variances.append(v)
        mean, var = torch.stack(means), torch.stack(variances)  # (terms, C)
        t, c = mean.shape
        eps = _const(tuple(layout[i][0].eps for i in bn_terms), var.dtype, var.device)
        invstd = (var + eps[:, None]).rsqrt_()
        index = _const(tuple(layout[i][1] for i in bn_terms), torch.long, wflat.device)
        wb = wflat.index_select(0, index).to(var.dtype)[:, None].expand(t, c).contiguous()
        scale = invstd * wb
        shift = (scale * mean).sum(0).neg_()
        scales = scale.view(t, 1, c, 1, 1).unbind(0)
        out = torch.addcmul(shift.view(1, c, 1, 1), hs[bn_terms[0]], scales[0])
        for r, i in enumerate(bn_terms[1:], 1):
            out.addcmul_(hs[i], scales[r])
        for i, (bn, idx) in enumerate(layout):
            if bn is None:  # the weight stays a tensor: no host sync
                out.add_(hs[i]) if idx is None else out.addcmul_(hs[i], wflat[idx])
        ctx.layout, ctx.bn_terms = layout, bn_terms
        ctx.fmt = memory_format_of(out)
        # plain terms' tensors are saved only where their weight needs a gradient
        keep = [h if (layout[i][0] is not None or layout[i][1] is not None) else None for i, h in enumerate(hs)]
        ctx.save_for_backward(weights, mean, invstd, wb, *keep)
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        layout, bn_terms = ctx.layout, ctx.bn_terms
        weights, mean, invstd, wb, *hs = ctx.saved_tensors
        wflat = weights.reshape(-1)
        g = g.contiguous(memory_format=ctx.fmt)
        need_w = ctx.needs_input_grad[1]
        means, invstds, wbs = mean.unbind(0), invstd.unbind(0), wb.unbind(0)
        grads: list[torch.Tensor | None] = []
        gw_index: list[int] = []
        gw_values: list[torch.Tensor] = []
        r = 0
        for i, (bn, idx) in enumerate(layout):
            need_h = ctx.needs_input_grad[2 + i]
            gh = None
            if bn is not None:
                gh, gsum, _ = batch_norm_backward(g, hs[i], wbs[r], means[r], invstds[r], (bool(need_h), bool(need_w), False))
                r += 1
                if need_w:
                    gw_index.append(idx)
                    gw_values.append(gsum.sum())  # Σ g·x̂ over all channels
            elif idx is not None:
                gh = g * wflat[idx] if need_h else None
                if need_w:
                    gw_index.append(idx)
                    gw_values.append(_dot(g, hs[i]))
            else:
                gh = g if need_h else None
            grads.append(gh)
        gweights = None
        if need_w:
            gweights = weights.new_zeros(weights.shape).view(-1)
            gweights.index_copy_(0, _const(tuple(gw_index), torch.long, gweights.device), torch.stack(gw_values).to(gweights.dtype))
            gweights = gweights.view(weights.shape)
        return (None, gweights, *grads)


def node_mix(terms: Sequence[Term], weights: torch.Tensor) -> torch.Tensor:
    """The sum of ``terms`` (see :data:`Term`), their weights read from ``weights``; at
    least one term must have a BN (without affine, in training mode), and every BN term a
    weight."""
    layout = tuple((bn, idx) for _h, idx, bn in terms)
    if any(bn is not None and idx is None for bn, idx in layout):
        raise ValueError("node_mix: a BN term needs its weight")
    return NodeMix.apply(layout, weights, *[h for h, _idx, _bn in terms])


__all__ = ["NodeMix", "Term", "node_mix"]
