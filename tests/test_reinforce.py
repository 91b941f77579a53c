"""REINFORCE (the ENAS controller) as a multi-trial strategy over NAS-Bench-201, and the
run_search path of ``search enas --space nb201`` (metrics name the chosen column)."""

from __future__ import annotations

import json

import pytest
import torch

from nasforge.arch import load_arch
from nasforge.runners.search_run import MultiTrialConfig, make_grammar, make_strategy, run_search
from nasforge.search.nb201_grammar import NB201Grammar
from nasforge.search.reinforce import ReinforceStrategy
from nasforge.spaces.nb201 import PRIMITIVES
from nasforge.utils.io import read_jsonl


def toy_reward(arch: dict) -> float:
    return sum(op == "nor_conv_3x3" for op in arch["ops"]) / 6


def test_policy_learns_a_toy_reward():
    s = ReinforceStrategy(NB201Grammar(), lr=0.05, seed=0)
    for _ in range(300):
        arch, meta = s.propose()
        s.observe(meta, toy_reward(arch))
    assert s.greedy_arch()["ops"] == ["nor_conv_3x3"] * 6


def test_state_dict_is_json_and_resumes_exactly():
    a = ReinforceStrategy(NB201Grammar(), seed=3, avoid_seen=True)
    for _ in range(20):
        arch, meta = a.propose()
        a.observe(meta, toy_reward(arch))
    b = ReinforceStrategy(NB201Grammar(), seed=99, avoid_seen=True)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(10):
        (xa, ma), (xb, mb) = a.propose(), b.propose()
        assert xa == xb and ma == mb
        a.observe(ma, toy_reward(xa))
        b.observe(mb, toy_reward(xb))
    for pa, pb in zip(a.controller.parameters(), b.controller.parameters()):
        assert torch.equal(pa, pb)
    assert a.rl.baseline == b.rl.baseline and a.proposed == b.proposed


def test_avoid_seen_proposes_distinct_cells_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    s = ReinforceStrategy(NB201Grammar(), seed=1, avoid_seen=True)
    keys = []
    for _ in range(60):
        arch, meta = s.propose()
        keys.append(s.key(arch))
        s.observe(meta, toy_reward(arch))
    assert len(set(keys)) == 60
    assert torch.equal(torch.rand(1), before)
    assert all(op in PRIMITIVES for op in arch["ops"])


def _run(method: str, out, **kw) -> int:
    from nasforge.config import from_dict

    cfg = from_dict(MultiTrialConfig, {"executor": "inline", **kw})
    run_search(method, cfg, out, progress=False)
    return 0


@pytest.mark.parametrize("method", ["enas", "blockqnn", "random"])
def test_nb201_search_metrics_name_the_chosen_column(shared_data, tmp_path, capsys, method):
    from nasforge.runners.store import TrialStore
    from nasforge.spaces.nb201_table import NB201Table

    table = NB201Table.load(shared_data / "nas-bench-201")
    out = tmp_path / method
    assert _run(method, out, space="nb201", trials=15, metric="cifar100-val", seed=2) == 0
    recs = read_jsonl(out / "metrics.jsonl")
    assert len(recs) == 15 and {r["metric"] for r in recs} == {"cifar100-val"}
    with TrialStore(out / "trials.sqlite") as st:
        trials = st.trials("done")
        assert len({t.key for t in trials}) == 15  # the budget counts distinct cells
        for t in trials:
            ops = tuple(t.arch["ops"])
            assert t.reward == pytest.approx(table.accuracy(ops, "cifar100-val") / 100)
            assert t.metrics["test_metric"] == "cifar100-test"
            assert t.metrics["test_accuracy"] == pytest.approx(table.accuracy(ops, "cifar100-test") / 100)
    arch = load_arch(out / "arch.json")
    assert arch.meta["metric"] == "cifar100-val" and arch.meta["test_metric"] == "cifar100-test"


def test_make_strategy_routes_enas_and_rejects_other_spaces():
    cfg = MultiTrialConfig(space="nb201", trials=10)
    s = make_strategy("enas", cfg, make_grammar(cfg, "enas"))
    assert isinstance(s, ReinforceStrategy) and s.avoid_seen and s.rl.optimizer.param_groups[0]["lr"] == 1e-2
    from nasforge.errors import ConfigError

    with pytest.raises(ConfigError, match="needs --space nb201"):
        make_strategy("enas", MultiTrialConfig(space="nsc"), None)


def test_metric_must_be_a_validation_column():
    from nasforge.errors import ConfigError

    with pytest.raises(ConfigError, match="validation column"):
        MultiTrialConfig(space="nb201", metric="cifar10-test").validate()
    with pytest.raises(ConfigError, match="unknown NAS-Bench-201 metric"):
        MultiTrialConfig(space="nb201", metric="svhn-val").validate()
