"""The final networks' fast training path computes what the plain modules compute.

``Cell.fused`` (default on) runs training through :mod:`nasforge.fused` (shared ReLUs,
memory-saving autograd functions, drop path folded into the node sum) and the networks
are channels-last by default; ``fused=False`` and ``channels_last=False`` are the plain
reference. In float64 the two agree to rounding: outputs, every parameter gradient and
every BN running statistic, with drop path drawing the same masks from the same seed.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from nasforge.arch import load_arch
from nasforge.fused.functions import BnReluDwPw
from nasforge.nets import build_network
from nasforge import zoo

CELL_ARCHS = [n for n in zoo.names() if getattr(load_arch(n), "kind", None) == "cell"]


def _plain(net: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if hasattr(m, "fused"):
            m.fused = False
    return ref


def _train_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 1):
    torch.manual_seed(seed)
    logits, aux = net(x)
    loss = F.cross_entropy(logits, y) + (0.4 * F.cross_entropy(aux, y) if aux is not None else 0.0)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return logits.detach(), grads, {n: b.clone() for n, b in net.named_buffers()}


@pytest.mark.parametrize("name", CELL_ARCHS)
@pytest.mark.parametrize("style,size", [("cifar", 16), ("imagenet", 32), ("cifar", 8)])
def test_fused_training_step_equals_the_plain_modules(name, style, size, monkeypatch):
    """(8×8 CIFAR-style inputs reach 2×2 maps: the cropped-kernel and small-phase routes.
    The cells' preprocessing convs read the previous cells' nodes without a cat.)"""
    import nasforge.nets.cell as cell_module

    calls = []
    real_cat_pw = cell_module.cat_pw
    monkeypatch.setattr(cell_module, "cat_pw", lambda parts, w: calls.append(len(parts)) or real_cat_pw(parts, w))
    arch = load_arch(name)
    torch.manual_seed(0)
    net = build_network(
        arch, num_classes=5, in_channels=3, input_size=size, C=8, layers=5, auxiliary=True, drop_path_prob=0.3, style=style
    ).double().train()
    ref = _plain(net)
    ref.channels_last = False  # the plain reference also runs NCHW
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    out, grads, bufs = _train_step(net, x, y)
    out_ref, grads_ref, bufs_ref = _train_step(ref, x, y)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    assert grads.keys() == grads_ref.keys() and grads
    for n in grads:
        torch.testing.assert_close(grads[n], grads_ref[n], rtol=1e-9, atol=1e-12, msg=n)
    for n in bufs:
        torch.testing.assert_close(bufs[n], bufs_ref[n], rtol=1e-12, atol=1e-12, msg=n)
    assert calls and all(n == len(arch.normal.concat) or n == len(arch.reduce.concat) for n in calls)


def test_layout_changes_no_state_dict_key_shape_or_value():
    arch = load_arch("DARTS_V2")
    torch.manual_seed(0)
    nhwc = build_network(arch, num_classes=10, in_channels=3, input_size=16, C=8, layers=5, auxiliary=True)
    torch.manual_seed(0)
    nchw = build_network(arch, num_classes=10, in_channels=3, input_size=16, C=8, layers=5, auxiliary=True, channels_last=False)
    a, b = nhwc.state_dict(), nchw.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k
    assert any(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in a.values())
    # a checkpoint written by an NCHW network (every earlier release) loads and evaluates the same
    nchw.train()
    x = torch.randn(8, 3, 16, 16)
    _train_step(nchw, x, torch.randint(0, 10, (8,)))  # moves the BN statistics away from their start
    nhwc.load_state_dict(nchw.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(nhwc.eval()(x)[0], nchw.eval()(x)[0], rtol=1e-5, atol=1e-5)


def test_bn_relu_dwpw_with_affine_bn_matches_finite_differences():
    torch.manual_seed(0)
    C = 3
    bn = torch.nn.BatchNorm2d(C).double()
    z = torch.randn(2, C, 6, 6, dtype=torch.float64, requires_grad=True)
    w_dw = torch.randn(C, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    w_pw = torch.randn(4, C, 1, 1, dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(C, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(C, dtype=torch.float64, requires_grad=True)

    def f(z, w_dw, w_pw, gamma, beta):
        return BnReluDwPw.apply(z, w_dw, w_pw, gamma, beta, bn, 1, 2, 2)

    assert torch.autograd.gradcheck(f, (z, w_dw, w_pw, gamma, beta), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("stages,stride,dilation,affine", [(2, 1, 1, True), (2, 2, 1, True), (1, 1, 2, True), (1, 2, 2, True), (2, 1, 1, False)])
def test_dwpw_bn_chain_matches_finite_differences(stages, stride, dilation, affine):
    from nasforge.fused.chain import DwPwBnChain

    torch.manual_seed(0)
    C, k = 3, 3
    pad = dilation * (k - 1) // 2
    bns = tuple(torch.nn.BatchNorm2d(C, affine=affine).double() for _ in range(stages))
    conf = tuple(((stride if i == 0 else 1), pad, dilation) for i in range(stages))
    weights = []
    for bn in bns:
        weights += [torch.randn(C, 1, k, k, dtype=torch.float64, requires_grad=True), torch.randn(C, C, 1, 1, dtype=torch.float64, requires_grad=True)]
        weights += [bn.weight, bn.bias] if affine else [None, None]
    x = torch.randn(2, C, 7, 7, dtype=torch.float64, requires_grad=True)
    inputs = [x] + [w for w in weights if w is not None]

    def f(*ts):
        it = iter(ts[1:])
        ws = [next(it) if w is not None else None for w in weights]
        return DwPwBnChain.apply(ts[0], conf, bns, *ws)

    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-6, atol=1e-6)


def test_evaluation_runs_a_bn_folded_copy_that_scores_the_same():
    from nasforge.nets.inference import fold_batchnorm

    torch.manual_seed(0)
    net = build_network(load_arch("DARTS_V2"), num_classes=10, in_channels=3, input_size=16, C=8, layers=5, auxiliary=True)
    x = torch.randn(16, 3, 16, 16)
    for _ in range(3):  # training steps move the BN statistics and weights away from their start
        _train_step(net, x, torch.randint(0, 10, (16,)))
    net.eval()
    folded = fold_batchnorm(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < n_bn / 4  # most BNs folded away
    with torch.inference_mode():
        torch.testing.assert_close(folded(x)[0], net(x)[0], rtol=1e-4, atol=1e-4)
    assert net.state_dict().keys() == build_network(load_arch("DARTS_V2"), num_classes=10, in_channels=3, input_size=16, C=8, layers=5, auxiliary=True).state_dict().keys()


def test_macro_and_block_networks_fast_path_equals_the_plain_modules():
    from nasforge.nets.blocks import build_block_network
    from nasforge.nets.macro import build_macro_network

    macro = next(n for n in zoo.names() if getattr(load_arch(n), "kind", None) == "macro")
    from nasforge.arch import arch_from_dict

    rows = [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 1, 0], [3, "conv", 1, 0, 0], [4, "add", 0, 2, 3], [5, "terminal", 0, 0, 0]]
    block = arch_from_dict({"kind": "block", "version": 1, "rows": rows})
    torch.manual_seed(0)
    nets = [
        build_macro_network(load_arch(macro), num_classes=5, in_channels=3, input_size=16, C=8).double(),
        build_block_network(block, num_classes=5, in_channels=3, C=8, blocks_per_stage=1).double(),
    ]
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    for net in nets:
        ref = _plain(net)
        ref.channels_last = False
        if isinstance(net(x), torch.Tensor):  # block networks return logits only
            wrap = lambda m: (lambda inp: (m(inp), None))  # noqa: E731
            fwd, fwd_ref = wrap(net), wrap(ref)
        else:
            fwd, fwd_ref = net, ref
        outs = []
        for f, m in ((fwd, net), (fwd_ref, ref)):
            m.zero_grad()
            torch.manual_seed(1)
            logits, _ = f(x)
            F.cross_entropy(logits, y).backward()
            outs.append((logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
        torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-12)
        for n in outs[0][1]:
            torch.testing.assert_close(outs[0][1][n], outs[1][1][n], rtol=1e-9, atol=1e-12, msg=n)
