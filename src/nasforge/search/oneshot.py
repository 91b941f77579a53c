"""The one loop of the one-shot searches (DARTS, SNAS, DARTS-RNN, ENAS).

A strategy implements the small :class:`OneShot` protocol — one epoch of training, the
final architecture, a log line, ``state_dict``/``load_state_dict`` — and
:func:`run_oneshot` does the rest, the same way for every method: the run folder
(:class:`nasforge.utils.rundir.RunDir`: lock, refuse/replace, header, ``--resume``),
one ``metrics.jsonl`` record per epoch, then ``arch.json``, then ``checkpoint.pt``
(in that order: a kill between them loses nothing, resume drops the records after the
checkpoint), data-parallel hooks (only the main process writes; a barrier per epoch),
and progress (one log line per epoch on the ``nasforge`` logger; the strategies' own
per-step tqdm bars).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from nasforge.errors import CheckpointError
from nasforge.utils.rundir import RunDir

log = logging.getLogger(__name__)


class OneShot(Protocol):
    """What :func:`run_oneshot` needs from a strategy."""

    method: str  # the run header's method (darts, snas, enas)
    space: str  # the run header's space (cell, nb201, rnn, macro, micro)
    cfg: Any  # the config dataclass (written to config.yaml, hashed into the header)
    device: Any

    def config_dict(self) -> dict: ...

    def finished(self) -> bool:
        """True when the budget (epochs, queries) is spent."""
        ...

    def run_epoch(self) -> tuple[dict, Any]:
        """Train one epoch and count it; return its metrics record and the architecture to
        write to ``arch.json`` now (None: none this epoch)."""
        ...

    def final_arch(self, last: Any) -> Any:
        """The search result once :meth:`finished` (``last``: the last epoch's arch or None)."""
        ...

    def epoch_line(self, record: dict) -> str: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class ConfigBacked:
    """Protocol defaults for a strategy holding a dataclass ``cfg`` (with ``space`` and ``epochs``)
    and counting finished epochs in ``epoch``."""

    cfg: Any
    epoch: int

    @property
    def space(self) -> str:
        return self.cfg.space

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.cfg)

    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs


def _is_main(s: Any) -> bool:
    dist = getattr(s, "dist", None)
    return dist is None or dist.is_main


def _barrier(s: Any) -> None:
    dist = getattr(s, "dist", None)
    if dist is not None:
        dist.barrier()


def run_oneshot(s: OneShot, run_dir: str | Path | None, *, resume: bool = False, overwrite: bool = False,
                progress: bool = True, on_epoch: Optional[Callable[[dict], None]] = None) -> Any:
    """Run ``s`` to the end of its budget in ``run_dir`` (None: write nothing); returns the final arch."""
    if run_dir is None:
        if resume:
            raise CheckpointError("--resume needs a run folder")
        return _loop(s, None, progress, on_epoch)
    with RunDir(run_dir, command="search", method=s.method, space=s.space, config=s.config_dict(),
                resume=resume, overwrite=overwrite, main=_is_main(s)) as rd:
        if resume:
            s.load_state_dict(rd.load_checkpoint(map_location=s.device))
            rd.truncate_metrics(s.epoch)  # type: ignore[attr-defined]
        else:
            rd.write_config(s.cfg)
        return _loop(s, rd, progress, on_epoch)


def _loop(s: OneShot, rd: RunDir | None, progress: bool, on_epoch: Optional[Callable[[dict], None]]) -> Any:
    arch = None
    main = _is_main(s)
    while not s.finished():
        record, arch = s.run_epoch()
        if rd is not None and main:
            rd.save_epoch(record, arch, s.state_dict())
        if progress and main:
            log.info(s.epoch_line(record))
        if on_epoch is not None:
            on_epoch(record)
        _barrier(s)
    final = s.final_arch(arch)
    if rd is not None and main:
        rd.write_arch(final)
    return final


__all__ = ["OneShot", "run_oneshot"]
