"""A ``.npz`` file as a data set: ``x_train``, ``y_train`` and optional ``x_test``, ``y_test``,
``class_names``.

``numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)`` writes one. The
arrays follow :mod:`nasforge.data.arrays` (images ``(N, H, W)``, ``(N, C, H, W)`` or
``(N, H, W, C)``, uint8 0..255 or float; integer labels 0..K-1). Without test arrays the
test split is held out of the train arrays (20 % of each class, seed-independent).
``class_names`` (strings) fixes K and the names shown; otherwise K = ``max(y_train) + 1``
and the names are ``0..K-1``. The file is read with ``allow_pickle=False``, so it cannot
run code; other keys are ignored.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nasforge.data.arrays import TEST_FRACTION, RawImages, from_arrays
from nasforge.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def read_npz(path: str | Path, *, limit: int | None = None, test_fraction: float = TEST_FRACTION) -> RawImages:
    """Read and check the arrays of ``path`` (see the module docstring)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise DataError(f"{path} holds a single array, not an .npz archive with x_train and y_train")
            found = list(z.files)
            for key in KEYS:
                if key in found:
                    try:
                        arrays[key] = z[key]
                    except ValueError as e:
                        raise DataError(f"{path}: array {key!r} cannot be read without pickle ({e})") from None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            held = ", ".join(found) or "nothing"
            raise DataError(f"{path} has no {key!r} array (it holds {held}); it needs x_train and y_train, optionally x_test, y_test")
    names = None
    if "class_names" in arrays:
        cn = arrays["class_names"]
        if cn.ndim != 1 or not (cn.dtype.kind in "US"):
            raise DataError(f"{path}: 'class_names' must be a 1-d array of strings, got dtype {cn.dtype} and shape {cn.shape}")
        names = [c.decode() if isinstance(c, bytes) else str(c) for c in cn.tolist()]
    return from_arrays(
        arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
        class_names=names, limit=limit, test_fraction=test_fraction, where=str(path),
    )
