"""Python objects as data sets: :func:`as_dataset` and the in-memory registry.

``as_dataset(obj)`` turns any of these into an :class:`~nasforge.data.ImageDataset`
(normalised with the per-channel mean/std of its train split, like the built-in sets):

* an :class:`ImageDataset` (returned as it is);
* a name or path: what :func:`~nasforge.data.load_image_dataset` takes (``digits``,
  ``fashion-mnist``, ``cifar10``, an image folder, an ``.npz`` file, ``memory:N``);
* a pair ``(x, y)`` of numpy arrays or torch tensors: images ``(N, H, W)``,
  ``(N, C, H, W)`` or ``(N, H, W, C)``, uint8 0..255 or float; integer labels
  (see :mod:`nasforge.data.arrays`);
* a map-style ``torch.utils.data.Dataset`` (anything with ``__len__`` and
  ``__getitem__``) whose items are ``(image, label)``; an image is a PIL image, a tensor
  ``(C, H, W)``/``(H, W)`` (e.g. from torchvision's ``ToTensor``) or a numpy array
  ``(H, W)``/``(H, W, C)``/``(C, H, W)``. Every item is read once, into memory.

A test split comes from ``test=`` (same kinds of object) or is held out of the data
(20 % of each class, fixed). Configs and the command line name data sets by string, so
:func:`register_dataset` keeps a data set in this process under a name ``memory:N`` that
:func:`~nasforge.data.load_image_dataset` (hence every search and trainer) resolves.
Such a name means nothing in another process (a Ray or process-pool worker, a later
``--resume``): there, save the data as an ``.npz`` file or an image folder instead.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from nasforge.data.arrays import TEST_FRACTION, RawImages, channel_stats, from_arrays, images_nchw, labels, to_numpy
from nasforge.data.folder import GRAY_MODES
from nasforge.data.images import (  # noqa: F401  (load_registered: re-exported)
    _REGISTRY, ALIASES, IMAGE_DATASETS, MEMORY_PREFIX, ImageDataset, _labels, _normalise, finish, load_image_dataset, load_registered, resize_images,
)
from nasforge.data.tensors import TensorPair
from nasforge.errors import DataError

IMAGE_NAMES = set(IMAGE_DATASETS) | set(ALIASES)
_COUNTER = itertools.count(1)


def register_dataset(data: Any, **kwargs: Any) -> str:
    """Keep ``data`` (an :class:`ImageDataset`, or anything :func:`as_dataset` takes, with
    its keyword arguments) in memory and return its name ``memory:N``."""
    ds = data if isinstance(data, ImageDataset) and not kwargs else as_dataset(data, **kwargs)
    name = f"{MEMORY_PREFIX}{next(_COUNTER)}"
    _REGISTRY[name] = ds
    return name


def dataset_name(data: Any, **kwargs: Any) -> str:
    """A string for a config's ``data`` key: a built-in name as it is, an existing path made
    absolute (so a run's ``config.yaml`` works from any directory), anything else (arrays,
    a ``Dataset``, an :class:`ImageDataset`) registered with :func:`register_dataset`."""
    if isinstance(data, (str, os.PathLike)) and not kwargs:
        text = os.fspath(data)
        p = Path(os.path.expanduser(text))
        if text.lower() not in IMAGE_NAMES and not text.startswith(MEMORY_PREFIX) and p.exists():
            return str(p.resolve())
        return text
    return register_dataset(data, **kwargs)


def unregister_dataset(name: str) -> None:
    """Forget a data set of :func:`register_dataset` (frees its memory); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def registered_datasets() -> list[str]:
    """The ``memory:N`` names registered in this process."""
    return list(_REGISTRY)


def as_dataset(
    data: Any,
    *,
    test: Any = None,
    seed: int = 0,
    valid_fraction: float = 0.0,
    limit: int | None = None,
    input_size: int | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    test_fraction: float = TEST_FRACTION,
    data_dir: str | os.PathLike | None = None,
    name: str = "user",
) -> ImageDataset:
    """``data`` (see the module docstring) as an :class:`ImageDataset` named ``name``.

    ``seed``/``valid_fraction``/``limit``/``input_size`` act as in
    :func:`~nasforge.data.load_image_dataset`; ``class_names``/``num_classes`` fix the
    classes of arrays and ``Dataset`` objects (default: ``max(label) + 1`` classes named
    ``0..K-1``; a ``Dataset`` with a ``classes`` attribute, like torchvision's, gives its names).
    """
    if isinstance(data, ImageDataset):
        if test is not None:
            raise DataError("test= cannot be combined with an ImageDataset, which has its test split")
        return data
    if isinstance(data, (str, os.PathLike)):
        if test is not None:
            raise DataError("test= cannot be combined with a data set name or path; put the test images in the folder or .npz")
        return load_image_dataset(data, data_dir, seed=seed, valid_fraction=valid_fraction, limit=limit,
                                  input_size=input_size, test_fraction=test_fraction)
    x, y = _arrays(data, "data", input_size)
    tx, ty = (None, None) if test is None else _arrays(test, "test", input_size)
    if class_names is None and hasattr(data, "classes") and isinstance(getattr(data, "classes"), (list, tuple)):
        class_names = [str(c) for c in data.classes]
    raw = from_arrays(x, y, tx, ty, class_names=class_names, num_classes=num_classes, limit=limit,
                      test_fraction=test_fraction, where=name, keys=("data images", "data labels", "test images", "test labels"))
    return _from_raw(raw, name, seed=seed, valid_fraction=valid_fraction, input_size=input_size)


def _from_raw(raw: RawImages, name: str, *, seed: int, valid_fraction: float, input_size: int | None) -> ImageDataset:
    mean, std = channel_stats(raw.x_train, raw.scale)
    train = TensorPair(_normalise(raw.x_train, raw.scale, mean, std), _labels(raw.y_train))
    test = TensorPair(_normalise(raw.x_test, raw.scale, mean, std), _labels(raw.y_test))
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    return finish(name, train, None, test, raw.class_names, mean, std, None, seed=seed, valid_fraction=valid_fraction, input_size=input_size)


def _arrays(obj: Any, what: str, input_size: int | None) -> tuple[Any, Any]:
    """Images and labels of a pair or of a map-style dataset."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and hasattr(obj[0], "shape") and (hasattr(obj[1], "shape") or isinstance(obj[1], (list, tuple))):
        return obj[0], obj[1]
    if hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        return _from_items(obj, what, input_size)
    raise DataError(
        f"{what} is a {type(obj).__name__}; give a data set name or path, an (x, y) pair of arrays/tensors "
        "or a map-style Dataset of (image, label)"
    )


def _item_image(img: Any, where: str) -> np.ndarray:
    """One image as ``(C, H, W)`` float32 in 0..1 (uint8 / 255)."""
    if hasattr(img, "mode") and hasattr(img, "convert") and hasattr(img, "size"):  # PIL image
        img = img.convert("L" if img.mode in GRAY_MODES else "RGB")
        a = np.asarray(img, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    elif isinstance(img, torch.Tensor):
        a = img.detach().cpu().numpy()
        if a.ndim == 2:
            a = a[None]
    else:
        a = to_numpy(img, where)
        if a.ndim == 2:
            a = a[None]
        elif a.ndim == 3 and a.shape[-1] in (1, 3, 4) and a.shape[0] not in (1, 3, 4):
            a = a.transpose(2, 0, 1)
    if a.ndim != 3:
        raise DataError(f"{where} has shape {tuple(a.shape)}; an image must be (H, W), (C, H, W) or a PIL image")
    x, scale = images_nchw(a[None], where)
    return x[0].astype(np.float32) * np.float32(scale)


def _from_items(ds: Any, what: str, input_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    n = len(ds)
    if n == 0:
        raise DataError(f"{what} dataset is empty")
    images: list[np.ndarray] = []
    ys: list[Any] = []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{what} item {i} is a {type(item).__name__}; items must be (image, label)")
        images.append(_item_image(item[0], f"{what} item {i}"))
        label = item[1]
        ys.append(label.item() if hasattr(label, "item") else label)
    chans = {a.shape[0] for a in images}
    if chans == {1, 3}:
        images = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in images]
    elif len(chans) > 1:
        raise DataError(f"{what} images have {sorted(chans)} channels; they must all have the same number (or be gray and RGB)")
    if input_size is not None:
        images = [_resize1(a, input_size) for a in images]
    else:
        first = images[0].shape[1:]
        for i, a in enumerate(images):
            if a.shape[1:] != first:
                raise DataError(
                    f"{what} images differ in size: item 0 is {first[1]}x{first[0]} but item {i} is "
                    f"{a.shape[2]}x{a.shape[1]}; pass input_size= to resize them"
                )
    return np.stack(images), labels(np.array(ys), f"{what} labels")


def _resize1(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[1:] == (size, size):
        return a
    return resize_images(torch.from_numpy(a)[None], size)[0].numpy()
