"""One autograd function for a whole separable or dilated conv of a final network.

A final network's ``sep_conv`` (after its leading ReLU, which the cell shares) is
``[depthwise → 1×1 → BN] → ReLU → [depthwise → 1×1 → BN]`` and its ``dil_conv`` one such
stage; their BNs are affine. Run as modules, autograd keeps every stage's 1×1 output (the
BN input), the ReLU output and the depthwise output. :class:`DwPwBnChain` keeps only its
input (the node state's shared ReLU, which is alive anyway) and the BN batch statistics,
and recomputes the stages in backward: one depthwise and one 1×1 forward per stage, and
a per-channel affine map instead of the BN forward. The values, the gradients and the
BN running-statistic updates are those of the modules.

The depthwise backward takes the faster CPU routes of
:func:`nasforge.fused.functions.dw_conv_backward`. No double backward.
"""

from __future__ import annotations

import torch

from nasforge.fused.bn import batch_norm_backward, bn_train
from nasforge.fused.functions import dw_conv, dw_conv_backward, memory_format_of
from nasforge.fused.pointwise import _pw_backward, pw_conv


def _bn_apply(z: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor, weight, bias) -> torch.Tensor:
    """``(z − mean)·invstd·γ + β`` per channel, in one pass (the BN output, recomputed)."""
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    return torch.addcmul(shift.view(1, -1, 1, 1), z, scale.view(1, -1, 1, 1))


class DwPwBnChain(torch.autograd.Function):
    """``stage_k(relu(… relu(stage_1(x))))`` with ``stage = BN(conv1x1(dwconv(·)))``.

    ``apply(x, conf, bns, *weights)``: ``conf`` holds ``(stride, padding, dilation)`` per
    stage, ``bns`` the stages' ``BatchNorm2d`` modules (training mode, running statistics),
    ``weights`` per stage ``(w_dw, w_pw, γ, β)`` (``γ``, ``β`` None without affine).
    Saves ``x`` and the batch statistics only.
    """

    @staticmethod
    def forward(ctx, x, conf, bns, *weights):  # type: ignore[override]
        stats: list[torch.Tensor] = []
        h = x
        for i, (stride, padding, dilation) in enumerate(conf):
            w_dw, w_pw, gamma, beta = weights[4 * i : 4 * i + 4]
            if i:
                h = h.relu_()  # the previous BN's output: a fresh tensor nobody else holds
            z = pw_conv(dw_conv(h, w_dw, stride, padding, dilation), w_pw)
            h, mean, invstd = bn_train(z, bns[i], gamma, beta)
            del z
            stats += [mean, invstd]
        ctx.conf = conf
        ctx.save_for_backward(x, *stats, *weights)
        return h

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        conf = ctx.conf
        k = len(conf)
        x, *rest = ctx.saved_tensors
        stats, weights = rest[: 2 * k], rest[2 * k :]
        need = ctx.needs_input_grad
        fmt = memory_format_of(x)
        # recompute every stage's depthwise input y, depthwise output t and 1×1 output z
        ys, ts, zs = [x], [], []
        for i, (stride, padding, dilation) in enumerate(conf):
            w_dw, w_pw, gamma, beta = weights[4 * i : 4 * i + 4]
            if i:
                ys.append(_bn_apply(zs[-1], stats[2 * i - 2], stats[2 * i - 1], *weights[4 * i - 2 : 4 * i]).relu_())
            ts.append(dw_conv(ys[-1], w_dw, stride, padding, dilation))
            zs.append(pw_conv(ts[-1], w_pw))
        grads: list[torch.Tensor | None] = [None] * (4 * k)
        gx = None
        g = g.contiguous(memory_format=fmt)
        for i in reversed(range(k)):
            w_dw, w_pw, gamma, beta = weights[4 * i : 4 * i + 4]
            base = 3 + 4 * i  # index of w_dw among forward's inputs
            affine = gamma is not None
            mask = [True, bool(affine and need[base + 2]), bool(affine and need[base + 3])]
            gz, grads[4 * i + 2], grads[4 * i + 3] = batch_norm_backward(g, zs[i], gamma, stats[2 * i], stats[2 * i + 1], mask)
            zs[i] = None
            gt, grads[4 * i + 1] = _pw_backward(gz, ts[i], w_pw, (True, bool(need[base + 1])))
            del gz
            ts[i] = None
            need_in = bool(i > 0 or need[0])
            gy, grads[4 * i] = dw_conv_backward(gt, ys[i], w_dw, *conf[i], (need_in, bool(need[base])))
            del gt
            if i:
                g = torch.ops.aten.threshold_backward(gy, ys[i], 0.0).contiguous(memory_format=fmt)  # relu'
                ys[i] = None
            else:
                gx = gy
            del gy
        return (gx, None, None, *grads)
