"""Pieces shared by the CNN and LM trainers: run directory, checkpoints, progress, AMP.

A run directory holds ``config.yaml`` (resolved config), ``arch.json``, ``metrics.jsonl``
(one record per epoch), ``checkpoint.pt`` (written atomically after every epoch, *after*
that epoch's metrics line, so a resumed run truncates ``metrics.jsonl`` to the
checkpoint's epoch and rewrites the rest) and, at the end, ``result.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from nasforge.config import from_dict
from nasforge.errors import CheckpointError, ConfigError, TrainingError
from nasforge.utils.io import load_checkpoint

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULT = "result.json"
CHECKPOINT_FORMAT = "nasforge-train"
CHECKPOINT_VERSION = 1

#: config keys that may change between a run and its ``--resume`` (they do not change results)
RESUME_MAY_CHANGE = ("device", "data_dir", "memory_check")


@dataclass
class TrainResult:
    """What a finished training run reports (also written to ``result.json``)."""

    run_dir: str
    kind: str  # "cnn" or "lm"
    epochs: int
    metrics: dict[str, float] = field(default_factory=dict)  # test_acc/test_loss or test_ppl/...
    params: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def amp_enabled(cfg_amp: bool, device: torch.device) -> bool:
    """Mixed precision runs only on CUDA (autocast float16 + GradScaler)."""
    return bool(cfg_amp) and device.type == "cuda"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def make_scaler(enabled: bool) -> "torch.amp.GradScaler":
    return torch.amp.GradScaler("cuda", enabled=enabled)


def check_finite(loss: torch.Tensor | float, epoch: int, step: int, run_dir: Path | None) -> float:
    """Return ``float(loss)``; raise :class:`TrainingError` when it is NaN or infinite."""
    v = float(loss)
    if not math.isfinite(v):
        where = f"; the last good checkpoint {Path(run_dir) / CHECKPOINT} is kept" if run_dir and (Path(run_dir) / CHECKPOINT).exists() else ""
        raise TrainingError(f"training diverged: loss is {v} at epoch {epoch}, step {step} (lower the learning rate{where})")
    return v


def progress(iterable: Any, *, total: int, desc: str, enabled: bool) -> Any:
    """A tqdm progress bar on stderr (nothing when ``enabled`` is false)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def read_training_checkpoint(path: str | Path, kind: str | None = None, map_location: Any = "cpu") -> dict:
    """Load and sanity-check a training checkpoint (``kind`` "cnn" or "lm" when given)."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a nasforge training checkpoint (no 'format: {CHECKPOINT_FORMAT}' entry)")
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {ckpt.get('version')}; this nasforge reads <= {CHECKPOINT_VERSION}")
    for key in ("kind", "epoch", "model", "config", "arch"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} is incomplete: missing {key!r}")
    if kind is not None and ckpt["kind"] != kind:
        raise CheckpointError(f"checkpoint {path} holds a {ckpt['kind']} run, not a {kind} run")
    return ckpt


def load_model_state(model: torch.nn.Module, state: dict, path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} does not fit the network it describes ({first[:160]})") from None


def config_from_checkpoint(cls: type, ckpt: dict, path: str | Path) -> Any:
    try:
        return from_dict(cls, ckpt["config"], where=f"config in {path}")
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} holds an unreadable config ({e})") from None


def merge_resume_config(cls: type, saved: dict, requested: dict, explicit: dict, path: Path) -> Any:
    """The config of a resumed run: the checkpoint's, with only :data:`RESUME_MAY_CHANGE` keys
    taken from the command line; any other key given with a different value is an error."""
    merged = dict(saved)
    for key, value in explicit.items():
        if value is None or key not in merged:
            continue
        if key in RESUME_MAY_CHANGE:
            merged[key] = requested[key]
        elif requested[key] != merged[key]:
            raise ConfigError(
                f"--resume: config key {key!r} is {requested[key]!r} here but {merged[key]!r} in {path}; "
                "resume with the run's own settings (or train into a new --out)"
            )
    return from_dict(cls, merged, where=f"config of {path}")


@contextlib.contextmanager
def run_settings(deterministic: bool, threads: int | None = None) -> Iterator[None]:
    """Deterministic kernels and the CPU thread count for one run; previous settings restored after."""
    from nasforge.utils.rng import set_deterministic

    before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    if deterministic:
        set_deterministic(True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if deterministic and not before:
            set_deterministic(False)
        if threads:
            torch.set_num_threads(threads_before)
