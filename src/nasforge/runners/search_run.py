"""``nasforge search blockqnn|random``: config, run directory, runner, outputs.

Writes in ``--out``: ``config.yaml``, ``trials.sqlite`` (every trial, the strategy state),
``metrics.jsonl`` (one record per finished trial: reward, accuracy, flops, density,
epsilon, best-so-far), ``arch.json`` (the best architecture found) and, for BlockQNN,
``greedy_arch.json`` (the greedy policy's block). ``--resume`` continues from
``trials.sqlite`` without re-running finished trials; ``metrics.jsonl`` is rebuilt from
the store so it always matches it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError
from nasforge.search.multi_trial import MultiTrialConfig
from nasforge.search.qlearning import PRESETS
from nasforge.search.registry import SearchResult
from nasforge.utils.io import atomic_write_json, atomic_write_text
from nasforge.utils.rundir import RunDir

STORE_FILE = "trials.sqlite"
log = logging.getLogger(__name__)


def q_settings(cfg: MultiTrialConfig) -> dict:
    """The Q-learning agent's settings: the preset, overridden by every field not None."""
    name = cfg.q_preset if cfg.q_preset != "auto" else ("nb201" if cfg.space == "nb201" else "paper")
    s = dict(PRESETS[name])
    for key, field_name in (("lr", "q_lr"), ("gamma", "gamma"), ("q_init", "q_init"), ("replay_batch", "replay_batch"),
                            ("blocks_per_iteration", "blocks_per_iteration"), ("epsilon_schedule", "epsilon_schedule"),
                            ("replay_every", "replay_every"), ("avoid_seen", "avoid_seen"), ("state", "q_state")):
        if getattr(cfg, field_name) is not None:
            s[key] = getattr(cfg, field_name)
    if s["replay_every"] == 0:
        s["replay_every"] = None
    return s


def make_grammar(cfg: MultiTrialConfig, method: str = "blockqnn") -> Any:
    if cfg.space == "nb201":
        from nasforge.search.nb201_grammar import NB201Grammar

        return NB201Grammar(state=q_settings(cfg)["state"] if method == "blockqnn" else "chain")
    from nasforge.spaces.nsc import NSCGrammar

    return NSCGrammar(max_layers=cfg.max_layers)


def make_strategy(method: str, cfg: MultiTrialConfig, grammar: Any) -> Any:
    mu, rho = (0.0, 0.0) if cfg.space == "nb201" else (cfg.mu, cfg.rho)
    if method == "random":
        from nasforge.search.random_search import RandomStrategy

        return RandomStrategy(grammar, mu=mu, rho=rho, seed=cfg.seed)
    if method == "enas":
        if cfg.space != "nb201":
            raise ConfigError("the multi-trial ENAS strategy (REINFORCE over a table) needs --space nb201")
        from nasforge.search.reinforce import ReinforceStrategy

        return ReinforceStrategy(
            grammar, lr=cfg.controller_lr, baseline_decay=cfg.baseline_decay, entropy_weight=cfg.entropy_weight, hidden=cfg.controller_hidden,
            tanh_constant=cfg.tanh_constant, temperature=cfg.temperature, avoid_seen=True if cfg.avoid_seen is None else cfg.avoid_seen, seed=cfg.seed,
        )
    from nasforge.search.blockqnn import BlockQNNStrategy

    s = q_settings(cfg)
    s.pop("state")
    return BlockQNNStrategy(grammar, n_trials=cfg.trials, mu=mu, rho=rho, seed=cfg.seed, **s)


def evaluator_and_config(cfg: MultiTrialConfig) -> tuple[str, dict]:
    if cfg.space == "nb201":
        fn, tc = "nasforge.search.early_stop:evaluate_nb201", {"metric": cfg.metric, "table": cfg.table}
    else:
        fn = "nasforge.search.early_stop:evaluate"
        tc = {
            "data": cfg.data, "data_dir": cfg.data_dir, "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "channels": cfg.channels, "blocks_per_stage": cfg.blocks_per_stage, "stages": cfg.stages, "head_hidden": cfg.head_hidden,
            "dropout": cfg.dropout, "valid_fraction": cfg.valid_fraction, "limit": cfg.limit, "seed": cfg.seed,
            "device": cfg.device, "threads": max(1, int(cfg.cpus_per_trial)), "deterministic": cfg.deterministic,
        }
    if cfg.evaluator:
        fn = cfg.evaluator
    return fn, {**tc, **cfg.evaluator_config}


def preload_modules(evaluate: str, task_config: dict) -> list[str]:
    """Modules the process pool's forkserver imports once for all workers."""
    mods = {"nasforge.runners.executors", evaluate.partition(":")[0], str(task_config.get("delegate", evaluate)).partition(":")[0]}
    if "nasforge.search.early_stop" in mods:
        # FlopCounterMode imports torch._dynamo on first use (seconds per worker otherwise)
        mods |= {"nasforge.cost", "nasforge.data", "nasforge.nets.blocks", "torch._dynamo"}
    return sorted(mods)


def final_arch(cfg: MultiTrialConfig, arch: dict, name: str = "") -> Any:
    """The JSON architecture file object: a ``block`` or, for NAS-Bench-201, a 1-input ``cell``."""
    if cfg.space == "nb201":
        from nasforge.spaces.nb201 import ops_to_arch, test_metric

        return ops_to_arch(arch["ops"], name, {"space": "nb201", "metric": cfg.metric, "test_metric": test_metric(cfg.metric)})
    from nasforge.arch.block import BlockArch

    a = BlockArch.from_dict(arch)
    a.name = name
    return a


def metrics_record(t: Any, best: float) -> dict:
    m = t.metrics or {}
    return {
        "trial": t.finish_seq, "id": t.id, "status": t.status, "reward": t.reward, "accuracy": m.get("accuracy"),
        "flops": m.get("flops"), "density": m.get("density"), "epsilon": t.meta.get("epsilon"), "best_reward": best,
        "attempts": t.attempts, **({"metric": m["metric"]} if "metric" in m else {}),
    }


def rebuild_metrics(store: Any, path: Path) -> float:
    best = float("-inf")
    lines = []
    for t in store.trials(order="finish"):
        if t.finish_seq is None:
            continue
        if t.reward is not None and t.status == "done":
            best = max(best, t.reward)
        lines.append(json.dumps(metrics_record(t, best)) + "\n")
    atomic_write_text(path, "".join(lines))
    return best


def run_search(
    method: str, cfg: MultiTrialConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> SearchResult:
    """Run the multi-trial search ``method`` (a registered strategy) with ``cfg`` in the run folder ``out``."""
    from tqdm import tqdm

    from nasforge.arch import save_arch
    from nasforge.runners.executors import make_executor
    from nasforge.runners.runner import load_strategy_state, run_trials
    from nasforge.runners.store import TrialStore
    from nasforge.utils.io import MetricsWriter

    out = Path(out)
    store_path = out / STORE_FILE
    if resume and not store_path.exists():
        raise ConfigError(f"--resume: no {STORE_FILE} in {out}")
    if cfg.device not in ("cpu",):
        from nasforge.utils.device import resolve_device

        cfg.device = str(resolve_device(cfg.device))
    if cfg.space == "nb201":  # fail before anything is written when the table is missing
        from nasforge.search.early_stop import _nb201

        _nb201(cfg.table)
    grammar = make_grammar(cfg, method)
    strategy = make_strategy(method, cfg, grammar)
    evaluate, task_config = evaluator_and_config(cfg)
    executor = None
    if cfg.executor == "ray":  # start or join Ray before the run folder is touched: a failure is one line, nothing written
        executor = make_executor("ray", cfg.workers, address=cfg.address, cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial, max_retries=cfg.max_retries)
    # the run folder: locked for the run's life, a finished run refused without --resume/--overwrite
    try:
        rd = RunDir(out, command="search", method=method, space=cfg.space, config=asdict(cfg), resume=resume,
                    overwrite=overwrite, metrics_key="trial", require_checkpoint=False).open()
    except BaseException:
        if executor is not None:
            executor.shutdown()
        raise
    store = None
    try:
        store = TrialStore(store_path)
        if resume:
            if store.get_state("method") not in (None, method):
                raise ConfigError(f"{out} holds a {store.get_state('method')} search, not {method}")
            if store.get_state("space") not in (None, cfg.space):
                raise ConfigError(f"{out} holds a search over space {store.get_state('space')!r}, not {cfg.space!r}")
            rd.check_header(store.get_state("header"), store_path)
            restored = load_strategy_state(store, strategy)
            log.info(
                "resuming: %d finished trials kept, %d to re-run, strategy state %s",
                store.count("done") + store.count("failed"), store.count("pending"), "restored" if restored else "not saved yet (fresh start)",
            )
        else:
            store.save_state({"method": method, "space": cfg.space, "header": rd.header})
        rd.write_config(cfg)
        metrics_path = out / "metrics.jsonl"
        best = [rebuild_metrics(store, metrics_path)]
        writer = MetricsWriter(metrics_path, key="trial")
        executor = executor or make_executor(cfg.executor, cfg.workers, address=cfg.address, cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial, max_retries=cfg.max_retries,
            preload=preload_modules(evaluate, task_config),
        )

        def on_result(t: Any) -> None:
            if t.status == "done" and t.reward is not None:
                best[0] = max(best[0], t.reward)
            writer.write(metrics_record(t, best[0]))
            rd.saved()  # the trial is in the store and its record in metrics.jsonl

        already = store.count("done") + store.count("failed")
        bar = tqdm(total=cfg.trials, initial=min(already, cfg.trials), disable=not progress, desc=f"{method} trials")
        try:
            summary = run_trials(
                strategy, store, executor, evaluate=evaluate, config=task_config, n_trials=cfg.trials,
                max_retries=cfg.max_retries, max_duplicates=cfg.max_duplicates, on_result=on_result, progress=bar,
                ordered=cfg.deterministic, window=cfg.workers,
            )
        finally:
            bar.close()
        for ev in summary.events:
            log.warning("note: %s", ev)
        if summary.best is None:
            from nasforge.errors import TrainingError

            raise TrainingError(f"no trial finished successfully ({store.count('failed')} failed); see {store_path}")
        best_arch = final_arch(cfg, summary.best.arch, name=f"{method}-best-trial-{summary.best.id}")
        save_arch(best_arch, out / "arch.json")
        greedy = strategy.greedy_arch()
        if greedy is not None:
            save_arch(final_arch(cfg, greedy, name=f"{method}-greedy"), out / "greedy_arch.json")
        atomic_write_json(out / "summary.json", {
            "method": method, "space": cfg.space, "trials": store.count(), "done": store.count("done"), "failed": store.count("failed"),
            "retried": summary.retried, "duplicates": summary.duplicates, "best_trial": summary.best.id, "best_reward": summary.best.reward,
            "best_metrics": summary.best.metrics, "stopped_early": summary.stopped_early,
        })
        desc = best_arch.describe() if hasattr(best_arch, "describe") else "|".join(summary.best.arch.get("ops", []))
        log.info("best trial %s: reward %.4f %s", summary.best.id, summary.best.reward, desc)
        metrics = {"best_reward": float(summary.best.reward)}
        metrics.update({k: float(v) for k, v in (summary.best.metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return SearchResult(method, cfg.space, best_arch, out, metrics)
    finally:
        if executor is not None:
            executor.shutdown()
        if store is not None:
            store.close()
        rd.close()


__all__ = ["MultiTrialConfig", "run_search"]
