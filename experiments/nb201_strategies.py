"""NAS-Bench-201 strategies at equal budgets: random search, REINFORCE (the ENAS
controller) and Q-learning (BlockQNN's agent, our ``nb201`` preset and the paper's).

    OMP_NUM_THREADS=1 NASFORGE_DATA=/path/to/data PYTHONPATH=src \\
        python experiments/nb201_strategies.py --config experiments/nb201_strategies.yaml

Each strategy runs against the table in memory (``run_on_table``: no store, no
subprocesses); the budget counts distinct cells; the result of a run is the test
accuracy (the ``-test`` column of the selection column's data set) of the best cell by the
selection (``-val``) column. Strategies whose behaviour does not depend on the budget
(random, REINFORCE) run once per seed at the largest budget and are read at every budget
from the best-so-far trace (identical to separate runs: same seed, same proposals);
Q-learning stretches its ε schedule over the budget, so it runs once per budget.

Writes under ``--out`` (default ``experiments/results/nb201_strategies``): ``raw.csv``
(one row per strategy, column, budget, seed), ``summary.json`` (mean ± std, Welch
t-tests against the baseline, ms per query, the ablation), ``summary.md`` (the tables)
and ``nb201_strategies.png`` (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nasforge.search.blockqnn import BlockQNNStrategy
from nasforge.search.nb201_grammar import NB201Grammar
from nasforge.search.qlearning import EPSILON_SCHEDULE, PRESETS, SHORT_EPSILON_SCHEDULE
from nasforge.search.random_search import RandomStrategy
from nasforge.search.reinforce import ReinforceStrategy
from nasforge.search.table_search import run_on_table
from nasforge.spaces.nb201 import test_metric
from nasforge.spaces.nb201_table import NB201Table

HERE = Path(__file__).resolve().parent
SCHEDULES = {"paper": EPSILON_SCHEDULE, "short": SHORT_EPSILON_SCHEDULE}


def qlearning_settings(spec: dict) -> dict:
    """A preset with overrides (``epsilon_schedule`` may name ``paper`` or ``short``)."""
    s = {**PRESETS[spec.get("preset", "nb201")], **{k: v for k, v in spec.items() if k not in ("kind", "preset")}}
    if isinstance(s["epsilon_schedule"], str):
        s["epsilon_schedule"] = SCHEDULES[s["epsilon_schedule"]]
    return s


def make(spec: dict, budget: int, seed: int) -> Any:
    kind = spec.get("kind", "qlearning")
    if kind == "random":
        return RandomStrategy(NB201Grammar(), seed=seed)
    if kind == "reinforce":
        kw = {k: v for k, v in spec.items() if k != "kind"}
        return ReinforceStrategy(NB201Grammar(), seed=seed, **kw)
    s = qlearning_settings(spec)
    state = s.pop("state")
    return BlockQNNStrategy(NB201Grammar(state=state), n_trials=budget, seed=seed, **s)


def budget_free(spec: dict) -> bool:
    return spec.get("kind") in ("random", "reinforce")


def run_strategy(name: str, spec: dict, table: NB201Table, metric: str, budgets: list[int], seeds: int, max_dup: int) -> list[dict]:
    rows = []
    tm = test_metric(metric)
    for seed in range(seeds):
        if budget_free(spec):
            n = max(budgets)
            r = run_on_table(make(spec, n, seed), table, metric=metric, budget=n, max_duplicates=max_dup, trace=True)
            for b in budgets:
                rows.append({"strategy": name, "metric": metric, "budget": b, "seed": seed, "test": r.trace[min(b, len(r.trace)) - 1],
                             "queries": min(b, r.queries), "proposals": "", "ms_per_query": 1000 * r.seconds / max(1, r.queries), "test_column": tm})
        else:
            for b in budgets:
                r = run_on_table(make(spec, b, seed), table, metric=metric, budget=b, max_duplicates=max_dup)
                rows.append({"strategy": name, "metric": metric, "budget": b, "seed": seed, "test": r.test, "queries": r.queries,
                             "proposals": r.proposals, "ms_per_query": 1000 * r.seconds / max(1, r.queries), "test_column": tm})
    return rows


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value (NaN when both samples are constant)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def summarise(rows: list[dict], baseline: str) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["strategy"], r["metric"], r["budget"]), []).append(r)
    out = []
    for (s, m, b), g in groups.items():
        acc = [float(r["test"]) for r in sorted(g, key=lambda r: r["seed"])]
        base = [float(r["test"]) for r in sorted(groups.get((baseline, m, b), []), key=lambda r: r["seed"])]
        out.append({
            "strategy": s, "metric": m, "test_column": g[0]["test_column"], "budget": b, "seeds": len(acc),
            "mean": statistics.mean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
            "p_vs_" + baseline: None if s == baseline else welch_p(acc, base),
            "ms_per_query": statistics.mean(float(r["ms_per_query"]) for r in g),
        })
    return out


def markdown(summary: list[dict], baseline: str, budgets: list[int]) -> str:
    lines = []
    for m in dict.fromkeys(s["metric"] for s in summary):
        tm = test_metric(m)
        lines += [f"Selection by `{m}`, test accuracy `{tm}` (%), mean ± std over seeds; p = two-sided Welch t-test vs {baseline}:", ""]
        lines += ["| strategy | " + " | ".join(f"{b} queries" for b in budgets) + " | ms/query at " + str(max(budgets)) + " |", "|---" * (len(budgets) + 2) + "|"]
        for s in dict.fromkeys(x["strategy"] for x in summary if x["metric"] == m):
            cells = []
            ms = ""
            for b in budgets:
                x = next((y for y in summary if (y["strategy"], y["metric"], y["budget"]) == (s, m, b)), None)
                if x is None:
                    cells.append("")
                    continue
                p = x["p_vs_" + baseline]
                cells.append(f"{x['mean']:.2f} ± {x['std']:.2f}" + ("" if p is None else (" (p n/a)" if math.isnan(p) else f" (p {p:.2g})")))
                ms = f"{x['ms_per_query']:.2f}"
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {ms} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(s["metric"] for s in summary))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for s in dict.fromkeys(x["strategy"] for x in summary):
            pts = sorted((x["budget"], x["mean"], x["std"]) for x in summary if x["strategy"] == s and x["metric"] == m)
            if pts:
                b, mu, sd = zip(*pts)
                ax.errorbar(b, mu, yerr=sd, marker="o", capsize=3, label=s)
        ax.set_xscale("log")
        ax.set_xlabel("distinct cells queried")
        ax.set_ylabel(f"{test_metric(m)} of best-by-val cell (%)")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "nb201_strategies.yaml"))
    p.add_argument("--out", default=str(HERE / "results" / "nb201_strategies"))
    p.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    p.add_argument("--budgets", type=int, nargs="+", default=None, help="override the budgets (also the ablation's)")
    p.add_argument("--metrics", nargs="+", default=None, help="override the selection columns")
    p.add_argument("--no-ablation", action="store_true")
    args = p.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    seeds = args.seeds or int(cfg["seeds"])
    budgets = args.budgets or [int(b) for b in cfg["budgets"]]
    metrics = args.metrics or list(cfg["metrics"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = NB201Table.load(cfg.get("table"))
    t0 = time.perf_counter()
    rows: list[dict] = []
    for m in metrics:
        for name, spec in cfg["strategies"].items():
            t = time.perf_counter()
            rows += run_strategy(name, spec, table, m, budgets, seeds, int(cfg["max_duplicates"]))
            print(f"{m} {name}: {time.perf_counter() - t:.1f} s", flush=True)
    summary = summarise(rows, cfg["baseline"])
    ablation: list[dict] = []
    abl = cfg.get("ablation")
    if abl and not args.no_ablation:
        ab_budgets = args.budgets or [int(b) for b in abl["budgets"]]
        ab_rows: list[dict] = []
        for name, spec in abl["variants"].items():
            t = time.perf_counter()
            ab_rows += run_strategy(name, {"kind": "qlearning", **spec}, table, abl["metric"], ab_budgets, seeds, int(cfg["max_duplicates"]))
            print(f"ablation {name}: {time.perf_counter() - t:.1f} s", flush=True)
        base = [r for r in rows if r["strategy"] == cfg["baseline"] and r["metric"] == abl["metric"] and r["budget"] in ab_budgets]
        ablation = [s for s in summarise(ab_rows + base, cfg["baseline"]) if s["strategy"] != cfg["baseline"]]
        rows += [{**r, "strategy": "ablation:" + r["strategy"]} for r in ab_rows]
    wall = time.perf_counter() - t0
    with open(out / "raw.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    command = "python experiments/nb201_strategies.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "summary.json").write_text(json.dumps({
        "command": command.strip(), "wall_seconds": wall, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "seeds": seeds, "budgets": budgets, "config": cfg, "results": summary, "ablation": ablation,
    }, indent=1, default=str))
    md = markdown(summary, cfg["baseline"], budgets)
    if ablation:
        md += "\nQ-learning ablation (" + abl["metric"] + "):\n\n" + markdown(ablation, cfg["baseline"], args.budgets or [int(b) for b in abl["budgets"]])
    (out / "summary.md").write_text(md + f"\nwall time {wall:.0f} s\n")
    plot(summary, out / "nb201_strategies.png")
    print(md)
    print(f"wall time {wall:.1f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
