"""Multi-trial machinery: SQLite trial store, executors (inline, local process pool, Ray)
and the asynchronous trial loop shared by BlockQNN and random search."""

from nasforge.runners.executors import InlineExecutor, LocalPoolExecutor, Outcome, RayExecutor, make_executor
from nasforge.runners.runner import RunSummary, load_strategy_state, run_trials
from nasforge.runners.store import StoreError, Trial, TrialStore

__all__ = [
    "InlineExecutor",
    "LocalPoolExecutor",
    "Outcome",
    "RayExecutor",
    "RunSummary",
    "StoreError",
    "Trial",
    "TrialStore",
    "load_strategy_state",
    "make_executor",
    "run_trials",
]
