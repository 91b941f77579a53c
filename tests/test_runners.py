"""Trial store, local process pool, retries, driver kill + resume, and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nasforge.arch import load_arch
from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.runners import LocalPoolExecutor, StoreError, TrialStore, load_strategy_state, run_trials
from nasforge.runners.executors import check_ray_address
from nasforge.search.random_search import RandomStrategy
from nasforge.spaces.nsc import NSCGrammar

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_store_records_each_result_exactly_once(tmp_path):
    with TrialStore(tmp_path / "t.sqlite") as st:
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tid = st.submit("k1", {"a": 1}, {"c": 2}, {"epsilon": 1.0}, state={"strategy": {"n": 1}})
        st.mark_started(tid)
        assert st.finish(tid, status="done", metrics={"accuracy": 0.5}, reward=0.5, state={"strategy": {"n": 2}})
        assert not st.finish(tid, status="done", metrics={"accuracy": 0.9}, reward=0.9, state={"strategy": {"n": 3}})
        t = st.get(tid)
        assert (t.status, t.reward, t.attempts, t.metrics, t.finish_seq) == ("done", 0.5, 1, {"accuracy": 0.5}, 1)
        assert st.get_state("strategy") == {"n": 2}
        with pytest.raises(StoreError):
            st.submit("k1", {}, {}, {})  # the same architecture twice


def test_locked_and_corrupted_store_are_clear_errors(tmp_path):
    p = tmp_path / "t.sqlite"
    with TrialStore(p):
        with pytest.raises(StoreError, match="in use by another search"):
            TrialStore(p)
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    before = bad.read_bytes()
    with pytest.raises(StoreError, match="corrupted or not a nasforge trial store"):
        TrialStore(bad)
    assert bad.read_bytes() == before
    TrialStore(p).close()  # the lock was released


def _cfg(tmp_path: Path, **kw) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(kw))
    return p


def test_process_pool_search_on_digits_with_a_killed_worker(tmp_path, capsys):
    """2 workers, real early-stop training on digits; trial 2's worker is SIGKILLed once."""
    (tmp_path / "crash").mkdir()
    cfg = _cfg(
        tmp_path,
        evaluator="nasforge.runners.faults:crash_once",
        evaluator_config={"crash_trials": [2], "crash_dir": str(tmp_path / "crash"), "delegate": "nasforge.search.early_stop:evaluate"},
        channels=4, head_hidden=16, limit=150, max_layers=3,
    )
    out = tmp_path / "run"
    rc = main(["search", "blockqnn", "--data", "digits", "--out", str(out), "--config", str(cfg), "--trials", "4", "--workers", "2", "--epochs", "1", "--no-progress"])
    cap = capsys.readouterr()
    text = cap.out + cap.err  # the summary line on stdout, the library's notes (logging) on stderr
    assert rc == 0, text
    assert "trial 2: worker process died; retrying" in text
    assert (tmp_path / "crash" / "crashed-2").exists()
    with TrialStore(out / "trials.sqlite") as st:
        trials = st.trials()
        assert [t.id for t in trials] == [1, 2, 3, 4] and all(t.status == "done" for t in trials)
        assert len({t.key for t in trials}) == 4
        assert {t.id: t.attempts for t in trials} == {1: 1, 2: 2, 3: 1, 4: 1}
        assert sorted(t.finish_seq for t in trials) == [1, 2, 3, 4]
        pids = {t.metrics["pid"] for t in trials}
        assert len(pids) >= 2  # more than one worker process did the work
        for t in trials:
            assert 0.0 <= t.metrics["accuracy"] <= 1.0 and t.metrics["flops"] > 0 and t.metrics["density"] > 0
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["trial"] for r in recs] == [1, 2, 3, 4]
    assert all({"reward", "accuracy", "flops", "density", "epsilon", "best_reward"} <= set(r) for r in recs)
    assert recs[-1]["best_reward"] == max(r["reward"] for r in recs)
    assert load_arch(out / "arch.json").kind == "block"
    assert load_arch(out / "greedy_arch.json").kind == "block"


def test_pool_worker_death_in_library_api(tmp_path):
    (tmp_path / "crash").mkdir()
    log = tmp_path / "evals.log"
    ex = LocalPoolExecutor(2)
    try:
        with TrialStore(tmp_path / "t.sqlite") as st:
            s = run_trials(
                RandomStrategy(NSCGrammar(max_layers=4), seed=1), st, ex, evaluate="nasforge.runners.faults:crash_once", n_trials=5,
                config={"crash_trials": [1, 3], "crash_dir": str(tmp_path / "crash"), "log": str(log)},
            )
            assert s.retried == 2 and s.finished == 5 and s.failed == 0
            assert [t.attempts for t in st.trials()] == [2, 1, 2, 1, 1]
        runs = [int(line.split()[0]) for line in log.read_text().splitlines()]
        assert sorted(runs) == [1, 2, 3, 4, 5]  # every trial evaluated to completion exactly once
    finally:
        ex.shutdown()


def _done_ids(db: Path) -> dict[int, float]:
    if not db.exists():
        return {}
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {i: f for i, f in c.execute("SELECT id, finished FROM trials WHERE status = 'done'")}
    except sqlite3.OperationalError:
        return {}
    finally:
        c.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_driver_then_resume(tmp_path):
    log = tmp_path / "evals.log"
    cfg = _cfg(tmp_path, evaluator="nasforge.runners.faults:synthetic", evaluator_config={"sleep": 0.4, "log": str(log)}, max_layers=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasforge", "search", "blockqnn", "--out", str(out), "--config", str(cfg), "--trials", "12", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    db = out / "trials.sqlite"
    deadline = time.time() + 90
    while len(_done_ids(db)) < 4:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "search made no progress"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    worker_pids = {json.loads(m)["pid"] for (m,) in c.execute("SELECT metrics FROM trials WHERE status = 'done'")}
    c.close()
    deadline = time.time() + 20
    while any(_alive(p) for p in worker_pids):  # orphaned workers notice the driver is gone
        assert time.time() < deadline, "pool workers outlived the killed driver"
        time.sleep(0.2)
    done_at_kill = _done_ids(db)
    assert 4 <= len(done_at_kill) < 12
    c = sqlite3.connect(str(db))
    state_at_kill = json.loads(c.execute("SELECT value FROM state WHERE name = 'strategy'").fetchone()[0])
    c.close()

    # the Q-table, replay memory and counters come back exactly as stored
    from nasforge.runners.search_run import make_grammar, make_strategy
    from nasforge.search import get_method, resolve_method_config
    from nasforge.search.blockqnn import BlockQNNStrategy

    rcfg = resolve_method_config(get_method("blockqnn"), yaml_path=cfg, overrides={"trials": 12, "workers": 2})
    fresh = make_strategy("blockqnn", rcfg, make_grammar(rcfg))
    assert isinstance(fresh, BlockQNNStrategy)
    with TrialStore(db) as st:
        assert load_strategy_state(st, fresh)
    assert json.loads(json.dumps(fresh.state_dict())) == state_at_kill

    res = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming:" in res.stderr and "strategy state restored" in res.stderr
    with TrialStore(db) as st:
        trials = st.trials()
        assert len(trials) == 12 and all(t.status == "done" for t in trials)
        assert len({t.key for t in trials}) == 12
        for t in trials:
            if t.id in done_at_kill:
                assert t.attempts == 1 and t.finished == done_at_kill[t.id]  # not re-run
        final = st.get_state("strategy")
    runs: dict[int, int] = {}
    for line in log.read_text().splitlines():
        runs[int(line.split()[0])] = runs.get(int(line.split()[0]), 0) + 1
    assert all(runs[i] == 1 for i in done_at_kill)
    # the resumed agent continued from the stored one: its replay memory extends the old one
    mem_kill = state_at_kill["agent"]["memory"]
    assert final["agent"]["memory"][: len(mem_kill)] == mem_kill
    assert final["n_observed"] >= 12
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in recs) == list(range(1, 13))


def test_bad_input_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "random", "--out", str(out), "--resume", "--no-progress"]) == 2
    assert "no trials.sqlite" in capsys.readouterr().err
    out.mkdir()
    with TrialStore(out / "trials.sqlite") as st:
        st.submit("k", {"kind": "block"}, {}, {})
        # locked: another search holds the store
        assert main(["search", "random", "--out", str(out), "--resume", "--no-progress"]) == 2
        assert "in use by another search" in capsys.readouterr().err
    # an existing search is not overwritten without --resume
    assert main(["search", "random", "--out", str(out), "--no-progress"]) == 2
    assert "already holds" in capsys.readouterr().err
    # corrupted store: one line, file untouched
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "trials.sqlite").write_bytes(b"\x00garbage" * 64)
    before = (bad / "trials.sqlite").read_bytes()
    assert main(["search", "blockqnn", "--out", str(bad), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "corrupted" in err and err.count("\n") == 1
    assert (bad / "trials.sqlite").read_bytes() == before
    # unreachable Ray address: fails fast, before anything is written
    t0 = time.time()
    assert main(["search", "blockqnn", "--out", str(tmp_path / "r"), "--executor", "ray", "--address", "127.0.0.1:1", "--no-progress"]) == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert time.time() - t0 < 30 and not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="host:port"):
        check_ray_address("nonsense")
    # bad config value
    assert main(["search", "blockqnn", "--out", str(tmp_path / "x"), "--space", "darts", "--no-progress"]) == 2
    assert "nsc" in capsys.readouterr().err


def test_pool_failures_are_stored_not_retried_forever(tmp_path):
    """An evaluator exception is a failed trial at once; a worker that keeps dying fails
    after max_retries; the search goes on and the agent gets reward 0 for both."""
    (tmp_path / "crash").mkdir()
    ex = LocalPoolExecutor(1)
    try:
        with TrialStore(tmp_path / "a.sqlite") as st:
            s = run_trials(RandomStrategy(NSCGrammar(max_layers=2), seed=0), st, ex, evaluate="nasforge.runners.faults:no_such_function", n_trials=2, config={})
            assert s.failed == 2 and s.retried == 0 and s.best is None
            assert all(t.status == "failed" and t.reward == 0.0 and "no_such_function" in t.error for t in st.trials())
        with TrialStore(tmp_path / "b.sqlite") as st:
            s = run_trials(
                RandomStrategy(NSCGrammar(max_layers=2), seed=0), st, ex, evaluate="nasforge.runners.faults:crash_once", n_trials=2,
                config={"crash_trials": [1], "crash_dir": str(tmp_path / "crash")}, max_retries=0,
            )
            t1, t2 = st.trials()
            assert (t1.status, t1.error, t1.attempts) == ("failed", "worker process died", 1)
            assert t2.status == "done" and s.best.id == 2
    finally:
        ex.shutdown()


# ---- pool workers never outlive their driver ---------------------------------------------
_POOL_DRIVER = """
import json, os, signal, sys, time
import concurrent.futures.process as cfp
from nasforge.runners.executors import LocalPoolExecutor

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

mode = sys.argv[1]
if mode == "no-sentinel":
    # what happens when the forkserver is gone before the pool's manager thread sends the
    # workers their stop sentinel (it counts them as exited and sends none)
    cfp._ExecutorManagerThread.shutdown_workers = lambda self: None
ex = LocalPoolExecutor(2)
for i in (1, 2):
    ex.submit(i, "nasforge.runners.faults:synthetic", {"trial_id": i, "arch": {"i": i}, "config": {}})
done = []
while len(done) < 2:
    done += ex.wait(timeout=5)
pids = sorted(o.result["pid"] for o in done)
if mode == "sigkill":  # the driver dies without shutting the pool down
    print(json.dumps(pids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
ex.shutdown()
deadline = time.time() + 60
while any(alive(p) for p in pids) and time.time() < deadline:
    time.sleep(0.05)
print(json.dumps({"pids": pids, "alive_after_shutdown": [p for p in pids if alive(p)]}), flush=True)
"""


def _reap_leftovers(pids: list[int]) -> None:
    for p in pids:
        if _alive(p):
            os.kill(p, signal.SIGKILL)


def test_pool_shutdown_kills_workers_that_never_get_their_stop_sentinel(tmp_path):
    """``shutdown()`` ends the pool's workers itself: a worker left waiting on its call queue
    held the driver's stdout/stderr open after the driver exited, so a caller reading them
    to EOF (``subprocess.run(capture_output=True)``) waited forever (the flaky hang of the
    kill-and-resume test)."""
    res = subprocess.run([sys.executable, "-c", _POOL_DRIVER, "no-sentinel"], env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    info = json.loads(res.stdout.strip().splitlines()[-1])
    _reap_leftovers(info["pids"])
    assert len(info["pids"]) == 2 and info["alive_after_shutdown"] == []


def test_pool_workers_exit_while_the_killed_driver_is_an_unreaped_zombie(tmp_path):
    """A SIGKILLed driver whose parent has not reaped it yet (a zombie: its pid still
    answers ``kill(pid, 0)``) is gone for its workers: they exit instead of waiting until
    the parent reaps it, which a parent reading the driver's output to EOF never does."""
    proc = subprocess.Popen([sys.executable, "-c", _POOL_DRIVER, "sigkill"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    pids: list[int] = []
    try:
        pids = json.loads(proc.stdout.readline())
        assert len(pids) == 2
        deadline = time.time() + 60
        while _alive(proc.pid):  # the driver is dead but not reaped (no wait()/poll() here)
            assert time.time() < deadline, "the driver did not die"
            time.sleep(0.05)
        assert os.path.exists(f"/proc/{proc.pid}")  # a zombie, not reaped
        while any(_alive(p) for p in pids):
            assert time.time() < deadline, "pool workers outlived their (zombie) driver"
            time.sleep(0.05)
    finally:
        _reap_leftovers(pids)
        proc.kill()
        proc.wait()


def test_a_zombie_counts_as_gone_for_the_driver_watch():
    """The fallback of the workers' driver watch (no pidfd): a process that has exited but
    is not reaped yet is gone; a running one is not."""
    from nasforge.runners.executors import _process_gone

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert not _process_gone(proc.pid)
        proc.stdin.close()  # it exits; not reaped until wait()
        deadline = time.time() + 60
        while _alive(proc.pid):
            assert time.time() < deadline
            time.sleep(0.02)
        assert os.path.exists(f"/proc/{proc.pid}") and _process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert _process_gone(proc.pid)
