"""Executors that evaluate trials asynchronously: inline, a local process pool, Ray.

Every executor runs ``run_task(fn_path, task)`` (``fn_path`` = ``"module:function"``, so
only plain data crosses process boundaries) and reports :class:`Outcome` objects as
trials finish, in completion order. ``worker_died`` tells the runner that the process
evaluating the trial vanished (killed, out of memory), so it may retry the trial.

- :class:`InlineExecutor`: in the driver process, one at a time (table look-ups).
- :class:`LocalPoolExecutor`: ``workers`` slots, each a one-process
  :class:`concurrent.futures.ProcessPoolExecutor`, so a dying worker breaks only its own
  slot: the slot is rebuilt and only that trial is reported as died (a dying forkserver
  breaks the slots it served, each handled the same way). Workers start from a
  ``forkserver`` that has imported the evaluator's module once (``preload``), so a new or
  replaced worker costs a fork, not a fresh ``import torch``; ``spawn`` is the fallback
  where forkserver is unavailable.
- :class:`RayExecutor`: one Ray task per trial with ``num_cpus``/``num_gpus`` per trial;
  Ray itself re-runs a task whose worker died (``max_retries``); when those retries are
  spent the trial comes back as died and the runner decides. A local Ray it starts is
  loopback-only and dies with the driver (:mod:`nasforge.runners.ray_local`).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import logging
import multiprocessing as mp
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from nasforge.errors import ConfigError
from nasforge.runners.ray_local import RayWatchdog, check_ray_address, join_ray, start_local_ray

logger = logging.getLogger(__name__)


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


def _adopt_orphans() -> bool:
    """Linux: make this process the reaper of its descendants' orphans (``PR_SET_CHILD_SUBREAPER``).

    A worker that the forkserver had forked but not yet handed over when the forkserver was
    killed never runs its initializer, holds both ends of its call queue and would wait
    forever (and keep the driver's stdout open) after the driver exits; adopted, it is a
    child of the driver, which kills it at shutdown (:func:`_kill_pool_children`)."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _kill_pool_children() -> None:
    """SIGKILL this process's children that are forkserver processes or workers forked by one."""
    import signal

    me = str(os.getpid())
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
            if ppid != me:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"multiprocessing.forkserver" in cmd:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            continue


def _process_gone(pid: int) -> bool:
    """True once ``pid`` has exited, also while it is a zombie its parent has not reaped
    yet (``kill(pid, 0)`` still succeeds on a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return os.path.isdir("/proc/self")  # reaped meanwhile; without /proc, kill(pid, 0) is all there is
    except (OSError, IndexError):
        return False


def _watch_driver(driver_pid: int, interval: float = 0.5) -> None:
    """Worker initializer: exit as soon as the driver has exited (e.g. SIGKILLed).

    An orphaned ``ProcessPoolExecutor`` worker would otherwise wait on its task queue
    forever (it holds both ends of the queue's pipe, so it never sees EOF), holding the
    driver's stdout/stderr, which it inherited. The driver's exit, not its reaping, is what
    counts: a parent that reads the driver's output to EOF before reaping it
    (``subprocess.run(capture_output=True)``) would otherwise wait forever on a zombie
    driver that still answers ``kill(pid, 0)``. Linux: a pidfd, readable once the driver
    has exited (zombie or not); elsewhere a poll."""
    import select
    import threading
    import time

    fd: int | None = None
    try:
        fd = os.pidfd_open(driver_pid)  # Linux >= 5.3
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        fd = None

    def loop() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while not _process_gone(driver_pid):
                time.sleep(interval)
        os._exit(0)

    threading.Thread(target=loop, name="nasforge-driver-watch", daemon=True).start()


class LocalPoolExecutor:
    """``workers`` one-process pools; any pool process dying is a retry, never a crash.

    A worker killed (SIGKILL, out of memory) breaks only its slot. The forkserver dying
    breaks every slot whose worker it forked (their exit codes come through it) and the
    next worker start may fail with ``EOFError``/``ConnectionRefusedError`` while it is
    being restarted. Both cases are handled the same way: the broken slot's processes
    are killed, the slot is rebuilt (``restarts`` counts it) and its trial is reported
    ``worker_died`` so that the runner re-submits it; a slot that cannot start a worker
    is retried with a short back-off before its trial is reported as died."""

    name = "local"
    START_ATTEMPTS = 5

    def __init__(self, workers: int = 1, start_method: str | None = None, preload: list[str] | None = None):
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        self.capacity = workers
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        self._adopted = start_method == "forkserver" and _adopt_orphans()
        if start_method == "forkserver" and preload:
            self._ctx.set_forkserver_preload(list(preload))
        self._slots: list[cf.ProcessPoolExecutor] = [self._new_slot() for _ in range(workers)]
        self._running: dict[cf.Future, tuple[int, int]] = {}  # future -> (trial_id, slot)
        self._died: list[Outcome] = []  # trials whose worker could not even be started
        self.restarts = 0

    def _new_slot(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=1, mp_context=self._ctx, initializer=_watch_driver, initargs=(os.getpid(),))

    def _replace_slot(self, slot: int) -> None:
        old = self._slots[slot]
        for p in list((getattr(old, "_processes", None) or {}).values()):
            try:  # an orphan of a dead forkserver would otherwise wait on its queue until the driver exits
                p.kill()
            except Exception:
                pass
        try:
            old.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass
        self._slots[slot] = self._new_slot()
        self.restarts += 1

    def busy(self) -> int:
        return len(self._running) + len(self._died)

    def free(self) -> int:
        return self.capacity - self.busy()

    def worker_pids(self) -> list[int]:
        return [pid for s in self._slots for pid in getattr(s, "_processes", {}) or {}]

    def submit(self, trial_id: int, fn_path: str, task: dict) -> None:
        used = {slot for _, slot in self._running.values()}
        slot = next(i for i in range(self.capacity) if i not in used)
        err: BaseException | None = None
        for attempt in range(self.START_ATTEMPTS):
            try:
                fut = self._slots[slot].submit(run_task, fn_path, task)
            except (BrokenProcessPool, EOFError, OSError, RuntimeError) as e:  # a dead worker or forkserver
                err = e
                logger.info("worker slot %d could not start (%s); rebuilding it", slot, _err(e))
                self._replace_slot(slot)
                time.sleep(min(1.0, 0.05 * 2**attempt))  # the forkserver is restarted on the next start
                continue
            self._running[fut] = (trial_id, slot)
            return
        self._died.append(Outcome(trial_id, False, error=f"could not start a worker process ({_err(err) if err else '?'})", worker_died=True))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        out, self._died = self._died, []
        if not self._running:
            return out
        done, _ = cf.wait(list(self._running), timeout=0 if out else timeout, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            trial_id, slot = self._running.pop(fut)
            exc = fut.exception()
            if exc is None:
                out.append(Outcome(trial_id, True, fut.result()))
            elif isinstance(exc, BrokenProcessPool):
                self._replace_slot(slot)
                out.append(Outcome(trial_id, False, error="worker process died", worker_died=True))
            else:
                out.append(Outcome(trial_id, False, error=_err(exc)))
        return out

    def shutdown(self) -> None:
        """End the pool now: its worker processes are killed, not asked to stop.

        Asking (the pool's stop sentinel) is not enough: a ``ProcessPoolExecutor`` sends
        it only to workers that it believes alive, and a forkserver's worker is believed
        dead as soon as the forkserver is (its exit code comes through it), e.g. once
        :func:`_kill_pool_children` has run. Such a worker waited on its queue after the
        driver exited, holding the driver's stdout/stderr open. At the end of a search
        the workers are idle; after an error the trials they hold stay ``pending`` and
        ``--resume`` runs them again."""
        procs = [p for s in self._slots for p in list((getattr(s, "_processes", None) or {}).values())]
        for s in self._slots:
            s.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            try:
                p.kill()
            except Exception:  # already gone or closed
                pass
        if self._adopted:
            _kill_pool_children()  # orphans of a killed forkserver, which nothing else would end


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
        self._watchdog: RayWatchdog | None = None
        if not ray.is_initialized():
            check_ray_address(address)
            if address in (None, "", "local"):
                start_local_ray(ray, num_cpus=max(1, int(workers * cpus_per_trial)), num_gpus=None if gpus_per_trial else 0)
                self._watchdog = RayWatchdog(ray)
            else:
                join_ray(ray, address)
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
            self._owns = False
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None


def make_executor(kind: str, workers: int, *, address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_retries: int = 2, preload: list[str] | None = None):
    if kind == "inline":
        return InlineExecutor()
    if kind == "local":
        return LocalPoolExecutor(workers, preload=preload)
    if kind == "ray":
        return RayExecutor(workers, address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_retries=max_retries)
    raise ConfigError(f"unknown executor {kind!r} (local, ray or inline)")
