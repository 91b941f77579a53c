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
reward is the table's accuracy (no training, μ = ρ = 0).

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
    """The agent side of the search loop, driven by :func:`nasforge.runners.run_trials`."""

    failed_reward = 0.0

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
        self.blocks_per_iteration = blocks_per_iteration
        self.mu, self.rho = mu, rho
        self.n_proposed = 0
        self.n_observed = 0

    def epsilon(self) -> float:
        return epsilon_at(self.n_proposed, self.total, self.schedule, self.blocks_per_iteration)

    def propose(self) -> tuple[dict, dict]:
        eps = self.epsilon()
        actions = self.agent.sample(eps)
        self.n_proposed += 1
        return self.grammar.to_arch(actions), {"actions": [list(a) for a in actions], "epsilon": eps}

    def observe(self, meta: dict, reward: float) -> None:
        self.agent.remember([_tup(a) for a in meta["actions"]], reward)
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
        return {"agent": self.agent.state_dict(), "n_proposed": self.n_proposed, "n_observed": self.n_observed, "batch": self.batch, "total": self.total}

    def load_state_dict(self, d: dict) -> None:
        self.agent.load_state_dict(d["agent"])
        self.n_proposed, self.n_observed = int(d["n_proposed"]), int(d["n_observed"])
        self.batch, self.total = int(d["batch"]), d["total"]
