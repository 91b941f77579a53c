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
from nasforge.search.qlearning import PRESETS


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
    # agent (BlockQNN). Fields left None take the value of the preset ``q_preset``
    # (nasforge.search.qlearning.PRESETS, docs/experiments.md)
    q_preset: str = "auto"  # paper | nb201 | auto (nb201 over --space nb201, paper otherwise)
    q_lr: Optional[float] = None  # Q-learning rate α (paper 0.01, nb201 0.1)
    gamma: Optional[float] = None  # discount γ (1)
    q_init: Optional[float] = None  # initial Q-value (0.5)
    replay_batch: Optional[int] = None  # trajectories replayed per update (64)
    blocks_per_iteration: Optional[int] = None  # blocks per ε iteration of the schedule (64)
    epsilon_schedule: Optional[list] = None  # [[ε, iterations], ...] (paper: Table 2; nb201: 30 % at ε = 1, ..., 38 % at 0.1)
    replay_every: Optional[int] = None  # replay after this many new results; 0 = after each schedule batch (paper; nb201: 1)
    avoid_seen: Optional[bool] = None  # never re-propose a proposed architecture (paper: false; nb201 and enas: true)
    q_state: Optional[str] = None  # nb201 agent state: chain = (edge, last op) (paper) | edge = (edge,) (nb201)
    max_layers: int = 10
    # REINFORCE (method enas over --space nb201, nasforge.search.reinforce)
    controller_lr: float = 1e-2  # controller Adam lr (ours for 10^2-10^3 queries; paper 3.5e-4)
    baseline_decay: float = 0.9  # moving-average baseline decay (ours; paper 0.99)
    entropy_weight: float = 1e-4  # entropy bonus added to the reward (paper)
    controller_hidden: int = 100  # LSTM units (paper)
    tanh_constant: Optional[float] = 2.5  # logits c·tanh(u/T) (paper)
    temperature: Optional[float] = 5.0  # T (paper)
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
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"config key {k!r} must be at least 1, got {getattr(self, k)}")
        if self.q_preset not in ("auto", *PRESETS):
            raise ConfigError(f"config key 'q_preset' must be auto, {' or '.join(PRESETS)}, got {self.q_preset!r}")
        if self.q_state not in (None, "chain", "edge"):
            raise ConfigError(f"config key 'q_state' must be chain or edge, got {self.q_state!r}")
        if self.space == "nb201":
            from nasforge.spaces.nb201 import check_metric

            if not self.metric.endswith("-val"):
                raise ConfigError(f"config key 'metric' must be a NAS-Bench-201 validation column (cifar10-val, cifar100-val, imagenet-val), got {self.metric!r}")
            check_metric(self.metric)
        for e in self.epsilon_schedule or []:
            if not (isinstance(e, (list, tuple)) and len(e) == 2 and 0.0 <= float(e[0]) <= 1.0 and int(e[1]) >= 0):
                raise ConfigError(f"config key 'epsilon_schedule' must be a list of [epsilon in 0..1, iterations], got {e!r}")
        if self.q_lr is not None and not 0.0 <= self.q_lr <= 1.0:
            raise ConfigError(f"config key 'q_lr' must be in [0, 1], got {self.q_lr}")
