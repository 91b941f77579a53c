"""Optional TensorBoard mirror of ``metrics.jsonl``: every record also as scalars.

TensorBoard is an optional dependency (``pip install 'nasforge[tensorboard]'``). When
``torch.utils.tensorboard`` imports, :func:`mirror_for` gives a :class:`ScalarMirror`
writing event files to ``<run dir>/tensorboard``; otherwise it gives ``None`` and nothing
happens. ``NASFORGE_TENSORBOARD=0`` turns the mirror off.

Hook: :class:`nasforge.utils.io.MetricsWriter.write` calls :func:`mirror_record` with its
path, index key and the record, after the JSON line is written; so every method's
metrics appear in TensorBoard without code in the methods. A record's numeric values
become scalars (nested dicts as ``outer/inner``; lists, strings and architecture dicts
are skipped), at step = the record's index key (``epoch``, ``step``, ``trial``) or, if
it has none, the running count of records.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable

ENV = "NASFORGE_TENSORBOARD"
LOG_SUBDIR = "tensorboard"
_STEP_KEYS = ("epoch", "step", "trial", "iteration", "global_step")

_MIRRORS: dict[str, "ScalarMirror | None"] = {}


def _summary_writer_cls() -> Callable[..., Any] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def available() -> bool:
    """True when TensorBoard event files can be written (and the mirror is not switched off)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off") and _summary_writer_cls() is not None


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The numeric values of a metrics record as ``{tag: value}`` (index keys excluded)."""
    out: dict[str, float] = {}
    for k, v in record.items():
        tag = f"{prefix}{k}"
        if not prefix and k in _STEP_KEYS:
            continue
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            if math.isfinite(float(v)):
                out[tag] = float(v)
        elif isinstance(v, dict) and not ("kind" in v and "version" in v):
            out.update(scalars(v, prefix=f"{tag}/"))
    return out


class ScalarMirror:
    """Writes each record's scalars to a TensorBoard event file in ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike, key: str = "epoch", writer_factory: Callable[..., Any] | None = None):
        factory = writer_factory or _summary_writer_cls()
        if factory is None:
            raise RuntimeError("tensorboard is not installed")
        self.log_dir = Path(log_dir)
        self.key = key
        self.count = 0
        self.writer = factory(log_dir=str(self.log_dir))

    def write(self, record: dict) -> None:
        self.count += 1
        step = record.get(self.key)
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            step = next((record[k] for k in _STEP_KEYS if isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)), self.count)
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def mirror_for(metrics_path: str | os.PathLike, key: str = "epoch") -> ScalarMirror | None:
    """The mirror of a ``metrics.jsonl`` (one per file, kept open), or None without TensorBoard."""
    p = str(Path(metrics_path).resolve())
    if p not in _MIRRORS:
        _MIRRORS[p] = ScalarMirror(Path(p).parent / LOG_SUBDIR, key) if available() else None
    return _MIRRORS[p]


def mirror_record(metrics_path: str | os.PathLike, key: str, record: dict) -> None:
    """Mirror one record (the hook :class:`~nasforge.utils.io.MetricsWriter` calls); never
    raises: a TensorBoard problem must not stop a run."""
    try:
        m = mirror_for(metrics_path, key)
        if m is not None:
            m.write(record)
    except Exception as e:  # noqa: BLE001 - best effort by design
        warnings.warn(f"TensorBoard mirror of {metrics_path} failed: {e}", RuntimeWarning, stacklevel=2)
        _MIRRORS[str(Path(metrics_path).resolve())] = None


def close_all() -> None:
    for m in _MIRRORS.values():
        if m is not None:
            m.close()
    _MIRRORS.clear()


__all__ = ["ENV", "ScalarMirror", "available", "close_all", "mirror_for", "mirror_record", "scalars"]
