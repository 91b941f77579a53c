"""A supernet node's weighted sum in one pass per term (DARTS Sec. 2.2, eq. 1–2).

A node of a cell supernet is ``Σ_edges Σ_ops w_k · op_k(x)``, and most candidate ops end
in a BN without affine (DARTS ``model_search.py``), so most terms are ``w · BN_train(z)``.
Term by term, each costs a BN forward (statistics, then a pass writing x̂) and a pass
adding ``w · x̂`` to the sum. :class:`NodeMix` takes all terms of a node at once:

- each BN term needs only its statistics (:func:`~nasforge.fused.bn.batch_stats`, one
  read of z less than a BN forward): ``w · x̂ = s·z + b`` per channel with
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

#: one term: (tensor, weight or None, BN without affine or None): ``w·bn(h)``, ``w·h`` or ``h``
Term = tuple[torch.Tensor, "torch.Tensor | None", "nn.BatchNorm2d | None"]


def _channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


def _format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


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

    ``layout`` gives per term ``(bn or None, has weight)``; ``tensors`` are, per term,
    its tensor followed by its weight (a scalar tensor) when it has one.
    """

    @staticmethod
    def forward(ctx, layout, *tensors):  # type: ignore[override]
        hs, ws, pos = [], [], 0
        for _bn, has_w in layout:
            hs.append(tensors[pos])
            ws.append(tensors[pos + 1] if has_w else None)
            pos += 2 if has_w else 1
        bn_terms = [i for i, (bn, _) in enumerate(layout) if bn is not None]
        means, variances = [], []
        for i in bn_terms:
            bn = layout[i][0]
            m, v = batch_stats(hs[i], bn.running_mean, bn.running_var, bn_momentum(bn))
            means.append(m)
            variances.append(v)
        mean, var = torch.stack(means), torch.stack(variances)  # (terms, C)
        eps = torch.tensor([layout[i][0].eps for i in bn_terms], dtype=var.dtype, device=var.device)
        invstd = (var + eps[:, None]).rsqrt_()
        wb = torch.stack([ws[i].reshape(()) for i in bn_terms]).to(var.dtype)[:, None].expand_as(invstd).contiguous()
        scale = invstd * wb
        shift = (scale * mean).sum(0).neg_()
        first = bn_terms[0]
        out = torch.addcmul(_channel(shift), hs[first], _channel(scale[0]))
        for r, i in enumerate(bn_terms[1:], 1):
            out.addcmul_(hs[i], _channel(scale[r]))
        for i, (bn, _) in enumerate(layout):
            if bn is None:
                out.add_(hs[i]) if ws[i] is None else out.addcmul_(hs[i], ws[i])
        ctx.layout = layout
        ctx.bn_terms = bn_terms
        ctx.fmt = _format(out)
        # plain terms' tensors are saved only where their weight needs a gradient
        keep = [hs[i] if (layout[i][0] is not None or ws[i] is not None) else None for i in range(len(hs))]
        ctx.save_for_backward(mean, invstd, wb, *keep, *ws)
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        layout, bn_terms = ctx.layout, ctx.bn_terms
        n = len(layout)
        saved = ctx.saved_tensors
        mean, invstd, wb = saved[:3]
        hs, ws = saved[3 : 3 + n], saved[3 + n :]
        g = g.contiguous(memory_format=ctx.fmt)
        rank = {i: r for r, i in enumerate(bn_terms)}
        grads: list[torch.Tensor | None] = [None]
        pos = 1
        for i, (bn, has_w) in enumerate(layout):
            need_h = ctx.needs_input_grad[pos]
            need_w = has_w and ctx.needs_input_grad[pos + 1]
            gh = gw = None
            if bn is not None:
                r = rank[i]
                gh, gsum, _ = batch_norm_backward(g, hs[i], wb[r], mean[r], invstd[r], (bool(need_h), bool(need_w), False))
                if need_w:
                    gw = _bn_weight_grad(gsum, ws[i])
            elif has_w:
                gh = g * ws[i] if need_h else None
                gw = _dot(g, hs[i]).reshape(ws[i].shape).to(ws[i].dtype) if need_w else None
            else:
                gh = g if need_h else None
            grads.append(gh)
            if has_w:
                grads.append(gw)
            pos += 2 if has_w else 1
        return tuple(grads)


def _bn_weight_grad(gsum: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """∂w of ``w·x̂`` from BN backward's per-channel ``Σ g·x̂`` (the γ gradient)."""
    return gsum.sum().reshape(w.shape).to(w.dtype)


def node_mix(terms: Sequence[Term]) -> torch.Tensor:
    """The sum of ``terms`` (see :data:`Term`); at least one must have a BN, all BNs
    without affine and in training mode."""
    layout = tuple((bn, w is not None) for _h, w, bn in terms)
    flat: list[torch.Tensor] = []
    for h, w, bn in terms:
        if bn is not None and w is None:
            raise ValueError("node_mix: a BN term needs its weight")
        flat.append(h)
        if w is not None:
            flat.append(w)
    return NodeMix.apply(layout, *flat)


__all__ = ["NodeMix", "Term", "node_mix"]
