"""BlockQNN: Q-learning block search with early-stop rewards (Zhong et al., CVPR 2018).

"Practical Block-wise Neural Network Architecture Generation" (arXiv 1708.05552) and the
TPAMI version "BlockQNN: Efficient Block-wise Neural Network Architecture Generation"
(arXiv 1808.05584). The search loop (§3, Fig. 5) reads:

1. the agent samples a block with ε-greedy Q-learning over NSC rows
   (:mod:`nasforge.search.qlearning`, :mod:`nasforge.spaces.nsc`);
2. the block is stacked into a network and trained briefly (early stop,
   :mod:`nasforge.search.early_stop`) on a worker (:mod:`nasforge.runners`), while the
   agent keeps sampling for the other workers;
3. the result is corrected for cost (eq. 7: ACC − μ·log FLOPs − ρ·log Density), stored in
   the replay memory, and after each batch of blocks the Q-table is updated from replayed
   trajectories with shaped rewards (eqs. 5-6).

Defaults: α = 0.01, γ = 1, Table 2's ε schedule with 64 blocks per iteration [S]; replay
of 64 trajectories per update and Q initialised to 0.5 [S, Keras reproduction]; max layer
index 10 [S]; μ = 0.005, ρ = 0.01 [U, ours]. With a budget smaller than the paper's
11,392 blocks, the ε schedule and the batch size shrink in proportion (same shape).
Over ``--space nb201`` the agent picks the 6 edge ops of a NAS-Bench-201 cell and the
reward is the table's accuracy (no training, μ = ρ = 0); there the default agent settings
are the ``nb201`` preset of :data:`nasforge.search.qlearning.PRESETS` (α = 0.1, a shorter
ε = 1 phase, replay after every new result, no repeated proposals, state = edge index),
which beats random search at 300 and 1,000 queries where the paper's settings do not
(``docs/experiments.md``); ``--q-preset paper`` restores the published ones.

The paper's implementation is not public; this module is our reading of the text.
"""

from __future__ import annotations

from typing import Any

from nasforge.search.early_stop import cost_corrected_reward
from nasforge.search.multi_trial import MultiTrialConfig
from nasforge.search.registry import register_method
from nasforge.search.qlearning import BLOCKS_PER_ITERATION, EPSILON_SCHEDULE, QLearner, _tup, epsilon_at, schedule_length


@register_method(
    "blockqnn", config=MultiTrialConfig, kind="multi-trial", spaces=("nsc", "nb201"), space_defaults={"nb201": {"executor": "inline"}},
    summary="BlockQNN: Q-learning over block codes (Zhong et al. 2018)",
)
class BlockQNNStrategy:
    """The agent side of the search loop, driven by :func:`nasforge.runners.run_trials`.

    Budgets count distinct architectures (the runner does not count a repeat as a trial;
    it hands the stored reward back to :meth:`observe`).

    ``replay_every``: replay after this many results (``None``: the paper's batch,
    ``blocks_per_iteration`` scaled to the budget). ``avoid_seen=False`` (paper): every
    result, repeats included, goes to the replay memory and counts towards the next replay,
    so once the greedy policy repeats itself each new architecture costs many episodes
    and replays. ``avoid_seen=True``: re-sample (raising ε by 0.05 per try, at most
    ``max_resample`` tries) when the episode builds an architecture already proposed, so
    every proposal is new; the memory holds each architecture once and only a new result
    counts, so the cost per query is one episode plus one replay, whatever the budget.
    """

    failed_reward = 0.0
    max_resample = 100

    def __init__(
        self,
        grammar: Any,
        *,
        n_trials: int,
        lr: float = 0.01,
        gamma: float = 1.0,
        q_init: float = 0.5,
        replay_batch: int = 64,
        blocks_per_iteration: int = BLOCKS_PER_ITERATION,
        epsilon_schedule: Any = EPSILON_SCHEDULE,
        replay_every: int | None = None,
        avoid_seen: bool = False,
        mu: float = 0.0,
        rho: float = 0.0,
        seed: int = 0,
    ):
        self.grammar = grammar
        self.agent = QLearner(grammar, lr=lr, gamma=gamma, q_init=q_init, replay_batch=replay_batch, seed=seed)
        self.schedule = [(float(e), int(n)) for e, n in epsilon_schedule]
        full = schedule_length(self.schedule, blocks_per_iteration)
        if n_trials >= full:
            self.total: int | None = None
            self.batch = blocks_per_iteration
        else:
            self.total = n_trials
            self.batch = max(1, round(blocks_per_iteration * n_trials / full))
        if replay_every is not None:
            self.batch = max(1, int(replay_every))
        self.blocks_per_iteration = blocks_per_iteration
        self.avoid_seen = bool(avoid_seen)
        self.mu, self.rho = mu, rho
        self.n_proposed = 0
        self.n_observed = 0
        self.proposed: dict[str, None] = {}  # keys of proposed architectures (avoid_seen), in order
        self._remembered: set[tuple] = set()

    def epsilon(self) -> float:
        i = len(self.proposed) if self.avoid_seen else self.n_proposed
        return epsilon_at(i, self.total, self.schedule, self.blocks_per_iteration)

    def propose(self) -> tuple[dict, dict]:
        eps = self.epsilon()
        actions = self.agent.sample(eps)
        arch = self.grammar.to_arch(actions)
        if self.avoid_seen:
            e = eps
            for _ in range(self.max_resample):
                if self.grammar.key(arch) not in self.proposed:
                    break
                e = min(1.0, e + 0.05)
                actions = self.agent.sample(e)
                arch = self.grammar.to_arch(actions)
            self.proposed[self.grammar.key(arch)] = None
        self.n_proposed += 1
        return arch, {"actions": [list(a) for a in actions], "epsilon": eps}

    def observe(self, meta: dict, reward: float) -> None:
        actions = tuple(_tup(a) for a in meta["actions"])
        if self.avoid_seen:
            if actions in self._remembered:  # a repeat: its reward is in the memory already
                return
            self._remembered.add(actions)
        self.agent.remember(list(actions), reward)
        self.n_observed += 1
        if self.n_observed % self.batch == 0:
            self.agent.replay()

    def reward(self, metrics: dict) -> float:
        return cost_corrected_reward(metrics["accuracy"], metrics.get("flops"), metrics.get("density"), self.mu, self.rho)

    def key(self, arch: dict) -> str:
        return self.grammar.key(arch)

    def greedy_arch(self) -> dict:
        return self.grammar.to_arch(self.agent.greedy())

    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "n_proposed": self.n_proposed, "n_observed": self.n_observed, "batch": self.batch, "total": self.total,
                "proposed": list(self.proposed)}

    def load_state_dict(self, d: dict) -> None:
        self.agent.load_state_dict(d["agent"])
        self.n_proposed, self.n_observed = int(d["n_proposed"]), int(d["n_observed"])
        self.batch, self.total = int(d["batch"]), d["total"]
        self.proposed = dict.fromkeys(d.get("proposed", []))
        self._remembered = {tuple(a) for a, _ in self.agent.memory}
