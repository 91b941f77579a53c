"""One-shot DARTS and SNAS on NAS-Bench-201 (issue 13, item 5, the one-shot leg): search the
NB201 cell supernet on the CIFAR-10 subset, look every derived cell up in the table, and
compare with random search and REINFORCE (read from experiments/results/nb201_strategies).

    OMP_NUM_THREADS=1 NASFORGE_DATA=/path/to/data PYTHONPATH=src \\
        python experiments/nb201_oneshot.py --config experiments/nb201_oneshot.yaml

For every method and seed the script runs one search through the Python API
(``nf.search(method, space="nb201", data=...)``) and reads its ``metrics.jsonl``: per epoch
the derived cell (argmax op of each of the 6 edges, ``none`` kept, as NB201's DARTS
baseline), its table accuracy on the three test columns (cifar10-test, cifar100-test,
imagenet-test = ImageNet16-120; the search itself only sees CIFAR-10, the other two are
transfer), where it ranks in the table (``top_pct``: the share of the 15,625 cells with a
higher accuracy, in %), the entropy of softmax(α) (nats, mean over the 6 edges; uniform =
log 5) and the share of ``skip_connect`` / ``none`` / ``avg_pool_3x3`` among the 6 argmax
ops (collapse to skip connections is the known failure of DARTS on NB201, Dong & Yang,
ICLR 2020, Table 5). The supernet's held-out accuracy and the derived child's (supernet
weights, no retraining) are kept too.

Writes under ``--out`` (default ``experiments/results/nb201_oneshot``): ``epochs.csv`` (one
row per method, seed and epoch), ``runs/<method>-s<seed>/`` (each search's ``metrics.jsonl``
and ``arch.json``), ``summary.json`` (mean ± std over seeds per epoch and at the end, the
table's optimum and mean, the baselines, wall times), ``summary.md`` (the tables) and
``nb201_oneshot.png`` (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from snas_vs_darts import ms, write_csv, write_summary  # noqa: E402
COLUMNS = ("cifar10-test", "cifar100-test", "imagenet-test")
SHARES = ("skip_connect", "none", "avg_pool_3x3")
PRIMS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")  # NB201 order = α's columns
ALL_SKIP = ("skip_connect",) * 6  # the cell DARTS collapses to in the NB201 paper
ALL_SKIP_STR = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


class TableStats:
    """The table's columns sorted, for ranks: ``top_pct(acc)`` = % of cells with a higher accuracy."""

    def __init__(self, table: Any):
        self.table = table
        self.sorted = {c: sorted(r[c] for r in table.rows.values()) for c in COLUMNS}

    def top_pct(self, column: str, acc: float) -> float:
        v = self.sorted[column]
        return 100.0 * (len(v) - bisect.bisect_right(v, acc)) / len(v)

    def reference(self) -> dict[str, dict[str, float]]:
        skip = self.table.rows[ALL_SKIP]
        out = {}
        for c, v in self.sorted.items():
            r = {"optimum": v[-1], "mean": statistics.mean(v), "median": statistics.median(v), "all_skip": skip[c]}
            out[c] = {**r, **{f"top_pct_{k}": self.top_pct(c, a) for k, a in r.items()}}
        return out


def epoch_rows(method: str, seed: int, metrics_path: Path, stats: TableStats) -> list[dict]:
    from nasforge.arch import arch_from_dict
    from nasforge.spaces.nb201 import arch_to_ops, ops_to_cellstr

    rows = []
    for line in metrics_path.read_text().splitlines():
        d = json.loads(line)
        ops = arch_to_ops(arch_from_dict(d["arch"]))
        probs = d["alpha_softmax"]["normal"]
        row: dict[str, Any] = {"method": method, "seed": seed, "epoch": d["epoch"], "cell": ops_to_cellstr(ops)}
        for c in COLUMNS:
            acc = stats.table.accuracy(ops, c)
            row[c], row["top_pct_" + c] = acc, stats.top_pct(c, acc)
        row.update({
            "entropy": d["entropy"]["normal"], "entropy_max": math.log(len(probs[0])),
            **{f"share_{s}": sum(op == s for op in ops) / len(ops) for s in SHARES},
            **{f"p_{s}": statistics.mean(row[PRIMS.index(s)] for row in probs) for s in SHARES},  # softmax(α) mass, mean over edges
            "supernet_acc": d["supernet_acc"], "child_acc": d["child_acc"],
            "temperature": d.get("temperature", ""), "train_loss": d.get("train_loss"), "seconds": d.get("seconds"),
        })
        rows.append(row)
    return rows


def run_all(cfg: dict, out: Path, work: Path, stats: TableStats) -> tuple[list[dict], dict[str, float]]:
    import nasforge as nf

    rows: list[dict] = []
    times: dict[str, float] = {}
    for name, spec in cfg["methods"].items():
        spec = dict(spec)
        method, seeds = spec.pop("method"), spec.pop("seeds", cfg["seeds"])
        for seed in seeds:
            run = work / f"{name}-s{seed}"
            t = time.perf_counter()
            nf.search(method, data=cfg["data"], space="nb201", out=run, overwrite=True, seed=seed,
                      nb201_table=cfg.get("table"), **{**cfg["search"], **spec})
            times[f"{name} s{seed}"] = dt = time.perf_counter() - t
            keep = out / "runs" / f"{name}-s{seed}"
            keep.mkdir(parents=True, exist_ok=True)
            for f in ("metrics.jsonl", "arch.json"):
                shutil.copy(run / f, keep / f)
            new = epoch_rows(name, seed, keep / "metrics.jsonl", stats)
            for r in new:
                r["search_seconds"] = dt
            rows += new
            last = new[-1]
            print(f"{name} seed {seed}: {dt:.0f} s; {last['cell']}: cifar10 {last['cifar10-test']:.2f} (top {last['top_pct_cifar10-test']:.1f} %), "
                  f"entropy {last['entropy']:.3f}, skip {last['share_skip_connect']:.2f}, none {last['share_none']:.2f}", flush=True)
            write_csv(rows, out / "epochs.csv")  # partial results survive an interrupted run
    return rows, times


def baselines(cfg: dict, stats: TableStats) -> list[dict]:
    """Random search and REINFORCE from nb201_strategies' raw.csv: per data set (selection by
    its -val column), budget and strategy, the mean ± std test accuracy and top % over seeds."""
    b = cfg.get("baselines") or {}
    path = Path(b.get("raw", ""))
    path = path if path.is_absolute() else ROOT / path
    if not path.is_file():
        return []
    groups: dict[tuple, list[float]] = {}
    for r in csv.DictReader(open(path, encoding="utf-8")):
        if r["strategy"] in b["strategies"] and int(r["budget"]) in b["budgets"] and r["test_column"] in COLUMNS:
            groups.setdefault((r["strategy"], r["test_column"], int(r["budget"])), []).append(float(r["test"]))
    out = []
    for (s, c, bud), accs in sorted(groups.items(), key=lambda kv: (b["strategies"].index(kv[0][0]), kv[0][2], COLUMNS.index(kv[0][1]))):
        m, sd = ms(accs)
        tp, tps = ms([stats.top_pct(c, a) for a in accs])
        out.append({"strategy": s, "budget": bud, "column": c, "seeds": len(accs), "mean": m, "std": sd, "top_pct": tp, "top_pct_std": tps})
    return out


EPOCH_FIELDS = ("cifar10-test", "top_pct_cifar10-test", "entropy", *(f"{k}_{s}" for k in ("share", "p") for s in SHARES), "supernet_acc", "child_acc")


def summarise(rows: list[dict], stats: TableStats, base: list[dict]) -> dict:
    per_epoch, final = [], []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], int(r["epoch"])), []).append(r)
    for (method, epoch), g in groups.items():
        s: dict[str, Any] = {"method": method, "epoch": epoch, "seeds": len(g), "entropy_max": float(g[0]["entropy_max"])}
        for f in EPOCH_FIELDS:
            s[f], s[f + "_std"] = ms([r[f] for r in g])
        per_epoch.append(s)
    for method in dict.fromkeys(r["method"] for r in rows):
        last = max(int(r["epoch"]) for r in rows if r["method"] == method)
        g = sorted((r for r in rows if r["method"] == method and int(r["epoch"]) == last), key=lambda r: int(r["seed"]))
        f: dict[str, Any] = {"method": method, "epochs": last, "seeds": len(g), "cells": [r["cell"] for r in g]}
        for c in ("search_seconds", *COLUMNS, *("top_pct_" + c for c in COLUMNS), "entropy", *(f"{k}_{s}" for k in ("share", "p") for s in SHARES)):
            f[c], f[c + "_std"] = ms([r[c] for r in g])
        f["all_skip_runs"] = sum(r["cell"] == ALL_SKIP_STR for r in g)
        final.append(f)
    return {"per_epoch": per_epoch, "final": final, "table": stats.reference(), "baselines": base}


def pm(m: float, s: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(m) else f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(summary: dict) -> str:
    t = summary["table"]
    lines = ["Derived cells after the last epoch, NB201 table (hp12) test accuracy (%), mean ± std over seeds; "
             "top % = share of the 15,625 cells with a higher accuracy (lower is better); skip/none/pool share = share of "
             "the 6 edges whose argmax op is skip_connect / none / avg_pool_3x3; seconds = one search, one thread.", ""]
    lines += ["| method | seeds | epochs | s / search | cifar10 | top % | cifar100 | top % | ImageNet16-120 | top % | entropy | skip share | none share | pool share | softmax mass skip / none / pool |",
              "|---" * 15 + "|"]
    for f in summary["final"]:
        cells = " | ".join(f"{pm(f[c], f[c + '_std'])} | {pm(f['top_pct_' + c], f['top_pct_' + c + '_std'], 1)}" for c in COLUMNS)
        lines.append(f"| {f['method']} | {f['seeds']} | {f['epochs']} | {f['search_seconds']:.0f} | {cells} | {pm(f['entropy'], f['entropy_std'], 3)} | "
                     f"{pm(f['share_skip_connect'], f['share_skip_connect_std'])} | {pm(f['share_none'], f['share_none_std'])} | "
                     f"{pm(f['share_avg_pool_3x3'], f['share_avg_pool_3x3_std'])} | " + " / ".join(f"{f['p_' + x]:.2f}" for x in SHARES) + " |")
    for b in dict.fromkeys((x["strategy"], x["budget"]) for x in summary["baselines"]):
        xs = {x["column"]: x for x in summary["baselines"] if (x["strategy"], x["budget"]) == b}
        cells = " | ".join(f"{pm(xs[c]['mean'], xs[c]['std'])} | {pm(xs[c]['top_pct'], xs[c]['top_pct_std'], 1)}" if c in xs else " | " for c in COLUMNS)
        lines.append(f"| {b[0]} ({b[1]} table queries, best by its -val column) | {next(iter(xs.values()))['seeds']} | | | {cells} | | | | | |")
    for k, lab in (("optimum", "table optimum (best test)"), ("mean", "table mean"), ("all_skip", "all-skip cell")):
        lines.append(f"| {lab} | | | | " + " | ".join(f"{t[c][k]:.2f} | {t[c]['top_pct_' + k]:.1f}" for c in COLUMNS) + " | | | | | |")
    lines += ["", "Derived cells per seed (last epoch):", ""]
    for f in summary["final"]:
        lines.append(f"- {f['method']}: " + "; ".join(f"`{c}`" for c in f["cells"]))
    lines += ["", "Per epoch (cifar10-test of the derived cell, mean ± std over seeds):", "",
              "| method | epoch | cifar10 | top % | entropy | skip share | none share | pool share | softmax mass on skip | supernet acc | child acc |", "|---" * 11 + "|"]
    for s in summary["per_epoch"]:
        lines.append(f"| {s['method']} | {s['epoch']} | {pm(s['cifar10-test'], s['cifar10-test_std'])} | {pm(s['top_pct_cifar10-test'], s['top_pct_cifar10-test_std'], 1)} | "
                     f"{pm(s['entropy'], s['entropy_std'], 3)} | {pm(s['share_skip_connect'], s['share_skip_connect_std'])} | {pm(s['share_none'], s['share_none_std'])} | "
                     f"{pm(s['share_avg_pool_3x3'], s['share_avg_pool_3x3_std'])} | {pm(s['p_skip_connect'], s['p_skip_connect_std'])} | {pm(100 * s['supernet_acc'], 100 * s['supernet_acc_std'], 1)} | "
                     f"{pm(100 * s['child_acc'], 100 * s['child_acc_std'], 1)} |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(18, 3.8))
    methods = list(dict.fromkeys(s["method"] for s in summary["per_epoch"]))
    for i, m in enumerate(methods):
        pe = sorted((s for s in summary["per_epoch"] if s["method"] == m), key=lambda s: s["epoch"])
        e = [s["epoch"] for s in pe]
        c = f"C{i}"
        for a, f in ((ax[0], "cifar10-test"), (ax[1], "entropy")):
            a.errorbar(e, [s[f] for s in pe], yerr=[s[f + "_std"] for s in pe], marker="o", ms=3, capsize=2, color=c, label=m)
        ax[2].plot(e, [s["share_skip_connect"] for s in pe], "-o", ms=3, color=c, label=f"{m} skip")
        ax[2].plot(e, [s["share_none"] for s in pe], "--s", ms=3, color=c, label=f"{m} none")
        ax[2].plot(e, [s["share_avg_pool_3x3"] for s in pe], ":^", ms=3, color=c, label=f"{m} pool")
    t = summary["table"]["cifar10-test"]
    for k, ls in (("optimum", "-"), ("mean", ":"), ("all_skip", "-.")):
        ax[0].axhline(t[k], color="grey", lw=0.9, ls=ls, label=f"table {k.replace('_', '-')}")
    for b in summary["baselines"]:
        if b["column"] == "cifar10-test" and b["budget"] == 100:
            ax[0].axhline(b["mean"], color="k" if b["strategy"] == "random" else "tab:purple", lw=0.9, ls="--", label=f"{b['strategy']} @100")
    if summary["per_epoch"]:
        ax[1].axhline(summary["per_epoch"][0]["entropy_max"], color="grey", lw=0.8, ls=":", label="uniform (log 5)")
    # (d) last-epoch cells on the three columns, as top % of the table
    names = [f["method"] for f in summary["final"]] + [f"{b['strategy']}@{b['budget']}" for b in summary["baselines"] if b["column"] == "cifar10-test"]
    for j, c in enumerate(COLUMNS):
        vals = [f["top_pct_" + c] for f in summary["final"]] + [b["top_pct"] for b in summary["baselines"] if b["column"] == c]
        ax[3].bar([x + 0.27 * (j - 1) for x in range(len(vals))], vals, width=0.27, label=c)
    ax[3].set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax[3].set_yscale("symlog", linthresh=1.0)
    ax[0].set_title("(a) derived cell, NB201 cifar10-test (%)")
    ax[1].set_title("(b) entropy of softmax(α) (nats)")
    ax[2].set_title("(c) share of argmax ops: skip / none / pool")
    ax[3].set_title("(d) last epoch: top % of the table (lower = better)")
    for a in ax[:3]:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
        a.legend(fontsize=6)
    ax[3].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rows_from_runs(out: Path, cfg: dict, stats: TableStats, seconds: dict[str, float]) -> list[dict]:
    """The per-epoch rows rebuilt from the kept ``runs/<method>-s<seed>/metrics.jsonl`` (config's method order)."""
    order = list(cfg["methods"])
    runs = [(d.name.rsplit("-s", 1), d) for d in (out / "runs").iterdir() if (d / "metrics.jsonl").is_file()]
    rows = []
    for (name, seed), d in sorted(runs, key=lambda x: (order.index(x[0][0]) if x[0][0] in order else len(order), x[0][0], int(x[0][1]))):
        new = epoch_rows(name, int(seed), d / "metrics.jsonl", stats)
        rows += [{**r, "search_seconds": seconds.get(f"{name} s{seed}", float("nan"))} for r in new]
    return rows


def report(out: Path, rows: list[dict], cfg: dict, stats: TableStats, times: dict, wall: float, cpu: float, command: str) -> None:
    summary = summarise(rows, stats, baselines(cfg, stats))
    md = markdown(summary)
    write_summary(out, summary, md, cfg, times, wall, cpu, command)
    plot(summary, out / "nb201_oneshot.png")
    print(md)
    print(f"wall time {wall:.1f} s (CPU {cpu:.1f} s); wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "nb201_oneshot.yaml"))
    p.add_argument("--out", default=str(HERE / "results" / "nb201_oneshot"))
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 for every method instead of the config's")
    p.add_argument("--methods", nargs="+", default=None, help="run only these methods of the config")
    p.add_argument("--search-set", nargs="*", default=[], metavar="KEY=VALUE", help="override search config keys")
    p.add_argument("--summarise-only", action="store_true", help="only summarise the runs already in --out (an interrupted or finished run; rewrites epochs.csv)")
    p.add_argument("--work", default=None, help="folder for the full run folders (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    import torch

    from nasforge.spaces.nb201_table import NB201Table

    torch.set_num_threads(1)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.seeds is not None:
        cfg["seeds"] = list(range(args.seeds))
        for spec in cfg["methods"].values():
            spec.pop("seeds", None)
    if args.methods:
        cfg["methods"] = {k: v for k, v in cfg["methods"].items() if k in args.methods}
    cfg["search"].update({k.strip(): yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.search_set)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stats = TableStats(NB201Table.load(cfg.get("table")))
    command = "python experiments/nb201_oneshot.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.summarise_only:  # e.g. an interrupted run: summarise the rows written so far
        old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        cfg = old.get("config", cfg)
        rows = rows_from_runs(out, cfg, stats, old.get("seconds", {}))
        write_csv(rows, out / "epochs.csv")
        report(out, rows, {**cfg, "summarised_only": True}, stats, old.get("seconds", {}),  # the run's command, times
               old.get("wall_seconds", float("nan")), old.get("cpu_seconds", float("nan")), old.get("command", command))
        return 0
    tmp = None if args.work else tempfile.mkdtemp(prefix="nb201_oneshot_")
    work = Path(args.work or tmp)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        rows, times = run_all(cfg, out, work, stats)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    write_csv(rows, out / "epochs.csv")
    report(out, rows, cfg, stats, times, wall, cpu, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
