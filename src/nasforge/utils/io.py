"""Atomic file writes, checkpoints and JSONL metrics.

Every file a run writes goes through a temporary file + ``os.replace`` so a run killed
at any instant leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from nasforge.errors import CheckpointError


#: OS errors a user can cause or fix (full disk, quota, read-only or forbidden folder): they
#: stop a run with one line instead of a traceback
USER_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def write_error(path: Path, e: OSError) -> CheckpointError:
    """The one-line error for a failed write of ``path`` (the previous file is kept)."""
    why = os.strerror(e.errno) if e.errno else str(e)
    kept = "; the previous file is kept" if path.exists() else ""
    return CheckpointError(f"cannot write {path}: {why[:1].lower() + why[1:]}{kept}")


def ensure_dir(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``; a file in the way, a full disk or a read-only / forbidden
    location raises :class:`~nasforge.errors.CheckpointError` with one line."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(f"cannot create the folder {folder}: a file is in the way (choose another --out)") from None
    except OSError as e:
        if e.errno in USER_WRITE_ERRNOS:
            why = os.strerror(e.errno)
            raise CheckpointError(f"cannot create the folder {folder}: {why[:1].lower() + why[1:]}") from None
        raise
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    On any failure the temporary file is removed and ``path`` keeps its previous content;
    a full disk (ENOSPC), exceeded quota, or a read-only / forbidden folder raises
    :class:`~nasforge.errors.CheckpointError` with one line naming the file.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in USER_WRITE_ERRNOS:
            raise write_error(path, e) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in USER_WRITE_ERRNOS:
            raise write_error(path, e) from None
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """Serialise ``obj`` with ``torch.save`` and replace ``path`` atomically.

    Keep ``obj`` to tensors, numbers, strings, lists, tuples and dicts so that
    :func:`load_checkpoint` can read it with ``weights_only=True``.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupted or not a nasforge checkpoint ({first[:160]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a dict (got {type(obj).__name__})")
    return obj


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu()
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (TypeError, ValueError):
            pass
    return v


class MetricsWriter:
    """Append-only ``metrics.jsonl``: one JSON object per line, flushed per record.

    On resume, :meth:`truncate_after` drops records written after the checkpoint that is
    being resumed, so a resumed run's file equals that of an unbroken run.
    """

    def __init__(self, path: str | os.PathLike, key: str = "epoch"):
        self.path = Path(path)
        self.key = key
        ensure_dir(self.path.parent)

    def write(self, record: dict) -> None:
        line = json.dumps(_jsonable(record), sort_keys=False)
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
        except OSError as e:  # a torn last line is skipped by read_jsonl
            if e.errno in USER_WRITE_ERRNOS:
                raise write_error(self.path, e) from None
            raise
        from nasforge.utils.tensorboard import mirror_record  # optional TensorBoard scalars

        mirror_record(self.path, self.key, record)

    def truncate_after(self, value: int | float) -> None:
        """Keep only records whose ``self.key`` is <= value (and all records without it)."""
        if not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path) if not (self.key in r and r[self.key] > value)]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL file, skipping a torn last line (a run killed mid-write)."""
    out: list[dict] = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    yield from read_jsonl(path)
