"""Tabular Q-learning with ε-greedy exploration, experience replay and reward shaping.

Zhong et al., "Practical Block-wise Neural Network Architecture Generation", CVPR 2018,
§3.2 (eqs. 4-6) and Table 2:

- the agent walks a grammar (:class:`~nasforge.spaces.nsc.NSCGrammar`: state = current
  NSC row, action = next row) and gets the block's reward ``r_T`` at the end;
- update (eq. 5): ``Q(s_t, a_t) <- (1 - α) Q(s_t, a_t) + α [r_t + γ max_a' Q(s_{t+1}, a')]``
  with learning rate α = 0.01 and discount γ = 1 [S: the Keras reproduction's
  ``MasterAgent(q_lr=0.01, gamma=1.0)``; the paper states both];
- reward shaping (eq. 6): intermediate steps get ``r_t = r_T / T`` (T = number of actions),
  the last step ``r_T``; the last transition has no successor term;
- ε-greedy with the Table 2 schedule: ε = 1.0, 0.9, ..., 0.1 for 95, 7, 7, 7, 10, 10, 10,
  10, 10, 12 iterations of 64 blocks [S: the counts are the Keras reproduction's
  ``epsilon_schedule``; that they equal Table 2 and count iterations of 64 blocks is
  unverified here — the Keras code counts single blocks, but 178 networks could not take
  "3 days on 32 GPUs" while 178 × 64 = 11,392 can]. :func:`epsilon_at` stretches the
  schedule over a shorter budget;
- experience replay: every finished block ``(actions, r_T)`` goes to the replay memory;
  after each batch the agent updates Q from ``min(|memory|, 64)`` trajectories sampled
  from it [S: the Keras reproduction replays that many after every block, with
  replacement; we sample without replacement]. Q starts at 0.5 [S: Keras, "random
  guessing accuracy"]. Each trajectory is updated from its last transition backwards
  [S: Keras, as MetaQNN], so one pass carries the reward to the start state. ``T`` in
  eq. 6 is the episode's number of actions here; the Keras code divides by the maximum
  layer index instead [U which the paper means].

Presets (:data:`PRESETS`): ``paper`` is the above; ``nb201`` is ours for table searches
of 10^2-10^3 queries (``docs/experiments.md`` explains each difference).

Everything (Q-table, replay memory, RNG) is in :meth:`QLearner.state_dict` as plain JSON.
"""

from __future__ import annotations

import random
from typing import Any, Protocol, Sequence

#: Table 2: (ε, iterations); each iteration samples :data:`BLOCKS_PER_ITERATION` blocks
EPSILON_SCHEDULE: tuple[tuple[float, int], ...] = (
    (1.0, 95),
    (0.9, 7),
    (0.8, 7),
    (0.7, 7),
    (0.6, 10),
    (0.5, 10),
    (0.4, 10),
    (0.3, 10),
    (0.2, 10),
    (0.1, 12),
)
BLOCKS_PER_ITERATION = 64

#: ours, for table searches of 10^2-10^3 queries: ε = 1 for the first 30 % of the budget,
#: then 0.9 ... 0.2 for 4 % each, then 0.1 for the last 38 % (the paper's schedule spends
#: 53 % at ε = 1 and only the last 7 % at 0.1; see ``docs/experiments.md``)
SHORT_EPSILON_SCHEDULE: tuple[tuple[float, int], ...] = (
    (1.0, 30),
    (0.9, 4),
    (0.8, 4),
    (0.7, 4),
    (0.6, 4),
    (0.5, 4),
    (0.4, 4),
    (0.3, 4),
    (0.2, 4),
    (0.1, 38),
)

#: agent settings by name. ``paper``: BlockQNN as published (α = 0.01, Table 2's
#: schedule, replay after each batch, repeated proposals fed back, (k, last op) state).
#: ``nb201``: ours for NAS-Bench-201 at 10^2-10^3 queries (α = 0.1, the short schedule,
#: replay after every new result, never re-propose a cell already proposed, (k,) state);
#: it beats random search at 300 and 1,000 queries where ``paper`` does not.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"lr": 0.01, "gamma": 1.0, "q_init": 0.5, "replay_batch": 64, "blocks_per_iteration": BLOCKS_PER_ITERATION,
              "epsilon_schedule": EPSILON_SCHEDULE, "replay_every": None, "avoid_seen": False, "state": "chain"},
    "nb201": {"lr": 0.1, "gamma": 1.0, "q_init": 0.5, "replay_batch": 64, "blocks_per_iteration": BLOCKS_PER_ITERATION,
              "epsilon_schedule": SHORT_EPSILON_SCHEDULE, "replay_every": 1, "avoid_seen": True, "state": "edge"},
}


class Grammar(Protocol):
    def start(self) -> tuple: ...

    def actions(self, state: tuple) -> list[tuple]: ...

    def next_state(self, state: tuple, action: tuple) -> tuple: ...

    def is_final(self, action: tuple) -> bool: ...


def schedule_length(schedule: Sequence[Sequence[float]] = EPSILON_SCHEDULE, blocks_per_iteration: int = BLOCKS_PER_ITERATION) -> int:
    return int(sum(n for _, n in schedule)) * blocks_per_iteration


def epsilon_at(i: int, total: int | None = None, schedule: Sequence[Sequence[float]] = EPSILON_SCHEDULE, blocks_per_iteration: int = BLOCKS_PER_ITERATION) -> float:
    """ε for the ``i``-th sampled block (0-based).

    With ``total=None`` the schedule runs as in the paper (``n`` iterations of
    ``blocks_per_iteration`` blocks per ε; the last ε stays after the end). With a
    ``total`` budget the same proportions are stretched over ``total`` blocks.
    """
    n_iter = sum(n for _, n in schedule)
    if total is None:
        pos = i / blocks_per_iteration
    else:
        pos = i * n_iter / max(1, total)
    acc = 0.0
    for eps, n in schedule:
        acc += n
        if pos < acc:
            return float(eps)
    return float(schedule[-1][0])


def shaped_rewards(reward: float, T: int) -> list[float]:
    """Eq. 6: ``r_T / T`` for the T-1 intermediate steps, ``r_T`` for the last."""
    return [reward / T] * (T - 1) + [reward]


def _tup(x: Any) -> Any:
    return tuple(_tup(v) for v in x) if isinstance(x, list) else x


class QLearner:
    def __init__(self, grammar: Grammar, *, lr: float = 0.01, gamma: float = 1.0, q_init: float = 0.5, replay_batch: int = 64, seed: int = 0):
        self.grammar = grammar
        self.lr = lr
        self.gamma = gamma
        self.q_init = q_init
        self.replay_batch = replay_batch
        self.q: dict[tuple[tuple, tuple], float] = {}
        self.memory: list[tuple[list[tuple], float]] = []
        self.rng = random.Random(seed)
        self._actions: dict[tuple, list[tuple]] = {}

    def actions(self, s: tuple) -> list[tuple]:
        acts = self._actions.get(s)
        if acts is None:
            acts = self._actions[s] = self.grammar.actions(s)
        return acts

    # ---- values -----------------------------------------------------------------------
    def value(self, s: tuple, a: tuple) -> float:
        return self.q.get((s, a), self.q_init)

    def max_value(self, s: tuple) -> float:
        acts = self.actions(s)
        if not acts:
            return 0.0
        q, q0 = self.q, self.q_init
        return max(q.get((s, a), q0) for a in acts)

    def greedy_action(self, s: tuple, tie_break: random.Random | None = None) -> tuple:
        acts = self.actions(s)
        best = max(self.value(s, a) for a in acts)
        ties = [a for a in acts if self.value(s, a) == best]
        return tie_break.choice(ties) if tie_break is not None and len(ties) > 1 else ties[0]

    # ---- acting -----------------------------------------------------------------------
    def sample(self, epsilon: float) -> list[tuple]:
        """One ε-greedy episode: the list of actions, the last one final."""
        s, acts = self.grammar.start(), []
        while True:
            if self.rng.random() < epsilon:
                a = self.rng.choice(self.actions(s))
            else:
                a = self.greedy_action(s, self.rng)
            acts.append(a)
            if self.grammar.is_final(a):
                return acts
            s = self.grammar.next_state(s, a)

    def greedy(self) -> list[tuple]:
        """The greedy policy's episode (ties to the first action in grammar order)."""
        s, acts = self.grammar.start(), []
        for _ in range(10_000):
            a = self.greedy_action(s)
            acts.append(a)
            if self.grammar.is_final(a):
                return acts
            s = self.grammar.next_state(s, a)
        raise RuntimeError("greedy episode did not end")

    # ---- learning ---------------------------------------------------------------------
    def update(self, actions: Sequence[tuple], reward: float) -> None:
        """Eq. 5 along one trajectory with the shaped rewards of eq. 6, last step first."""
        states = [self.grammar.start()]
        for a in actions[:-1]:
            states.append(self.grammar.next_state(states[-1], a))
        rs = shaped_rewards(reward, len(actions))
        for t in reversed(range(len(actions))):
            s, a = states[t], actions[t]
            target = rs[t]
            if t < len(actions) - 1:
                target += self.gamma * self.max_value(self.grammar.next_state(s, a))
            self.q[(s, a)] = (1.0 - self.lr) * self.value(s, a) + self.lr * target

    def remember(self, actions: Sequence[tuple], reward: float) -> None:
        self.memory.append(([tuple(a) for a in actions], float(reward)))

    def replay(self, n: int | None = None) -> None:
        """Update from ``n`` trajectories drawn from the replay memory (without replacement)."""
        n = self.replay_batch if n is None else n
        if not self.memory or n <= 0:
            return
        k = min(n, len(self.memory))
        for i in self.rng.sample(range(len(self.memory)), k):
            self.update(*self.memory[i])

    # ---- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "q": [[list(s), list(a), v] for (s, a), v in self.q.items()],
            "memory": [[[list(a) for a in acts], r] for acts, r in self.memory],
            "rng": _jsonable_rng(self.rng.getstate()),
            "lr": self.lr,
            "gamma": self.gamma,
            "q_init": self.q_init,
            "replay_batch": self.replay_batch,
        }

    def load_state_dict(self, d: dict) -> None:
        self.q = {(_tup(s), _tup(a)): float(v) for s, a, v in d["q"]}
        self.memory = [([_tup(a) for a in acts], float(r)) for acts, r in d["memory"]]
        v, internal, g = d["rng"]
        self.rng.setstate((v, tuple(internal), g))
        self.lr, self.gamma, self.q_init, self.replay_batch = d["lr"], d["gamma"], d["q_init"], d["replay_batch"]


def _jsonable_rng(state: tuple) -> list:
    v, internal, g = state
    return [v, list(internal), g]
