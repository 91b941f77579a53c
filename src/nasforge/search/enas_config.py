"""ENAS search settings (:class:`EnasConfig`), their per-space defaults, the CNN learning
rate schedule.

The defaults and their sources are described in :mod:`nasforge.search.enas`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError
from nasforge.ops import check_ops

SPACES = ("macro", "micro", "rnn", "nb201")

#: space-dependent defaults (ENAS code scripts; RNN: paper / ENAS-pytorch)
SPACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "macro": dict(epochs=310, batch_size=128, layers=12, channels=36, lr=0.05, weight_decay=2.5e-4, grad_clip=5.0, controller_steps=50),
    "micro": dict(epochs=150, batch_size=160, layers=6, channels=20, lr=0.05, weight_decay=1e-4, grad_clip=5.0, controller_steps=30),
    "rnn": dict(epochs=150, batch_size=64, layers=12, channels=200, lr=20.0, weight_decay=1e-7, grad_clip=0.25, controller_steps=50),
    "nb201": dict(epochs=1, batch_size=1, layers=3, channels=1, lr=0.0, weight_decay=0.0, grad_clip=0.0, controller_steps=50,
                  controller_lr=1e-2, baseline_decay=0.9),
}


@dataclass
class EnasConfig:
    """ENAS search settings; ``None`` = the space's default (see :data:`SPACE_DEFAULTS`)."""

    space: str = "macro"
    ops: list[str] | None = None  # micro space: candidate op names; None = ENAS_MICRO_PRIMITIVES (the paper's 5)
    data: str = "digits"
    data_dir: str | None = None
    limit: int | None = None  # at most this many images per split (quick runs)
    input_size: int | None = None  # resize images to this side when loading (bilinear); None = as stored
    epochs: int | None = None
    batch_size: int | None = None
    layers: int | None = None  # macro: layers (12); micro: normal cells (6, + 2 reduction); rnn: nodes (12)
    channels: int | None = None  # macro 36, micro 20 filters; rnn: embedding = hidden size
    train_portion: float = 0.9  # share of the training images for ω; the rest gives rewards
    lr: float | None = None
    lr_min: float = 5e-4  # CNN cosine restarts (ENAS code)
    lr_t0: int = 10
    lr_tmul: int = 2
    momentum: float = 0.9
    weight_decay: float | None = None
    grad_clip: float | None = None
    rnn_lr_decay: float = 0.96  # per epoch after rnn_lr_decay_start (paper)
    rnn_lr_decay_start: int = 15
    bptt: int = 35
    dropout: float = 0.4  # rnn output / hidden / x / input / embedding dropout
    dropouth: float = 0.25
    dropoutx: float = 0.75
    dropouti: float = 0.2
    dropoute: float = 0.1
    controller_hidden: int = 100
    controller_lr: float | None = None  # 3.5e-4
    tanh_constant: float | None = 2.5
    temperature: float | None = 5.0
    entropy_weight: float = 1e-4
    baseline_decay: float | None = None  # 0.99
    skip_target: float = 0.4
    skip_weight: float = 0.8
    controller_steps: int | None = None
    controller_aggregate: int = 1
    reward_constant: float = 80.0  # rnn reward c / ppl
    derive_samples: int = 10
    max_steps: int | None = None  # at most this many shared-weight steps per epoch
    eval_batches: int = 4  # validation minibatches for the per-epoch metrics of the best child
    trials: int = 300  # nb201: table queries
    nb201_table: str | None = None
    nb201_metric: str = "cifar10-val"
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False

    def validate(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"--space must be one of {list(SPACES)} for enas, got {self.space!r}")
        for name in ("epochs", "batch_size", "layers", "channels", "controller_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"config key {name!r} must be >= 1, got {v}")
        for name in ("derive_samples", "controller_aggregate", "trials", "eval_batches", "controller_hidden", "bptt"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.train_portion < 1.0:
            raise ConfigError(f"train_portion must be in (0, 1), got {self.train_portion}")
        if self.input_size is not None and self.input_size < 2:
            raise ConfigError(f"input_size must be >= 2, got {self.input_size}")
        if not 0.0 < self.skip_target < 1.0:
            raise ConfigError(f"skip_target must be in (0, 1), got {self.skip_target}")
        if self.ops is not None:
            if self.space != "micro":
                raise ConfigError(f"--ops is for --space micro; the {self.space} space has its fixed op list")
            check_ops(self.ops, "--ops")

    def resolved(self) -> "EnasConfig":
        base = {"controller_lr": 3.5e-4, "baseline_decay": 0.99}
        base.update(SPACE_DEFAULTS[self.space])
        fill = {k: v for k, v in base.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill)


def cosine_restart_lr(epoch: int, lr_max: float, lr_min: float, t0: int, tmul: int) -> float:
    """SGDR (Loshchilov & Hutter 2017) as in ENAS ``utils.get_train_ops``: cosine from
    ``lr_max`` to ``lr_min`` over ``T0`` epochs, then over ``T0·Tmul``, ... (per epoch)."""
    t, start = t0, 0
    while epoch >= start + t:
        start += t
        t *= tmul
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * (epoch - start) / t))
