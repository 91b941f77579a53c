"""Cell supernet: the optimised mixed op computes DARTS' MixedOp exactly; sparse choices; recompute."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import ArchError
from nasforge.ops import DARTS_PRIMITIVES, ENAS_MICRO_PRIMITIVES, NB201_PRIMITIVES, make_op
from nasforge.spaces.cell_supernet import CellSupernet, SearchCell, cell_edges
from nasforge.spaces.mixed_op import EdgeInput, MixedOp
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
