"""In-memory tensor data sets: :class:`TensorPair`, :func:`split`, :class:`BatchLoader`.

All our image sets fit in memory (CIFAR-10 is 50,000 x 3 x 32 x 32 float32 = 614 MB at
most), so batches are cut by index from two tensors instead of a ``DataLoader`` with
worker processes. Every random choice (shuffling, augmentation) is drawn from one
``torch.Generator`` on the CPU, so a loader is reproducible from the generator's seed and
its state can be checkpointed with ``generator.get_state()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from nasforge.errors import DataError


@dataclass
class TensorPair:
    """Inputs ``x`` (float32, ``(N, C, H, W)`` for images) and int64 labels ``y`` (``(N,)``)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"inputs and labels differ in length ({self.x.shape[0]} vs {self.y.shape[0]})")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index) -> "TensorPair":
        """Index with an int tensor, a slice or a list: returns a new :class:`TensorPair`."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return TensorPair(self.x[index], self.y[index])

    def to(self, device: torch.device | str) -> "TensorPair":
        return TensorPair(self.x.to(device), self.y.to(device))


def split(pair: TensorPair, fraction: float, seed: int = 0) -> tuple[TensorPair, TensorPair]:
    """Split ``pair`` at random into ``(a, b)`` with ``len(b) = round(fraction * N)``.

    Like scikit-learn's ``train_test_split(test_size=fraction)``: ``b`` is the held-out
    part. The permutation comes from ``torch.Generator().manual_seed(seed)``, so the same
    seed gives the same split; each part keeps the original order of its items. DARTS
    (Liu et al., 2019; CIFAR-10 search) holds out half of the training set to train the
    architecture: ``split(train, 0.5, seed)``. (The official DARTS code,
    ``--train_portion 0.5``, takes the first and second half in file order instead.)
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"split fraction must be in [0, 1], got {fraction}")
    n = len(pair)
    nb = int(round(fraction * n))
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    ib, _ = torch.sort(perm[:nb])
    ia, _ = torch.sort(perm[nb:])
    return pair[ia], pair[ib]


class BatchLoader:
    """Iterate ``(x, y)`` batches of a :class:`TensorPair`.

    Args:
        pair: the data.
        batch_size: images per batch.
        shuffle: draw a fresh permutation each epoch (from ``generator``).
        generator: CPU ``torch.Generator`` for shuffling and augmentation; ``None`` uses
            torch's global RNG (seed it with ``torch.manual_seed``).
        drop_last: drop a last, smaller batch.
        augment: callable ``augment(x, generator=g) -> x`` applied per batch, on
            ``device`` (e.g. :class:`nasforge.data.Augment`).
        device: where batches are put; with ``pin_memory`` on CUDA the copy is
            non-blocking.
        pin_memory: copy each batch to page-locked memory before moving it to CUDA.

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(
        self,
        pair: TensorPair,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        augment: Callable[..., torch.Tensor] | None = None,
        device: torch.device | str | None = None,
        pin_memory: bool = False,
    ):
        if batch_size < 1:
            raise DataError(f"batch size must be >= 1, got {batch_size}")
        self.pair = pair
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.generator = generator
        self.drop_last = drop_last
        self.augment = augment
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = bool(pin_memory) and self.device is not None and self.device.type == "cuda" and torch.cuda.is_available()

    def __len__(self) -> int:
        n = len(self.pair)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        if self.device is None or t.device == self.device:
            return t
        if self.pin_memory:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.pair)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if order is None:  # copies, so that in-place ops on a batch cannot change the data
                x, y = self.pair.x[lo:hi].clone(), self.pair.y[lo:hi].clone()
            else:
                idx = order[lo:hi]
                x, y = self.pair.x[idx], self.pair.y[idx]
            x, y = self._move(x), self._move(y)
            if self.augment is not None:
                x = self.augment(x, generator=self.generator)
            yield x, y
