"""Trials per minute of the multi-trial runner on digits, 1 vs 2 workers, process pool and
Ray, and the per-trial overhead of each executor.

Run it alone (it is a heavy job)::

    flock /tmp/nasforge-heavy.lock /usr/bin/time -v python benchmarks/trials.py --trials 12 --json out.json

For each executor and worker count: a warm-up of ``workers`` trials (starts the workers,
imports torch, loads digits), then ``--trials`` random NSC blocks (the same blocks for
every setting, seed 0) trained by the early-stop evaluator with the quick digits
defaults. Reported: trials/minute (wall clock of the measured trials) and the median
per-trial overhead = (time from submit to result recorded) − (time inside the evaluator).
A second pass with a no-op evaluator gives the pure dispatch + store cost per trial.
``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) is where every trial trains; the
executors' workers stay CPU processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from nasforge.runners import InlineExecutor, LocalPoolExecutor, RayExecutor, TrialStore, run_trials  # noqa: E402
from nasforge.runners.search_run import preload_modules  # noqa: E402
from nasforge.search.random_search import RandomStrategy  # noqa: E402
from nasforge.spaces.nsc import NSCGrammar  # noqa: E402

TRAIN = "nasforge.search.early_stop:evaluate"
NOOP = "nasforge.runners.faults:synthetic"


def measure(executor, evaluate: str, config: dict, n: int, workers: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        with TrialStore(Path(d) / "warm.sqlite") as st:  # warm-up: every worker runs once
            run_trials(RandomStrategy(NSCGrammar(max_layers=4), seed=10_000 + seed), st, executor, evaluate=evaluate, config=config, n_trials=workers)
        with TrialStore(Path(d) / "t.sqlite") as st:
            t0 = time.perf_counter()
            s = run_trials(RandomStrategy(NSCGrammar(max_layers=4), seed=seed), st, executor, evaluate=evaluate, config=config, n_trials=n, poll=0.05)
            wall = time.perf_counter() - t0
            trials = st.trials()
    inside = [t.metrics.get("seconds", 0.0) for t in trials if t.metrics]
    overhead = [(t.finished - t.started) - t.metrics.get("seconds", 0.0) for t in trials if t.metrics]
    return {
        "trials": n,
        "finished": s.finished,
        "wall_s": round(wall, 3),
        "trials_per_min": round(60.0 * n / wall, 2),
        "median_eval_s": round(statistics.median(inside), 4) if inside else None,
        "median_overhead_s": round(statistics.median(overhead), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--noop-trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--executors", default="inline,local,ray")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="auto", help="device of every trial's training: auto, cpu, cuda or cuda:N")
    args = ap.parse_args()
    from nasforge.utils.device import resolve_device

    cfg = {"epochs": args.epochs, "channels": 8, "head_hidden": 64, "threads": 1, "device": str(resolve_device(args.device))}
    results = []
    kinds = args.executors.split(",")
    ray = None
    if "ray" in kinds:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    for kind in kinds:
        for workers in ((1,) if kind == "inline" else (1, 2)):
            for what, fn, n, c in (("train", TRAIN, args.trials, cfg), ("noop", NOOP, args.noop_trials, {})):
                if kind == "inline":
                    ex = InlineExecutor()
                elif kind == "local":
                    ex = LocalPoolExecutor(workers, preload=preload_modules(TRAIN, {}))
                else:
                    ex = RayExecutor(workers, cpus_per_trial=1)
                try:
                    r = measure(ex, fn, c, n, workers, seed=0)
                finally:
                    ex.shutdown()
                r.update(executor=kind, workers=workers, evaluator=what)
                results.append(r)
                print(json.dumps(r), flush=True)
    if ray is not None:
        ray.shutdown()
    print()
    print(f"{'executor':8} {'workers':>7} {'evaluator':>9} {'trials/min':>10} {'median eval s':>13} {'median overhead s':>17}")
    for r in results:
        print(f"{r['executor']:8} {r['workers']:>7} {r['evaluator']:>9} {r['trials_per_min']:>10} {r['median_eval_s']!s:>13} {r['median_overhead_s']:>17}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
