"""Random search over the NSC (or NAS-Bench-201) space with the same runner and budget.

The baseline of BlockQNN's comparison (Zhong et al., CVPR 2018, §4.2 / Fig. 6: Q-learning
vs. random exploration at the same number of sampled blocks): every block is a uniform
random walk through the grammar, i.e. the agent at ε = 1 that never learns. The reward
is the same cost-corrected early-stop accuracy (eq. 7), so the two are comparable trial
for trial.
"""

from __future__ import annotations

import random
from typing import Any

from nasforge.search.early_stop import cost_corrected_reward
from nasforge.search.multi_trial import MultiTrialConfig
from nasforge.search.registry import register_method


@register_method(
    "random", config=MultiTrialConfig, kind="multi-trial", spaces=("nsc", "nb201"), space_defaults={"nb201": {"executor": "inline"}},
    summary="random search over the same spaces and budget",
)
class RandomStrategy:
    failed_reward = 0.0

    def __init__(self, grammar: Any, *, mu: float = 0.0, rho: float = 0.0, seed: int = 0, **_: Any):
        self.grammar = grammar
        self.rng = random.Random(seed)
        self.mu, self.rho = mu, rho
        self.n_proposed = 0
        self.n_observed = 0

    def epsilon(self) -> float:
        return 1.0

    def propose(self) -> tuple[dict, dict]:
        actions = self.grammar.random_walk(self.rng)
        self.n_proposed += 1
        return self.grammar.to_arch(actions), {"actions": [list(a) for a in actions], "epsilon": 1.0}

    def observe(self, meta: dict, reward: float) -> None:
        self.n_observed += 1

    def reward(self, metrics: dict) -> float:
        return cost_corrected_reward(metrics["accuracy"], metrics.get("flops"), metrics.get("density"), self.mu, self.rho)

    def key(self, arch: dict) -> str:
        return self.grammar.key(arch)

    def greedy_arch(self) -> dict | None:
        return None

    def state_dict(self) -> dict:
        v, internal, g = self.rng.getstate()
        return {"rng": [v, list(internal), g], "n_proposed": self.n_proposed, "n_observed": self.n_observed}

    def load_state_dict(self, d: dict) -> None:
        v, internal, g = d["rng"]
        self.rng.setstate((v, tuple(internal), g))
        self.n_proposed, self.n_observed = int(d["n_proposed"]), int(d["n_observed"])
