"""Final-network training: cell networks (DARTS evaluation) and RNN language models.

- :func:`train_cnn` / :class:`TrainConfig` — :mod:`nasforge.train.cnn` (DARTS ``cnn/train.py``)
- :func:`train_lm` / :class:`LMConfig` — :mod:`nasforge.train.lm` (DARTS ``rnn/train.py``)
- :func:`evaluate_checkpoint` — :mod:`nasforge.train.evaluate`
- :func:`train_arch` — either trainer, chosen by the architecture's kind

Search methods train their derived architecture with, e.g.,
``train_arch(arch, run_dir / "final", TrainConfig(epochs=..., data=...), data=dataset)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.errors import ArchError, ConfigError
from nasforge.train.cnn import evaluate_classifier, train_cnn
from nasforge.train.common import TrainResult
from nasforge.train.config import LMConfig, TrainConfig
from nasforge.train.evaluate import evaluate_checkpoint
from nasforge.train.lm import evaluate_lm, train_lm


def train_arch(arch: Any, run_dir: str | Path, cfg: TrainConfig | LMConfig | None = None, **kw: Any) -> TrainResult:
    """Train ``arch`` with the trainer of its kind (``cell``/``macro``/``block`` → CNN, ``recurrent`` → LM).

    ``cfg`` defaults to the paper settings of that kind; ``kw`` goes to the trainer
    (``data=``/``corpus=``, ``resume=``, ``show_progress=``, ``log=``).
    """
    kind = getattr(arch, "kind", None)
    if kind in ("cell", "macro", "block"):
        cfg = cfg or TrainConfig()
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"a {kind} architecture trains with a TrainConfig, got {type(cfg).__name__}")
        return train_cnn(arch, cfg, run_dir, **kw)
    if kind == "recurrent":
        cfg = cfg or LMConfig()
        if not isinstance(cfg, LMConfig):
            raise ConfigError(f"a recurrent architecture trains with an LMConfig, got {type(cfg).__name__}")
        return train_lm(arch, cfg, run_dir, **kw)
    raise ArchError(f"no trainer for architectures of kind {kind!r} (cell, macro, block and recurrent have one)")


__all__ = [
    "LMConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate_checkpoint",
    "evaluate_classifier",
    "evaluate_lm",
    "train_arch",
    "train_cnn",
    "train_lm",
]

from nasforge.utils.callable_module import make_callable  # noqa: E402

make_callable(__name__, "nasforge.api:train")  # nasforge.train(arch, ...) is the API call
