"""Random search: uniform random walks through the same grammars, same runner and reward."""

from __future__ import annotations

import json
from collections import Counter

from nasforge.arch import arch_from_dict, load_arch
from nasforge.cli import main
from nasforge.search.nb201_grammar import NB201Grammar
from nasforge.search.random_search import RandomStrategy
from nasforge.spaces.nsc import NSCGrammar


def test_random_blocks_valid_and_first_layer_uniform():
    s = RandomStrategy(NSCGrammar(max_layers=3), seed=0)
    firsts = Counter()
    for _ in range(800):
        arch, meta = s.propose()
        a = arch_from_dict(arch)
        assert a.rows[-1][1] == "terminal" and meta["epsilon"] == 1.0
        firsts[tuple(a.rows[0])] += 1
    # 8 legal first layers, each ~100 times
    assert len(firsts) == 8 and min(firsts.values()) > 60 and max(firsts.values()) < 140


def test_state_round_trip():
    s = RandomStrategy(NB201Grammar(), seed=5)
    for _ in range(3):
        s.propose()
    d = json.loads(json.dumps(s.state_dict()))
    s2 = RandomStrategy(NB201Grammar(), seed=0)
    s2.load_state_dict(d)
    assert [s2.propose()[0] for _ in range(4)] == [s.propose()[0] for _ in range(4)]


def test_reward_is_eq7():
    s = RandomStrategy(NSCGrammar(), mu=0.1, rho=0.2)
    import math

    assert abs(s.reward({"accuracy": 0.9, "flops": 1000, "density": 2.0}) - (0.9 - 0.1 * math.log(1000) - 0.2 * math.log(2.0))) < 1e-12


def test_cli_random_over_nb201(shared_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "random", "--space", "nb201", "--trials", "25", "--out", str(out), "--no-progress"]) == 0
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(recs) == 25 and all(r["epsilon"] == 1.0 for r in recs)
    assert load_arch(out / "arch.json").kind == "cell"
    assert not (out / "greedy_arch.json").exists()
    # resume of a finished search changes nothing
    before = (out / "metrics.jsonl").read_text()
    assert main(["search", "random", "--space", "nb201", "--trials", "25", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "metrics.jsonl").read_text() == before
    # and a bigger budget continues it
    assert main(["search", "random", "--space", "nb201", "--trials", "30", "--out", str(out), "--resume", "--no-progress"]) == 0
    recs2 = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(recs2) == 30 and recs2[:25] == recs
    # a resume must be the same method over the same space
    assert main(["search", "blockqnn", "--space", "nb201", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "holds a random search" in capsys.readouterr().err
    assert main(["search", "random", "--space", "nsc", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "space 'nb201'" in capsys.readouterr().err
