"""The fused ops' 1×1 conv: a matrix product on small channels-last maps, the conv elsewhere;
the same values and gradients either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasforge.fused import pointwise
from nasforge.fused.pointwise import _pw_backward, pw_conv


@pytest.mark.parametrize("size", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pw_conv_and_its_backward_equal_the_conv(size, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    t = torch.randn(3, 5, size, size, dtype=torch.float64).contiguous(memory_format=fmt)
    w = torch.randn(7, 5, 1, 1, dtype=torch.float64).contiguous(memory_format=fmt)
    g = torch.randn(3, 7, size, size, dtype=torch.float64).contiguous(memory_format=fmt)
    assert (pointwise._rows(t, 7) is not None) == ((channels_last or size == 1) and size * size <= pointwise.MM_MAX_PIXELS)
    out = pw_conv(t, w)
    torch.testing.assert_close(out, F.conv2d(t, w), rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=fmt)
    tt, ww = t.clone().requires_grad_(), w.clone().requires_grad_()
    F.conv2d(tt, ww).backward(g)
    for mask in [(True, True), (True, False)]:
        gt, gw = _pw_backward(g, t, w, mask)
        torch.testing.assert_close(gt, tt.grad, rtol=1e-12, atol=1e-12)
        assert gt.shape == t.shape and gt.is_contiguous(memory_format=fmt)
        if mask[1]:
            torch.testing.assert_close(gw, ww.grad, rtol=1e-12, atol=1e-12)
        else:
            assert gw is None


def test_large_products_stay_convs():
    t = torch.randn(64, 64, 8, 8).contiguous(memory_format=torch.channels_last)  # the 8×8 cells of a 32×32 search
    assert pointwise._rows(t, 64) is None
    assert pointwise._rows(t[:, :16].contiguous(memory_format=torch.channels_last), 16) is not None


def test_cat_pw_equals_the_conv_of_the_concatenation():
    """A cell's nodes read by the next cell's 1×1 conv block by block, never concatenated:
    same output and gradients (dense, per block) as conv(cat(blocks))."""
    from nasforge.fused.pointwise import CatPwFn, cat_pw

    torch.manual_seed(0)
    cl = torch.channels_last
    parts0 = [torch.randn(2, c, 5, 5, dtype=torch.float64).contiguous(memory_format=cl) for c in (3, 4, 3)]
    w0 = torch.randn(6, 10, 1, 1, dtype=torch.float64)
    g = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    results = []
    for fused in (False, True):
        parts = [p.clone().requires_grad_() for p in parts0]
        w = w0.clone().requires_grad_()
        y = cat_pw(parts, w) if fused else F.conv2d(torch.cat(parts, 1), w)
        y.backward(g)
        results.append([y.detach(), w.grad] + [p.grad for p in parts])
        if fused:
            assert y.is_contiguous(memory_format=cl) and all(p.grad.is_contiguous(memory_format=cl) for p in parts)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    small = [p[:1, :, :2, :2].contiguous(memory_format=cl).requires_grad_() for p in parts0]
    assert torch.autograd.gradcheck(lambda w, *ps: CatPwFn.apply(w, *ps), (w0.clone().requires_grad_(), *small))
    assert cat_pw([parts0[0].contiguous(), parts0[1]], w0[:, :7]) is None  # not channels-last: build the cat
