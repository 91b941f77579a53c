"""The asynchronous trial loop shared by BlockQNN and random search.

BlockQNN's distributed asynchronous framework (Zhong et al., CVPR 2018, §3.4, Fig. 5): a
master samples blocks and keeps the agent, a controller hands them to compute nodes, and
results flow back as they finish. Here the driver keeps every worker busy: whenever a
worker is free the strategy proposes a new architecture (it does not wait for the others),
and each result updates the strategy as it arrives.

A strategy exposes ``propose() -> (arch_dict, meta)``, ``observe(meta, reward)``,
``reward(metrics) -> float``, ``key(arch) -> str``, ``state_dict()`` and
``load_state_dict()``. An architecture already in the store is not evaluated again: a
finished one returns its stored reward to the strategy at once, one still running is
skipped. Those duplicates do not count as trials; after ``max_duplicates`` of them in a
row the search stops early (the policy has converged).

Persistence (see :mod:`nasforge.runners.store`): each submit and each result is one
transaction together with the strategy state, so ``--resume`` re-submits only the trials
that were running when the driver died.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from nasforge.runners.store import Trial, TrialStore


class Strategy(Protocol):
    def propose(self) -> tuple[dict, dict]: ...

    def observe(self, meta: dict, reward: float) -> None: ...

    def reward(self, metrics: dict) -> float: ...

    def key(self, arch: dict) -> str: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...


STATE_KEY = "strategy"


@dataclass
class RunSummary:
    finished: int = 0
    failed: int = 0
    retried: int = 0
    duplicates: int = 0
    resubmitted: int = 0
    stopped_early: bool = False
    best: Trial | None = None
    events: list[str] = field(default_factory=list)


def load_strategy_state(store: TrialStore, strategy: Strategy) -> bool:
    """Restore the strategy from the store; False if the store holds none yet."""
    d = store.get_state(STATE_KEY)
    if d is None:
        return False
    strategy.load_state_dict(d)
    return True


def run_trials(
    strategy: Strategy,
    store: TrialStore,
    executor: Any,
    *,
    evaluate: str,
    config: dict,
    n_trials: int,
    max_retries: int = 2,
    max_duplicates: int = 1000,
    on_result: Callable[[Trial], None] | None = None,
    progress: Any = None,
    poll: float = 0.2,
) -> RunSummary:
    summary = RunSummary()

    def task_for(t: Trial) -> dict:
        return {"trial_id": t.id, "arch": t.arch, "config": t.config, "attempt": t.attempts}

    def launch(t: Trial) -> None:
        store.mark_started(t.id)
        executor.submit(t.id, evaluate, task_for(store.get(t.id)))

    # resume: trials that were running when the previous driver stopped
    for t in store.trials("pending"):
        if executor.free() <= 0:
            break
        launch(t)
        summary.resubmitted += 1
    waiting = [t for t in store.trials("pending")][summary.resubmitted :]

    dup_run = 0
    while True:
        while executor.free() > 0 and waiting:
            launch(waiting.pop(0))
        while executor.free() > 0 and store.count() < n_trials and not summary.stopped_early:
            arch, meta = strategy.propose()
            key = strategy.key(arch)
            old = store.by_key(key)
            if old is not None:
                summary.duplicates += 1
                dup_run += 1
                if old.status in ("done", "failed") and old.reward is not None:
                    strategy.observe(meta, old.reward)
                if dup_run >= max_duplicates:
                    summary.stopped_early = True
                    summary.events.append(f"stopped after {dup_run} duplicate proposals in a row")
                continue
            dup_run = 0
            tid = store.submit(key, arch, config, meta, state={STATE_KEY: strategy.state_dict()})
            launch(store.get(tid))
        if executor.busy() == 0:
            break
        for out in executor.wait(timeout=poll):
            t = store.get(out.trial_id)
            if t.status != "pending":  # already recorded (exactly once)
                continue
            if out.ok:
                metrics = dict(out.result or {})
                reward = float(strategy.reward(metrics))
                strategy.observe(t.meta, reward)
                store.finish(t.id, status="done", metrics=metrics, reward=reward, state={STATE_KEY: strategy.state_dict()})
                summary.finished += 1
            elif out.worker_died and t.attempts <= max_retries:
                summary.retried += 1
                summary.events.append(f"trial {t.id}: {out.error}; retrying (attempt {t.attempts + 1})")
                launch(t)
                continue
            else:
                reward = float(getattr(strategy, "failed_reward", 0.0))
                strategy.observe(t.meta, reward)
                store.finish(t.id, status="failed", metrics=None, reward=reward, error=out.error, state={STATE_KEY: strategy.state_dict()})
                summary.failed += 1
                summary.events.append(f"trial {t.id} failed: {out.error}")
            rec = store.get(t.id)
            if on_result is not None:
                on_result(rec)
            if progress is not None:
                progress.update(1)
    done = store.trials("done")
    summary.best = max(done, key=lambda t: (t.reward, -t.id)) if done else None
    return summary
