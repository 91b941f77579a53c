"""Final-network training: cell networks (DARTS evaluation) and RNN language models.

- :func:`train_cnn` / :class:`TrainConfig` — :mod:`nasforge.train.cnn`
- :func:`train_lm` / :class:`LMConfig` — :mod:`nasforge.train.lm`
- :func:`evaluate_checkpoint` — :mod:`nasforge.train.evaluate`
- :func:`train_arch` — either trainer, by architecture kind
"""

from nasforge.train.cnn import evaluate_classifier, train_cnn
from nasforge.train.common import TrainResult
from nasforge.train.config import LMConfig, TrainConfig

__all__ = ["LMConfig", "TrainConfig", "TrainResult", "evaluate_classifier", "train_cnn"]
