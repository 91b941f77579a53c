"""A multi-trial strategy against the NAS-Bench-201 table in memory: the loop of
:func:`nasforge.runners.runner.run_trials` without store, executor or subprocesses.

Same rules as the runner: the budget counts distinct cells; a cell proposed again is not
looked up again — its reward goes back to the strategy at once and does not count;
after ``max_duplicates`` repeats in a row the search stops. The result is the best cell
by the selection column (``metric``, a ``-val`` column) and its accuracy in the matching
``-test`` column. Used by the tests and ``experiments/nb201_strategies.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from nasforge.spaces.nb201 import check_metric, test_metric


@dataclass
class TableResult:
    best_ops: tuple[str, ...]
    valid: float  # selection column, percent
    test: float  # matching test column, percent
    queries: int  # distinct cells looked up
    proposals: int  # proposals, repeats included
    seconds: float  # wall time of the loop (strategy + look-ups)
    stopped_early: bool = False
    trace: list[float] = field(default_factory=list)  # test accuracy of the best-so-far cell after each query


def run_on_table(strategy: Any, table: Any, *, metric: str = "cifar10-val", budget: int = 100, max_duplicates: int = 1000, trace: bool = False) -> TableResult:
    """Run ``strategy`` (``propose``/``observe``/``reward``) for ``budget`` distinct cells."""
    check_metric(metric)
    tmetric = test_metric(metric)
    rows = table.rows
    seen: dict[tuple[str, ...], float] = {}
    best: tuple[str, ...] | None = None
    curve: list[float] = []
    proposals = dup_run = 0
    stopped = False
    t0 = time.perf_counter()
    while len(seen) < budget:
        arch, meta = strategy.propose()
        proposals += 1
        ops = tuple(arch["ops"])
        if ops in seen:
            strategy.observe(meta, seen[ops])
            dup_run += 1
            if dup_run >= max_duplicates:
                stopped = True
                break
            continue
        dup_run = 0
        acc = rows[ops][metric]
        seen[ops] = reward = float(strategy.reward({"accuracy": acc / 100.0}))
        strategy.observe(meta, reward)
        if best is None or acc > rows[best][metric]:
            best = ops
        if trace:
            curve.append(rows[best][tmetric])
    seconds = time.perf_counter() - t0
    assert best is not None
    return TableResult(best, rows[best][metric], rows[best][tmetric], len(seen), proposals, seconds, stopped, curve)
