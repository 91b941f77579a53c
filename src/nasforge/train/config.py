"""Configs of final-network training: :class:`TrainConfig` (cell networks) and :class:`LMConfig`.

Defaults are the papers' evaluation settings, so a config file only lists what differs.

CNN — DARTS (Liu et al., ICLR 2019), Sec. 3.3 and App. A.2 "architecture evaluation",
and the official ``cnn/train.py`` (quark0/darts): 20 cells, 36 initial channels, 600
epochs, batch 96, SGD momentum 0.9, lr 0.025 annealed to 0 by a cosine schedule, weight
decay 3e-4, gradient-norm clip 5, auxiliary tower weighted 0.4, drop path 0.2, cutout 16
(plus random crop with 4-pixel padding and horizontal flip). SNAS ``train_edge_all.py``
uses the same values. ImageNet (DARTS App. A.2, ``train_imagenet.py``): 14 cells, C = 48,
250 epochs, batch 128, lr 0.1 decayed ×0.97 per epoch (``lr_schedule: step``), weight
decay 3e-5, label smoothing 0.1 — see ``configs/imagenet-mobile.yaml``.

Differences from the official code, on purpose:

- ``cnn/train.py`` steps its cosine scheduler *before* each epoch with the PyTorch-0.3
  convention, so its epoch ``e`` uses ``lr(e+1)``; here epoch ``e`` (0-based) uses
  ``lr(e)`` = ``lr_min + (lr - lr_min)(1 + cos(pi e / epochs)) / 2``, i.e. the paper's
  schedule. Drop path is the code's ``drop_path_prob * e / epochs`` (the paper says only
  "path dropout of probability 0.2").
- DARTS trains on all 50k training images and reports the *test* set each epoch (its
  "valid" queue is the test set). We do the same; ``valid_fraction > 0`` holds out a
  validation split instead, which is then reported as well.
- Dataset-aware augmentation: ``crop_padding``/``flip``/``cutout`` left empty (``null``)
  take the value for the dataset: CIFAR-10 crop 4 + flip + cutout 16 (the paper),
  Fashion-MNIST crop 2 + flip (the recipe usually used for 28×28 Fashion-MNIST), digits
  crop 1, no flip (digits are not mirror-symmetric), no cutout (an 8×8 image has no
  room for a 16-pixel hole).

LM — DARTS Sec. 3.3 / App. A.2 and the official ``rnn/train.py``: embedding = hidden =
850, batch 64, BPTT 35, SGD lr 20 switched to ASGD (``t0=0, lambd=0``) when the
validation loss has not improved on the best of all but the last ``nonmono`` = 5 epochs,
gradient clip 0.25, weight decay 8e-7, variational dropouts 0.2 (embedding), 0.75 (cell
input x), 0.25 (hidden), 0.75 (output), token dropout on the embedding 0.1 (the paper;
the code's default ``dropoute`` is 0), temporal activation regularisation β = 1e-3 (code),
validation batch 10, test batch 1, epochs up to 8000 (the code's upper bound; the paper
trains for about 3 GPU days).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from nasforge.errors import ConfigError

#: dataset -> (crop_padding, flip, cutout) used when the config leaves them empty
AUGMENT_DEFAULTS: dict[str, tuple[int, bool, int]] = {
    "cifar10": (4, True, 16),
    "fashion-mnist": (2, True, 0),
    "digits": (1, False, 0),
}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class TrainConfig:
    """Training of a cell network built from a ``cell`` architecture (see module docstring)."""

    data: str = "digits"
    data_dir: str | None = None
    epochs: int = 600
    batch_size: int = 96
    eval_batch_size: int | None = None  # None = batch_size
    layers: int = 20
    channels: int = 36
    style: Literal["cifar", "imagenet"] = "cifar"
    lr: float = 0.025
    lr_min: float = 0.0
    lr_schedule: Literal["cosine", "step"] = "cosine"
    lr_gamma: float = 0.97  # per-epoch decay of the "step" schedule (DARTS ImageNet)
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0  # 0 = off
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0  # DARTS ImageNet: 0.1
    crop_padding: int | None = None  # None = dataset default (AUGMENT_DEFAULTS)
    flip: bool | None = None
    cutout: int | None = None
    valid_fraction: float = 0.0  # > 0: hold out this share of train as a validation split
    limit: int | None = None  # cap on the images of each split (quick runs)
    input_size: int | None = None  # resize images to this side when loading (bilinear); None = as stored
    seed: int = 0
    deterministic: bool = False
    amp: bool = True  # mixed precision (autocast + GradScaler); only on CUDA
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch (None = torch's default, one per core)
    eval_every: int = 1  # evaluate valid/test every N epochs (and always after the last)
    memory_check: bool = True  # estimate the peak memory before building the network; stop if above what is available (nasforge.memory)

    def validate(self) -> None:
        _check(self.epochs >= 1, f"config key 'epochs' must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"config key 'batch_size' must be >= 1, got {self.batch_size}")
        _check(self.eval_batch_size is None or self.eval_batch_size >= 1, "config key 'eval_batch_size' must be >= 1")
        _check(self.layers >= 1, f"config key 'layers' must be >= 1, got {self.layers}")
        _check(self.channels >= 1, f"config key 'channels' must be >= 1, got {self.channels}")
        _check(self.lr > 0, f"config key 'lr' must be > 0, got {self.lr}")
        _check(0 <= self.lr_min <= self.lr, f"config key 'lr_min' must be in [0, lr], got {self.lr_min}")
        _check(0 < self.lr_gamma <= 1, f"config key 'lr_gamma' must be in (0, 1], got {self.lr_gamma}")
        _check(self.momentum >= 0, f"config key 'momentum' must be >= 0, got {self.momentum}")
        _check(self.weight_decay >= 0, f"config key 'weight_decay' must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip >= 0, f"config key 'grad_clip' must be >= 0, got {self.grad_clip}")
        _check(self.auxiliary_weight >= 0, f"config key 'auxiliary_weight' must be >= 0, got {self.auxiliary_weight}")
        _check(0 <= self.drop_path_prob < 1, f"config key 'drop_path_prob' must be in [0, 1), got {self.drop_path_prob}")
        _check(0 <= self.label_smoothing < 1, f"config key 'label_smoothing' must be in [0, 1), got {self.label_smoothing}")
        _check(self.crop_padding is None or self.crop_padding >= 0, "config key 'crop_padding' must be >= 0")
        _check(self.cutout is None or self.cutout >= 0, "config key 'cutout' must be >= 0")
        _check(0 <= self.valid_fraction < 1, f"config key 'valid_fraction' must be in [0, 1), got {self.valid_fraction}")
        _check(self.limit is None or self.limit >= 1, "config key 'limit' must be >= 1")
        _check(self.input_size is None or self.input_size >= 2, f"config key 'input_size' must be >= 2, got {self.input_size}")
        _check(self.eval_every >= 1, f"config key 'eval_every' must be >= 1, got {self.eval_every}")
        _check(self.threads is None or self.threads >= 1, f"config key 'threads' must be >= 1, got {self.threads}")

    def for_dataset(self, name: str) -> "TrainConfig":
        """A copy with empty augmentation keys filled from :data:`AUGMENT_DEFAULTS`."""
        crop, flip, cut = AUGMENT_DEFAULTS.get(name, (0, False, 0))
        return dataclasses.replace(
            self,
            crop_padding=crop if self.crop_padding is None else self.crop_padding,
            flip=flip if self.flip is None else self.flip,
            cutout=cut if self.cutout is None else self.cutout,
        )


@dataclass
class LMConfig:
    """Language-model training of a ``recurrent`` architecture (see module docstring)."""

    data: str = "ptb"
    data_dir: str | None = None
    epochs: int = 8000
    batch_size: int = 64
    eval_batch_size: int = 10
    test_batch_size: int = 1
    bptt: int = 35
    max_seq_len_delta: int = 20
    emsize: int = 850
    nhid: int = 850
    lr: float = 20.0
    clip: float = 0.25
    weight_decay: float = 8e-7
    nonmono: int = 5
    dropout: float = 0.75  # output
    dropouth: float = 0.25  # hidden nodes
    dropoutx: float = 0.75  # cell input
    dropouti: float = 0.2  # embedding output
    dropoute: float = 0.1  # whole-token dropout on the embedding (paper; code default 0)
    alpha: float = 0.0  # activation regularisation
    beta: float = 1e-3  # temporal activation regularisation (slowness)
    seed: int = 1267  # rnn/train.py default
    deterministic: bool = False
    amp: bool = False  # autocast + GradScaler on CUDA; off by default for the LM (DARTS trains it in float32)
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch (None = torch's default, one per core)
    memory_check: bool = True  # estimate the peak memory before building the network; stop if above what is available (nasforge.memory)

    def validate(self) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size", "test_batch_size", "bptt", "emsize", "nhid", "nonmono"):
            v = getattr(self, key)
            _check(v >= 1, f"config key {key!r} must be >= 1, got {v}")
        _check(self.max_seq_len_delta >= 0, "config key 'max_seq_len_delta' must be >= 0")
        _check(self.lr > 0, f"config key 'lr' must be > 0, got {self.lr}")
        _check(self.clip >= 0, f"config key 'clip' must be >= 0, got {self.clip}")
        _check(self.weight_decay >= 0, "config key 'weight_decay' must be >= 0")
        for key in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
            v = getattr(self, key)
            _check(0 <= v < 1, f"config key {key!r} must be in [0, 1), got {v}")
        _check(self.threads is None or self.threads >= 1, f"config key 'threads' must be >= 1, got {self.threads}")
