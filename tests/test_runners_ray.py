"""The Ray executor: a 2-worker search on digits and a worker killed mid-trial.

One local Ray session for the whole module (start-up is slow)."""

from __future__ import annotations

import json

import pytest
import yaml

ray = pytest.importorskip("ray")

from nasforge.arch import load_arch  # noqa: E402
from nasforge.cli import main  # noqa: E402
from nasforge.runners import RayExecutor, TrialStore, run_trials  # noqa: E402
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
