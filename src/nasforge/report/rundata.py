"""Read a run directory of any nasforge command, also while the run is still going.

A run directory (``docs/architecture.md``, "Files of a run directory") may hold
``config.yaml``, ``metrics.jsonl``, ``arch.json`` (plus ``greedy_arch.json`` for
BlockQNN), ``summary.json`` (multi-trial searches), ``result.json`` (training runs),
``checkpoint.pt`` and ``trials.sqlite`` (BlockQNN / random search). Every file is
optional: a run that has just started has only its config, a killed one may end in a torn
``metrics.jsonl`` line (skipped by :func:`nasforge.utils.io.read_jsonl`).

``trials.sqlite`` is opened read-only with plain :mod:`sqlite3` (never through
:class:`~nasforge.runners.store.TrialStore`, whose lock belongs to the running search),
so a report can be made while the search writes to it; a store nobody writes to is read
as immutable, which leaves no ``-shm``/``-wal`` files behind.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nasforge.errors import NasforgeError
from nasforge.utils.io import read_jsonl

#: architecture files a run may hold, with the title shown in the report
ARCH_FILES = (("arch.json", "derived architecture"), ("greedy_arch.json", "greedy policy's architecture"))


class RunDirError(NasforgeError):
    """A folder is not a nasforge run directory."""


@dataclass
class RunData:
    """Everything a report needs from one run directory (missing files give empty fields)."""

    path: Path
    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    archs: list[tuple[str, Any]] = field(default_factory=list)  # (title, arch object)
    arch_errors: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # summary.json (multi-trial)
    result: dict = field(default_factory=dict)  # result.json (training)
    trials: list[dict] = field(default_factory=list)  # rows of trials.sqlite
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ derived facts
    @property
    def method(self) -> str:
        """``darts``/``snas``/``enas``/``blockqnn``/``random``/``train`` or ``?``."""
        for src in (self.config, self.summary):
            m = src.get("method")
            if isinstance(m, str) and m:
                return m
        for _, a in self.archs:
            m = (getattr(a, "meta", None) or {}).get("method")
            if isinstance(m, str) and m:
                return m
        if self.result or self.result_kind():
            return "train"
        if self.trials:
            return "multi-trial"
        return "?"

    def result_kind(self) -> str | None:
        k = self.result.get("kind")
        return k if isinstance(k, str) else None

    @property
    def is_multi_trial(self) -> bool:
        return bool(self.trials) or any("trial" in r for r in self.records[:5])

    @property
    def finished(self) -> bool:
        """The command wrote its end-of-run file (``summary.json`` / ``result.json``), or
        its last metrics record reaches the configured budget."""
        if self.summary or self.result:
            return True
        total = self.budget()
        last = self.last_index()
        return total is not None and last is not None and last >= total

    def budget(self) -> int | None:
        key = "trials" if self.is_multi_trial else "epochs"
        v = self.config.get(key)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def last_index(self) -> int | None:
        key = "trial" if self.is_multi_trial else "epoch"
        vals = [r[key] for r in self.records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if self.is_multi_trial and not vals:
            vals = [t["finish_seq"] for t in self.trials if t.get("finish_seq") is not None]
        return int(max(vals)) if vals else None

    def status_line(self) -> str:
        total = self.budget()
        last = self.last_index()
        unit = "trials" if self.is_multi_trial else "epochs"
        done = f"{last if last is not None else 0}" + (f" of {total}" if total is not None else "")
        metrics = self.path / "metrics.jsonl"
        age = ""
        if metrics.exists():
            age = f"; metrics.jsonl last written {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(metrics.stat().st_mtime))}"
        state = "finished" if self.finished else "in progress (or stopped before the end)"
        return f"{state}: {done} {unit}{age}"

    def wall_seconds(self) -> float | None:
        """Search/training wall time: ``compare_wall.json`` (written by ``nasforge
        compare``), else the sum of per-epoch ``seconds``/``time``, else the trial store's span."""
        p = self.path / "compare_wall.json"
        if p.is_file():
            try:
                return float(json.loads(p.read_text())["seconds"])
            except (ValueError, KeyError, TypeError):
                pass
        for key in ("seconds", "time"):  # per-epoch durations (DARTS/SNAS/training: seconds, ENAS: time)
            secs = [r[key] for r in self.records if isinstance(r.get(key), (int, float)) and "epoch" in r]
            if secs:
                return float(sum(secs))
        times = [(t.get("created"), t.get("finished")) for t in self.trials]
        starts = [a for a, _ in times if a is not None]
        ends = [b for _, b in times if b is not None]
        if starts and ends:
            return float(max(ends) - min(starts))
        return None


def _read_yaml(p: Path, notes: list[str]) -> dict:
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        notes.append(f"{p.name} could not be read ({type(e).__name__})")
        return {}
    return d if isinstance(d, dict) else {}


def _read_json(p: Path, notes: list[str]) -> dict:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        notes.append(f"{p.name} could not be read ({type(e).__name__}; being written?)")
        return {}
    return d if isinstance(d, dict) else {}


def read_trials(path: str | Path) -> list[dict]:
    """Rows of a ``trials.sqlite`` as dicts (JSON columns decoded), read-only and lock-free."""
    path = Path(path)
    rows: list[dict] = []
    # no -wal file: nobody is writing, read it as immutable (creates no -shm/-wal beside it);
    # else (a live search) a normal read-only WAL reader
    p = path.resolve()
    uris = [f"file:{p}?mode=ro"]
    if not Path(str(p) + "-wal").exists():
        uris.insert(0, f"file:{p}?immutable=1")
    last_error: Exception | None = None
    for uri in uris:
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        except sqlite3.Error as e:
            last_error = e
            continue
        try:
            cur = conn.execute("SELECT * FROM trials ORDER BY id")
            names = [d[0] for d in cur.description]
            for r in cur.fetchall():
                row = dict(zip(names, r))
                for k in ("arch", "config", "metrics", "meta"):
                    if isinstance(row.get(k), str):
                        try:
                            row[k] = json.loads(row[k])
                        except json.JSONDecodeError:
                            pass
                rows.append(row)
            return rows
        except sqlite3.Error as e:
            last_error = e
        finally:
            conn.close()
    raise RunDirError(f"trial store {path} cannot be read ({last_error})")


def load_run(path: str | Path) -> RunData:
    """Read every file of a run directory that is there; raises :class:`RunDirError` when
    ``path`` is not a folder or holds none of a run's files."""
    from nasforge.arch import load_arch_file

    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}")
    run = RunData(path=path)
    known = ("config.yaml", "metrics.jsonl", "arch.json", "summary.json", "result.json", "checkpoint.pt", "trials.sqlite")
    run.files = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not any(f in run.files for f in known):
        raise RunDirError(f"{path} is not a nasforge run directory (none of {', '.join(known)} in it)")
    if (path / "config.yaml").is_file():
        run.config = _read_yaml(path / "config.yaml", run.notes)
    run.records = read_jsonl(path / "metrics.jsonl")
    for name, title in ARCH_FILES:
        p = path / name
        if p.is_file():
            try:
                run.archs.append((title, load_arch_file(p)))
            except NasforgeError as e:
                run.arch_errors.append(str(e))
    if (path / "summary.json").is_file():
        run.summary = _read_json(path / "summary.json", run.notes)
    if (path / "result.json").is_file():
        run.result = _read_json(path / "result.json", run.notes)
    if (path / "trials.sqlite").is_file():
        try:
            run.trials = read_trials(path / "trials.sqlite")
        except RunDirError as e:
            run.notes.append(str(e))
    return run


__all__ = ["ARCH_FILES", "RunData", "RunDirError", "load_run", "read_trials"]
