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
