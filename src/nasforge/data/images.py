"""Image classification data sets: scikit-learn digits, Fashion-MNIST, CIFAR-10, your own.

``load_image_dataset(name, data_dir=None, *, seed=0, valid_fraction=0.0, limit=None,
input_size=None)`` returns an :class:`ImageDataset` whose splits are normalised float32
tensors in memory. ``name`` may also be the path of an image folder
(:mod:`nasforge.data.folder`) or ``.npz`` file (:mod:`nasforge.data.npz`), normalised with
the per-channel mean/std of their train split, or a ``memory:N`` name of
:func:`nasforge.data.register_dataset` (Python objects, :mod:`nasforge.data.user`).

* ``digits`` — scikit-learn's ``load_digits`` (1,797 8 x 8 gray images, values 0..16,
  scaled by 1/16), embedded, no files needed. Fixed train/test split: a permutation of
  the 1,797 images by ``numpy.random.RandomState(0)``; its first 360 are the test set,
  the other 1,437 the train set (80/20, in the order scikit-learn's
  ``train_test_split(x, y, test_size=0.2, random_state=0)`` returns them). It does not depend on ``seed``. Mean/std are computed from those 1,437 images.
* ``fashion-mnist`` — the four IDX files (``train-images-idx3-ubyte`` etc., optionally
  ``.gz``), 60,000/10,000 28 x 28 gray images; mean/std 0.2860/0.3530 (of the train set).
* ``cifar10`` — the official python pickle batches (``data_batch_*``, ``test_batch``,
  ``batches.meta``), 32 x 32 RGB; mean/std of the train set as in the DARTS code
  (0.4914, 0.4822, 0.4465)/(0.2470, 0.2435, 0.2616).

``limit`` keeps the first ``limit`` images of the train and of the test split (in file
order; for digits, in the fixed permutation) — the validation split, when asked for, is
then taken from the capped train split by :func:`~nasforge.data.split` with ``seed``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nasforge.data import cifar, idx
from nasforge.data.arrays import TEST_FRACTION, RawImages, channel_stats
from nasforge.data.folder import read_image_folder
from nasforge.data.npz import read_npz
from nasforge.data.paths import resolve_data_dir
from nasforge.data.tensors import TensorPair, split
from nasforge.errors import DataError

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
FASHION_MEAN = (0.2860,)
FASHION_STD = (0.3530,)
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DIGITS_TEST = 360


@dataclass
class ImageDataset:
    """Normalised splits of an image classification set and what a network needs to know."""

    name: str
    train: TensorPair
    valid: TensorPair | None
    test: TensorPair
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] = field(default_factory=list)
    data_dir: str | None = None

    def summary(self) -> str:
        v = f", valid {len(self.valid)}" if self.valid is not None else ""
        return (
            f"{self.name}: train {len(self.train)}{v}, test {len(self.test)}; "
            f"{self.channels}x{self.size}x{self.size}, {self.num_classes} classes"
        )


def _normalise(raw: np.ndarray, scale: float, mean, std) -> torch.Tensor:
    """uint8/float ``(N, C, H, W)`` -> float32 ``(raw * scale - mean) / std`` per channel."""
    x = torch.from_numpy(np.asarray(raw, dtype=np.float32).copy() if raw.dtype == np.float32 else raw.astype(np.float32)).mul_(scale)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 64) float and (1797,) int arrays.

    Reads ``sklearn/datasets/data/digits.csv.gz`` directly (what ``load_digits`` reads)
    because importing ``sklearn.datasets`` takes seconds; falls back to ``load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        p = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if p.is_file():
            try:
                a = np.loadtxt(p, delimiter=",")
                if a.shape == (1797, 65):
                    return a[:, :-1], a[:, -1].astype(np.int64)
            except ValueError:
                pass
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data, d.target.astype(np.int64)


def _load_digits(data_dir, limit):
    flat, y = _digits_arrays()
    x = flat.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    perm = np.random.RandomState(0).permutation(len(y))
    te, tr = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    mean, std = (float(x[tr].mean()),), (float(x[tr].std()),)
    tr, te = tr[:limit], te[:limit]
    names = [str(i) for i in range(10)]
    return x[tr], y[tr], x[te], y[te], names, mean, std, 1.0, None


def _fashion_ok(folder: Path) -> bool:
    return all(idx.find_idx_file(folder, stem) for stem in FASHION_FILES.values())


def _load_fashion(data_dir, limit):
    folder = resolve_data_dir(
        "fashion-mnist",
        ["fashion-mnist"],
        _fashion_ok,
        data_dir,
        hint="it needs train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz] (e.g. from github.com/zalandoresearch/fashion-mnist or Debian's dataset-fashion-mnist)",
        extra=["/usr/share/datasets/fashion-mnist"],
    )
    f = {k: idx.find_idx_file(folder, stem) for k, stem in FASHION_FILES.items()}
    arrays = {}
    for split_name in ("train", "test"):
        xi = idx.read_idx(f[f"{split_name}_images"], idx.IMAGES_MAGIC, limit)
        yi = idx.read_idx(f[f"{split_name}_labels"], idx.LABELS_MAGIC, limit)
        if xi.ndim != 3 or xi.shape[1:] != (28, 28):
            raise DataError(f"{f[split_name + '_images']} holds images of shape {xi.shape[1:]}, expected 28x28")
        if len(xi) != len(yi):
            raise DataError(f"fashion-mnist {split_name}: {len(xi)} images but {len(yi)} labels")
        if len(yi) and yi.max() > 9:
            raise DataError(f"{f[split_name + '_labels']} has label {yi.max()}, expected 0..9")
        arrays[split_name] = (xi[:, None], yi)
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return xtr, ytr, xte, yte, list(FASHION_CLASSES), FASHION_MEAN, FASHION_STD, 1.0 / 255.0, folder


def _load_cifar10(data_dir, limit):
    folder = resolve_data_dir(
        "cifar10",
        ["cifar10", cifar.BATCH_FOLDER, "cifar-10-subset", f"cifar10/{cifar.BATCH_FOLDER}"],
        cifar.is_batch_folder,
        data_dir,
        hint="it needs data_batch_1..5 and test_batch of the python version; get them with `nasforge data download cifar10`",
    )
    xtr, ytr, xte, yte, names = cifar.read_cifar10(folder, limit)
    return xtr, ytr, xte, yte, names, CIFAR10_MEAN, CIFAR10_STD, 1.0 / 255.0, folder


#: name -> loader returning (x_train, y_train, x_test, y_test, class_names, mean, std, scale, folder)
LOADERS: dict[str, Callable] = {
    "digits": _load_digits,
    "fashion-mnist": _load_fashion,
    "cifar10": _load_cifar10,
}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar": "cifar10"}
IMAGE_DATASETS = tuple(LOADERS)
#: prefix of the names :func:`nasforge.data.register_dataset` gives in-memory data sets
MEMORY_PREFIX = "memory:"


def load_image_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    valid_fraction: float = 0.0,
    limit: int | None = None,
    input_size: int | None = None,
    test_fraction: float = TEST_FRACTION,
) -> ImageDataset:
    """Load an image set by name (see the module docstring) into normalised tensors.

    Args:
        name: ``digits``, ``fashion-mnist`` or ``cifar10``; a path to an image folder
            (:mod:`nasforge.data.folder`) or an ``.npz`` file (:mod:`nasforge.data.npz`);
            or a ``memory:N`` name from :func:`nasforge.data.register_dataset`.
        data_dir: folder with the files (or one holding the usual sub-folder); default
            ``$NASFORGE_DATA/<folder>`` then ``~/.nasforge/data/<folder>``. A relative
            path ``name`` not found as given is also looked for in ``data_dir``.
        seed: seed of the train/valid split.
        valid_fraction: fraction of the training images held out as ``valid``
            (0 = no validation split, ``valid`` is ``None``).
        limit: keep at most this many images per split (quick runs).
        input_size: resize every image to ``input_size`` x ``input_size`` (bilinear;
            image folders: Pillow, per image, so their images may differ in size).
            ``None`` keeps the stored size (your own images must then share one square size).
        test_fraction: your own data without a test split: the share of each class held
            out as the test split (fixed, independent of ``seed``).
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer, got {limit!r}")
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if input_size is not None and (not isinstance(input_size, int) or input_size < 1):
        raise DataError(f"input_size must be a positive integer, got {input_size!r}")
    if isinstance(name, str) and name.startswith(MEMORY_PREFIX):
        return load_registered(name, seed=seed, valid_fraction=valid_fraction, limit=limit, input_size=input_size)
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else None
    if key in LOADERS:
        xtr, ytr, xte, yte, names, mean, std, scale, folder = LOADERS[key](data_dir, limit)
    else:
        path = user_data_path(name, data_dir)
        raw = read_user_path(path, input_size=input_size, limit=limit, test_fraction=test_fraction)
        xtr, ytr, xte, yte, names, scale = raw.x_train, raw.y_train, raw.x_test, raw.y_test, raw.class_names, raw.scale
        mean, std = channel_stats(xtr, scale)
        key, folder = str(path), path
    train = TensorPair(_normalise(xtr, scale, mean, std), _labels(ytr))
    test = TensorPair(_normalise(xte, scale, mean, std), _labels(yte))
    return finish(key, train, None, test, names, mean, std, None if folder is None else str(folder),
                  seed=seed, valid_fraction=valid_fraction, input_size=input_size)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, size, size)``, bilinear with anti-aliasing (like Pillow's
    filter); on normalised images this equals resizing the pixels, since the weights sum to 1."""
    if tuple(x.shape[2:]) == (size, size) or len(x) == 0:
        return x
    return torch.cat([F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                      for c in torch.split(x, 4096)])


def finish(
    name: str,
    train: TensorPair,
    valid: TensorPair | None,
    test: TensorPair,
    class_names: list[str],
    mean,
    std,
    data_dir: str | None,
    *,
    seed: int = 0,
    valid_fraction: float = 0.0,
    input_size: int | None = None,
) -> ImageDataset:
    """Resize (``input_size``), hold out ``valid_fraction`` of ``train`` by ``seed``, check the
    size is square, and build the :class:`ImageDataset`."""
    if input_size is not None:
        train, test = TensorPair(resize_images(train.x, input_size), train.y), TensorPair(resize_images(test.x, input_size), test.y)
        valid = None if valid is None else TensorPair(resize_images(valid.x, input_size), valid.y)
    h, w = int(train.x.shape[2]), int(train.x.shape[3])
    if h != w:
        raise DataError(f"{name} has images of {w}x{h} (width x height), not square; pass --input-size (input_size=) to resize them")
    if valid_fraction > 0.0:
        train, valid = split(train, valid_fraction, seed)
        if len(train) == 0 or len(valid) == 0:
            raise DataError(f"valid_fraction={valid_fraction} leaves an empty split of {len(train) + len(valid)} images")
    return ImageDataset(
        name=name,
        train=train,
        valid=valid,
        test=test,
        num_classes=len(class_names),
        channels=int(train.x.shape[1]),
        size=h,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        class_names=list(class_names),
        data_dir=data_dir,
    )


def user_data_path(name: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """The image folder or ``.npz`` file ``name`` names (absolute), else :class:`DataError`."""
    p = Path(os.path.expanduser(str(name)))
    cands = [p] + ([Path(os.path.expanduser(str(data_dir))) / p] if data_dir is not None and not p.is_absolute() else [])
    for c in cands:
        if c.exists():
            return c.resolve()
    text = str(name)
    if os.sep in text or "/" in text or text.endswith(".npz") or text.startswith("."):
        raise DataError(f"image data {text} not found (no such folder or .npz file)")
    raise DataError(
        f"unknown image dataset {text!r} (choose from {', '.join(IMAGE_DATASETS)}, "
        "or give the path of an image folder or .npz file)"
    )


def read_user_path(path: Path, *, input_size: int | None = None, limit: int | None = None, test_fraction: float = TEST_FRACTION) -> RawImages:
    """Read an image folder or ``.npz`` file (see :mod:`nasforge.data.folder`, :mod:`nasforge.data.npz`)."""
    if path.is_dir():
        return read_image_folder(path, input_size=input_size, limit=limit, test_fraction=test_fraction)
    if path.suffix.lower() == ".npz":
        return read_npz(path, limit=limit, test_fraction=test_fraction)
    raise DataError(f"{path} is neither an image folder (one sub-folder per class) nor an .npz file")


#: in-memory data sets by ``memory:N`` name (:func:`nasforge.data.register_dataset`)
_REGISTRY: dict[str, ImageDataset] = {}


def load_registered(
    name: str, *, seed: int = 0, valid_fraction: float = 0.0, limit: int | None = None, input_size: int | None = None
) -> ImageDataset:
    """A registered data set, with ``limit``, ``valid_fraction`` and ``input_size`` applied as
    :func:`~nasforge.data.load_image_dataset` applies them; a registered ``valid`` split is
    kept when ``valid_fraction`` is 0."""
    ds = _REGISTRY.get(name)
    if ds is None:
        raise DataError(
            f"in-memory data set {name!r} is not registered in this process (names from register_dataset "
            "live only in the process that made them; use an .npz file or an image folder across processes)"
        )
    train, test = ds.train[:limit] if limit else ds.train, ds.test[:limit] if limit else ds.test
    valid = None if valid_fraction > 0 or ds.valid is None else (ds.valid[:limit] if limit else ds.valid)
    return finish(name, train, valid, test, ds.class_names, ds.mean, ds.std, ds.data_dir,
                  seed=seed, valid_fraction=valid_fraction, input_size=input_size)
