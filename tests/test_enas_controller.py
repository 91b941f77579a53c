"""ENAS controller: scoring = sampling, convergence on a synthetic reward, layouts."""

from __future__ import annotations

import math

import pytest
import torch

from nasforge.search.enas_controller import (
    Anchor,
    Choice,
    Controller,
    Index,
    Reinforce,
    Skips,
    macro_layout,
    micro_layout,
    nb201_layout,
    recurrent_layout,
)


@pytest.mark.parametrize("layout", [macro_layout(5), micro_layout(), recurrent_layout(6), nb201_layout()])
def test_scoring_given_actions_matches_sampling(layout):
    torch.manual_seed(0)
    c = Controller(layout)
    s = c()
    assert len(s.actions) == len(layout)
    assert torch.allclose(c.log_prob(s.actions), s.log_prob)
    assert float(s.entropy.detach()) > 0
    for step, a in zip(layout, s.actions):
        if isinstance(step, Anchor):
            assert a is None
        elif isinstance(step, Skips):
            assert all(0 <= j < step.n for j in a)
        else:
            assert 0 <= a < step.n


def test_log_prob_is_a_distribution():
    """Probabilities of all 5^2 actions of a 2-decision layout sum to 1 (autoregressive)."""
    torch.manual_seed(1)
    c = Controller([Choice("op", 5), Choice("op", 5)])
    total = sum(math.exp(float(c.log_prob([a, b]).detach())) for a in range(5) for b in range(5))
    assert total == pytest.approx(1.0, abs=1e-5)
    c2 = Controller([Anchor(), Anchor(), Index(2), Skips(2)])
    total = sum(math.exp(float(c2.log_prob([None, None, i, sk]).detach())) for i in range(2) for sk in ([], [0], [1], [0, 1]))
    assert total == pytest.approx(1.0, abs=1e-5)


def test_tanh_constant_bounds_the_logits():
    """c·tanh(u/T): no op gets more than e^{2c}/(e^{2c}+n-1) probability, however trained."""
    c = Controller(nb201_layout(1), tanh_constant=2.5, temperature=5.0)
    with torch.no_grad():
        c.decoders["op"].weight.mul_(1e4)
    p = max(c.probability([a]) for a in range(5))
    assert p <= math.exp(5) / (math.exp(5) + 4) + 1e-6


def _converge(layout, target, steps, lr=3e-3, decay=0.9, seed=0, skip_weight=0.8):
    torch.manual_seed(seed)
    c = Controller(layout, tanh_constant=None, temperature=None)  # the tanh cap bounds P(target) below 0.9
    rl = Reinforce(c, lr=lr, baseline_decay=decay, skip_weight=skip_weight)

    def reward(actions):  # +1 for each decision equal to the hidden target
        return float(sum(a == t for a, t in zip(actions, target) if t is not None))

    for k in range(steps):
        rl.step(reward)
        if k % 25 == 24 and c.probability(target) > 0.9:
            return k + 1
    return None


def test_controller_learns_a_hidden_target_op_sequence():
    k = _converge(nb201_layout(3), [1, 3, 0], steps=600)
    assert k is not None and k <= 600


def test_controller_learns_hidden_macro_ops_and_skips():
    target = [2, [], 4, [0]]  # layer 0: conv_5x5; layer 1: avg pool with a skip from layer 0
    # the KL pull towards P(skip) = 0.4 would cap P(target); switch it off here
    k = _converge(macro_layout(2), target, steps=600, skip_weight=0.0)
    assert k is not None


def test_entropy_bonus_baseline_and_state_round_trip():
    torch.manual_seed(0)
    c = Controller(nb201_layout(2))
    rl = Reinforce(c, lr=1e-2, baseline_decay=0.99, entropy_weight=1e-4)
    m = rl.step(lambda a: 1.0)
    assert m["baseline"] == pytest.approx(1.0 + 1e-4 * m["entropy"], rel=1e-6)  # starts at the first reward
    m2 = rl.step(lambda a: 0.0)
    assert m2["baseline"] == pytest.approx(0.99 * m["baseline"] + 0.01 * 1e-4 * m2["entropy"], rel=1e-6)
    sd = rl.state_dict()
    c2 = Controller(nb201_layout(2))
    rl2 = Reinforce(c2, lr=1e-2)
    rl2.load_state_dict(sd)
    assert rl2.baseline == rl.baseline and rl2.steps == 2
    acts = c.sample()
    assert torch.allclose(c2.log_prob(acts), c.log_prob(acts))


def test_skip_penalty_pulls_skip_probability_to_target():
    """Only the KL term (reward 0): the sigmoid skip probabilities move to rho = 0.4."""
    torch.manual_seed(0)
    c = Controller(macro_layout(4), skip_target=0.4)
    with torch.no_grad():
        c.attn_v.weight.fill_(0.5)  # start far from 0.4
    rl = Reinforce(c, lr=1e-2, entropy_weight=0.0)
    first = float(c().skip_penalty.detach())
    for _ in range(150):
        rl.step(lambda a: 0.0)
    assert float(c().skip_penalty.detach()) < 0.2 * first
