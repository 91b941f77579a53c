"""Hardening of the multi-trial runners (issue 11): an unreachable Ray cluster, a dying
forkserver, exact kill-and-resume in deterministic mode, a full disk under the store.

The local-Ray cases (loopback only, nothing left after the driver is SIGKILLed) are in
``tests/test_runners_ray.py`` (marker ``ray``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nasforge.cli import main
from nasforge.runners import StoreError, TrialStore, run_trials
from nasforge.runners.executors import InlineExecutor
from nasforge.search.random_search import RandomStrategy
from nasforge.spaces.nsc import NSCGrammar

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cfg(path: Path, **kw) -> Path:
    path.write_text(yaml.safe_dump(kw))
    return path


def _n_finished(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(c.execute("SELECT COUNT(*) FROM trials WHERE status != 'pending'").fetchone()[0])
        finally:
            c.close()
    except sqlite3.OperationalError:
        return 0


def _snapshot(db: Path) -> tuple[list, dict]:
    """The trial list (id order) and the final strategy state of a finished search."""
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [tuple(r) for r in c.execute("SELECT id, key, arch, status, reward FROM trials ORDER BY id")]
        state = json.loads(c.execute("SELECT value FROM state WHERE name = 'strategy'").fetchone()[0])
    finally:
        c.close()
    return rows, state


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append((int(d), cmd))
    return out


# ---- case 4: an unreachable Ray cluster ------------------------------------------------
def test_unreachable_ray_address_fails_in_one_line_before_writing(tmp_path, capsys):
    """A port where nothing listens, and one that accepts TCP but is not Ray (what a
    proxy/firewall in front of an unreachable host looks like): one line, exit 2, within
    seconds, and the run folder is not created."""
    pytest.importorskip("ray")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()  # nothing listens there now
    try:
        for port in (free_port, silent.getsockname()[1]):
            out = tmp_path / f"run{port}"
            t0 = time.monotonic()
            rc = main(["search", "blockqnn", "--out", str(out), "--executor", "ray", "--address", f"127.0.0.1:{port}", "--no-progress"])
            cap = capsys.readouterr()
            assert rc == 2
            assert cap.err.count("\n") == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{port}" in cap.err, cap.err
            assert cap.out == ""
            assert time.monotonic() - t0 < 20
            assert not out.exists()
    finally:
        silent.close()


# ---- case 5: the forkserver dies ---------------------------------------------------------
def test_killing_the_forkserver_is_a_retry_not_a_crash(tmp_path, shared_data):
    """Real (tiny) early-stop training on digits with 2 workers; the pool's forkserver is
    SIGKILLed twice mid-search. The trials it held are retried and the search ends."""
    cfg = _cfg(tmp_path / "cfg.yaml", channels=4, head_hidden=16, limit=150, max_layers=3)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasforge", "search", "blockqnn", "--data", "digits", "--out", str(out), "--config", str(cfg),
           "--trials", "8", "--workers", "2", "--epochs", "1", "--max-retries", "3", "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        db = out / "trials.sqlite"
        killed: set[int] = set()
        deadline = time.time() + 240
        while len(killed) < 2 and proc.poll() is None:
            assert time.time() < deadline, "search made no progress"
            if _n_finished(db) >= 1 + 2 * len(killed):
                fs = [p for p, c in _children(proc.pid) if "multiprocessing.forkserver" in c and p not in killed]
                if fs:
                    os.kill(fs[0], signal.SIGKILL)
                    killed.add(fs[0])
            time.sleep(0.05)
        text = proc.communicate(timeout=300)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(killed) >= 1, text
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "worker process died; retrying" in text
    with TrialStore(out / "trials.sqlite") as st:
        trials = st.trials()
        assert len(trials) == 8 and all(t.status == "done" for t in trials)
        assert any(t.attempts > 1 for t in trials)


# ---- case 6: exact kill-and-resume in deterministic mode -------------------------------
def _resume_cases():
    nb201 = Path(os.environ.get("NASFORGE_DATA", "/nonexistent")) / "nas-bench-201"
    space = "nb201" if nb201.is_dir() else "nsc"
    return [("blockqnn", "nsc", "synthetic", (1, 3, 5)), ("random", space, "synthetic", (1, 3, 5)), ("blockqnn", "nsc", "train", (3,))]


@pytest.mark.slow
@pytest.mark.parametrize("method,space,evaluator,moments", _resume_cases())
def test_deterministic_kill_and_resume_is_exact(tmp_path, method, space, evaluator, moments):
    """Process pool, 2 workers, --deterministic: a driver SIGKILLed after 1, 3 and 5
    finished trials and resumed ends with the uninterrupted run's trials (same ids,
    architectures, rewards, in the same order), the same strategy state (Q-table, replay
    memory, RNG) and the same arch.json. ``synthetic``: a deterministic score of the
    architecture after a per-architecture sleep, so results come back out of proposal
    order (and no 2.9 MB NAS-Bench-201 table re-read by a pool worker for every trial);
    ``train``: real early-stop training on digits at tiny settings."""
    if evaluator == "synthetic":
        cfg = _cfg(tmp_path / "cfg.yaml", evaluator="nasforge.runners.faults:synthetic", evaluator_config={"sleep": 0.05, "jitter": 0.35}, max_layers=4)
        extra = ["--trials", "10"]
    else:
        cfg = _cfg(tmp_path / "cfg.yaml", channels=4, head_hidden=16, limit=150, max_layers=3)
        extra = ["--trials", "8", "--data", "digits", "--epochs", "1"]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "nasforge", "search", method, "--space", space, "--out", str(out), "--config", str(cfg),
                *extra, "--workers", "2", "--executor", "local", "--deterministic", "--seed", "1", "--no-progress"]

    ref = tmp_path / "ref"
    res = subprocess.run(cmd(ref), env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    want = _snapshot(ref / "trials.sqlite")
    n = int(extra[1])
    assert len(want[0]) == n
    for k in moments:
        out = tmp_path / f"kill{k}"
        proc = subprocess.Popen(cmd(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.time() + 120
            while _n_finished(out / "trials.sqlite") < k:
                assert proc.poll() is None, "the search ended before it could be interrupted"
                assert time.time() < deadline, "search made no progress"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)  # the driver only: its pool is orphaned, as when a user kills it
            proc.wait()
            at_kill = _n_finished(out / "trials.sqlite")
            assert k <= at_kill < n
            res = subprocess.run(cmd(out) + ["--resume"], env=ENV, capture_output=True, text=True, timeout=300)
        finally:  # nothing of the killed run outlives the test, whatever happened
            proc.kill()
            proc.wait()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert res.returncode == 0, res.stdout + res.stderr
        got = _snapshot(out / "trials.sqlite")
        assert got[0] == want[0], f"killed after {at_kill} finished trials: the trial list differs"
        assert got[1] == want[1], f"killed after {at_kill} finished trials: the strategy state differs"
        assert json.loads((out / "arch.json").read_text()) == json.loads((ref / "arch.json").read_text())


def test_ordered_mode_is_independent_of_completion_order(tmp_path):
    """Library level: the same proposals and strategy state whatever order results come
    back in (an executor that returns its trials newest first vs. oldest first)."""

    class Reversing(InlineExecutor):
        def __init__(self, capacity: int, newest_first: bool):
            super().__init__()
            self.capacity, self.newest_first = capacity, newest_first

        def free(self) -> int:
            return self.capacity - len(self._done)

        def wait(self, timeout=None):
            if not self._done:
                return []
            pick = (max if self.newest_first else min)(self._done, key=lambda o: o.trial_id)
            self._done.remove(pick)
            return [pick]

    from nasforge.search.blockqnn import BlockQNNStrategy

    results = []
    for newest_first in (False, True):
        with TrialStore(tmp_path / f"{newest_first}.sqlite") as st:
            strat = BlockQNNStrategy(NSCGrammar(max_layers=4), n_trials=12, seed=3, blocks_per_iteration=64)
            run_trials(strat, st, Reversing(3, newest_first), evaluate="nasforge.runners.faults:synthetic", config={}, n_trials=12, ordered=True)
            results.append(([(t.id, t.key, t.reward) for t in st.trials()], strat.state_dict(), [t.id for t in st.trials(order="finish")]))
    assert results[0][2] != results[1][2]  # the results really came back in different orders
    assert results[0][:2] == results[1][:2]


# ---- a full disk under the store ---------------------------------------------------------
def test_full_disk_keeps_stored_trials_and_stops_in_one_line(tmp_path, capsys, monkeypatch):
    """The store's writes start failing with SQLite's "database or disk is full" (its page
    limit is set to the pages it has) after 3 results: one line, exit 2, every trial
    stored before is intact, and --resume finishes the search."""
    cfg = _cfg(tmp_path / "cfg.yaml", evaluator="nasforge.runners.faults:synthetic", max_layers=4)
    out = tmp_path / "run"
    seen: dict = {}
    real_finish = TrialStore.finish

    def finish(self, trial_id, **kw):
        ok = real_finish(self, trial_id, **kw)
        if trial_id == 3 and "rows" not in seen:
            seen["rows"] = self.conn.execute("SELECT * FROM trials ORDER BY id").fetchall()
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now full
        return ok

    monkeypatch.setattr(TrialStore, "finish", finish)
    args = ["search", "random", "--out", str(out), "--config", str(cfg), "--trials", "400", "--executor", "inline", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk is full" in err and "--resume" in err, err
    c = sqlite3.connect(str(out / "trials.sqlite"))
    rows = c.execute("SELECT * FROM trials ORDER BY id").fetchall()
    c.close()
    assert rows[: len(seen["rows"])] == seen["rows"]  # nothing stored before was changed or lost
    assert all(r[4] in ("done", "pending") for r in rows)
    monkeypatch.setattr(TrialStore, "finish", real_finish)
    assert main(args + ["--resume"]) == 0
    with TrialStore(out / "trials.sqlite") as st:
        assert st.count() == 400 and st.count("done") == 400


def test_full_disk_in_the_library_is_a_store_error(tmp_path):
    with TrialStore(tmp_path / "t.sqlite") as st:
        run_trials(RandomStrategy(NSCGrammar(max_layers=4), seed=0), st, InlineExecutor(), evaluate="nasforge.runners.faults:synthetic", config={}, n_trials=3)
        before = [(t.id, t.key, t.status, t.reward) for t in st.trials()]
        st.conn.execute(f"PRAGMA max_page_count = {st.conn.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(StoreError, match="disk is full"):
            for i in range(200):
                st.submit(f"k{i}", {"x": "y" * 2000}, {}, {}, state={"strategy": {"big": "z" * 5000}})
        assert not st.conn.in_transaction
        assert [(t.id, t.key, t.status, t.reward) for t in st.trials()][:3] == before


def test_ordered_mode_with_a_killed_worker_matches_a_clean_run(tmp_path):
    """Pool workers SIGKILLed during trials 2 and 4 (retried) change nothing in ordered
    mode: the same trials and strategy state as a run where no worker died."""
    from nasforge.runners import LocalPoolExecutor
    from nasforge.search.blockqnn import BlockQNNStrategy

    (tmp_path / "crash").mkdir()
    got = []
    for name, cfg in (("clean", {}), ("crash", {"crash_trials": [2, 4], "crash_dir": str(tmp_path / "crash")})):
        ex = LocalPoolExecutor(2)
        try:
            with TrialStore(tmp_path / f"{name}.sqlite") as st:
                strat = BlockQNNStrategy(NSCGrammar(max_layers=4), n_trials=8, seed=5)
                s = run_trials(strat, st, ex, evaluate="nasforge.runners.faults:crash_once", config=cfg, n_trials=8, ordered=True)
                got.append(([(t.id, t.key, t.status, t.reward) for t in st.trials()], strat.state_dict(), s.retried))
        finally:
            ex.shutdown()
    assert got[1][2] == 2 and got[0][2] == 0
    assert got[0][:2] == got[1][:2]
