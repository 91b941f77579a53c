"""Final networks: DARTS NetworkCIFAR / NetworkImageNet from any cell architecture (any
input size, channels, layers), drop path, auxiliary head, and the DARTS RNN LM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasforge import zoo
from nasforge.arch import CellArch, CellGenotype, RecurrentArch
from nasforge.errors import ArchError
from nasforge.nets import Cell, RNNModel, build_network, drop_path
from nasforge.nets.cell import ResNetReduction
from nasforge.nets.rnn import embedded_dropout, locked_dropout

NB201 = CellArch(
    normal=CellGenotype([[("nor_conv_3x3", 0)], [("skip_connect", 0), ("nor_conv_1x1", 1)], [("avg_pool_3x3", 0), ("none", 1), ("nor_conv_3x3", 2)]], [3]),
    reduce=None,
    inputs=1,
    name="nb201",
)


@pytest.mark.parametrize("name", ["DARTS_V2", "SNAS_aggressive_edge_all", "AmoebaNet", "ENAS"])
@pytest.mark.parametrize("size,in_ch", [(8, 1), (7, 1), (28, 1), (32, 3)])
def test_cifar_style_any_input(name, size, in_ch):
    torch.manual_seed(0)
    net = build_network(zoo.get(name), num_classes=7, in_channels=in_ch, input_size=size, C=4, layers=5, auxiliary=True, drop_path_prob=0.2)
    net.train()
    logits, aux = net(torch.randn(2, in_ch, size, size))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    (logits.sum() + aux.sum()).backward()
    net.eval()
    logits, aux = net(torch.randn(2, in_ch, size, size))
    assert logits.shape == (2, 7) and aux is None


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 8])
def test_any_number_of_layers(layers):
    net = build_network(zoo.get("DARTS"), num_classes=3, in_channels=1, input_size=8, C=3, layers=layers, auxiliary=True)
    net.train()
    logits, aux = net(torch.randn(2, 1, 8, 8))
    assert logits.shape == (2, 3) and aux.shape == (2, 3)
    assert len(net.cells) == layers


def test_reductions_at_one_and_two_thirds():
    net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=4, layers=8)
    sizes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, i, o: sizes.append((o.shape[1], o.shape[2])))
    net.eval()
    net(torch.randn(1, 3, 32, 32))
    # reductions at 8//3 = 2 and 16//3 = 5, doubling C (4 nodes concatenated: 4C)
    assert sizes == [(16, 32), (16, 32), (32, 16), (32, 16), (32, 16), (64, 8), (64, 8), (64, 8)]
    assert [c.reduction for c in net.cells] == [False, False, True, False, False, True, False, False]


def test_imagenet_style():
    net = build_network(zoo.get("DARTS"), num_classes=5, in_channels=3, input_size=64, C=8, layers=5, auxiliary=True, style="imagenet")
    net.train()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5) and aux.shape == (2, 5)
    net.eval()
    assert net(torch.randn(1, 3, 17, 17))[0].shape == (1, 5)  # any size
    assert isinstance(net.cells[0].preprocess0, torch.nn.Module) and net.cells[0].preprocess0.__class__.__name__ == "FactorizedReduce"


def test_aux_head_is_darts_shape_at_cifar_size():
    net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=4, layers=8, auxiliary=True)
    seen = {}

    def hook(module, inputs, output):
        seen["in"] = inputs[0].shape

    net.auxiliary_head.features.register_forward_hook(hook)
    net.train()
    net(torch.randn(2, 3, 32, 32))
    assert seen["in"][-2:] == (2, 2)  # DARTS: 8x8 -> AvgPool(5, 3) -> 2x2 -> conv 2x2 -> 1x1


def test_node_sums_all_edges_and_skips_none():
    g = CellGenotype([[("skip_connect", 0), ("skip_connect", 1), ("none", 1)], [("none", 0), ("none", 2)]], [2, 3])
    cell = Cell(g, 4, 4, 4, reduction=False, reduction_prev=False)
    assert len(cell.ops) == 3  # two skips + one zero op kept for the all-none node
    cell.eval()
    s0, s1 = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    out = cell(s0, s1)
    expected = cell.preprocess0(s0) + cell.preprocess1(s1)
    assert torch.allclose(out[:, :4], expected)
    assert torch.count_nonzero(out[:, 4:]) == 0


def test_edge_all_and_eight_edge_forms_have_the_same_parameters():
    # SNAS *_edge_all only adds `none` edges (no parameters) to the 8-edge form
    torch.manual_seed(0)
    a = build_network(zoo.get("SNAS_mild"), num_classes=10, in_channels=3, input_size=16, C=4, layers=4)
    b = build_network(zoo.get("SNAS_mild_edge_all"), num_classes=10, in_channels=3, input_size=16, C=4, layers=4)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())


def test_drop_path_in_training_only():
    torch.manual_seed(0)
    net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=1, input_size=8, C=4, layers=3, drop_path_prob=0.5)
    x = torch.randn(4, 1, 8, 8)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    for m in net.modules():  # freeze BN statistics use: compare two train passes
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    assert not torch.allclose(net(x)[0], net(x)[0])
    net.drop_path_prob = 0.0
    assert torch.allclose(net(x)[0], net(x)[0])


def test_drop_path_per_sample_and_unbiased():
    torch.manual_seed(0)
    x = torch.ones(20000, 2, 2, 2)
    y = drop_path(x, 0.3)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == per_sample[:, :1]).all(1))  # whole samples dropped
    assert abs(y.mean().item() - 1.0) < 0.02
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.3) < 0.02


def test_one_input_nb201_cells():
    net = build_network(NB201, num_classes=10, in_channels=3, input_size=32, C=8, layers=6)
    assert sum(isinstance(c, ResNetReduction) for c in net.cells) == 2
    assert len(net.cells) == 8
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)


def test_network_learns():
    torch.manual_seed(0)
    net = build_network(zoo.get("DARTS"), num_classes=4, in_channels=1, input_size=8, C=6, layers=3)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 4, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(net(x)[0], y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_build_errors():
    with pytest.raises(ArchError, match="needs a 'cell' architecture"):
        build_network(zoo.get("DARTS_RNN"), num_classes=10, in_channels=3, input_size=32, C=4, layers=3)
    with pytest.raises(ArchError, match="unknown style"):
        build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=4, layers=3, style="mobile")
    with pytest.raises(ArchError, match="layers must be a positive integer"):
        build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=4, layers=0)
    with pytest.raises(ArchError, match="even C"):
        build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=5, layers=3, style="imagenet")


# ---------------------------------------------------------------- RNN language model


def test_rnn_cell_matches_equations():
    torch.manual_seed(0)
    arch = RecurrentArch(nodes=[("relu", 0), ("tanh", 1), ("identity", 0)], concat=[1, 2, 3])
    model = RNNModel(arch, ntoken=11, ninp=6, nhid=6, nhidlast=6)
    model.eval()
    cell = model.rnns[0]
    x, h = torch.randn(2, 6), torch.randn(2, 6)
    c0, h0 = (torch.cat([x, h], 1) @ cell._W0).split(6, 1)
    s0 = h + torch.sigmoid(c0) * (torch.tanh(h0) - h)

    def step(s, W, act):
        c, hh = (s @ W).split(6, 1)
        return s + torch.sigmoid(c) * (act(hh) - s)

    s1 = step(s0, cell._Ws[0], torch.relu)
    s2 = step(s1, cell._Ws[1], torch.tanh)
    s3 = step(s0, cell._Ws[2], lambda v: v)
    expected = (s1 + s2 + s3) / 3
    assert torch.allclose(cell.cell(x, h, None, None), expected, atol=1e-6)


def test_rnn_forward_shapes_and_log_probs():
    model = RNNModel(zoo.get("DARTS_RNN"), ntoken=50, ninp=16, nhid=16, nhidlast=16)
    assert model.decoder.weight is model.encoder.weight  # tied
    hidden = model.init_hidden(3)
    assert hidden[0].shape == (1, 3, 16)
    model.train()
    log_prob, hidden2, raw, dropped = model(torch.randint(0, 50, (7, 3)), hidden, return_h=True)
    assert log_prob.shape == (7, 3, 50)
    assert torch.allclose(log_prob.exp().sum(-1), torch.ones(7, 3), atol=1e-5)
    assert hidden2[0].shape == (1, 3, 16) and raw[0].shape == (7, 3, 16) and dropped[0].shape == (7, 3, 16)
    model.eval()
    inp = torch.randint(0, 50, (5, 2))
    assert torch.equal(model(inp, model.init_hidden(2))[0], model(inp, model.init_hidden(2))[0])


def test_variational_dropouts():
    torch.manual_seed(0)
    x = torch.ones(6, 4, 10)
    y = locked_dropout(x, 0.5, training=True)
    assert torch.equal(y[0] == 0, y[5] == 0)  # same mask at every time step
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)
    emb = torch.nn.Embedding(20, 5)
    words = torch.tensor([[3, 3, 3, 7]])
    out = embedded_dropout(emb, words, 0.5, training=True)
    rows_zero = (out[0] == 0).all(-1)
    assert rows_zero[0] == rows_zero[1] == rows_zero[2]  # a word type is dropped everywhere


def test_rnn_learns_a_sequence():
    torch.manual_seed(0)
    model = RNNModel(zoo.get("DARTS_RNN"), ntoken=5, ninp=16, nhid=16, nhidlast=16, dropout=0.1, dropouth=0.1, dropoutx=0.1, dropouti=0.1, dropoute=0.0)
    seq = torch.arange(5).repeat(4)  # 0 1 2 3 4 0 1 ...: next token is predictable
    data, target = seq[:-1].view(-1, 1), seq[1:]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(40):
        model.train()
        opt.zero_grad()
        log_prob, _ = model(data, model.init_hidden(1))
        loss = F.nll_loss(log_prob.view(-1, 5), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # chance level is ln 5 = 1.61


def test_rnn_errors():
    with pytest.raises(ArchError, match="must be equal"):
        RNNModel(zoo.get("DARTS_RNN"), ntoken=10, ninp=8, nhid=16, nhidlast=16)
    with pytest.raises(ArchError, match="'recurrent' architecture"):
        RNNModel(zoo.get("DARTS"), ntoken=10)
    with pytest.raises(ArchError, match="dropouth"):
        RNNModel(zoo.get("DARTS_RNN"), ntoken=10, ninp=8, nhid=8, nhidlast=8, dropouth=1.0)
