"""Evaluators for tests and benchmarks of the runners (deterministic, no training).

- :func:`synthetic`: a deterministic score of the architecture, an optional ``sleep`` and
  one line per evaluation appended to ``config["log"]`` (to count how often each trial
  ran);
- :func:`crash_once`: SIGKILLs its own worker process the first time it sees a trial in
  ``config["crash_trials"]`` (a marker file in ``config["crash_dir"]`` remembers it), then
  evaluates with ``config["delegate"]`` — fault injection for retry tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

from nasforge.runners.executors import run_task


def synthetic(task: dict) -> dict:
    cfg = task.get("config", {})
    if cfg.get("sleep"):
        time.sleep(float(cfg["sleep"]))
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
