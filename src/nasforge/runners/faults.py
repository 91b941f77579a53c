"""Evaluators for tests and benchmarks of the runners (deterministic, no training).

- :func:`synthetic`: a deterministic score of the architecture, an optional ``sleep`` and
  one line per evaluation appended to ``config["log"]`` (to count how often each trial
  ran);
- :func:`crash_once`: SIGKILLs its own worker process the first time it sees a trial in
  ``config["crash_trials"]`` (a marker file in ``config["crash_dir"]`` remembers it), then
  evaluates with ``config["delegate"]`` — fault injection for retry tests;
- :func:`delayed`: sleeps, then evaluates with ``config["delegate"]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

from nasforge.runners.executors import run_task


def _jitter(task: dict) -> None:
    """``config["sleep"]`` seconds plus ``config["jitter"]`` × a per-architecture fraction
    (so trials finish out of proposal order, deterministically per architecture)."""
    cfg = task.get("config", {})
    blob = json.dumps(task["arch"], sort_keys=True).encode()
    frac = int(hashlib.sha256(blob).hexdigest()[8:16], 16) / 0xFFFFFFFF
    t = float(cfg.get("sleep") or 0.0) + float(cfg.get("jitter") or 0.0) * frac
    if t > 0:
        time.sleep(t)


def synthetic(task: dict) -> dict:
    cfg = task.get("config", {})
    _jitter(task)
    blob = json.dumps(task["arch"], sort_keys=True).encode()
    acc = int(hashlib.sha256(blob).hexdigest()[:8], 16) / 0xFFFFFFFF
    if cfg.get("log"):
        fd = os.open(cfg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{task.get('trial_id')} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    return {"accuracy": acc, "pid": os.getpid()}


def crash_once(task: dict) -> dict:
    cfg = task.get("config", {})
    tid = task.get("trial_id")
    if tid in cfg.get("crash_trials", []):
        marker = Path(cfg["crash_dir"]) / f"crashed-{tid}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return run_task(cfg.get("delegate", "nasforge.runners.faults:synthetic"), task)


def delayed(task: dict) -> dict:
    """Sleep as :func:`synthetic` does, then evaluate with ``config["delegate"]`` (e.g. the
    NAS-Bench-201 table look-up, which is otherwise too quick to interrupt mid-search)."""
    _jitter(task)
    return run_task(task.get("config", {}).get("delegate", "nasforge.runners.faults:synthetic"), task)
