"""An image folder as a data set: one sub-folder per class, PNG/JPEG files read with Pillow.

Layouts (``torchvision.datasets.ImageFolder``-style)::

    flowers/                     flowers/
      daisy/ 001.png ...           train/ daisy/ ... tulip/ ...
      tulip/ a.jpg ...             test/  daisy/ ... tulip/ ...

* Classes are the non-hidden sub-folders, sorted by name; label ``i`` is the ``i``-th.
  Files ending in ``.png``, ``.jpg`` or ``.jpeg`` (any case) are images; other files are
  ignored. A class folder without images, or a file that Pillow cannot read, raises a
  one-line :class:`~nasforge.errors.DataError` naming the folder or file.
* With ``train/`` and ``test/`` sub-folders (each holding the class folders) those are the
  splits; ``test/`` may lack classes but must not add any. Otherwise the test split is
  held out of the one folder: ``round(0.2 * n_c)`` images of each class, chosen by
  ``numpy.random.RandomState(0)`` (the same for every seed).
* Order: the files (sorted by class, then name) in a fixed ``RandomState(0)``
  permutation, so ``limit`` keeps a mix of all classes; only the kept files are opened.
* Channels: 1 when every image is gray (Pillow modes ``1``, ``L``, ``LA``, ``I``,
  ``I;16``, ``F``), else 3 (gray images are then repeated to RGB; alpha is dropped).
* Size: all images must have one square size, unless ``input_size`` is given: then each
  image is resized to ``input_size`` x ``input_size`` with Pillow's bilinear filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nasforge.data.arrays import TEST_FRACTION, RawImages, holdout
from nasforge.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _pil():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise DataError("reading an image folder needs Pillow: pip install Pillow") from None
    return Image, UnidentifiedImageError


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def is_image_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like an image folder (a class sub-folder holding an image)."""
    try:
        subs = _subdirs(folder)
        if {"train", "test"} <= {p.name for p in subs}:
            subs = _subdirs(folder / "train")
        return any(_images(s) for s in subs)
    except OSError:
        return False


def _scan(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(file, label)`` pairs of one split folder."""
    subs = _subdirs(folder)
    if not subs:
        loose = "images but " if _images(folder) else ""
        raise DataError(f"{folder} holds {loose}no class sub-folders; put the images of each class in a sub-folder named after it")
    names = [p.name for p in subs]
    if classes is not None:
        extra = [n for n in names if n not in classes]
        if extra:
            raise DataError(f"{folder} has class folder {extra[0]!r} that the train folder lacks")
    else:
        classes = names
    files: list[tuple[Path, int]] = []
    for sub in subs:
        imgs = _images(sub)
        if not imgs:
            raise DataError(f"class folder {sub} holds no PNG or JPEG images")
        label = classes.index(sub.name)
        files += [(p, label) for p in imgs]
    return classes, files


def _shuffled(files: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
    perm = np.random.RandomState(0).permutation(len(files))
    return [files[i] for i in perm]


def _header(path: Path) -> tuple[tuple[int, int], str]:
    Image, Unidentified = _pil()
    try:
        with Image.open(path) as im:
            return im.size, im.mode
    except (Unidentified, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _read(path: Path, mode: str, size: int | None) -> np.ndarray:
    Image, Unidentified = _pil()
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (Unidentified, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _load(files: list[tuple[Path, int]], mode: str, size: int, resize: int | None) -> tuple[np.ndarray, np.ndarray]:
    c = 1 if mode == "L" else 3
    x = np.empty((len(files), c, size, size), dtype=np.uint8)
    for i, (p, _) in enumerate(files):
        x[i] = _read(p, mode, resize)
    return x, np.array([label for _, label in files], dtype=np.int64)


def read_image_folder(
    folder: str | Path,
    *,
    input_size: int | None = None,
    limit: int | None = None,
    test_fraction: float = TEST_FRACTION,
) -> RawImages:
    """Read ``folder`` (see the module docstring) into uint8 ``(N, C, H, W)`` arrays."""
    folder = Path(folder)
    subs = {p.name for p in _subdirs(folder)}
    if {"train", "test"} <= subs:
        classes, train = _scan(folder / "train")
        _, test = _scan(folder / "test", classes)
        train, test = _shuffled(train), _shuffled(test)
    else:
        classes, files = _scan(folder)
        files = _shuffled(files)
        keep, held = holdout(np.array([label for _, label in files]), test_fraction)
        train, test = [files[i] for i in keep], [files[i] for i in held]
        if not test:
            raise DataError(
                f"{folder} has too few images ({len(files)}) to hold out a test split of {test_fraction:g} per class; "
                "add images or a train/ and test/ sub-folder"
            )
    if len(classes) < 2:
        raise DataError(f"{folder} has one class folder ({classes[0]}); classification needs at least 2")
    if limit is not None:
        train, test = train[:limit], test[:limit]
    headers = [(p, *_header(p)) for p, _ in train + test]
    gray = all(mode in GRAY_MODES for _, _, mode in headers)
    if input_size is None:
        first, (w, h), _ = headers[0]
        for p, wh, _ in headers:
            if wh != (w, h):
                raise DataError(
                    f"images differ in size: {first} is {w}x{h} but {p} is {wh[0]}x{wh[1]}; "
                    "pass --input-size (input_size=) to resize them to one size"
                )
        if w != h:
            raise DataError(f"images are {w}x{h} (width x height), not square, e.g. {first}; pass --input-size (input_size=) to resize them")
        size = w
    else:
        size = int(input_size)
    mode = "L" if gray else "RGB"
    x_train, y_train = _load(train, mode, size, input_size)
    x_test, y_test = _load(test, mode, size, input_size)
    return RawImages(x_train, y_train, x_test, y_test, list(classes), 1.0 / 255.0)
