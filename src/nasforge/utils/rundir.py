"""The life of a run folder: lock, refuse or replace, one checkpoint header, ordered writes.

Every command that writes a run (``search`` of every method, ``train`` of CNNs and
language models) opens its ``--out`` folder through :class:`RunDir`:

- **exclusive lock** — ``fcntl.flock`` on ``OUT/.nasforge.lock`` for the run's whole life
  (holder's pid written in the file); a second process on the same folder gets a
  one-line :class:`RunDirError` naming the folder and that pid. The kernel drops the lock
  when the process ends, however it ends.
- **no silent replacement** — a folder holding anything is refused unless ``resume``
  (continue its checkpoint) or ``overwrite`` (empty it first; only a folder that looks
  like a nasforge run is emptied).
- **one checkpoint header** — ``{"format", "version", "command", "method", "space",
  "config_hash", "config"}`` stored under ``"header"`` in every ``checkpoint.pt``;
  ``resume`` checks it and says what differs (keys in :data:`RESUME_MAY_CHANGE` may).
- **ordered, atomic writes** — :meth:`RunDir.save_epoch` writes the metrics record, then
  ``arch.json``, then ``checkpoint.pt``: a kill between them leaves at most records after
  the checkpoint's epoch, which the resumed run drops (:meth:`MetricsWriter.truncate_after`)
  and writes again; the other order would lose records for good.
- **unwritable folder** — one line (:class:`RunDirError`), not a traceback.

Fault injection (tests): with ``NASFORGE_FAULT_STOP_AFTER_SAVE=N`` in the environment the
process stops itself (``SIGSTOP``) right after its N-th durable save (a checkpoint, or a
finished trial of a multi-trial search), still holding the lock; a test waits for the
stop (``waitpid(WUNTRACED)``), then kills it: no timing involved.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from nasforge.errors import CheckpointError, ConfigError
from nasforge.utils.io import MetricsWriter, _jsonable, atomic_write_text, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

FORMAT = "nasforge-run"
VERSION = 1
LOCK_FILE = ".nasforge.lock"
FAULT_ENV = "NASFORGE_FAULT_STOP_AFTER_SAVE"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
ARCH = "arch.json"
CONFIG = "config.yaml"
#: files whose presence marks a folder as a nasforge run (``overwrite`` empties only such folders)
RUN_MARKERS = (CONFIG, METRICS, CHECKPOINT, ARCH, "trials.sqlite", "result.json")
#: config keys that may differ between a run and its resume (places, budgets, workers)
RESUME_MAY_CHANGE = (
    "device", "data_dir", "epochs", "trials", "workers", "executor", "address", "cpus_per_trial", "gpus_per_trial",
    "max_retries", "threads", "nb201_table", "table",
)


class RunDirError(ConfigError):
    """The run folder cannot be used: in use, already holds a run, or not writable."""


def config_hash(config: dict, ignore: tuple[str, ...] = RESUME_MAY_CHANGE) -> str:
    """sha256 (16 hex digits) of the config without the keys that may change on resume."""
    kept = {k: v for k, v in sorted(config.items()) if k not in ignore}
    blob = json.dumps(_jsonable(kept), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def make_header(command: str, method: str, space: str | None, config: dict) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "command": command, "method": method, "space": space,
        "config_hash": config_hash(config), "config": _jsonable(dict(config)),
    }


def header_mismatch(saved: dict, expected: dict) -> str | None:
    """One phrase saying how ``saved`` differs from ``expected``, or None when they fit."""
    if saved.get("format") != FORMAT:
        return f"it is not a nasforge run checkpoint (format {saved.get('format')!r})"
    if int(saved.get("version", 0)) > VERSION:
        return f"it has header version {saved.get('version')}, this nasforge reads <= {VERSION}"
    for key in ("command", "method", "space"):
        if saved.get(key) != expected.get(key):
            return f"it is from {key} {saved.get(key)!r}, this run is {key} {expected.get(key)!r}"
    if saved.get("config_hash") != expected.get("config_hash"):
        a, b = saved.get("config", {}), expected.get("config", {})
        diff = [k for k in sorted(set(a) | set(b)) if k not in RESUME_MAY_CHANGE and a.get(k, "<unset>") != b.get(k, "<unset>")]
        shown = ", ".join(f"{k}={a.get(k, '<unset>')!r} there but {b.get(k, '<unset>')!r} here" for k in diff[:4])
        return f"its config differs ({shown or 'config hash ' + str(saved.get('config_hash'))})"
    return None


def _os_reason(e: OSError) -> str:
    return e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)


class RunDir:
    """A run folder opened for writing; use as a context manager (the lock is held inside).

    ``main=False`` (data-parallel ranks other than 0) takes no lock and writes nothing,
    but still reads the checkpoint on resume.
    """

    def __init__(self, path: str | os.PathLike, *, command: str, method: str, space: str | None, config: dict,
                 resume: bool = False, overwrite: bool = False, main: bool = True, metrics_key: str = "epoch",
                 require_checkpoint: bool = True):
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: continue the run or replace it")
        self.path = Path(path)
        self.resume = resume
        self.overwrite = overwrite
        self.main = main
        self.require_checkpoint = require_checkpoint
        self.header = make_header(command, method, space, config)
        self.metrics_key = metrics_key
        self.metrics: MetricsWriter | None = None  # created by open() (rank 0 only)
        self._lock_fd: int | None = None
        self._saves = 0

    def set_config(self, config: dict) -> None:
        """Recompute the header for the run's final config (e.g. after dataset defaults)."""
        self.header = make_header(self.header["command"], self.header["method"], self.header["space"], config)

    # -- life ----------------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        self.open()
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        created, self._created = getattr(self, "_created", False), False
        self.close()
        if exc_type is not None and created and self.main:
            self._remove_if_untouched()

    def _remove_if_untouched(self) -> None:
        """A run that failed before writing anything leaves no folder behind (it made the folder)."""
        try:
            if not self._entries():
                (self.path / LOCK_FILE).unlink(missing_ok=True)
                self.path.rmdir()
        except OSError:
            pass

    def open(self) -> "RunDir":
        if not self.main:
            return self
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise RunDirError(f"cannot create run folder {self.path}: a file is in the way") from None
        except OSError as e:
            raise RunDirError(f"cannot create run folder {self.path} ({_os_reason(e)})") from None
        if not self.path.is_dir():
            raise RunDirError(f"run folder {self.path} is not a folder")
        self._lock()
        try:
            self._check_contents()
            self._probe_writable()
        except BaseException:
            self.close()
            raise
        self.metrics = MetricsWriter(self.path / METRICS, key=self.metrics_key)
        return self

    def close(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(f"cannot write in run folder {self.path} ({_os_reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise RunDirError(f"run folder {self.path} is in use by another nasforge process (pid {holder})") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise RunDirError(f"cannot write in run folder {self.path} ({_os_reason(e)})") from None
        self._lock_fd = fd

    def _entries(self) -> list[Path]:
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE]

    def _check_contents(self) -> None:
        entries = self._entries()
        if self.resume:
            if self.require_checkpoint and not (self.path / CHECKPOINT).is_file():
                raise CheckpointError(f"--resume: no {CHECKPOINT} in {self.path} (nothing to continue)")
            return
        if not entries:
            return
        if not self.overwrite:
            raise RunDirError(f"{self.path} already holds files; pass --resume to continue that run, --overwrite to replace it, or choose another --out")
        if not any((self.path / m).exists() for m in RUN_MARKERS):
            raise RunDirError(f"--overwrite: {self.path} does not look like a nasforge run (no {', '.join(RUN_MARKERS[:4])}); not emptying it")
        for p in entries:
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
            except OSError as e:
                raise RunDirError(f"--overwrite: cannot remove {p} ({_os_reason(e)})") from None
        log.info("replaced the run in %s (--overwrite)", self.path)

    def _probe_writable(self) -> None:
        probe = self.path / f".nasforge-probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunDirError(f"cannot write in run folder {self.path} ({_os_reason(e)})") from None

    # -- files ---------------------------------------------------------------------------------
    def write_config(self, cfg: Any) -> None:
        """``config.yaml`` (atomic; a dataclass or a dict)."""
        if not self.main:
            return
        import dataclasses

        import yaml

        d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        atomic_write_text(self.path / CONFIG, yaml.safe_dump(d, sort_keys=False))  # as nasforge.config.write_config

    def write_arch(self, arch: Any) -> None:
        """``arch.json`` (atomic): an architecture object (``validate``/``to_dict``) or a JSON-ready value."""
        if not self.main or arch is None:
            return
        if hasattr(arch, "to_dict"):
            arch.validate()  # as nasforge.arch.save_arch
            arch = arch.to_dict()
        atomic_write_text(self.path / ARCH, json.dumps(arch, indent=2) + "\n")

    def save_epoch(self, record: dict | None, arch: Any, state: dict) -> None:
        """Metrics record, then ``arch.json``, then the checkpoint (with the header)."""
        if not self.main:
            return
        if record is not None and self.metrics is not None:
            self.metrics.write(record)
        self.write_arch(arch)
        save_checkpoint({**state, "header": self.header}, self.path / CHECKPOINT)
        self.saved()

    def saved(self) -> None:
        """Called after each durable save (the fault-injection point, see the module docstring)."""
        self._saves += 1
        stop_at = os.environ.get(FAULT_ENV)
        if stop_at and self._saves == int(stop_at):
            os.kill(os.getpid(), signal.SIGSTOP)

    def load_checkpoint(self, map_location: Any = "cpu") -> dict:
        """The checkpoint, after checking its header against this run's."""
        path = self.path / CHECKPOINT
        ckpt = load_checkpoint(path, map_location=map_location)
        self.check_header(ckpt.get("header"), path)
        return ckpt

    def check_header(self, saved: dict | None, where: str | os.PathLike) -> None:
        """Raise :class:`CheckpointError` when a saved header does not fit this run (None: an older run, accepted)."""
        if saved is None:
            log.warning("%s has no run header (written by an older nasforge); resuming without checking it", where)
            return
        why = header_mismatch(saved, self.header)
        if why is not None:
            raise CheckpointError(f"--resume: {where} does not fit this run: {why}")

    def truncate_metrics(self, value: int | float) -> None:
        if self.metrics is not None:
            self.metrics.truncate_after(value)


__all__ = ["RunDir", "RunDirError", "RESUME_MAY_CHANGE", "config_hash", "make_header", "header_mismatch", "LOCK_FILE"]
