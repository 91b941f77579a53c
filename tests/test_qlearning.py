"""Tabular Q-learning of BlockQNN (eqs. 5-6, Table 2): hand-worked updates, replay,
ε schedule, and convergence of the greedy policy on a known reward."""

from __future__ import annotations

import json

import pytest

from nasforge.search.blockqnn import BlockQNNStrategy
from nasforge.search.qlearning import QLearner, epsilon_at, schedule_length, shaped_rewards
from nasforge.spaces.nsc import NSCGrammar


class Chain:
    """3 decisions of 'a' or 'b'; state = the last action."""

    def start(self):
        return (0, "s")

    def actions(self, s):
        return [] if s[0] >= 3 else [(s[0] + 1, "a"), (s[0] + 1, "b")]

    def next_state(self, s, a):
        return a

    def is_final(self, a):
        return a[0] == 3


A = [(1, "a"), (2, "a"), (3, "a")]
B = [(1, "b"), (2, "b"), (3, "b")]


def test_shaped_rewards_eq6():
    assert shaped_rewards(0.9, 3) == pytest.approx([0.3, 0.3, 0.9])
    assert shaped_rewards(0.5, 1) == [0.5]


def test_update_matches_hand_worked_numbers():
    q = QLearner(Chain(), lr=0.01, gamma=1.0, q_init=0.5)
    q.update(A, 0.9)
    # last step first: Q = 0.99*0.5 + 0.01*0.9
    assert q.value((2, "a"), (3, "a")) == pytest.approx(0.504)
    # 0.99*0.5 + 0.01*(0.9/3 + max(0.504, 0.5))
    assert q.value((1, "a"), (2, "a")) == pytest.approx(0.50304)
    # 0.99*0.5 + 0.01*(0.3 + max(0.50304, 0.5))
    assert q.value((0, "s"), (1, "a")) == pytest.approx(0.5030304)
    # untouched pairs keep the initial value
    assert q.value((0, "s"), (1, "b")) == 0.5
    # a second pass over the same trajectory
    q.update(A, 0.9)
    assert q.value((2, "a"), (3, "a")) == pytest.approx(0.99 * 0.504 + 0.009)


def test_replay_matches_hand_worked_numbers_and_steers_greedy():
    q = QLearner(Chain(), lr=0.01, gamma=1.0, q_init=0.5, seed=3)
    q.remember(A, 0.9)
    q.remember(B, 0.3)
    assert q.q == {}  # remembering alone does not learn
    q.replay(2)  # both trajectories, in some order: they share only the start state
    assert q.value((0, "s"), (1, "a")) == pytest.approx(0.5030304)
    # B: 0.498, then 0.495 + 0.01*(0.1 + 0.5) = 0.501, then 0.495 + 0.01*(0.1 + 0.501)
    assert q.value((2, "b"), (3, "b")) == pytest.approx(0.498)
    assert q.value((1, "b"), (2, "b")) == pytest.approx(0.501)
    assert q.value((0, "s"), (1, "b")) == pytest.approx(0.50101)
    assert q.greedy() == A


def test_strategy_replays_after_each_batch():
    g = NSCGrammar(max_layers=2)
    s = BlockQNNStrategy(g, n_trials=schedule_length(), blocks_per_iteration=2, epsilon_schedule=[(1.0, 1), (0.1, 1)], replay_batch=1)
    a1, m1 = s.propose()
    s.observe(m1, 0.7)
    assert s.agent.q == {}  # batch of 2 not complete
    a2, m2 = s.propose()
    s.observe(m2, 0.4)
    assert s.agent.q  # replayed one trajectory
    assert len(s.agent.memory) == 2


def test_epsilon_schedule_table2():
    assert epsilon_at(0) == 1.0
    assert epsilon_at(95 * 64 - 1) == 1.0
    assert epsilon_at(95 * 64) == 0.9
    assert epsilon_at((95 + 7) * 64) == 0.8
    assert epsilon_at(schedule_length() - 1) == 0.1
    assert epsilon_at(schedule_length() + 100) == 0.1
    assert schedule_length() == 178 * 64
    # stretched over 178 blocks: one block per iteration
    assert [epsilon_at(i, 178) for i in (0, 94, 95, 101, 102, 177)] == [1.0, 1.0, 0.9, 0.9, 0.8, 0.1]


def test_state_dict_round_trip_is_json():
    g = NSCGrammar(max_layers=3)
    s = BlockQNNStrategy(g, n_trials=50, seed=1)
    for _ in range(10):
        a, m = s.propose()
        s.observe(m, 0.5)
    d = json.loads(json.dumps(s.state_dict()))
    s2 = BlockQNNStrategy(g, n_trials=50, seed=99)
    s2.load_state_dict(d)
    assert s2.agent.q == s.agent.q and s2.agent.memory == s.agent.memory
    assert [s2.propose()[0] for _ in range(5)] == [s.propose()[0] for _ in range(5)]


TARGET = [(1, "conv", 3, 0, 0), (2, "max_pool", 3, 1, 0), (3, "terminal", 0, 0, 0)]


def toy_reward(arch: dict) -> float:
    rows = [tuple(r) for r in arch["rows"]]
    return 0.1 + 0.25 * sum(a == b for a, b in zip(rows, TARGET)) + (0.05 if rows == TARGET else 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_policy_converges_to_best_block(seed):
    """Defaults (α = 0.01, γ = 1, replay 64, Table 2 schedule stretched over 2000 blocks)."""
    g = NSCGrammar(max_layers=2)
    s = BlockQNNStrategy(g, n_trials=2000, seed=seed)
    best_seen = 0.0
    for _ in range(2000):
        arch, meta = s.propose()
        r = toy_reward(arch)
        best_seen = max(best_seen, r)
        s.observe(meta, r)
    assert [tuple(r) for r in s.greedy_arch()["rows"]] == TARGET
    assert best_seen == pytest.approx(0.9)
