"""The settings of the multi-trial searches (BlockQNN, random search) and their defaults.

Defaults: BlockQNN (Zhong et al., CVPR 2018) §3–4 where the paper gives them (Q-learning
rate α = 0.01, γ = 1, the ε schedule of Table 2, 64 blocks per ε iteration, replay, the
reward shaping of eq. 7 with μ, ρ); the early-stop training is scaled to a CPU (see
``docs/blockqnn.md``). The runner that uses them is :mod:`nasforge.runners.search_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from nasforge.errors import ConfigError
from nasforge.search.qlearning import EPSILON_SCHEDULE


@dataclass
class MultiTrialConfig:
    """Config of BlockQNN and random search (defaults: see ``docs/blockqnn.md``)."""

    space: str = "nsc"
    data: str = "digits"
    data_dir: Optional[str] = None
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = False
    # budget and workers
    trials: int = 100
    workers: int = 1
    executor: str = "local"
    address: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2
    max_duplicates: int = 1000
    # agent (BlockQNN)
    q_lr: float = 0.01
    gamma: float = 1.0
    q_init: float = 0.5
    replay_batch: int = 64
    blocks_per_iteration: int = 64
    epsilon_schedule: list = field(default_factory=lambda: [list(x) for x in EPSILON_SCHEDULE])
    max_layers: int = 10
    # reward (eq. 7)
    mu: float = 0.005
    rho: float = 0.01
    # early-stop training
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    channels: int = 8
    blocks_per_stage: int = 1
    stages: int = 3
    head_hidden: int = 64
    dropout: float = 0.4
    valid_fraction: float = 0.2
    limit: Optional[int] = None
    # NAS-Bench-201 table
    metric: str = "cifar10-val"
    table: Optional[str] = None
    # evaluation function override (tests, benchmarks) and its extra config
    evaluator: Optional[str] = None
    evaluator_config: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.space not in ("nsc", "nb201"):
            raise ConfigError(f"config key 'space' must be nsc or nb201 for BlockQNN/random search, got {self.space!r}")
        if self.executor not in ("local", "ray", "inline"):
            raise ConfigError(f"config key 'executor' must be local, ray or inline, got {self.executor!r}")
        for k in ("trials", "workers", "max_layers", "epochs", "batch_size", "channels", "blocks_per_stage", "stages", "blocks_per_iteration"):
            if getattr(self, k) < 1:
                raise ConfigError(f"config key {k!r} must be at least 1, got {getattr(self, k)}")
        for e in self.epsilon_schedule:
            if not (isinstance(e, (list, tuple)) and len(e) == 2 and 0.0 <= float(e[0]) <= 1.0 and int(e[1]) >= 0):
                raise ConfigError(f"config key 'epsilon_schedule' must be a list of [epsilon in 0..1, iterations], got {e!r}")
        if not 0.0 <= self.q_lr <= 1.0:
            raise ConfigError(f"config key 'q_lr' must be in [0, 1], got {self.q_lr}")
