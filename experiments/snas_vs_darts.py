"""SNAS vs DARTS on real data (issue 13, item 2): does the architecture distribution move,
does the derived child keep the supernet's accuracy without retraining, and how do the
derived cells do when retrained from scratch?

    OMP_NUM_THREADS=1 NASFORGE_DATA=/path/to/data PYTHONPATH=src \\
        python experiments/snas_vs_darts.py --config experiments/snas_vs_darts.yaml

For every data set, seed and method the script runs one search through the Python API
(``nf.search``) and reads its ``metrics.jsonl``: per epoch the supernet's own held-out
accuracy (``supernet_acc``: DARTS with softmax(α) on every edge, SNAS with a Gumbel-softmax
sample at the epoch's temperature), the derived child's held-out accuracy **with the
supernet's weights, no retraining** (``child_acc``), the entropy of each edge's op
distribution (mean over edges, per cell type) and softmax(α), from which it computes how
far the distribution is from uniform (mean total variation over edges, and the largest
|p − 1/K| of any op). Every derived cell is then retrained from scratch with ``nf.train``
at one fixed budget (seed = the search's seed).

Writes under ``--out`` (default ``experiments/results/snas_vs_darts``): ``epochs.csv`` (one
row per data set, method, seed and epoch), ``retrain.csv`` (one row per derived cell),
``runs/<data>/<method>-s<seed>/`` (each search's ``metrics.jsonl`` and ``arch.json``),
``summary.json`` (mean ± std over seeds per epoch, Welch t-tests, wall times),
``summary.md`` (the tables) and ``snas_vs_darts.png`` (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PARAM_FREE = {"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"}


def ms(xs: list[float]) -> tuple[float, float]:
    xs = [float(x) for x in xs if x not in (None, "") and not math.isnan(float(x))]
    if not xs:
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def welch_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Welch t-test p-value (None when it is not defined)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0):
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def distance_from_uniform(alpha_softmax: dict[str, list[list[float]]]) -> tuple[float, float]:
    """(mean over all edges of the total variation 0.5·Σ|p − 1/K|, largest |p − 1/K| of any op)."""
    tvs, dev = [], 0.0
    for rows in alpha_softmax.values():
        for row in rows:
            k = len(row)
            tvs.append(0.5 * sum(abs(p - 1.0 / k) for p in row))
            dev = max(dev, max(abs(p - 1.0 / k) for p in row))
    return statistics.mean(tvs), dev


def epoch_rows(data: str, method: str, seed: int, metrics_path: Path) -> list[dict]:
    rows = []
    for line in metrics_path.read_text().splitlines():
        d = json.loads(line)
        tv, dev = distance_from_uniform(d["alpha_softmax"])
        k = len(next(iter(d["alpha_softmax"].values()))[0])
        ent = d["entropy"]
        rows.append({
            "data": data, "method": method, "seed": seed, "epoch": d["epoch"],
            "supernet_acc": d["supernet_acc"], "child_acc": d["child_acc"], "gap": d["supernet_acc"] - d["child_acc"],
            "entropy": statistics.mean(ent.values()), "entropy_normal": ent.get("normal"), "entropy_reduce": ent.get("reduce"),
            "entropy_max": math.log(k), "tv_from_uniform": tv, "max_dev_from_uniform": dev,
            "temperature": d.get("temperature", ""), "train_loss": d.get("train_loss"), "seconds": d.get("seconds"),
        })
    return rows


def cell_ops(arch: dict) -> dict[str, Any]:
    ops = [op for t in ("normal", "reduce") if arch.get(t) for node in arch[t]["nodes"] for op, _ in node]
    return {"edges": len(ops), "param_free_edges": sum(op in PARAM_FREE for op in ops), "ops": " ".join(sorted(ops))}


def parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k.strip()] = yaml.safe_load(v)
    return out


def run_all(cfg: dict, out: Path, work: Path, retrain: bool) -> tuple[list[dict], list[dict], dict]:
    import nasforge as nf

    ep_rows: list[dict] = []
    rt_rows: list[dict] = []
    times: dict[str, float] = {}
    for data in cfg["datasets"]:
        for seed in cfg["seeds"]:
            for method, extra in cfg["methods"].items():
                run = work / data / f"{method}-s{seed}"
                t = time.perf_counter()
                res = nf.search(method, data=data, space="cell", out=run, overwrite=True, seed=seed, **{**cfg["search"], **(extra or {})})
                dt = time.perf_counter() - t
                times[f"search {data} {method} s{seed}"] = dt
                keep = out / "runs" / data / f"{method}-s{seed}"
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("metrics.jsonl", "arch.json"):
                    shutil.copy(run / name, keep / name)
                rows = epoch_rows(data, method, seed, keep / "metrics.jsonl")
                ep_rows += rows
                last = rows[-1]
                print(f"{data} {method} seed {seed}: {dt:.0f} s; last epoch supernet {last['supernet_acc']:.3f} child {last['child_acc']:.3f} "
                      f"entropy {last['entropy']:.3f} (max {last['entropy_max']:.3f}) TV {last['tv_from_uniform']:.3f}", flush=True)
                if not retrain:
                    continue
                t = time.perf_counter()
                tr = nf.train(res.arch, data=data, out=work / data / f"{method}-s{seed}-retrain", overwrite=True, seed=seed, **cfg["retrain"])
                dt = time.perf_counter() - t
                times[f"retrain {data} {method} s{seed}"] = dt
                arch = json.loads((keep / "arch.json").read_text())
                rt_rows.append({"data": data, "method": method, "seed": seed, "test_acc": tr.metrics["test_acc"], "params": tr.params,
                                "seconds": dt, **cell_ops(arch)})
                print(f"  retrained: test acc {tr.metrics['test_acc']:.4f}, {tr.params} params, {dt:.0f} s", flush=True)
                write_csv(rt_rows, out / "retrain.csv")  # partial results survive an interrupted run
            write_csv(ep_rows, out / "epochs.csv")
    return ep_rows, rt_rows, times


FIELDS = ("supernet_acc", "child_acc", "gap", "entropy", "entropy_normal", "entropy_reduce", "tv_from_uniform", "max_dev_from_uniform")


def summarise(ep_rows: list[dict], rt_rows: list[dict]) -> dict:
    per_epoch = []
    groups: dict[tuple, list[dict]] = {}
    for r in ep_rows:
        groups.setdefault((r["data"], r["method"], r["epoch"]), []).append(r)
    for (data, method, epoch), g in sorted(groups.items()):
        s: dict[str, Any] = {"data": data, "method": method, "epoch": epoch, "seeds": len(g), "entropy_max": g[0]["entropy_max"]}
        for f in FIELDS:
            s[f], s[f + "_std"] = ms([float(r[f]) for r in g if r[f] not in (None, "")])
        per_epoch.append(s)
    tests = {}
    for data in dict.fromkeys(r["data"] for r in ep_rows):
        last = max(r["epoch"] for r in ep_rows if r["data"] == data)
        fin = {m: [r for r in ep_rows if r["data"] == data and r["method"] == m and r["epoch"] == last] for m in ("darts", "snas")}
        rt = {m: [r["test_acc"] for r in rt_rows if r["data"] == data and r["method"] == m] for m in ("darts", "snas")}
        tests[data] = {
            f"final_{f}_p_darts_vs_snas": welch_p([r[f] for r in fin["darts"]], [r[f] for r in fin["snas"]]) for f in ("gap", "entropy", "child_acc")
        }
        tests[data]["retrain_test_acc_p_darts_vs_snas"] = welch_p(rt["darts"], rt["snas"])
    retrain = []
    for (data, method) in dict.fromkeys((r["data"], r["method"]) for r in rt_rows):
        g = [r for r in rt_rows if (r["data"], r["method"]) == (data, method)]
        a, sd = ms([r["test_acc"] for r in g])
        pf, pfs = ms([r["param_free_edges"] / max(1, r["edges"]) for r in g])
        retrain.append({"data": data, "method": method, "seeds": len(g), "test_acc": a, "test_acc_std": sd,
                        "params": statistics.mean(r["params"] for r in g), "edges": statistics.mean(r["edges"] for r in g),
                        "param_free_share": pf, "param_free_share_std": pfs})
    return {"per_epoch": per_epoch, "retrain": retrain, "tests": tests}


def pm(m: float, s: float, scale: float = 1.0, digits: int = 3) -> str:
    return "n/a" if math.isnan(m) else f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def markdown(summary: dict) -> str:
    lines = []
    for data in dict.fromkeys(s["data"] for s in summary["per_epoch"]):
        pe = [s for s in summary["per_epoch"] if s["data"] == data]
        kmax = pe[0]["entropy_max"]
        lines += [f"**{data}**, mean ± std over seeds. Accuracies on held-out images (%), child = derived cell with the "
                  f"supernet's weights, no retraining; gap = supernet − child (points); entropy in nats (uniform = {kmax:.3f}); "
                  "TV = mean total variation of softmax(α) from uniform over edges; max dev = largest |p − 1/K|.", ""]
        lines += ["| method | epoch | supernet acc | child acc | gap | entropy | TV from uniform | max dev |", "|---" * 8 + "|"]
        for s in pe:
            lines.append(f"| {s['method']} | {s['epoch']} | {pm(s['supernet_acc'], s['supernet_acc_std'], 100, 1)} | "
                         f"{pm(s['child_acc'], s['child_acc_std'], 100, 1)} | {pm(s['gap'], s['gap_std'], 100, 1)} | "
                         f"{pm(s['entropy'], s['entropy_std'])} | {pm(s['tv_from_uniform'], s['tv_from_uniform_std'])} | "
                         f"{pm(s['max_dev_from_uniform'], s['max_dev_from_uniform_std'])} |")
        lines.append("")
        rt = [r for r in summary["retrain"] if r["data"] == data]
        if rt:
            lines += ["Derived cells retrained from scratch (fixed budget), test accuracy (%), mean ± std over seeds; "
                      "param-free share = share of the cells' edges that are none/skip/pool:", ""]
            lines += ["| method | seeds | test acc | params | edges (normal+reduce) | param-free share |", "|---" * 6 + "|"]
            for r in rt:
                lines.append(f"| {r['method']} | {r['seeds']} | {pm(r['test_acc'], r['test_acc_std'], 100, 2)} | {r['params']:.0f} | "
                             f"{r['edges']:.1f} | {pm(r['param_free_share'], r['param_free_share_std'], 1, 2)} |")
            lines.append("")
        t = summary["tests"].get(data, {})
        if t:
            lines.append("Welch t-tests DARTS vs SNAS (last epoch / retrained): " + ", ".join(
                f"{k.replace('_p_darts_vs_snas', '')} p = " + ("n/a" if v is None else f"{v:.2g}") for k, v in t.items()))
            lines.append("")
    return "\n".join(lines)


def plot(summary: dict, rt_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(s["data"] for s in summary["per_epoch"]))
    colors = {"darts": "tab:blue", "snas": "tab:orange"}
    fig, axes = plt.subplots(len(datasets), 4, figsize=(16, 3.6 * len(datasets)), squeeze=False)
    for row, data in zip(axes, datasets):
        for method in dict.fromkeys(s["method"] for s in summary["per_epoch"] if s["data"] == data):
            pe = [s for s in summary["per_epoch"] if s["data"] == data and s["method"] == method]
            e = [s["epoch"] for s in pe]
            c = colors.get(method)
            for ax, f, style, lab in ((row[0], "supernet_acc", "-", "supernet"), (row[0], "child_acc", "--", "child (supernet weights)"),
                                      (row[1], "entropy", "-", ""), (row[2], "tv_from_uniform", "-", "")):
                mu = [100 * s[f] if ax is row[0] else s[f] for s in pe]
                sd = [100 * s[f + "_std"] if ax is row[0] else s[f + "_std"] for s in pe]
                ax.errorbar(e, mu, yerr=sd, fmt=style, marker="o", ms=3, capsize=2, color=c, label=f"{method} {lab}".strip())
            rt = [100 * r["test_acc"] for r in rt_rows if r["data"] == data and r["method"] == method]
            if rt:
                x = list(colors).index(method) if method in colors else 0
                row[3].bar(x, statistics.mean(rt), color=c, alpha=0.5)
                row[3].scatter([x] * len(rt), rt, color="k", s=12, zorder=3)
        if pe:
            row[1].axhline(pe[0]["entropy_max"], color="grey", lw=0.8, ls=":", label="uniform")
        row[0].set_ylabel(f"{data}\nheld-out accuracy (%)")
        row[0].set_title("(a) supernet vs derived child, no retraining")
        row[1].set_title("(b) entropy of softmax(α) (nats, mean over edges)")
        row[2].set_title("(c) total variation from uniform")
        row[3].set_title("(d) derived cells retrained, test acc (%)")
        row[3].set_xticks(range(len(colors)), list(colors))
        for ax in row[:3]:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    ints, strs = {"seed", "epoch", "edges", "param_free_edges", "params"}, {"data", "method", "ops"}
    return [{k: v if k in strs or v == "" else (int(v) if k in ints else float(v)) for k, v in r.items()}
            for r in csv.DictReader(open(path, encoding="utf-8"))]


def write_summary(out: Path, summary: dict, md: str, cfg: dict, times: dict, wall: float, cpu: float, command: str) -> None:
    """``summary.json`` (the summary with the command, config, wall and CPU time) and
    ``summary.md`` (the tables and the wall time) of an experiment run in ``out``."""
    (out / "summary.json").write_text(json.dumps({
        "command": command.strip(), "wall_seconds": wall, "cpu_seconds": cpu, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "config": cfg, "seconds": times, **summary,
    }, indent=1, default=str))
    (out / "summary.md").write_text(md + f"\nwall time {wall:.0f} s (CPU {cpu:.0f} s)\n")


def report(out: Path, ep_rows: list[dict], rt_rows: list[dict], cfg: dict, times: dict, wall: float, cpu: float, command: str) -> None:
    summary = summarise(ep_rows, rt_rows)
    md = markdown(summary)
    write_summary(out, summary, md, cfg, times, wall, cpu, command)
    plot(summary, rt_rows, out / "snas_vs_darts.png")
    print(md)
    print(f"wall time {wall:.1f} s (CPU {cpu:.1f} s); wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "snas_vs_darts.yaml"))
    p.add_argument("--out", default=str(HERE / "results" / "snas_vs_darts"))
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead of the config's")
    p.add_argument("--datasets", nargs="+", default=None, help="override the data sets")
    p.add_argument("--search-set", nargs="*", default=[], metavar="KEY=VALUE", help="override search config keys")
    p.add_argument("--retrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="override retraining config keys")
    p.add_argument("--no-retrain", action="store_true")
    p.add_argument("--summarise-only", action="store_true", help="only summarise epochs.csv/retrain.csv already in --out")
    p.add_argument("--work", default=None, help="folder for the full run folders (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.seeds is not None:
        cfg["seeds"] = list(range(args.seeds))
    if args.datasets:
        cfg["datasets"] = args.datasets
    cfg["search"].update(parse_sets(args.search_set))
    cfg["retrain"].update(parse_sets(args.retrain_set))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/snas_vs_darts.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.summarise_only:  # an interrupted run: summarise the rows written so far
        ep_rows, rt_rows = read_csv(out / "epochs.csv"), read_csv(out / "retrain.csv")
        old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        report(out, ep_rows, rt_rows, {**cfg, "partial": True}, old.get("seconds", {}), float("nan"), float("nan"), command)
        return 0
    tmp = None if args.work else tempfile.mkdtemp(prefix="snas_vs_darts_")
    work = Path(args.work or tmp)
    t0 = time.perf_counter()
    c0 = time.process_time()
    try:
        ep_rows, rt_rows, times = run_all(cfg, out, work, retrain=not args.no_retrain)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    write_csv(ep_rows, out / "epochs.csv")
    write_csv(rt_rows, out / "retrain.csv")
    report(out, ep_rows, rt_rows, cfg, times, wall, cpu, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
