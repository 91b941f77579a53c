"""Executors that evaluate trials asynchronously: inline, a local process pool, Ray.

Every executor runs ``run_task(fn_path, task)`` (``fn_path`` = ``"module:function"``, so
only plain data crosses process boundaries) and reports :class:`Outcome` objects as
trials finish, in completion order. ``worker_died`` tells the runner that the process
evaluating the trial vanished (killed, out of memory), so it may retry the trial.

- :class:`InlineExecutor`: in the driver process, one at a time (table look-ups).
- :class:`LocalPoolExecutor`: ``workers`` slots, each a one-process
  :class:`concurrent.futures.ProcessPoolExecutor`, so a dying worker breaks only its own
  slot: the slot is rebuilt and only that trial is reported as died. Workers start from a
  ``forkserver`` that has imported the evaluator's module once (``preload``), so a new or
  replaced worker costs a fork, not a fresh ``import torch``; ``spawn`` is the fallback
  where forkserver is unavailable.
- :class:`RayExecutor`: one Ray task per trial with ``num_cpus``/``num_gpus`` per trial;
  Ray itself re-runs a task whose worker died (``max_retries``); when those retries are
  spent the trial comes back as died and the runner decides.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import multiprocessing as mp
import os
import socket
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError


@dataclass
class Outcome:
    trial_id: int
    ok: bool
    result: dict | None = None
    error: str | None = None
    worker_died: bool = False


def run_task(fn_path: str, task: dict) -> dict:
    """Import ``module:function`` and call it on ``task`` (runs in the worker)."""
    threads = int(task.get("config", {}).get("threads", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    mod, _, fn = fn_path.partition(":")
    return getattr(importlib.import_module(mod), fn)(task)


def _err(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"[:500]


class InlineExecutor:
    name = "inline"

    def __init__(self) -> None:
        self.capacity = 1
        self._done: list[Outcome] = []

    def busy(self) -> int:
        return len(self._done)

    def free(self) -> int:
        return 1 if not self._done else 0

    def submit(self, trial_id: int, fn_path: str, task: dict) -> None:
        try:
            self._done.append(Outcome(trial_id, True, run_task(fn_path, task)))
        except Exception as e:  # a failing evaluation is a failed trial, not a crash of the search
            self._done.append(Outcome(trial_id, False, error=_err(e)))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        out, self._done = self._done, []
        return out

    def shutdown(self) -> None:
        pass


def _watch_driver(driver_pid: int, interval: float = 0.5) -> None:
    """Worker initializer: exit when the driver is gone (e.g. SIGKILLed).

    An orphaned ``ProcessPoolExecutor`` worker would otherwise wait on its task queue
    forever (it holds both ends of the queue's pipe, so it never sees EOF)."""
    import threading
    import time

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=loop, name="nasforge-driver-watch", daemon=True).start()


class LocalPoolExecutor:
    name = "local"

    def __init__(self, workers: int = 1, start_method: str | None = None, preload: list[str] | None = None):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.capacity = workers
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        if start_method == "forkserver" and preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._slots: list[cf.ProcessPoolExecutor] = [self._new_slot() for _ in range(workers)]
        self._running: dict[cf.Future, tuple[int, int]] = {}  # future -> (trial_id, slot)

    def _new_slot(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=1, mp_context=self._ctx, initializer=_watch_driver, initargs=(os.getpid(),))

    def busy(self) -> int:
        return len(self._running)

    def free(self) -> int:
        return self.capacity - len(self._running)

    def worker_pids(self) -> list[int]:
        return [pid for s in self._slots for pid in getattr(s, "_processes", {}) or {}]

    def submit(self, trial_id: int, fn_path: str, task: dict) -> None:
        used = {slot for _, slot in self._running.values()}
        slot = next(i for i in range(self.capacity) if i not in used)
        try:
            fut = self._slots[slot].submit(run_task, fn_path, task)
        except BrokenProcessPool:
            self._slots[slot] = self._new_slot()
            fut = self._slots[slot].submit(run_task, fn_path, task)
        self._running[fut] = (trial_id, slot)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._running:
            return []
        done, _ = cf.wait(list(self._running), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            trial_id, slot = self._running.pop(fut)
            exc = fut.exception()
            if exc is None:
                out.append(Outcome(trial_id, True, fut.result()))
            elif isinstance(exc, BrokenProcessPool):
                self._slots[slot].shutdown(wait=False, cancel_futures=True)
                self._slots[slot] = self._new_slot()
                out.append(Outcome(trial_id, False, error="worker process died", worker_died=True))
            else:
                out.append(Outcome(trial_id, False, error=_err(exc)))
        return out

    def shutdown(self) -> None:
        for s in self._slots:
            s.shutdown(wait=False, cancel_futures=True)


def check_ray_address(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast with one line when a ``host:port`` Ray address cannot be reached."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r} is not of the form host:port, 'auto' or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address} ({e.strerror or e})") from None


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int = 1, *, address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_retries: int = 2):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs the 'ray' package (pip install 'nasforge[ray]')") from None
        self.ray = ray
        self.capacity = workers
        self._owns = False
        if not ray.is_initialized():
            check_ray_address(address)
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if address in (None, "", "local"):
                    ray.init(num_cpus=max(1, int(workers * cpus_per_trial)), num_gpus=None if gpus_per_trial else 0, **kw)
                else:
                    ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"cannot start or join Ray at {address or 'a new local cluster'} ({first[:200]})") from None
            self._owns = True
        self._remote = ray.remote(run_task).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=max_retries, retry_exceptions=False)
        self._running: dict[Any, int] = {}

    def busy(self) -> int:
        return len(self._running)

    def free(self) -> int:
        return self.capacity - len(self._running)

    def submit(self, trial_id: int, fn_path: str, task: dict) -> None:
        self._running[self._remote.remote(fn_path, task)] = trial_id

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._running:
            return []
        ray = self.ray
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            trial_id = self._running.pop(ref)
            try:
                out.append(Outcome(trial_id, True, ray.get(ref)))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.RayActorError) as e:
                out.append(Outcome(trial_id, False, error=_err(e), worker_died=True))
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if getattr(e, "cause", None) is not None else e
                out.append(Outcome(trial_id, False, error=_err(cause)))
        return out

    def shutdown(self) -> None:
        for ref in list(self._running):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self._running.clear()
        if self._owns:
            self.ray.shutdown()


def make_executor(kind: str, workers: int, *, address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_retries: int = 2, preload: list[str] | None = None):
    if kind == "inline":
        return InlineExecutor()
    if kind == "local":
        return LocalPoolExecutor(workers, preload=preload)
    if kind == "ray":
        return RayExecutor(workers, address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_retries=max_retries)
    raise ConfigError(f"unknown executor {kind!r} (local, ray or inline)")
