"""SNAS: Gumbel-softmax sampling, temperature annealing, edge-all derivation, resource penalty."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from nasforge.arch import arch_from_dict
from nasforge.ops import DARTS_PRIMITIVES
from nasforge.search import resource
from nasforge.search.snas import SnasConfig, SnasSearch, derive_edge_all, gumbel_softmax_sample, temperature
from nasforge.spaces.cell_supernet import CellSupernet


def test_gumbel_softmax_argmax_frequencies_match_softmax_alpha():
    log_alpha = torch.tensor([[0.5, 1.0, -0.3, 2.0, 0.0]]).repeat(20000, 1)
    g = torch.Generator().manual_seed(0)
    z = gumbel_softmax_sample(log_alpha, tau=1.0, generator=g)
    counts = torch.bincount(z.argmax(-1), minlength=5).double()
    expected = torch.softmax(log_alpha[0].double(), 0) * counts.sum()
    stat, p = chisquare(counts.numpy(), expected.numpy())
    assert p > 0.01, (counts, expected)
    # and a different distribution is rejected: the test has power
    _, p_wrong = chisquare(counts.numpy(), (torch.full((5,), 0.2, dtype=torch.float64) * counts.sum()).numpy())
    assert p_wrong < 1e-6


def test_annealed_temperature_makes_samples_one_hot():
    log_alpha = torch.zeros(2000, 8)
    g = torch.Generator().manual_seed(1)
    peak = [float(gumbel_softmax_sample(log_alpha, temperature(e, 150), g).max(-1).values.mean()) for e in (0, 50, 100, 140, 150)]
    assert peak == sorted(peak)  # closer to one-hot as τ falls
    assert peak[0] < 0.7 and peak[-1] > 0.97
    # distance to the nearest one-hot vector
    z = gumbel_softmax_sample(log_alpha, 0.03, g)
    assert float((z - torch.nn.functional.one_hot(z.argmax(-1), 8)).abs().sum(-1).median()) < 0.01


def test_temperature_is_linear_from_1_to_0_03():
    assert temperature(0, 150) == pytest.approx(1.0)
    assert temperature(150, 150) == pytest.approx(0.03)
    assert temperature(75, 150) == pytest.approx((1.0 + 0.03) / 2)


def test_edge_all_derivation_drops_none_edges_and_empty_nodes():
    P = DARTS_PRIMITIVES
    k = {name: P.index(name) for name in P}
    # nodes 2..5; edges (2,0),(2,1),(3,0),(3,1),(3,2),(4,0..3),(5,0..4)
    ops = [k["none"], k["none"],  # node 2: nothing -> dropped
           k["sep_conv_3x3"], k["none"], k["skip_connect"],  # node 3: from 0 (edge from dropped 2 removed)
           k["none"], k["none"], k["max_pool_3x3"], k["dil_conv_3x3"],  # node 4: from 2 (dropped) and 3
           k["none"], k["none"], k["none"], k["none"], k["none"]]  # node 5: nothing -> dropped
    nodes, concat, choice, kept = derive_edge_all(ops, P, 4, 2)
    assert kept == [3, 4]
    assert nodes == [[("sep_conv_3x3", 0)], [("dil_conv_3x3", 2)]]  # renumbered: 3 -> 2, 4 -> 3
    assert concat == [2, 3]
    assert sum(len(c) for c in choice) == 2
    arch = arch_from_dict({"kind": "cell", "version": 1, "inputs": 2, "normal": {"nodes": [[list(e) for e in n] for n in nodes], "concat": concat}, "reduce": None})
    assert len(arch.normal.nodes) == 2
    # all edges none: the strongest non-none input edge survives
    strength = torch.full((14, 8), 0.1)
    strength[1, k["avg_pool_3x3"]] = 0.5
    nodes, concat, choice, kept = derive_edge_all([0] * 14, P, 4, 2, strength)
    assert nodes == [[("avg_pool_3x3", 1)]] and concat == [2] and kept == [2]


def test_resource_costs_are_measured_from_the_ops():
    torch.manual_seed(0)
    net = CellSupernet(10, 3, C=4, layers=3, nodes=2)
    costs = resource.measure_costs(net, (3, 8, 8))
    P = DARTS_PRIMITIVES
    for r in resource.RESOURCES:
        c = costs[r]["normal"]
        assert (c[:, P.index("none")] == 0).all()
        assert (c[:, P.index("sep_conv_5x5")] > c[:, P.index("sep_conv_3x3")]).all()
        assert (c[:, P.index("sep_conv_3x3")] > c[:, P.index("skip_connect")]).all() or r == "flops"
    # sep_conv_3x3 at C=4 (normal cell 0 has C=4 at 8x8): 2 x (dw 3x3 + pw 1x1) multiply-adds x 2 FLOPs
    assert float(costs["flops"]["normal"][0, P.index("sep_conv_3x3")]) == pytest.approx(2 * 2 * (4 * 9 + 4 * 4) * 64)
    params = costs["params"]["normal"][0, P.index("sep_conv_5x5")]
    assert float(params) == 2 * (4 * 25 + 4 * 4)  # BN without affine: no parameters


def _search(lam: float, tmp_path) -> SnasSearch:
    cfg = SnasConfig(
        data="digits", limit=200, epochs=3, batch_size=32, layers=3, channels=4, nodes=2, arch_lr=0.05,
        penalty=lam, resource="mac", seed=0, device="cpu", eval_limit=64,
    )
    s = SnasSearch(cfg, None, progress=False)
    s.run()
    return s


def test_large_resource_penalty_drops_edges(tmp_path):
    free = _search(0.0, tmp_path)
    tight = _search(20.0, tmp_path)
    none = DARTS_PRIMITIVES.index("none")

    def n_none(s):
        return sum(int((a.argmax(-1) == none).sum()) for a in s.alphas.values())

    def flops(s):
        _, choice, _ = s.derive()
        return resource.child_cost(s.net.normalise(choice), s.costs()["flops"])

    assert n_none(tight) > n_none(free)
    assert flops(tight) < flops(free)
    arch, _, _ = tight.derive()
    arch.validate()
