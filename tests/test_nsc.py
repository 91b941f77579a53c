"""NSC blocks: validation, grammar, networks, drawing (BlockQNN, Zhong et al. 2018, Table 1)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasforge.arch import arch_from_dict, load_arch, save_arch
from nasforge.arch.block import BlockArch
from nasforge.errors import ArchError
from nasforge.nets.blocks import Block, BlockNetwork
from nasforge.report.draw import draw
from nasforge.spaces.nsc import NSCGrammar, random_block

EXAMPLE = [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 0, 0], [3, "add", 0, 1, 2], [4, "conv", 1, 0, 0], [5, "terminal", 0, 0, 0]]


def block(rows):
    return {"kind": "block", "version": 1, "rows": rows}


def test_round_trip_and_graph(tmp_path):
    a = arch_from_dict(block(EXAMPLE))
    assert isinstance(a, BlockArch)
    assert a.to_dict() == block(EXAMPLE)
    save_arch(a, tmp_path / "b.json")
    assert load_arch(tmp_path / "b.json").to_dict() == a.to_dict()
    # layers 3 and 4 are read by nobody -> concatenated into the output
    assert a.output_layers() == [3, 4]
    # nodes: input, 4 layers, output = 6; edges: 1<-0, 2<-0, 3<-1, 3<-2, 4<-0, out<-3, out<-4 = 7
    assert a.edges() == [(0, 1), (0, 2), (1, 3), (2, 3), (0, 4), (3, 5), (4, 5)]
    assert a.density() == pytest.approx(7 / 6)
    assert "add(1,2)" in a.describe()


@pytest.mark.parametrize(
    "rows, words",
    [
        ([[1, "conv", 3, 2, 0]], ["rows[0].pred1", "earlier layer"]),
        ([[1, "conv", 3, 0, 0], [2, "add", 0, 1, 2]], ["rows[1].pred2", "cycle"]),
        ([[1, "conv", 3, -1, 0]], ["rows[0].pred1", "negative"]),
        ([[1, "sep_conv", 3, 0, 0]], ["unknown NSC layer type", "'sep_conv'", "rows[0]"]),
        ([[1, "conv", 7, 0, 0]], ["rows[0].kernel", "7"]),
        ([[1, "max_pool", 5, 0, 0]], ["rows[0].kernel"]),
        ([[1, "identity", 0, 0, 3]], ["rows[0].pred2", "unused"]),
        ([[2, "conv", 3, 0, 0]], ["rows[0].index"]),
        ([[1, "terminal", 0, 0, 0], [2, "conv", 3, 0, 0]], ["terminal", "last"]),
        ([], ["empty"]),
        ([[1, "conv", 3, 0]], ["rows[0]", "index, type"]),
        ([[1, "conv", "3", 0, 0]], ["rows[0].kernel", "int"]),
    ],
)
def test_malformed_blocks_name_the_problem(rows, words):
    with pytest.raises(ArchError) as e:
        arch_from_dict(block(rows))
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_malformed_file_is_a_one_line_error(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(block([[1, "conv", 3, 0, 0], [2, "concat", 0, 0, 5]])))
    with pytest.raises(ArchError, match=r"bad.json: rows\[1\].pred2 5"):
        load_arch(p)


def test_grammar_actions():
    g = NSCGrammar(max_layers=3)
    start = g.actions(g.start())
    # from the input: conv 1/3/5, max pool 1/3, avg pool 1/3, identity — all reading layer 0; no terminal
    assert len(start) == 8 and all(a[3] == 0 for a in start) and not any(g.is_final(a) for a in start)
    after1 = g.actions((1, "conv", 3, 0, 0))
    assert ((2, "add", 0, 0, 1)) in after1 and (2, "terminal", 0, 0, 0) in after1
    # conv 3 kernels x 2 preds + 2 pools x 2 kernels x 2 preds + identity x 2 + add + concat + terminal
    assert len(after1) == 6 + 8 + 2 + 1 + 1 + 1
    # at the maximum index only terminal is left
    assert g.actions((3, "identity", 0, 2, 0)) == [(4, "terminal", 0, 0, 0)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), max_layers=st.integers(1, 6), C=st.integers(2, 6))
def test_random_blocks_are_valid_build_run_and_draw(tmp_path, seed, max_layers, C):
    torch.manual_seed(0)
    a = random_block(random.Random(seed), max_layers)
    a.validate()
    assert arch_from_dict(json.loads(json.dumps(a.to_dict()))).to_dict() == a.to_dict()
    assert 1 <= len(a.layers) <= max_layers and a.rows[-1][1] == "terminal"
    blk = Block(a, C_in=3, C=C)
    y = blk(torch.randn(2, 3, 5, 5))
    assert y.shape == (2, C, 5, 5) and torch.isfinite(y).all()
    out = draw(a, tmp_path / f"b{seed}.gv")
    src = out.read_text()
    assert "input" in src and "output (concat)" in src
    assert src.count("->") == len(a.edges())


def test_networks_any_size_and_classes():
    a = arch_from_dict(block(EXAMPLE))
    net = BlockNetwork(a, num_classes=7, in_channels=1, C=4, blocks_per_stage=2, stages=3)
    assert net(torch.randn(3, 1, 9, 9)).shape == (3, 7)
    inet = BlockNetwork(a, num_classes=5, in_channels=3, C=4, blocks_per_stage=1, stages=4, style="imagenet", head_hidden=16, dropout=0.4)
    assert inet(torch.randn(2, 3, 40, 40)).shape == (2, 5)
    # channels double after each pooling
    widths = [m.C_out for m in net.body if isinstance(m, Block)]
    assert widths == [4, 4, 8, 8, 16, 16]


def test_build_block_network_signature():
    from nasforge.nets.blocks import build_block_network

    net = build_block_network(arch_from_dict(block(EXAMPLE)), num_classes=10, in_channels=3, input_size=32, C=4)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_network_learns_on_a_tiny_batch():
    torch.manual_seed(0)
    a = arch_from_dict(block(EXAMPLE))
    net = BlockNetwork(a, num_classes=3, in_channels=1, C=4, blocks_per_stage=1, stages=2)
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 3
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
