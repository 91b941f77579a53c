"""The Ray executor: a 2-worker search on digits, a worker killed mid-trial, and the
local Ray nasforge starts (loopback only, gone with a SIGKILLed driver).

One local Ray session for the in-process tests (start-up is slow); every test here is
marked ``ray`` (``pytest -m ray`` selects them, ``-m "not ray"`` skips them)."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

from nasforge.arch import load_arch  # noqa: E402
from nasforge.cli import main  # noqa: E402
from nasforge.runners import RayExecutor, TrialStore, run_trials  # noqa: E402
from nasforge.runners.executors import check_ray_address  # noqa: E402
from nasforge.search.random_search import RandomStrategy  # noqa: E402
from nasforge.spaces.nsc import NSCGrammar  # noqa: E402


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


def test_ray_two_workers_tiny_search_on_digits(ray_session, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"channels": 4, "head_hidden": 16, "limit": 150, "max_layers": 3}))
    out = tmp_path / "run"
    rc = main(["search", "random", "--data", "digits", "--out", str(out), "--config", str(cfg), "--trials", "4", "--workers", "2", "--executor", "ray", "--epochs", "1", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    with TrialStore(out / "trials.sqlite") as st:
        trials = st.trials()
        assert len(trials) == 4 and all(t.status == "done" and t.attempts == 1 for t in trials)
        assert all(t.metrics["flops"] > 0 and 0 <= t.metrics["accuracy"] <= 1 for t in trials)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    assert load_arch(out / "arch.json").kind == "block"
    assert ray.is_initialized()  # the executor does not shut down a session it did not start


def test_ray_retries_a_trial_whose_worker_died(ray_session, tmp_path):
    (tmp_path / "crash").mkdir()
    log = tmp_path / "evals.log"
    ex = RayExecutor(2, max_retries=2)
    with TrialStore(tmp_path / "t.sqlite") as st:
        s = run_trials(
            RandomStrategy(NSCGrammar(max_layers=4), seed=2), st, ex, evaluate="nasforge.runners.faults:crash_once", n_trials=4,
            config={"crash_trials": [2], "crash_dir": str(tmp_path / "crash"), "log": str(log)},
        )
        assert s.finished == 4 and s.failed == 0
        trials = st.trials()
        assert [t.status for t in trials] == ["done"] * 4 and len({t.key for t in trials}) == 4
    assert (tmp_path / "crash" / "crashed-2").exists()  # the worker really died once
    runs = sorted(int(line.split()[0]) for line in log.read_text().splitlines())
    assert runs == [1, 2, 3, 4]  # Ray re-ran trial 2; every trial completed exactly once
    ex.shutdown()
    assert ray.is_initialized()


def test_ray_failed_task_is_a_failed_trial(ray_session, tmp_path):
    ex = RayExecutor(1, max_retries=0)
    with TrialStore(tmp_path / "t.sqlite") as st:
        s = run_trials(RandomStrategy(NSCGrammar(max_layers=2), seed=0), st, ex, evaluate="nasforge.runners.faults:no_such_function", n_trials=2, config={})
        assert s.failed == 2 and s.best is None
        assert all(t.status == "failed" and "no_such_function" in t.error for t in st.trials())
        json.dumps([t.error for t in st.trials()])


def test_check_ray_address_accepts_a_real_gcs(ray_session):
    check_ray_address(ray._private.worker._global_node.gcs_address)  # TCP + gRPC handshake answered


# ---- the local Ray started by nasforge ---------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live descendant of ``root``."""
    parent = {}
    for d in os.listdir("/proc"):
        st = _proc_stat(int(d)) if d.isdigit() else None
        if st:
            parent[int(d)] = (int(st[1]), st[19])
    out: dict[int, str] = {}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start) in parent.items():
            if (ppid == root or ppid in out) and pid not in out:
                out[pid] = start
                grew = True
    return out


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, address) of every listening TCP socket the processes hold (from /proc/net)."""
    addrs: dict[str, str] = {}
    for fam in ("tcp", "tcp6"):
        with open(f"/proc/net/{fam}") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] != "0A":  # LISTEN
                    continue
                hexaddr = parts[1].split(":")[0]
                raw = bytes.fromhex(hexaddr)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                addrs[parts[9]] = str(ipaddress.ip_address(raw))
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in addrs:
                out.append((pid, addrs[target[8:-1]]))
    return out


def _is_loopback(a: str) -> bool:
    ip = ipaddress.ip_address(a)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_local_ray_is_loopback_only_and_dies_with_the_driver(tmp_path):
    """``--executor ray`` without ``--address``: every socket the driver's Ray processes
    listen on is on 127.0.0.1/::1, and after the driver is SIGKILLed none of them is left."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"evaluator": "nasforge.runners.faults:synthetic", "evaluator_config": {"sleep": 0.3}, "max_layers": 4}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "nasforge", "search", "random", "--out", str(out), "--config", str(cfg), "--trials", "1000", "--workers", "1",
           "--executor", "ray", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        db = out / "trials.sqlite"
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "no trial finished on Ray"
            if db.exists():
                c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                try:
                    if c.execute("SELECT COUNT(*) FROM trials WHERE status = 'done'").fetchone()[0] >= 2:
                        break
                except sqlite3.OperationalError:
                    pass
                finally:
                    c.close()
            time.sleep(0.1)
        procs = _descendants(proc.pid)
        listening = _listening(set(procs) | {proc.pid})
        assert len(listening) >= 3, listening  # the GCS, the raylet and the driver's core worker at least
        outside = [(pid, a) for pid, a in listening if not _is_loopback(a)]
        assert not outside, f"Ray processes listen beyond loopback: {outside}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 60
        while True:
            left = [pid for pid, start in procs.items() if (_proc_stat(pid) or [None] * 20)[19] == start and (_proc_stat(pid) or ["Z"])[0] != "Z"]
            if not left:
                break
            assert time.time() < deadline, f"Ray processes outlived the driver: {left}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
