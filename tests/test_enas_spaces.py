"""ENAS spaces: weights shared per (layer, op) / (edge, op) / (node, previous node), every
sampled child builds and runs, the macro kind and its final network."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nasforge.arch import arch_from_dict, load_arch, save_arch
from nasforge.arch.macro import MACRO_OPS, MacroArch, MacroLayer
from nasforge.errors import ArchError
from nasforge.nets import RNNModel, build_network
from nasforge.nets.macro import build_macro_network
from nasforge.search.enas_controller import Controller, macro_layout, micro_layout, recurrent_layout
from nasforge.spaces.enas_macro import MacroSupernet, decode_macro
from nasforge.spaces.enas_micro import MicroSupernet, decode_micro
from nasforge.spaces.enas_rnn import RecurrentSupernet, decode_recurrent


def _sgd_step(net, loss):
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    opt.zero_grad()
    loss.backward()
    opt.step()


# -- macro ------------------------------------------------------------------------------------


def test_macro_children_share_weights_per_layer_and_op():
    torch.manual_seed(0)
    net = MacroSupernet(10, 1, num_layers=3, C=4)
    a = MacroArch([MacroLayer("conv_3x3"), MacroLayer("sep_conv_5x5", [0]), MacroLayer("max_pool_3x3", [])])
    b = MacroArch([MacroLayer("conv_5x5"), MacroLayer("sep_conv_5x5", []), MacroLayer("avg_pool_3x3", [0, 1])])
    x = torch.randn(4, 1, 8, 8)
    # the op both use at layer 1 is one parameter tensor
    w = net.branches[1]["sep_conv_5x5"].body[0].weight
    net.eval()
    out_b = net(x, b).detach().clone()
    w_before = w.detach().clone()
    net.train()
    _sgd_step(net, F.cross_entropy(net(x, a), torch.arange(4)))
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert not torch.equal(w.detach(), w_before)  # child a moved the shared weight ...
    unused = net.branches[1]["conv_3x3"].body[0].weight
    assert unused.grad is None  # ... and only the ops it ran
    net.eval()
    assert not torch.allclose(net(x, b), out_b)  # ... which child b now sees


@pytest.mark.parametrize("seed", range(4))
def test_every_sampled_macro_child_runs_and_builds_a_final_network(seed):
    torch.manual_seed(seed)
    ctrl = Controller(macro_layout(6))
    net = MacroSupernet(10, 3, num_layers=6, C=4)
    for _ in range(3):
        arch = decode_macro(ctrl.sample())
        arch.validate()
        assert net(torch.randn(2, 3, 9, 9), arch).shape == (2, 10)  # odd size works too
        final = build_macro_network(arch_from_dict(arch.to_dict()), 10, 3, 9, C=4)
        logits, aux = final(torch.randn(2, 3, 9, 9))
        assert logits.shape == (2, 10) and aux is None


def test_macro_arch_json_round_trip_fixed_arc_and_errors(tmp_path):
    zoo = load_arch("ENAS_macro")
    assert zoo.kind == "macro" and zoo.num_layers == 24
    assert MacroArch.from_fixed_arc(zoo.to_fixed_arc()).layers == zoo.layers
    p = save_arch(zoo, tmp_path / "m.json")
    assert load_arch(p).to_dict() == zoo.to_dict()
    assert "layer 23" in zoo.describe()
    bad = zoo.to_dict()
    bad["layers"][3]["skips"] = [5]
    with pytest.raises(ArchError, match=r"layers\[3\]\.skips"):
        arch_from_dict(bad)
    bad = zoo.to_dict()
    bad["layers"][0]["op"] = "conv_7x7"
    with pytest.raises(ArchError, match=r"layers\[0\]\.op"):
        arch_from_dict(bad)
    (tmp_path / "x.json").write_text(json.dumps({"kind": "macro", "version": 1, "layers": [{"op": "conv_3x3", "skip": []}]}))
    with pytest.raises(ArchError, match="skip"):
        load_arch(tmp_path / "x.json")


# -- micro ------------------------------------------------------------------------------------


def test_micro_children_share_the_supernet_ops():
    torch.manual_seed(0)
    net = MicroSupernet(10, 1, C=4, normal_layers=1, nodes=2, channels_last=False)
    ctrl = Controller(micro_layout(num_nodes=2))
    a = decode_micro(ctrl.sample(), nodes=2)
    a.normal.nodes[0] = [("sep_conv_3x3", 0), ("max_pool_3x3", 1)]
    b = decode_micro(ctrl.sample(), nodes=2)
    b.normal.nodes[0] = [("sep_conv_3x3", 0), ("skip_connect", 0)]
    for arch in (a, b):
        arch.normal.concat = [2, 3] if arch is a else [3]
        arch.validate()
    cell = next(c for c in net.net.cells if not c.reduction)
    x = torch.randn(4, 1, 8, 8)
    net.eval()
    out_b = net(x, b).detach().clone()
    net.train()
    _sgd_step(net, F.cross_entropy(net(x, a), torch.arange(4)))
    grads = [p.grad for p in cell.parameters() if p.grad is not None]
    assert grads, "child a trained the shared cell"
    net.eval()
    assert not torch.allclose(net(x, b), out_b)


@pytest.mark.parametrize("seed", range(3))
def test_every_sampled_micro_child_runs_and_builds_a_final_network(seed):
    torch.manual_seed(seed)
    ctrl = Controller(micro_layout())
    net = MicroSupernet(10, 1, C=4, normal_layers=1, channels_last=False)
    for _ in range(2):
        arch = arch_from_dict(decode_micro(ctrl.sample()).to_dict())
        assert net(torch.randn(2, 1, 8, 8), arch).shape == (2, 10)
        final = build_network(arch, num_classes=10, in_channels=1, input_size=8, C=4, layers=3)
        assert final(torch.randn(2, 1, 8, 8))[0].shape == (2, 10)


# -- recurrent --------------------------------------------------------------------------------


def test_recurrent_children_share_matrices_per_node_and_previous_node():
    torch.manual_seed(0)
    net = RecurrentSupernet(30, nhid=8, num_nodes=4, dropout=0, dropouth=0, dropoutx=0, dropouti=0, dropoute=0)
    a = decode_recurrent([None, 0, 0, None, 1, 1, None, 1, 2, None])  # 1<-0, 2<-1, 3<-1
    b = decode_recurrent([None, 0, 1, None, 0, 3, None, 1, 0, None])  # 1<-0, 2<-0, 3<-1
    assert net.weight(1, 0) is net.weight(1, 0)
    x = torch.randint(0, 30, (5, 3))
    net.eval()
    out_b = net(x, net.init_hidden(3), b)[0].detach().clone()
    net.train()
    lp, _ = net(x, net.init_hidden(3), a)
    _sgd_step(net, F.nll_loss(lp.view(-1, 30), x.view(-1)))
    assert net.weight(3, 1).grad is not None and net.weight(2, 0).grad is None  # only a's edges
    net.eval()
    assert not torch.allclose(net(x, net.init_hidden(3), b)[0], out_b)


@pytest.mark.parametrize("seed", range(3))
def test_every_sampled_recurrent_child_runs_and_trains_as_rnn_model(seed):
    torch.manual_seed(seed)
    ctrl = Controller(recurrent_layout(12))
    net = RecurrentSupernet(40, nhid=8, num_nodes=12)
    for _ in range(3):
        arch = arch_from_dict(decode_recurrent(ctrl.sample()).to_dict())
        assert len(arch.nodes) == 11 and arch.concat
        used = {i for _, i in arch.nodes}
        assert all(c not in used for c in arch.concat)
        lp, h = net(torch.randint(0, 40, (4, 2)), net.init_hidden(2), arch)
        assert lp.shape == (4, 2, 40) and torch.isfinite(lp).all() and h.shape == (2, 8)
        model = RNNModel(arch, 40, 8, 8, 8)
        assert model(torch.randint(0, 40, (4, 2)), model.init_hidden(2))[0].shape == (4, 2, 40)


def test_space_rejects_an_arch_of_the_wrong_size():
    net = MacroSupernet(10, 1, num_layers=3, C=4)
    with pytest.raises(ArchError, match="3"):
        net.check(MacroArch([MacroLayer(MACRO_OPS[0])]))


def test_macro_drawing_has_chain_skips_and_pooling():
    from nasforge.report.draw import graph

    src = graph(load_arch("ENAS_macro")).source
    assert "l23" in src and "dashed" in src and src.count("factorised reduction") == 2
