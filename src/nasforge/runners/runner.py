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

Persistence (see :mod:`nasforge.runners.store`): each proposal, each result and each
update of the strategy is one transaction together with the strategy state, so
``--resume`` re-submits only the trials that were running when the driver died. With
``ordered=True`` (``--deterministic``) the strategy's proposals and updates follow one
fixed interleaving whatever order results come back in, which makes a resumed search
identical to an uninterrupted one (see :func:`run_trials` and ``docs/scaling.md``).
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
RUNNER_KEY = "runner"


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


class _Observed:
    """Which trials the strategy has learnt from: ids ``1..prefix`` plus ``extra``."""

    def __init__(self, prefix: int = 0, extra: list[int] | None = None):
        self.prefix, self.extra = prefix, set(extra or [])
        self._compact()

    def _compact(self) -> None:
        while self.prefix + 1 in self.extra:
            self.prefix += 1
            self.extra.discard(self.prefix)

    def add(self, tid: int) -> None:
        self.extra.add(tid)
        self._compact()

    def __contains__(self, tid: int) -> bool:
        return tid <= self.prefix or tid in self.extra

    def __len__(self) -> int:
        return self.prefix + len(self.extra)

    def next_id(self) -> int:
        return self.prefix + 1

    def to_json(self) -> dict:
        return {"observed": self.prefix, "observed_extra": sorted(self.extra)}


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
    ordered: bool = False,
    window: int | None = None,
) -> RunSummary:
    """Evaluate up to ``n_trials`` distinct architectures proposed by ``strategy``.

    ``ordered=False`` (default): BlockQNN's asynchronous framework, the strategy learns
    from each result as it arrives, so its proposals depend on completion order.

    ``ordered=True`` (``--deterministic``): the strategy's history is independent of
    completion order. It learns from trials in proposal (id) order only, trial *k* once
    trials 1..*k* have all reported, and it proposes trial *i* once trials
    1..*i*-``window`` have been learnt from (``window`` = the worker count when the
    search started, kept in the store). The sequence of proposals and updates is
    therefore one fixed interleaving, and since each proposal (with the strategy state
    after it) and each update (with the state after it) is one transaction, a driver
    killed at any point resumes exactly where that sequence stopped: an interrupted and
    an uninterrupted run hold the same trials and end in the same strategy state. The
    cost: a worker waits when the oldest unfinished trial is slower than ``window``
    later ones.
    """
    summary = RunSummary()
    rs = store.get_state(RUNNER_KEY) or {}
    trials = store.trials()
    finished = [t.id for t in trials if t.status != "pending"]
    if "observed" in rs:
        obs = _Observed(int(rs["observed"]), rs.get("observed_extra", []))
    else:  # a new store, or one written in asynchronous mode: every finished trial was learnt from
        obs = _Observed(0, finished)
    win = int(rs.get("window") or window or executor.capacity)
    dup_run = int(rs.get("dup_run", 0))
    summary.stopped_early = bool(rs.get("stopped_early", False))
    queue: list[int] = [t.id for t in trials if t.status == "pending"]  # waiting for a worker
    summary.resubmitted = len(queue)
    del trials

    def runner_state() -> dict:
        return {**obs.to_json(), "window": win, "dup_run": dup_run, "stopped_early": summary.stopped_early}

    def states() -> dict:
        # the runner's state (what was learnt from) matters, and is kept, in ordered mode only
        return {STATE_KEY: strategy.state_dict(), RUNNER_KEY: runner_state()} if ordered else {STATE_KEY: strategy.state_dict()}

    def launch(tid: int) -> None:
        store.mark_started(tid)
        t = store.get(tid)
        executor.submit(t.id, evaluate, {"trial_id": t.id, "arch": t.arch, "config": t.config, "attempt": t.attempts})

    def propose_one() -> None:
        """One proposal: a new trial (queued) or a duplicate (learnt from at once if known)."""
        nonlocal dup_run
        arch, meta = strategy.propose()
        old = store.by_key(strategy.key(arch))
        if old is None:
            dup_run = 0
            queue.append(store.submit(strategy.key(arch), arch, config, meta, state=states()))
            return
        summary.duplicates += 1
        dup_run += 1
        known = old.id in obs if ordered else old.status in ("done", "failed")
        if known and old.reward is not None:
            strategy.observe(meta, old.reward)
        if dup_run >= max_duplicates:
            summary.stopped_early = True
            summary.events.append(f"stopped after {dup_run} duplicate proposals in a row")
            store.save_state(states())
        # otherwise not saved: after a kill, the stored state replays the same duplicates
        # (what they depend on, the strategy state and what it has learnt from, is stored)

    def may_propose() -> bool:
        return store.count() < n_trials and not summary.stopped_early

    def advance_ordered() -> None:
        while True:
            while may_propose() and store.count() - len(obs) < win:
                propose_one()
            tid = obs.next_id()
            if tid > store.count():
                return
            t = store.get(tid)
            if t.status == "pending":
                return
            strategy.observe(t.meta, float(t.reward if t.reward is not None else getattr(strategy, "failed_reward", 0.0)))
            obs.add(tid)
            store.save_state(states())

    if not ordered:  # a store left by an ordered run: learn from its finished trials first, in order
        for t in store.trials():
            if t.status != "pending" and t.id not in obs:
                strategy.observe(t.meta, float(t.reward if t.reward is not None else 0.0))
                obs.add(t.id)
        if "observed" in rs:
            store.save_state({STATE_KEY: strategy.state_dict(), RUNNER_KEY: {}})

    while True:
        if ordered:
            advance_ordered()
        else:
            while executor.free() > len(queue) and may_propose():
                propose_one()
        while executor.free() > 0 and queue:
            launch(queue.pop(0))
        if executor.busy() == 0 and not queue:
            break
        for out in executor.wait(timeout=poll):
            t = store.get(out.trial_id)
            if t.status != "pending":  # already recorded (exactly once)
                continue
            if out.worker_died and not out.ok and t.attempts <= max_retries:
                summary.retried += 1
                summary.events.append(f"trial {t.id}: {out.error}; retrying (attempt {t.attempts + 1})")
                queue.insert(0, t.id)
                continue
            if out.ok:
                status, metrics, error = "done", dict(out.result or {}), None
                reward = float(strategy.reward(metrics))
            else:
                status, metrics, error = "failed", None, out.error
                reward = float(getattr(strategy, "failed_reward", 0.0))
                summary.events.append(f"trial {t.id} failed: {out.error}")
            if ordered:  # learnt from later, in proposal order (advance_ordered)
                store.finish(t.id, status=status, metrics=metrics, reward=reward, error=error)
            else:
                strategy.observe(t.meta, reward)
                store.finish(t.id, status=status, metrics=metrics, reward=reward, error=error, state={STATE_KEY: strategy.state_dict()})
            if status == "done":
                summary.finished += 1
            else:
                summary.failed += 1
            rec = store.get(t.id)
            if on_result is not None:
                on_result(rec)
            if progress is not None:
                progress.update(1)
    done = store.trials("done")
    summary.best = max(done, key=lambda t: (t.reward, -t.id)) if done else None
    return summary
