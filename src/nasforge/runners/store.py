"""SQLite trial store (WAL) for multi-trial searches (BlockQNN, random search).

One row per distinct architecture: id, canonical key, arch JSON, config JSON, status
(``pending`` → ``done`` | ``failed``), metrics JSON, reward, attempts, timestamps and the
strategy's per-trial meta (e.g. the agent's actions and ε). A ``state`` table holds the
strategy's state (Q-table, replay memory, RNG, counters) as JSON.

Only the search driver writes, and every change that must stay consistent is one
transaction: *submit* = insert the trial + save the strategy state; *finish* = record the
result (only if the trial is not finished yet: exactly once) + save the strategy state.
So a driver killed at any instant resumes from a consistent pair (trials, state):
finished trials are never run again and the Q-table is exactly as after the last
recorded result.

A write that fails (a full disk, an I/O error) is rolled back and raised as one
:class:`StoreError` sentence; what was stored before is untouched.

A second driver on the same store is refused (an exclusive ``flock`` on
``<store>.lock``); a damaged file gives :class:`StoreError` and is left untouched.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nasforge.errors import CheckpointError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    arch TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    metrics TEXT,
    reward REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    meta TEXT,
    error TEXT,
    finish_seq INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoreError(CheckpointError):
    """The trial store cannot be used (locked by another search, damaged, wrong schema)."""


@dataclass
class Trial:
    id: int
    key: str
    arch: dict
    config: dict
    status: str
    metrics: dict | None
    reward: float | None
    attempts: int
    meta: dict
    error: str | None
    finish_seq: int | None
    created: float
    started: float | None
    finished: float | None


def _row(r: tuple) -> Trial:
    return Trial(
        id=r[0], key=r[1], arch=json.loads(r[2]), config=json.loads(r[3]), status=r[4],
        metrics=json.loads(r[5]) if r[5] else None, reward=r[6], attempts=r[7],
        meta=json.loads(r[8]) if r[8] else {}, error=r[9], finish_seq=r[10],
        created=r[11], started=r[12], finished=r[13],
    )


_COLS = "id, key, arch, config, status, metrics, reward, attempts, meta, error, finish_seq, created, started, finished"


class TrialStore:
    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"trial store not found: {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_f = open(str(self.path) + ".lock", "a+")
        try:
            fcntl.flock(self._lock_f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_f.close()
            raise StoreError(f"trial store {self.path} is in use by another search (lock {self.path}.lock is held)") from None
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as e:
            self.close()
            msg = str(e)
            if "locked" in msg:
                raise StoreError(f"trial store {self.path} is locked by another process ({msg})") from None
            raise StoreError(f"trial store {self.path} is corrupted or not a nasforge trial store ({msg}); it was left untouched") from None

    def _check_schema(self) -> None:
        cols = [r[1] for r in self.conn.execute("PRAGMA table_info(trials)")]
        expected = [c.strip() for c in _COLS.split(",")]
        if cols != expected:
            raise sqlite3.DatabaseError(f"table 'trials' has columns {cols}")
        v = self.get_state("schema_version")
        if v is None:
            self.conn.execute("INSERT OR REPLACE INTO state VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
        elif v != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {v}, this nasforge reads {SCHEMA_VERSION}")

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]
        if not self._lock_f.closed:
            fcntl.flock(self._lock_f.fileno(), fcntl.LOCK_UN)
            self._lock_f.close()

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- transactions -----------------------------------------------------------------
    def _tx(self, fn) -> Any:
        """Run ``fn(conn)`` as one transaction: all of it is stored, or none of it.

        A write that fails (a full disk: ``database or disk is full`` / ENOSPC, an I/O
        error) is rolled back, so every trial and state stored before stays as it was,
        and becomes one :class:`StoreError` sentence."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL)
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.DatabaseError:
                        pass
                raise
            return out
        except sqlite3.IntegrityError as e:
            raise StoreError(f"trial store {self.path}: {e}") from None
        except (sqlite3.DatabaseError, OSError) as e:
            msg = str(e)
            if "full" in msg or getattr(e, "errno", None) == errno.ENOSPC:
                raise StoreError(
                    f"trial store {self.path} could not be written ({msg}): the disk is full; every trial stored so far is kept, "
                    "free some space and continue with --resume"
                ) from None
            raise StoreError(f"trial store {self.path} could not be written ({msg}); every trial stored so far is kept") from None

    def _put_state(self, c: sqlite3.Connection, state: dict | None) -> None:
        if state is not None:
            for k, v in state.items():
                c.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (k, json.dumps(v)))

    def submit(self, key: str, arch: dict, config: dict, meta: dict, state: dict | None = None) -> int:
        """Insert a new pending trial and save the strategy state, atomically."""

        def fn(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO trials (key, arch, config, status, meta, attempts, created) VALUES (?, ?, ?, 'pending', ?, 0, ?)",
                (key, json.dumps(arch), json.dumps(config), json.dumps(meta), time.time()),
            )
            self._put_state(c, state)
            return int(cur.lastrowid)

        return self._tx(fn)

    def mark_started(self, trial_id: int) -> None:
        self._tx(lambda c: c.execute("UPDATE trials SET attempts = attempts + 1, started = ? WHERE id = ? AND status = 'pending'", (time.time(), trial_id)))

    def finish(self, trial_id: int, *, status: str, metrics: dict | None, reward: float | None, error: str | None = None, state: dict | None = None) -> bool:
        """Record a result once; returns False (and changes nothing) if already finished."""

        def fn(c: sqlite3.Connection) -> bool:
            seq = c.execute("SELECT COALESCE(MAX(finish_seq), 0) + 1 FROM trials").fetchone()[0]
            cur = c.execute(
                "UPDATE trials SET status = ?, metrics = ?, reward = ?, error = ?, finish_seq = ?, finished = ? WHERE id = ? AND status = 'pending'",
                (status, json.dumps(metrics) if metrics is not None else None, reward, error, seq, time.time(), trial_id),
            )
            if cur.rowcount != 1:
                return False
            self._put_state(c, state)
            return True

        return self._tx(fn)

    def save_state(self, state: dict) -> None:
        self._tx(lambda c: self._put_state(c, state))

    # ---- queries ----------------------------------------------------------------------
    def get_state(self, name: str) -> Any:
        r = self.conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
        return json.loads(r[0]) if r else None

    def get(self, trial_id: int) -> Trial:
        r = self.conn.execute(f"SELECT {_COLS} FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if r is None:
            raise StoreError(f"trial {trial_id} is not in {self.path}")
        return _row(r)

    def by_key(self, key: str) -> Trial | None:
        r = self.conn.execute(f"SELECT {_COLS} FROM trials WHERE key = ?", (key,)).fetchone()
        return _row(r) if r else None

    def trials(self, status: str | None = None, order: str = "id") -> list[Trial]:
        q = f"SELECT {_COLS} FROM trials"
        args: tuple = ()
        if status is not None:
            q += " WHERE status = ?"
            args = (status,)
        q += " ORDER BY " + ("finish_seq" if order == "finish" else "id")
        return [_row(r) for r in self.conn.execute(q, args)]

    def __iter__(self) -> Iterator[Trial]:
        return iter(self.trials())

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM trials WHERE status = ?", (status,)).fetchone()[0])
