"""DARTS RNN search settings (:class:`DartsRNNConfig`, defaults from the paper's App. A.1.2
and ``rnn/train_search.py``).

The search itself is :mod:`nasforge.search.darts_rnn`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from nasforge.errors import ConfigError

IMAGE_DATASETS = ("digits", "fashion-mnist", "cifar10")


@dataclass
class DartsRNNConfig:
    """DARTS RNN search settings; defaults from the paper (App. A.1.2) and ``rnn/train_search.py``."""

    data: str = "ptb"  # corpus name or folder with train/valid/test.txt
    data_dir: Optional[str] = None
    emsize: int = 300
    nhid: int = 300
    steps: int = 8  # intermediate nodes (code STEPS; the paper's figure counts 12 nodes in all)
    epochs: int = 50
    batch_size: int = 256
    eval_batch_size: int = 10
    bptt: int = 35
    half_bptt_prob: float = 0.05  # code: seq_len = bptt/2 with probability 0.05
    lr: float = 20.0
    wdecay: float = 5e-7
    clip: float = 0.25
    dropout: float = 0.75  # cell output (locked)
    dropouth: float = 0.25  # states fed to W_i (per sequence)
    dropoutx: float = 0.75  # x_t fed to W0 (per sequence)
    dropouti: float = 0.2  # embedding output (locked)
    dropoute: float = 0.0  # whole words of the embedding
    ar_alpha: float = 0.0  # code --alpha: activation regularisation
    tar_beta: float = 1e-3  # code --beta: temporal activation regularisation
    arch_lr: float = 3e-3
    arch_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    arch_wdecay: float = 1e-3
    alpha_init_std: float = 1e-3
    order: int = 1  # 1: first order; 2: unrolled second order (§2.3)
    recompute: bool = False  # activation checkpointing of the cell, time step by time step (less memory)
    max_steps: Optional[int] = None  # training steps per epoch (None: the whole training split)
    eval_max_batches: Optional[int] = None  # validation batches per epoch (None: the whole split)
    seed: int = 2  # the code's default seed
    device: str = "auto"
    deterministic: bool = False

    def validate(self) -> None:
        if self.data in IMAGE_DATASETS:
            raise ConfigError(f"--space rnn needs a word corpus (ptb or a folder with train/valid/test.txt), got the image set {self.data!r}")
        for key in ("emsize", "nhid", "steps", "epochs", "batch_size", "eval_batch_size", "bptt"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key {key!r} must be >= 1, got {getattr(self, key)}")
        if self.emsize != self.nhid:
            raise ConfigError(f"emsize ({self.emsize}) must equal nhid ({self.nhid}): DARTS ties the embedding and the decoder")
        for key in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute", "half_bptt_prob"):
            v = getattr(self, key)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"config key {key!r} must be in [0, 1), got {v}")
        if self.order not in (1, 2):
            raise ConfigError(f"order must be 1 or 2, got {self.order}")
        if len(self.arch_betas) != 2:
            raise ConfigError(f"arch_betas must hold two numbers, got {self.arch_betas}")
        for key in ("max_steps", "eval_max_batches"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise ConfigError(f"config key {key!r} must be >= 1 (or unset), got {v}")
        for key in ("lr", "clip", "arch_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key {key!r} must be > 0, got {getattr(self, key)}")

