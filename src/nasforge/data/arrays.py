"""Your own images as arrays: layout, value range and label checks, a fixed test hold-out.

Shared by the ``.npz`` reader (:mod:`nasforge.data.npz`), the image-folder reader
(:mod:`nasforge.data.folder`) and the Python API (:func:`nasforge.data.as_dataset`).

* Images: ``(N, H, W)`` (gray), ``(N, C, H, W)`` or ``(N, H, W, C)``, numpy arrays or
  torch tensors. A 4-d array is read as channels-last when its last axis has 1, 3 or 4
  entries and its second axis does not; otherwise as channels-first. Integer images must
  hold 0..255 and are scaled by 1/255; float images are taken as they are (e.g. 0..1).
* Labels: integers (or floats with integral values), ``0 <= y < num_classes``;
  ``num_classes`` is ``len(class_names)`` when names are given, else ``max(y_train) + 1``.
* No test split given: :func:`holdout` keeps ``round(fraction * n_c)`` images of each
  class ``c`` apart with ``numpy.random.RandomState(0)``, independent of the seed, so every
  seed is scored on the same test images (like the fixed digits split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from nasforge.errors import DataError

#: share of the images held out as the test split when the data brings none
TEST_FRACTION = 0.2


@dataclass
class RawImages:
    """Images before normalisation: ``x`` uint8 or float32 ``(N, C, H, W)`` times ``scale``
    gives pixel values (0..1 for 8-bit images); ``y`` int64 ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)
    scale: float = 1.0


def to_numpy(a: Any, what: str) -> np.ndarray:
    """A numpy view of an array, tensor or nested list (tensors are detached, moved to the CPU)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what} is not an array ({e})") from None


def images_nchw(x: Any, what: str) -> tuple[np.ndarray, float]:
    """``x`` as ``(N, C, H, W)`` (uint8 kept, other types float32) and the scale to 0..1."""
    a = to_numpy(x, what)
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
            a = a.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{what} has shape {tuple(a.shape)}; images must be (N, H, W), (N, C, H, W) or (N, H, W, C)")
    if a.shape[0] == 0:
        raise DataError(f"{what} holds no images")
    if min(a.shape[2:]) < 1:
        raise DataError(f"{what} has images of size {a.shape[2]}x{a.shape[3]}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a), 1.0 / 255.0
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{what} holds integer pixel values {lo}..{hi}; integer images must be 0..255 (or pass floats)")
        return a.astype(np.uint8), 1.0 / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{what} has dtype {a.dtype}; images must be numbers")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise DataError(f"{what} holds NaN or infinite pixel values")
    return np.ascontiguousarray(a), 1.0


def labels(y: Any, what: str, n: int | None = None) -> np.ndarray:
    """Integer class labels as int64 ``(N,)``; ``n`` = the number of images they must match."""
    a = to_numpy(y, what)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(f"{what} has shape {tuple(a.shape)}; labels must be one integer per image")
    if n is not None and len(a) != n:
        raise DataError(f"{what} has {len(a)} labels for {n} images")
    if np.issubdtype(a.dtype, np.floating):
        if not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise DataError(f"{what} holds non-integer labels; labels must be class indices 0..K-1")
    elif not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{what} has dtype {a.dtype}; labels must be integer class indices")
    return a.astype(np.int64)


def check_range(y: np.ndarray, num_classes: int, what: str, hint: str = "") -> None:
    """Every label in ``0..num_classes-1``, else a :class:`DataError` naming one offender."""
    if len(y) == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise DataError(f"{what} has label {bad}, out of range: labels must be 0..{num_classes - 1}{hint}")


def holdout(y: np.ndarray, fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)``, each in the original order: ``round(fraction * n_c)``
    images of each class chosen by ``numpy.random.RandomState(0)`` (seed-independent)."""
    perm = np.random.RandomState(0).permutation(len(y))
    out = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = perm[y[perm] == c]
        out[members[: int(round(fraction * len(members)))]] = True
    return np.flatnonzero(~out), np.flatnonzero(out)


def _same_scale(a: np.ndarray, sa: float, b: np.ndarray, sb: float) -> tuple[np.ndarray, np.ndarray, float]:
    if sa == sb:
        return a, b, sa
    return a.astype(np.float32) * sa, b.astype(np.float32) * sb, 1.0


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any = None,
    y_test: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    limit: int | None = None,
    test_fraction: float = TEST_FRACTION,
    where: str = "",
    keys: tuple[str, str, str, str] = ("x_train", "y_train", "x_test", "y_test"),
) -> RawImages:
    """Check and convert user arrays; without a test split, :func:`holdout` makes one.

    ``where`` prefixes the error messages (e.g. the ``.npz`` path), ``keys`` names the
    four arrays in them. ``limit`` keeps the first images of each split.
    """
    pre = f"{where}: " if where else ""
    kx, ky, ktx, kty = keys
    if (x_test is None) != (y_test is None):
        missing = ktx if x_test is None else kty
        raise DataError(f"{pre}{kty if x_test is None else ktx} is given without {missing}; give both test arrays or neither")
    xtr, s_tr = images_nchw(x_train, pre + kx)
    ytr = labels(y_train, pre + ky, len(xtr))
    xte = yte = None
    if x_test is not None:
        xte, s_te = images_nchw(x_test, pre + ktx)
        yte = labels(y_test, pre + kty, len(xte))
        if xte.shape[1:] != xtr.shape[1:]:
            raise DataError(
                f"{pre}{ktx} images are {'x'.join(map(str, xte.shape[1:]))} (CxHxW) but {kx} images are "
                f"{'x'.join(map(str, xtr.shape[1:]))}"
            )
    names = [str(c) for c in class_names] if class_names is not None else None
    if names is not None and len(set(names)) != len(names):
        raise DataError(f"{pre}class names repeat: {names}")
    if num_classes is None:
        num_classes = len(names) if names is not None else max(int(ytr.max()) + 1, 0)
    elif names is not None and len(names) != num_classes:
        raise DataError(f"{pre}{len(names)} class names for {num_classes} classes")
    given = f" ({len(names)} class names)" if names is not None else ""
    check_range(ytr, num_classes, pre + ky, given)
    if yte is not None:
        check_range(yte, num_classes, pre + kty, given or f" ({ky} has classes 0..{num_classes - 1})")
    if num_classes < 2:
        raise DataError(f"{pre}{ky} has only {num_classes} class; classification needs at least 2")
    if x_test is not None:
        xtr, xte, scale = _same_scale(xtr, s_tr, xte, s_te)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        keep, held = holdout(ytr, test_fraction)
        if len(held) == 0 or len(keep) == 0:
            raise DataError(f"{pre}{len(ytr)} images are too few to hold out a test split of {test_fraction:g}; give test images too")
        xtr, ytr, xte, yte, scale = xtr[keep], ytr[keep], xtr[held], ytr[held], s_tr
    if limit is not None:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:limit], yte[:limit]
    return RawImages(xtr, ytr, xte, yte, names or [str(i) for i in range(num_classes)], scale)


def channel_stats(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``x * scale``; a constant
    channel gets std 1 so that normalising never divides by zero."""
    mean = np.mean(x, axis=(0, 2, 3), dtype=np.float64) * scale
    std = np.std(x, axis=(0, 2, 3), dtype=np.float64) * scale
    std = np.where(std > 1e-8, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
