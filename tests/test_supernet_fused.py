"""Fused supernet functions (NodeMix, BnMix, depthwise routes, crops, fused candidate ops,
layouts) compute what the plain modules compute: values, gradients, BN statistics."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.ops import DARTS_PRIMITIVES
from nasforge.spaces.cell_supernet import SearchCell
from nasforge.fused.functions import BnMix, dw_conv_backward
from nasforge.fused.plan import fused_plan
from nasforge.spaces.mixed_op import CandidateOp, EdgeInput


def test_fused_bn_mix_matches_batchnorm_times_weight():
    torch.manual_seed(0)
    for fmt in (torch.contiguous_format, torch.channels_last):
        z0 = torch.randn(6, 5, 7, 7, dtype=torch.float64).contiguous(memory_format=fmt)
        g = torch.randn(6, 5, 7, 7, dtype=torch.float64)
        a0 = torch.randn(6, 5, 7, 7, dtype=torch.float64)
        out = []
        for fused in (False, True):
            bn = nn.BatchNorm2d(5, affine=False).double()
            z = z0.clone().requires_grad_()
            w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
            y = BnMix.apply(z, w, bn) if fused else bn(z) * w
            y.backward(g)
            out.append((y.detach(), z.grad, w.grad, bn.running_mean, bn.running_var, bn.num_batches_tracked))
            # accumulating form: acc + w·BN(z), acc modified in place, its gradient passed through
            a = a0.clone().requires_grad_()
            acc = a * 1.0
            z = z0.clone().requires_grad_()
            w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
            y = BnMix.apply(z, w, bn, acc) if fused else acc + bn(z) * w
            y.backward(g)
            out.append((y.detach(), z.grad, w.grad, a.grad))
        for a, b in zip(out[0], out[2]):
            assert torch.allclose(a, b, atol=1e-12)
        for a, b in zip(out[1], out[3]):
            assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("channels_last,threads", [(False, 1), (True, 1), (True, 2)])
def test_node_mix_equals_term_by_term_sum(channels_last, threads, request):
    """node_mix (statistics-only BN terms, shifts summed once) equals Σ w·BN(z) + w·h + h:
    same output, gradients for every tensor and weight, and BN running statistics."""
    from nasforge.fused.mix import node_mix

    before = torch.get_num_threads()
    request.addfinalizer(lambda: torch.set_num_threads(before))
    torch.set_num_threads(threads)  # 2: the grouped statistics of nasforge.fused.bn (C·8 bytes = 48)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    C = 6
    bns = [nn.BatchNorm2d(C, affine=False).double() for _ in range(3)]
    bns[1].momentum = None  # cumulative average
    bns[2].eps = 1e-3
    zs0 = [(torch.randn(3, C, 5, 5, dtype=torch.float64) * (i + 1) + i).contiguous(memory_format=fmt) for i in range(3)]
    h0 = torch.randn(3, C, 5, 5, dtype=torch.float64).contiguous(memory_format=fmt)
    p0 = torch.randn(3, C, 5, 5, dtype=torch.float64).contiguous(memory_format=fmt)
    g = torch.randn(3, C, 5, 5, dtype=torch.float64)
    results = []
    for fused in (False, True):
        mods = [copy.deepcopy(b) for b in bns]
        zs = [z.clone().requires_grad_() for z in zs0]
        h, p = h0.clone().requires_grad_(), p0.clone().requires_grad_()
        W = torch.tensor([[0.3, -0.2, 0.5], [0.6, 0.1, 0.9]], dtype=torch.float64, requires_grad=True)  # 0.5, 0.9: unused
        ws = W.reshape(-1)[[0, 1, 3, 4]]
        if fused:
            y = node_mix([(zs[0], 0, mods[0]), (h, 4, None), (zs[1], 1, mods[1]), (p, None, None), (zs[2], 3, mods[2])], W)
        else:
            y = sum(w * m(z) for w, m, z in zip(ws, mods, zs)) + ws[3] * h + p
        y.backward(g)
        results.append((y.detach(), [z.grad for z in zs], h.grad, p.grad, [W.grad], [(m.running_mean, m.running_var, m.num_batches_tracked) for m in mods]))
    (ya, gza, gha, gpa, gwa, ra), (yb, gzb, ghb, gpb, gwb, rb) = results
    assert yb.is_contiguous(memory_format=fmt)
    assert torch.allclose(ya, yb, atol=1e-12)
    for a, b in zip(gza + [gha, gpa] + gwa, gzb + [ghb, gpb] + gwb):
        assert torch.allclose(a, b, atol=1e-10)
    for a, b in zip(ra, rb):
        for ta, tb in zip(a, b):
            assert torch.equal(ta, tb) if ta.dtype == torch.long else torch.allclose(ta, tb, atol=1e-12)


@pytest.mark.parametrize("k,stride,size,dilation", [
    (5, 1, 10, 2), (5, 1, 7, 2), (3, 1, 8, 2), (5, 2, 8, 2), (3, 2, 7, 2), (5, 2, 5, 2), (3, 1, 2, 2), (5, 1, 20, 2),
    (5, 1, 8, 1), (5, 1, 7, 1), (5, 2, 8, 1), (3, 1, 6, 1),
    # maps smaller than the kernel: the cropped-kernel route (nasforge.fused.crop)
    (5, 1, 2, 1), (5, 1, 1, 1), (5, 1, 3, 1), (5, 2, 4, 1), (5, 2, 2, 1), (3, 1, 1, 1),
    (5, 1, 2, 2), (5, 1, 4, 2), (3, 1, 1, 2), (5, 2, 4, 2), (5, 2, 3, 2), (5, 1, 1, 2),
])
def test_depthwise_backward_equals_autograd(k, stride, size, dilation):
    """The phase / column-pair / flipped-kernel routes of dw_conv_backward give autograd's gradients."""
    torch.manual_seed(0)
    pad = dilation * (k - 1) // 2
    conv = nn.Conv2d(4, 4, k, stride=stride, padding=pad, dilation=dilation, groups=4, bias=False).double()
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(2, 4, size, size, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
        y = conv(x)
        g = torch.randn_like(y)
        gx, gw = torch.autograd.grad(y, [x, conv.weight], g)
        px, pw = dw_conv_backward(g, x.detach(), conv.weight.detach(), stride, pad, dilation, (True, True))
        assert torch.allclose(gx, px, atol=1e-12) and torch.allclose(gw, pw, atol=1e-12)


@pytest.mark.parametrize("name", ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3", "skip_connect"])
@pytest.mark.parametrize("stride,size", [(1, 8), (2, 8), (1, 7), (2, 5), (1, 2), (2, 4), (1, 1)])
def test_fused_candidate_op_equals_plain_modules(name, stride, size):
    """Same output, input/weight/mixing gradients and BN statistics as the plain modules."""
    torch.manual_seed(0)
    plain = CandidateOp(name, 4, stride, affine=False, pool_bn=True, op_set="darts").double()
    fused = CandidateOp(name, 4, stride, affine=False, pool_bn=True, op_set="darts").double()
    fused.load_state_dict(plain.state_dict())
    assert (fused.plan is None) == (name == "max_pool_3x3" or (name == "skip_connect" and stride == 1))
    if name == "max_pool_3x3":  # the lean plan recomputes the argmax instead of saving it
        fused.plan = fused_plan(fused.body, lean=True)
        assert fused.plan is not None
    for fmt in (torch.contiguous_format, torch.channels_last):
        x0 = torch.randn(3, 4, size, size, dtype=torch.float64).contiguous(memory_format=fmt)
        outs = []
        for op, f in ((plain, False), (fused, True)):
            x = x0.clone().requires_grad_()
            w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
            y = op(EdgeInput(x), w, fused=f)
            g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            grads = torch.autograd.grad(y, [x, w] + list(op.parameters()), g)
            outs.append((y.detach(),) + grads + tuple(op.buffers()))
        for a, b in zip(*outs):
            assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("name,stride", [("sep_conv_5x5", 1), ("dil_conv_3x3", 1), ("skip_connect", 2)])
def test_fused_candidate_op_without_weight_gradients(name, stride):
    """With the op's weights frozen (an α-only pass) the input and mixing gradients are unchanged."""
    torch.manual_seed(0)
    op = CandidateOp(name, 4, stride, affine=False, pool_bn=True, op_set="darts").double()
    x0 = torch.randn(3, 4, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    outs = []
    for frozen in (False, True):
        for p in op.parameters():
            p.requires_grad_(not frozen)
        x = x0.clone().requires_grad_()
        w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        y = op(EdgeInput(x), w, fused=True)
        g = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        outs.append(torch.autograd.grad(y, [x, w], g))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("k,stride,dilation", [(5, 1, 1), (5, 2, 1), (3, 1, 2), (5, 1, 2), (5, 2, 2), (3, 2, 1), (7, 1, 1)])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 9])
def test_cropped_depthwise_conv_equals_full(k, stride, dilation, size):
    """dw_conv on a map smaller than the kernel runs a cropped kernel: same output, and the
    cropped taps (which only meet padding) get exactly zero gradient."""
    from nasforge.fused.crop import crop
    from nasforge.fused.functions import dw_conv

    torch.manual_seed(0)
    pad = dilation * (k - 1) // 2
    x = torch.randn(2, 3, size, size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(3, 1, k, k, dtype=torch.float64)
    full = F.conv2d(x, w, None, stride, pad, dilation, 3)
    out = dw_conv(x, w, stride, pad, dilation)
    assert out.shape == full.shape and torch.allclose(out, full, atol=1e-12)
    c = crop(x.shape, w, stride, pad, dilation)
    if size >= dilation * (k - 1) + 1:
        assert c is None  # every tap reads the input somewhere
    if size <= 2 and stride == 1:
        assert c is not None and c[0].shape[-1] <= 3  # a 2×2 map is read by at most the central 3×3 taps



def test_dense_grad_hands_on_a_dense_gradient():
    """dense_grad is the identity in forward; in backward the channel slice of a cat's
    gradient arrives dense in the input's memory format, with the same values."""
    from nasforge.fused.grad import dense_grad

    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    other = torch.randn(2, 5, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    seen = []
    y = dense_grad(x)
    y.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))
    x.register_hook(lambda g: seen.append(g.is_contiguous(memory_format=torch.channels_last)))
    out = torch.cat([y, other], dim=1)
    assert torch.equal(y, x)
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, [x], g)
    assert torch.equal(gx, g[:, :3])
    assert seen == [False, True]  # the slice arrives strided and leaves dense


def test_cell_after_a_reduction_keeps_its_gradients_channels_last():
    """The preprocessing runs by the fused plans too: FactorizedReduce's gradient stays
    channels-last (autograd's strided-slice backward makes the ReLU's gradient NCHW, and the
    ReLU backward then runs on mixed layouts, ~5x slower), with the plain modules' values,
    gradients and running statistics."""
    from torch.utils._python_dispatch import TorchDispatchMode

    cl = torch.channels_last
    relu_backward_layouts = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.threshold_backward.default:
                relu_backward_layouts.append(tuple(t.is_contiguous(memory_format=cl) for t in args[:2]))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    plain = SearchCell(DARTS_PRIMITIVES, 2, 2, 6, 8, 4, reduction_prev=True).double()
    fused = copy.deepcopy(plain)
    s0 = torch.randn(3, 6, 8, 8, dtype=torch.float64).contiguous(memory_format=cl)
    s1 = torch.randn(3, 8, 4, 4, dtype=torch.float64).contiguous(memory_format=cl)
    w = F.softmax(torch.randn(plain.num_edges, len(DARTS_PRIMITIVES), dtype=torch.float64), -1)
    grads = []
    for cell, on in ((plain, False), (fused, True)):
        a, b = s0.clone().requires_grad_(), s1.clone().requires_grad_()
        out = cell(a, b, weights=w, fused=on)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
        if on:
            with Watch():
                out.backward(g)
        else:
            out.backward(g)
        grads.append((out.detach(), a.grad, b.grad, [p.grad for p in cell.parameters()]))
    assert relu_backward_layouts and all(layouts == (True, True) for layouts in relu_backward_layouts)
    (ya, g0a, g1a, pa), (yb, g0b, g1b, pb) = grads
    assert torch.allclose(ya, yb, atol=1e-12)
    for x, y in zip([g0a, g1a, *pa], [g0b, g1b, *pb]):
        assert torch.allclose(x, y, atol=1e-10)
    for ma, mb in zip(plain.modules(), fused.modules()):
        if isinstance(ma, nn.BatchNorm2d):
            assert torch.allclose(ma.running_mean, mb.running_mean, atol=1e-12)
            assert torch.allclose(ma.running_var, mb.running_var, atol=1e-12)
