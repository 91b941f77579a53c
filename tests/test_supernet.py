"""Cell supernet: the optimised mixed op computes DARTS' MixedOp exactly; sparse choices; recompute."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import ArchError
from nasforge.ops import DARTS_PRIMITIVES, ENAS_MICRO_PRIMITIVES, NB201_PRIMITIVES, make_op
from nasforge.spaces.cell_supernet import CellSupernet, SearchCell, cell_edges
from nasforge.fused.functions import BnMix, dw_conv_backward
from nasforge.fused.plan import fused_plan
from nasforge.spaces.mixed_op import CandidateOp, EdgeInput, MixedOp
from nasforge.spaces.nb201_supernet import NB201Supernet


def _tiny(**kw) -> CellSupernet:
    torch.manual_seed(0)
    args = dict(num_classes=5, in_channels=3, C=4, layers=3, nodes=2)
    args.update(kw)
    return CellSupernet(**args).double()


def _alphas(net, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {t: F.softmax(torch.randn(net.num_edges, net.num_ops, generator=g, dtype=torch.float64), -1).requires_grad_() for t in net.cell_types}


def _grads(net, weights, x, y, **fw):
    net.zero_grad()
    for w in weights.values():
        w.grad = None
    loss = F.cross_entropy(net(x, weights=weights, **fw), y)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()}, {t: w.grad.clone() for t, w in weights.items()}


class ReferenceMixedOp(nn.Module):
    """DARTS ``MixedOp`` as written in the paper: Σ_k w_k op_k(x), every op computed."""

    def __init__(self, C, stride):
        super().__init__()
        self.ops = nn.ModuleList()
        for p in DARTS_PRIMITIVES:
            op = make_op(p, C, C, stride, affine=False)
            if "pool" in p:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self.ops.append(op)

    def forward(self, x, w):
        return sum(wk * op(x) for wk, op in zip(w, self.ops))


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_equals_reference_darts_mixed_op(stride):
    torch.manual_seed(0)
    ref = ReferenceMixedOp(4, stride).double()
    mine = MixedOp(DARTS_PRIMITIVES, 4, stride).double()
    # same weights: copy parameters op by op (the structure differs only by cut-off ReLU/BN)
    for r, m in zip(ref.ops, mine.ops):
        rp = [p for p in r.parameters()]
        mp = [p for p in m.parameters()]
        assert len(rp) == len(mp)
        with torch.no_grad():
            for a, b in zip(rp, mp):
                b.copy_(a)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    w = F.softmax(torch.randn(8, dtype=torch.float64), 0)
    x1, w1 = x.clone().requires_grad_(), w.clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), w.clone().requires_grad_()
    y1 = ref(x1, w1)
    y2, _ = mine(EdgeInput(x2), w2, list(range(8)))
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    assert torch.allclose(y1, y2, atol=1e-10)
    assert torch.allclose(x1.grad, x2.grad, atol=1e-10)
    assert torch.allclose(w1.grad, w2.grad, atol=1e-10)


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


@pytest.mark.parametrize("channels_last,fused", [(False, False), (True, True), (False, True)])
def test_supernet_options_compute_the_same_function(channels_last, fused):
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    base = _tiny(channels_last=False, fused=False)
    other = _tiny(channels_last=channels_last, fused=fused)
    other.load_state_dict(base.state_dict())
    wa, wb = _alphas(base), _alphas(base)
    la, ga, aa = _grads(base, wa, x, y)
    lb, gb, ab = _grads(other, wb, x, y)
    assert la == pytest.approx(lb, abs=1e-10)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-9), n
    for t in aa:
        assert torch.allclose(aa[t], ab[t], atol=1e-9)


def test_checkpoint_cells_same_gradients_and_bn_statistics():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    a, b = _tiny(), _tiny(checkpoint_cells=True)
    b.load_state_dict(a.state_dict())
    la, ga, aa = _grads(a, _alphas(a), x, y)
    lb, gb, ab = _grads(b, _alphas(b), x, y)
    assert la == pytest.approx(lb, abs=1e-10)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-9), n
    for t in aa:
        assert torch.allclose(aa[t], ab[t], atol=1e-9)
    for (n, ba), bb in zip(a.named_buffers(), b.buffers()):
        if "running" in n:
            assert torch.allclose(ba, bb, atol=1e-12), n  # updated once, not twice


def test_zero_weight_ops_and_none_are_not_computed():
    net = _tiny()
    calls = {"n": 0}
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            m.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    w = {t: torch.zeros(net.num_edges, net.num_ops, dtype=torch.float64) for t in net.cell_types}
    for t in w:
        w[t][:, DARTS_PRIMITIVES.index("skip_connect")] = 1.0
    net(torch.randn(2, 3, 8, 8, dtype=torch.float64), weights=w)
    assert calls["n"] == 0  # no separable/dilated conv ran


def test_sparse_choice_equals_one_hot_dense_weights():
    net = _tiny().eval()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    ops = {t: torch.randint(0, net.num_ops, (net.num_edges,), generator=g) for t in net.cell_types}
    dense = {t: F.one_hot(o, net.num_ops).double() for t, o in ops.items()}
    choice = {t: [int(k) for k in o] for t, o in ops.items()}
    assert torch.allclose(net(x, weights=dense), net(x, choice=choice), atol=1e-10)
    names = {t: [DARTS_PRIMITIVES[k] for k in c] for t, c in choice.items()}
    assert torch.allclose(net(x, choice=names), net(x, choice=choice), atol=1e-10)


def test_enas_micro_sparse_forward_two_inputs_per_node_and_loose_ends():
    """ENAS micro: 5 ops, B = 5, each node picks two inputs (maybe the same) and an op for each."""
    torch.manual_seed(0)
    net = CellSupernet(10, 3, C=4, layers=3, nodes=5, primitives=ENAS_MICRO_PRIMITIVES)
    assert net.num_edges == 2 + 3 + 4 + 5 + 6
    nodes = [[("sep_conv_3x3", 0), ("avg_pool_3x3", 1)], [("skip_connect", 1), ("sep_conv_5x5", 1)],
             [("max_pool_3x3", 2), ("skip_connect", 0)], [("sep_conv_3x3", 4), ("skip_connect", 3)], [("avg_pool_3x3", 0), ("skip_connect", 5)]]
    choice = net.choice_from_nodes(nodes)
    both = choice[cell_edges(5, 2).index((3, 1))]  # node 3 reads node 1 twice, with two ops
    assert sorted(both) == sorted(ENAS_MICRO_PRIMITIVES.index(o) for o in ("skip_connect", "sep_conv_5x5"))
    # every node except 6 is used as an input: loose ends = [6]
    out = net(torch.randn(2, 3, 16, 16), choice={"normal": choice, "reduce": choice}, concat={"normal": [6], "reduce": [6]})
    assert out.shape == (2, 10)
    out.sum().backward()
    used = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any("ops" in n for n in used)


def test_cell_concat_zeroes_unselected_nodes():
    cell = SearchCell(DARTS_PRIMITIVES, 3, 2, 4, 4, 4).double().eval()
    s = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = F.softmax(torch.randn(cell.num_edges, 8, dtype=torch.float64), -1)
    full = cell(s, s, w)
    part = cell(s, s, w, concat=[3])
    assert torch.equal(part[:, 4:8], full[:, 4:8])
    assert part[:, :4].abs().sum() == 0 and part[:, 8:].abs().sum() == 0


def test_bad_choices_raise_arch_errors():
    net = _tiny()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ArchError, match="edges"):
        net(x, choice={"normal": [0], "reduce": [0]})
    with pytest.raises(ArchError, match="not a candidate"):
        net(x, choice={t: ["conv_9x9"] * net.num_edges for t in net.cell_types})
    with pytest.raises(ArchError, match="cannot read"):
        net.choice_from_nodes([[("skip_connect", 5)], [("skip_connect", 0)]])


def test_nb201_supernet_shapes_and_choice():
    torch.manual_seed(0)
    net = NB201Supernet(10, 3, C=4, cells_per_stage=1)
    assert net.num_edges == 6 and net.primitives == NB201_PRIMITIVES and net.cell_types == ("normal",)
    x = torch.randn(2, 3, 16, 16)
    w = {"normal": F.softmax(torch.randn(6, 5), -1)}
    assert net(x, weights=w).shape == (2, 10)
    assert net(x, choice={"normal": ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1"]}).shape == (2, 10)


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


def test_drop_path_on_edges_in_training_only():
    """drop_prob zeroes whole samples of edge outputs in training (SNAS search); eval is unaffected."""
    net = _tiny(layers=1, nodes=1, reductions=())
    x = torch.randn(64, 3, 8, 8, dtype=torch.float64)
    w = {t: F.softmax(torch.zeros(net.num_edges, net.num_ops, dtype=torch.float64), -1) for t in net.cell_types}
    cell = net.cells[0]
    s = net.stem(x.contiguous(memory_format=torch.channels_last))
    base = cell(s, s, w["normal"])
    torch.manual_seed(3)
    dropped = cell(s, s, w["normal"], drop_prob=0.5)
    # one node, two edges, keep 1/2: a sample loses both edges (zeros) or keeps both (×2) w.p. 1/4 each
    zero = (dropped == 0).flatten(1).all(1)
    both = torch.isclose(dropped, 2 * base, atol=1e-9).flatten(1).all(1)
    assert 4 <= int(zero.sum()) <= 28 and 4 <= int(both.sum()) <= 28
    net.eval()
    assert torch.allclose(cell(s, s, w["normal"], drop_prob=0.5), cell(s, s, w["normal"]))


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



def test_poolings_are_computed_once_per_node_state():
    """Every edge reading a state shares its 3×3 poolings: 5 max-poolings for the 14 edges
    of a DARTS cell (states 0..4 have readers), and gradients equal the reference's."""
    torch.manual_seed(0)
    net = _tiny(nodes=4)  # 3 cells
    calls = []
    for m in net.modules():
        if isinstance(m, nn.MaxPool2d):
            m.register_forward_hook(lambda *a: calls.append(1))
    x, y = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1])
    w = _alphas(net)
    _, g_fused, a_fused = _grads(net, w, x, y)
    assert len(calls) == 3 * 5
    net.fused = False
    _, g_plain, a_plain = _grads(net, w, x, y)
    for k in g_plain:
        assert torch.allclose(g_fused[k], g_plain[k], atol=1e-10), k
    for t in a_plain:
        assert torch.allclose(a_fused[t], a_plain[t], atol=1e-10)


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
