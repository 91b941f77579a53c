"""Reader of the IDX format of MNIST and Fashion-MNIST (LeCun et al.; Xiao et al., 2017).

An IDX file is big-endian: two zero bytes, a type byte (0x08 = uint8), the number of
dimensions ``d``, then ``d`` uint32 sizes, then the data in row-major order. Images are
magic 2051 (``0x00000803``: uint8, 3 dims ``n, rows, cols``), labels magic 2049
(``0x00000801``: uint8, 1 dim ``n``). Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from nasforge.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (uncompressed first)."""
    for name in (stem, stem + ".gz"):
        p = folder / name
        if p.is_file():
            return p
    return None


def read_idx(path: Path, expect_magic: int, limit: int | None = None) -> np.ndarray:
    """Read an IDX file of uint8 into an array of its declared shape (first ``limit`` items).

    Raises :class:`DataError` on a wrong magic number, a file shorter or longer than its
    header says, or a damaged gzip stream.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path} is too short to be an IDX file ({len(head)} bytes)")
            magic = struct.unpack(">I", head)[0]
            if magic != expect_magic:
                raise DataError(f"{path} has IDX magic number {magic}, expected {expect_magic}")
            ndim = head[3]
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path} is truncated inside its IDX header")
            dims = list(struct.unpack(">" + "I" * ndim, dims_raw))
            n = dims[0] if limit is None else min(dims[0], int(limit))
            item = int(np.prod(dims[1:], dtype=np.int64)) if ndim > 1 else 1
            want = n * item
            buf = f.read(want)
            if len(buf) < want:
                raise DataError(f"{path} is truncated: header declares {dims[0]} items of {item} bytes, found {len(buf) // max(item, 1)}")
            if limit is None and f.read(1):
                raise DataError(f"{path} is longer than its IDX header declares ({dims[0]} items)")
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    return np.frombuffer(buf, dtype=np.uint8).reshape([n] + dims[1:])


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed if ``path`` ends in ``.gz``)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + a.tobytes())
