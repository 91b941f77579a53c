"""Reader of the CIFAR-10 "python version" batch files (Krizhevsky, 2009).

A batch file is a pickled dict ``{b'batch_label', b'labels', b'data', b'filenames'}``
with ``data`` a ``uint8`` array of shape ``(N, 3072)`` (each row R(1024) G(1024) B(1024),
row-major 32 x 32) and ``labels`` a list of ``N`` ints in 0..9. The official set has
``data_batch_1`` .. ``data_batch_5`` (10,000 images each) and ``test_batch``, plus
``batches.meta`` with ``label_names``. Any number of ``data_batch_*`` files and of images
per file is accepted (the shared subset has 1,017-1,102 images per file).

The pickles are read with an unpickler that only admits the three numpy names a batch
file refers to, so a malicious file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np

from nasforge.errors import DataError

BATCH_FOLDER = "cifar-10-batches-py"
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def safe_unpickle(path: Path) -> object:
    try:
        data = path.read_bytes()
        return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, ... for a damaged file
        raise DataError(f"{path} is not a valid CIFAR-10 python pickle ({type(e).__name__}: {str(e)[:120]})") from None


def train_batch_files(folder: Path) -> list[Path]:
    """``data_batch_<k>`` files of ``folder``, sorted by ``k``."""
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(r"data_batch_(\d+)", p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def is_batch_folder(folder: Path) -> bool:
    return (folder / "test_batch").is_file() and bool(train_batch_files(folder))


def read_batch(path: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one batch file."""
    d = safe_unpickle(path)
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path} is not a CIFAR-10 batch (a dict with b'data' and b'labels')")
    x, y = d[b"data"], d[b"labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        shape = getattr(x, "shape", None)
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {type(x).__name__} {shape}")
    y = np.asarray(y, dtype=np.int64)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: {len(y)} labels for {len(x)} images")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels must be in 0..9, found {y.min()}..{y.max()}")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x.reshape(-1, 3, 32, 32), y


def read_class_names(folder: Path) -> list[str]:
    """``label_names`` from ``batches.meta`` when present, else the official ten names."""
    meta = folder / "batches.meta"
    if not meta.is_file():
        return list(CLASS_NAMES)
    d = safe_unpickle(meta)
    names = d.get(b"label_names") if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{meta} has no list of 10 b'label_names'")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar10(folder: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(x_train, y_train, x_test, y_test, class_names)`` from a batch folder.

    ``limit`` caps the images of each split (train batches are read in order until
    the cap is reached).
    """
    xs, ys, n = [], [], 0
    for p in train_batch_files(folder):
        if limit is not None and n >= limit:
            break
        x, y = read_batch(p, None if limit is None else limit - n)
        xs.append(x)
        ys.append(y)
        n += len(y)
    if not xs:
        raise DataError(f"no data_batch_* files in {folder}")
    xt, yt = read_batch(folder / "test_batch", limit)
    return np.concatenate(xs), np.concatenate(ys), xt, yt, read_class_names(folder)


def write_batch(path: str | Path, x: np.ndarray, y, batch_label: str = "nasforge batch") -> None:
    """Write images ``(N, 3, 32, 32)`` (or ``(N, 3072)``) uint8 and labels as a batch file.

    The same dict layout as the official files (protocol 2), for making small test sets.
    """
    x = np.ascontiguousarray(x, dtype=np.uint8).reshape(len(x), 3072)
    d = {b"batch_label": batch_label.encode(), b"labels": [int(v) for v in y], b"data": x}
    Path(path).write_bytes(pickle.dumps(d, protocol=2))


def write_meta(path: str | Path, names: list[str] | None = None) -> None:
    """Write a ``batches.meta`` with ``label_names`` (default: the official ten)."""
    d = {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in (names or CLASS_NAMES)], b"num_vis": 3072}
    Path(path).write_bytes(pickle.dumps(d, protocol=2))
