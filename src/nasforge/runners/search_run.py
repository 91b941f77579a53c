"""``nasforge search blockqnn|random``: config, run directory, runner, outputs.

Writes in ``--out``: ``config.yaml``, ``trials.sqlite`` (every trial, the strategy state),
``metrics.jsonl`` (one record per finished trial: reward, accuracy, flops, density,
epsilon, best-so-far), ``arch.json`` (the best architecture found) and, for BlockQNN,
``greedy_arch.json`` (the greedy policy's block). ``--resume`` continues from
``trials.sqlite`` without re-running finished trials; ``metrics.jsonl`` is rebuilt from
the store so it always matches it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from nasforge.config import resolve, write_config
from nasforge.errors import ConfigError
from nasforge.search.qlearning import EPSILON_SCHEDULE
from nasforge.utils.io import atomic_write_json, atomic_write_text

STORE_FILE = "trials.sqlite"


@dataclass
class MultiTrialConfig:
    """Config of BlockQNN and random search (defaults: see ``docs/blockqnn.md``)."""

    space: str = "nsc"
    data: str = "digits"
    data_dir: Optional[str] = None
    seed: int = 0
    device: str = "cpu"
    deterministic: bool = False
    # budget and workers
    trials: int = 100
    workers: int = 1
    executor: str = "local"
    address: Optional[str] = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_retries: int = 2
    max_duplicates: int = 1000
    # agent (BlockQNN)
    q_lr: float = 0.01
    gamma: float = 1.0
    q_init: float = 0.5
    replay_batch: int = 64
    blocks_per_iteration: int = 64
    epsilon_schedule: list = field(default_factory=lambda: [list(x) for x in EPSILON_SCHEDULE])
    max_layers: int = 10
    # reward (eq. 7)
    mu: float = 0.005
    rho: float = 0.01
    # early-stop training
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    channels: int = 8
    blocks_per_stage: int = 1
    stages: int = 3
    head_hidden: int = 64
    dropout: float = 0.4
    valid_fraction: float = 0.2
    limit: Optional[int] = None
    # NAS-Bench-201 table
    metric: str = "cifar10-val"
    table: Optional[str] = None
    # evaluation function override (tests, benchmarks) and its extra config
    evaluator: Optional[str] = None
    evaluator_config: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.space not in ("nsc", "nb201"):
            raise ConfigError(f"config key 'space' must be nsc or nb201 for BlockQNN/random search, got {self.space!r}")
        if self.executor not in ("local", "ray", "inline"):
            raise ConfigError(f"config key 'executor' must be local, ray or inline, got {self.executor!r}")
        for k in ("trials", "workers", "max_layers", "epochs", "batch_size", "channels", "blocks_per_stage", "stages", "blocks_per_iteration"):
            if getattr(self, k) < 1:
                raise ConfigError(f"config key {k!r} must be at least 1, got {getattr(self, k)}")
        for e in self.epsilon_schedule:
            if not (isinstance(e, (list, tuple)) and len(e) == 2 and 0.0 <= float(e[0]) <= 1.0 and int(e[1]) >= 0):
                raise ConfigError(f"config key 'epsilon_schedule' must be a list of [epsilon in 0..1, iterations], got {e!r}")
        if not 0.0 <= self.q_lr <= 1.0:
            raise ConfigError(f"config key 'q_lr' must be in [0, 1], got {self.q_lr}")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    have = {s for a in p._actions for s in a.option_strings}
    if "--space" not in have:
        p.add_argument("--space", default=None, help="nsc (BlockQNN blocks, trained) or nb201 (NAS-Bench-201 table look-up)")
    g = p.add_argument_group("trials and workers")
    g.add_argument("--trials", type=int, default=None, help="number of distinct architectures to evaluate (default 100)")
    g.add_argument("--workers", type=int, default=None, help="parallel evaluations (default 1)")
    g.add_argument("--executor", choices=("local", "ray", "inline"), default=None, help="local process pool (default), Ray, or inline (nb201 default)")
    g.add_argument("--address", default=None, help="Ray cluster address (host:port or auto); default: start a local Ray")
    g.add_argument("--cpus-per-trial", type=float, default=None)
    g.add_argument("--gpus-per-trial", type=float, default=None)
    g.add_argument("--max-retries", type=int, default=None, help="re-runs of a trial whose worker died (default 2)")
    g = p.add_argument_group("reward and space")
    g.add_argument("--mu", type=float, default=None, help="FLOPs penalty μ of eq. 7 (default 0.005)")
    g.add_argument("--rho", type=float, default=None, help="density penalty ρ of eq. 7 (default 0.01)")
    g.add_argument("--max-layers", type=int, default=None, help="maximum NSC layer index (default 10)")
    g.add_argument("--limit", type=int, default=None, help="use at most this many images per split (quick runs)")
    g.add_argument("--metric", default=None, help="NAS-Bench-201 metric for --space nb201 (default cifar10-val)")
    g.add_argument("--table", default=None, help="NAS-Bench-201 table file (default $NASFORGE_DATA/nas-bench-201/...)")


_FLAG_KEYS = (
    "space", "data", "data_dir", "seed", "device", "deterministic", "trials", "workers", "executor", "address",
    "cpus_per_trial", "gpus_per_trial", "max_retries", "mu", "rho", "max_layers", "limit", "metric", "table",
    "epochs", "batch_size", "q_lr", "gamma", "replay_batch", "blocks_per_iteration",
)


def resolve_config(args: argparse.Namespace, out: Path) -> MultiTrialConfig:
    overrides = {k: getattr(args, k, None) for k in _FLAG_KEYS}
    if overrides.get("deterministic") is False:
        overrides["deterministic"] = None
    yaml_path = args.config
    if yaml_path is None and getattr(args, "resume", False) and (out / "config.yaml").is_file():
        yaml_path = out / "config.yaml"
    if overrides.get("device") not in (None, "cpu"):
        from nasforge.utils.device import resolve_device

        overrides["device"] = str(resolve_device(overrides["device"]))
    if overrides.get("space") == "nb201" and overrides.get("executor") is None:
        overrides["executor"] = "inline"
    return resolve(MultiTrialConfig, yaml_path, overrides)


def make_grammar(cfg: MultiTrialConfig) -> Any:
    if cfg.space == "nb201":
        from nasforge.search.nb201_grammar import NB201Grammar

        return NB201Grammar()
    from nasforge.spaces.nsc import NSCGrammar

    return NSCGrammar(max_layers=cfg.max_layers)


def make_strategy(method: str, cfg: MultiTrialConfig, grammar: Any) -> Any:
    mu, rho = (0.0, 0.0) if cfg.space == "nb201" else (cfg.mu, cfg.rho)
    if method == "random":
        from nasforge.search.random_search import RandomStrategy

        return RandomStrategy(grammar, mu=mu, rho=rho, seed=cfg.seed)
    from nasforge.search.blockqnn import BlockQNNStrategy

    return BlockQNNStrategy(
        grammar, n_trials=cfg.trials, lr=cfg.q_lr, gamma=cfg.gamma, q_init=cfg.q_init, replay_batch=cfg.replay_batch,
        blocks_per_iteration=cfg.blocks_per_iteration, epsilon_schedule=cfg.epsilon_schedule, mu=mu, rho=rho, seed=cfg.seed,
    )


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
        from nasforge.arch.cell import CellArch, CellGenotype
        from nasforge.spaces.nb201_table import EDGES

        ops = arch["ops"]
        nodes = [[(ops[k], src) for k, (dst, src) in enumerate(EDGES) if dst == j] for j in (1, 2, 3)]
        return CellArch(normal=CellGenotype(nodes=nodes, concat=[3]), reduce=None, inputs=1, name=name, meta={"space": "nb201"})
    from nasforge.arch.block import BlockArch

    a = BlockArch.from_dict(arch)
    a.name = name
    return a


def metrics_record(t: Any, best: float) -> dict:
    m = t.metrics or {}
    return {
        "trial": t.finish_seq, "id": t.id, "status": t.status, "reward": t.reward, "accuracy": m.get("accuracy"),
        "flops": m.get("flops"), "density": m.get("density"), "epsilon": t.meta.get("epsilon"), "best_reward": best,
        "attempts": t.attempts,
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


def run_search(method: str, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nasforge.arch import save_arch
    from nasforge.runners.executors import make_executor
    from nasforge.runners.runner import load_strategy_state, run_trials
    from nasforge.runners.store import TrialStore
    from nasforge.utils.io import MetricsWriter

    out = Path(args.out)
    store_path = out / STORE_FILE
    resume = bool(getattr(args, "resume", False))
    if not resume and store_path.exists():
        raise ConfigError(f"{out} already holds a search ({STORE_FILE}); pass --resume to continue it or choose another --out")
    if resume and not store_path.exists():
        raise ConfigError(f"--resume: no {STORE_FILE} in {out}")
    cfg = resolve_config(args, out)
    executor = None
    if cfg.executor == "ray":  # start or join Ray before the run folder is touched: a failure is one line, nothing written
        executor = make_executor("ray", cfg.workers, address=cfg.address, cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial, max_retries=cfg.max_retries)
    if cfg.space == "nb201":  # fail before anything is written when the table is missing
        from nasforge.search.early_stop import _nb201

        _nb201(cfg.table)
    grammar = make_grammar(cfg)
    strategy = make_strategy(method, cfg, grammar)
    evaluate, task_config = evaluator_and_config(cfg)
    try:
        store = TrialStore(store_path)
    except BaseException:
        if executor is not None:
            executor.shutdown()
        raise
    try:
        if resume:
            if store.get_state("method") not in (None, method):
                raise ConfigError(f"{out} holds a {store.get_state('method')} search, not {method}")
            if store.get_state("space") not in (None, cfg.space):
                raise ConfigError(f"{out} holds a search over space {store.get_state('space')!r}, not {cfg.space!r}")
            restored = load_strategy_state(store, strategy)
            print(
                f"resuming: {store.count('done') + store.count('failed')} finished trials kept, {store.count('pending')} to re-run, "
                f"strategy state {'restored' if restored else 'not saved yet (fresh start)'}"
            )
        else:
            store.save_state({"method": method, "space": cfg.space})
        out.mkdir(parents=True, exist_ok=True)
        write_config(cfg, out / "config.yaml")
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

        already = store.count("done") + store.count("failed")
        bar = tqdm(total=cfg.trials, initial=min(already, cfg.trials), disable=bool(getattr(args, "no_progress", False)), desc=f"{method} trials")
        try:
            summary = run_trials(
                strategy, store, executor, evaluate=evaluate, config=task_config, n_trials=cfg.trials,
                max_retries=cfg.max_retries, max_duplicates=cfg.max_duplicates, on_result=on_result, progress=bar,
                ordered=cfg.deterministic, window=cfg.workers,
            )
        finally:
            bar.close()
        for ev in summary.events:
            print(f"note: {ev}")
        if summary.best is None:
            print(f"no trial finished successfully ({store.count('failed')} failed); see {store_path}")
            return 1
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
        print(f"best trial {summary.best.id}: reward {summary.best.reward:.4f} {desc}")
        print(f"wrote {out / 'arch.json'}, {metrics_path}, {store_path}")
        return 0
    finally:
        if executor is not None:
            executor.shutdown()
        store.close()


__all__ = ["MultiTrialConfig", "add_common_arguments", "run_search"]
