"""The grouped channels-last batch norm (``nasforge.fused.bn``) computes what ATen's does.

The grouped route runs only with more than one thread, so these tests set two threads
(correctness only: nothing here is timed).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from nasforge.arch import load_arch
from nasforge.fused.bn import BatchNormFn, _groups, batch_norm_backward, batch_norm_train
from nasforge.nets import build_network

aten = torch.ops.aten


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _cl(*shape, dtype=torch.float64, scale=2.0, shift=0.5):
    return (torch.randn(*shape, dtype=dtype) * scale + shift).contiguous(memory_format=torch.channels_last)


def test_the_grouped_route_is_taken_only_where_atens_kernels_share_cache_lines(two_threads):
    assert _groups(_cl(4, 36, 8, 8, dtype=torch.float32)) == 4  # 144 bytes a row
    assert _groups(_cl(4, 72, 8, 8, dtype=torch.float32)) == 2
    assert _groups(_cl(4, 6, 8, 8)) == 4  # float64: 48 bytes
    for C in (16, 32, 64, 144):
        assert _groups(_cl(4, C, 8, 8, dtype=torch.float32)) == 0
    assert _groups(torch.randn(4, 36, 8, 8)) == 0  # NCHW
    assert _groups(_cl(1, 36, 1, 1, dtype=torch.float32)) == 0  # fewer pixels than groups
    assert _groups(_cl(3, 6, 5, 5)) == 0  # 75 pixels: not 4 whole groups
    torch.set_num_threads(1)
    assert _groups(_cl(4, 36, 8, 8, dtype=torch.float32)) == 0


@pytest.mark.parametrize("N,C,H", [(4, 36, 8), (4, 6, 5), (2, 20, 4), (4, 12, 6)])
@pytest.mark.parametrize("affine", [True, False])
def test_forward_and_backward_equal_atens(two_threads, N, C, H, affine):
    torch.manual_seed(0)
    z = _cl(N, C, H, H)
    assert _groups(z) > 1
    w = torch.rand(C, dtype=torch.float64) + 0.5 if affine else None
    b = torch.randn(C, dtype=torch.float64) if affine else None
    rm, rv = torch.randn(C, dtype=torch.float64), torch.rand(C, dtype=torch.float64) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    out, mean, invstd = batch_norm_train(z, w, b, rm, rv, 0.1, 1e-5)
    ref, rmean, rinvstd = torch.native_batch_norm(z, w, b, rm2, rv2, True, 0.1, 1e-5)
    for a, r in [(out, ref), (mean, rmean), (invstd, rinvstd), (rm, rm2), (rv, rv2)]:
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    assert out.is_contiguous(memory_format=torch.channels_last)
    g = _cl(N, C, H, H, scale=1.0, shift=0.0)
    for mask in [(True, affine, True), (True, False, False), (False, affine, True)]:
        got = batch_norm_backward(g, z, w, mean, invstd, mask)
        want = aten.native_batch_norm_backward(g, z, w, None, None, rmean, rinvstd, True, 1e-5, list(mask))
        for a, r, m in zip(got, want, mask):
            if m:
                torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-10)
            else:
                assert a is None
        if mask[0]:
            assert got[0].is_contiguous(memory_format=torch.channels_last)


def test_batch_norm_fn_is_the_module_through_autograd(two_threads):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(6).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    ref = copy.deepcopy(bn)
    x = _cl(3, 6, 5, 5).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    g = _cl(3, 6, 5, 5, scale=1.0, shift=0.0)
    BatchNormFn.apply(x, bn.weight, bn.bias, bn).backward(g)
    ref(x_ref).backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
    for (n, p), q in zip(bn.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10, msg=n)
    for (n, a), r in zip(bn.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12, msg=n)


def test_bn_fn_matches_finite_differences(two_threads):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(6).double().train()
    x = _cl(2, 6, 3, 3).requires_grad_()
    w = (torch.rand(6, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: BatchNormFn.apply(x, w, b, bn), (x, w, b), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("style,size", [("cifar", 8), ("imagenet", 32)])
def test_fused_network_at_two_threads_equals_the_plain_modules(two_threads, style, size):
    """C = 6 in float64: every BN of the network (stem 18, cells 6, 12, 24) but the last
    stage's takes the grouped route."""
    torch.manual_seed(0)
    net = build_network(
        load_arch("DARTS_V2"), num_classes=5, in_channels=3, input_size=size, C=6, layers=5, auxiliary=True, style=style
    ).double().train()
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if hasattr(m, "fused"):
            m.fused = False
    ref.channels_last = False
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    results = []
    for model in (net, ref):
        logits, aux = model(x)
        (F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)).backward()
        results.append((logits.detach(), {n: p.grad for n, p in model.named_parameters()}, dict(model.named_buffers())))
    (out, grads, bufs), (out_ref, grads_ref, bufs_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-10)
    for n in grads_ref:
        torch.testing.assert_close(grads[n], grads_ref[n], rtol=1e-7, atol=1e-9, msg=n)
    for n in bufs_ref:
        torch.testing.assert_close(bufs[n], bufs_ref[n], rtol=1e-9, atol=1e-10, msg=n)
