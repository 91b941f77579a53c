"""Image augmentation as batched tensor ops (torchvision does not work with our torch build).

The CIFAR-10 recipe of NASNet/ENAS/DARTS evaluation: random crop of the image padded by
4 pixels on each side, random horizontal flip (p = 0.5), and for DARTS/SNAS final training
cutout with a 16-pixel square (DeVries & Taylor, 2017; DARTS's CIFAR-10 evaluation,
official ``train.py --cutout --cutout_length 16``). All random numbers are drawn on the CPU from the given
``torch.Generator``, so results are the same on every device; the ops themselves run
where the batch is (vectorised: no per-image Python loop).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from nasforge.errors import DataError


class Augment:
    """Random crop with padding, horizontal flip and cutout of a ``(N, C, H, W)`` batch.

    Args:
        crop_padding: pad each side by this many pixels, then crop a random ``H x W``
            window (0 turns cropping off). Torchvision's ``RandomCrop(32, padding=4)``.
        flip: mirror each image left-right with probability 0.5.
        cutout: side of the square set to 0 in each image (0 = off). As in the official
            DARTS ``Cutout``: the centre is uniform over the image, the square is
            clipped at the borders (so it can be smaller), and it is applied last, on the
            normalised image (0 is the mean colour).
        fill: value of the padding, a float or one per channel. Our batches are already
            normalised, so 0 pads with the mean colour; torchvision pads the raw image
            with black before normalising, which is ``-mean/std`` here — use
            :meth:`for_dataset` to get exactly that.

    Call: ``augment(x, generator=g)`` returns a new tensor; ``x`` is not modified.
    """

    def __init__(self, crop_padding: int = 4, flip: bool = True, cutout: int = 0, fill: float | Sequence[float] = 0.0):
        if crop_padding < 0 or cutout < 0:
            raise DataError(f"crop padding and cutout must be >= 0, got {crop_padding} and {cutout}")
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.cutout = int(cutout)
        self.fill = fill

    @classmethod
    def for_dataset(cls, dataset, crop_padding: int = 4, flip: bool = True, cutout: int = 0) -> "Augment":
        """Pad with black, as torchvision does before normalisation (``fill = -mean/std``)."""
        fill = [-m / s for m, s in zip(dataset.mean, dataset.std)]
        return cls(crop_padding=crop_padding, flip=flip, cutout=cutout, fill=fill)

    def __repr__(self) -> str:
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip}, cutout={self.cutout})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError(f"augmentation expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator, self.fill)
        if self.flip:
            x = random_flip(x, generator)
        if self.cutout:
            x = cutout(x, self.cutout, generator)
        return x


def _fill_tensor(x: torch.Tensor, fill: float | Sequence[float]) -> torch.Tensor:
    if isinstance(fill, (int, float)):
        return torch.full((1, x.shape[1], 1, 1), float(fill), dtype=x.dtype, device=x.device)
    f = torch.as_tensor(list(fill), dtype=x.dtype, device=x.device)
    if f.numel() != x.shape[1]:
        raise DataError(f"padding fill has {f.numel()} values but the images have {x.shape[1]} channels")
    return f.view(1, -1, 1, 1)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None, fill: float | Sequence[float] = 0.0) -> torch.Tensor:
    """Pad by ``padding`` on each side and take a random ``H x W`` window per image.

    Offsets are uniform in ``0..2*padding`` for rows and columns independently.
    """
    n, c, h, w = x.shape
    p = padding
    hp, wp = h + 2 * p, w + 2 * p
    if isinstance(fill, (int, float)) and float(fill) == 0.0:
        xp = F.pad(x, (p, p, p, p))
    else:  # pad with a per-channel value: shift it to 0, pad, shift back
        f = _fill_tensor(x, fill)
        xp = F.pad(x - f, (p, p, p, p)) + f
    oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
    # one flat gather: pixel (i, j) of image k comes from (i + oy[k], j + ox[k]) of the padded image
    window = (torch.arange(h, device=x.device)[:, None] * wp + torch.arange(w, device=x.device)[None, :]).view(1, 1, h * w)
    index = (window + (oy * wp + ox).view(n, 1, 1)).expand(n, c, h * w)
    return torch.gather(xp.reshape(n, c, hp * wp), 2, index).view(n, c, h, w)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    m = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(m[:, None, None, None], x.flip(3), x)


def cutout_mask(n: int, h: int, w: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean ``(N, 1, H, W)`` mask, True inside each image's (clipped) cutout square.

    Centre ``(cy, cx)`` uniform over the pixels; rows ``clip(cy - L//2, 0, H)`` to
    ``clip(cy + L//2, 0, H)`` (exclusive), same for columns — the official DARTS ``Cutout``.
    """
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    y1, y2 = (cy - length // 2).clamp(0, h), (cy + length // 2).clamp(0, h)
    x1, x2 = (cx - length // 2).clamp(0, w), (cx + length // 2).clamp(0, w)
    r = torch.arange(h)[None, :]
    c = torch.arange(w)[None, :]
    in_r = (r >= y1[:, None]) & (r < y2[:, None])  # (N, H)
    in_c = (c >= x1[:, None]) & (c < x2[:, None])  # (N, W)
    return (in_r[:, :, None] & in_c[:, None, :])[:, None]


def cutout(x: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one square of side ``length`` per image (see :func:`cutout_mask`)."""
    n, _, h, w = x.shape
    m = cutout_mask(n, h, w, length, generator).to(x.device)
    return x.masked_fill(m, 0.0)
