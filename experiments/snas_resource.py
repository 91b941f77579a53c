"""SNAS's resource constraint (Xie et al. 2019, Sec. 2.4): a λ sweep for each resource —
FLOPs, parameters, memory access cost and (our addition) latency measured on this machine.

    OMP_NUM_THREADS=1 NASFORGE_DATA=/path/to/data PYTHONPATH=src \\
        python experiments/snas_resource.py --config experiments/snas_resource.yaml

Every (resource, λ, seed) is one ``nasforge.search("snas", resource=..., penalty=λ)`` run;
λ = 0 does not depend on the resource, so it runs once per seed and is the λ = 0 point of
every curve. Per run: the derived cell's edges (SNAS's edge-all derivation: every edge
whose argmax op is not ``none``, normal + reduce), the derived network's FLOPs and
parameters at the search size (:mod:`nasforge.cost`, one image), its held-out accuracy
with the supernet's weights (``child_acc`` of the last epoch in ``metrics.jsonl``), and
the derived network's latency measured here (all derived networks timed round-robin,
median over rounds, so load changes on the machine hit every network alike).

The per-op latency table is measured once at the search batch on this machine and cached
in ``<out>/latency_cache.json`` (``NASFORGE_LATENCY_CACHE``), which is kept with the results.

Writes under ``--out`` (default ``experiments/results/snas_resource``): ``raw.jsonl`` (one
record per run, appended as runs finish, rewritten with the latencies at the end;
``--resume`` skips runs already there),
``raw.csv``, ``summary.json`` (mean ± std per resource and λ, monotonicity), ``summary.md``,
``snas_resource.png`` (each metric against λ) and ``snas_resource_tradeoff.png``
(accuracy against cost), and ``runs/<run>/{metrics.jsonl,arch.json}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
METRICS = ("edges", "flops", "params", "mac", "latency_ms", "child_acc")
LABELS = {"edges": "edges of the derived cells", "flops": "FLOPs (derived network)", "params": "parameters (derived network)",
          "mac": "MAC of the cells (supernet count)", "latency_ms": "latency, ms (derived network)", "child_acc": "held-out acc. (inherited weights)"}
COST_OF = {"flops": "flops", "params": "params", "mac": "mac", "latency": "latency_ms"}


def run_name(resource: str, lam: float, seed: int) -> str:
    return f"{'lam0' if lam == 0 else resource + '_lam' + format(lam, 'g')}_s{seed}"


def plan(cfg: dict) -> list[tuple[str, float, int]]:
    runs = []
    for seed in cfg["seeds"]:
        if 0 in cfg["lambdas"]:
            runs.append(("none", 0.0, int(seed)))
        runs += [(r, float(lam), int(seed)) for r in cfg["resources"] for lam in cfg["lambdas"] if lam != 0]
    return runs


def derived_network(arch_dict: dict, search: dict, num_classes: int, in_channels: int, size: int):
    from nasforge.arch import arch_from_dict
    from nasforge.nets.cnn import build_network

    arch = arch_from_dict(arch_dict)
    return build_network(arch, num_classes=num_classes, in_channels=in_channels, input_size=size, C=int(search["channels"]), layers=int(search["layers"]))


def one_run(resource: str, lam: float, seed: int, search: dict, out: Path) -> dict:
    import nasforge as nf
    from nasforge.cost import count_flops, count_parameters
    from nasforge.data import load_image_dataset

    run_dir = out / "runs" / run_name(resource, lam, seed)
    t0 = time.perf_counter()
    res = nf.search("snas", out=run_dir, overwrite=True, progress=False, seed=seed, penalty=lam,
                    resource="flops" if resource == "none" else resource, **search)
    seconds = time.perf_counter() - t0
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # large; metrics.jsonl and arch.json stay
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = recs[-1]
    arch = json.loads((run_dir / "arch.json").read_text())
    ds = load_image_dataset(search["data"], seed=seed, limit=search.get("limit"))
    net = derived_network(arch, search, ds.num_classes, ds.channels, int(ds.size))
    edges = {t: sum(len(node) for node in (arch.get(t) or {"nodes": []})["nodes"]) for t in ("normal", "reduce")}
    return {
        "resource": resource, "lambda": lam, "seed": seed, "run": run_dir.name,
        "edges": edges["normal"] + edges["reduce"], "edges_normal": edges["normal"], "edges_reduce": edges["reduce"],
        "flops": int(count_flops(net, (1, ds.channels, ds.size, ds.size)).forward), "params": int(count_parameters(net)),
        "mac": float(last["child_cost"]["mac"]), "cell_flops": float(last["child_cost"]["flops"]),
        "table_latency_ms": 1000 * float(last["child_cost"]["latency"]) if "latency" in last["child_cost"] else None,
        "child_acc": float(last["child_acc"]), "supernet_acc": float(last["supernet_acc"]),
        "best_child_acc": max(float(r["child_acc"]) for r in recs), "search_seconds": seconds,
        "input": [ds.channels, int(ds.size), int(ds.size)], "num_classes": ds.num_classes, "arch": arch,
    }


def time_networks(rows: list[dict], search: dict, lat: dict) -> None:
    """Latency of every derived network, round-robin over ``rounds`` (median of medians), in place."""
    from nasforge.cost import measure_latency

    nets = [derived_network(r["arch"], search, r["num_classes"], r["input"][0], r["input"][1]) for r in rows]
    for b in lat["batches"]:
        per = [[] for _ in rows]
        for _ in range(int(lat["rounds"])):
            for i, (r, net) in enumerate(zip(rows, nets)):
                per[i].append(measure_latency(net, (int(b), *r["input"]), warmup=int(lat["warmup"]), repeats=int(lat["repeats"])))
        for r, times in zip(rows, per):
            r[f"latency_ms_b{b}"] = 1000 * statistics.median(times)
    for r in rows:
        r["latency_ms"] = r[f"latency_ms_b{lat['batches'][0]}"]


def monotone(means: list[float]) -> str:
    d = [b - a for a, b in zip(means, means[1:])]
    if all(x <= 0 for x in d):
        return "non-increasing"
    if all(x >= 0 for x in d):
        return "non-decreasing"
    return "no"


def summarise(rows: list[dict], resources: list[str], lambdas: list[float]) -> dict:
    from scipy.stats import spearmanr

    out: dict = {"points": [], "trend": []}
    for res in resources:
        pts = [r for r in rows if r["resource"] in (res, "none")]
        for lam in lambdas:
            g = [r for r in pts if r["lambda"] == float(lam)]
            if not g:
                continue
            p = {"resource": res, "lambda": float(lam), "runs": len(g)}
            for m in METRICS + ("table_latency_ms", "latency_ms_b1"):
                v = [float(r[m]) for r in g if r.get(m) is not None]
                if v:
                    p[m] = statistics.mean(v)
                    p[m + "_std"] = statistics.stdev(v) if len(v) > 1 else 0.0
                    p[m + "_min"], p[m + "_max"] = min(v), max(v)
            out["points"].append(p)
        for m in METRICS + ("latency_ms_b1",):
            means = [p[m] for p in out["points"] if p["resource"] == res and m in p]
            xs = [float(r["lambda"]) for r in pts if r.get(m) is not None]
            ys = [float(r[m]) for r in pts if r.get(m) is not None]
            rho = float(spearmanr(xs, ys).statistic) if len(set(ys)) > 1 else float("nan")
            out["trend"].append({"resource": res, "metric": m, "monotone_in_mean": monotone(means), "spearman_rho": rho})
    return out


def markdown(summary: dict, resources: list[str]) -> str:
    lines = []
    for res in resources:
        lines += [f"**resource {res}** (mean ± std over seeds; edges = normal + reduce, of 28):", "",
                  "| λ | runs | edges | FLOPs (k) | params (k) | cell MAC (k) | latency ms (b64) | latency ms (b1) | child acc |", "|---" * 9 + "|"]
        for p in (q for q in summary["points"] if q["resource"] == res):
            def f(m, scale=1.0, fmt=".1f"):
                return f"{p[m] / scale:{fmt}} ± {p[m + '_std'] / scale:{fmt}}" if m in p else ""
            lines.append(f"| {p['lambda']:g} | {p['runs']} | {f('edges')} | {f('flops', 1e3)} | {f('params', 1e3, '.2f')} | {f('mac', 1e3)} | "
                         f"{f('latency_ms', 1, '.2f')} | {f('latency_ms_b1', 1, '.3f')} | {f('child_acc', 0.01)} |")
        tr = {t["metric"]: t for t in summary["trend"] if t["resource"] == res}
        lines += ["", "trend in λ: " + "; ".join(f"{m} {tr[m]['monotone_in_mean']} (ρ {tr[m]['spearman_rho']:+.2f})" for m in tr), ""]
    return "\n".join(lines)


def plot(rows: list[dict], summary: dict, resources: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = ("edges", "flops", "params", "latency_ms", "child_acc")
    fig, axes = plt.subplots(len(ms), len(resources), figsize=(3.3 * len(resources), 2.4 * len(ms)), squeeze=False, sharex=True)
    for j, res in enumerate(resources):
        pts = [p for p in summary["points"] if p["resource"] == res]
        lam = [p["lambda"] for p in pts]
        for i, m in enumerate(ms):
            ax = axes[i][j]
            mu = [p[m] for p in pts]
            lo = [p[m] - p[m + "_min"] for p in pts]
            hi = [p[m + "_max"] - p[m] for p in pts]
            ax.errorbar(lam, mu, yerr=[lo, hi], marker="o", capsize=3)
            seeds = [r for r in rows if r["resource"] in (res, "none")]
            ax.scatter([r["lambda"] for r in seeds], [r[m] for r in seeds], s=8, color="gray", alpha=0.6, zorder=3)
            ax.set_xscale("symlog", linthresh=0.1)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(LABELS[m], fontsize=8)
            if i == 0:
                ax.set_title(f"resource: {res}")
            if i == len(ms) - 1:
                ax.set_xlabel("λ")
    fig.suptitle("SNAS λ sweep (mean, bars = min–max over seeds, dots = runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "snas_resource.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(resources), figsize=(3.6 * len(resources), 3.3), squeeze=False)
    for ax, res in zip(axes[0], resources):
        m = COST_OF[res]
        pts = [p for p in summary["points"] if p["resource"] == res]
        ax.plot([p[m] for p in pts], [p["child_acc"] for p in pts], "-o", color="C0", label="mean")
        for p in pts:
            ax.annotate(f"λ={p['lambda']:g}", (p[m], p["child_acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        seeds = [r for r in rows if r["resource"] in (res, "none")]
        ax.scatter([r[m] for r in seeds], [r["child_acc"] for r in seeds], s=10, color="gray", alpha=0.6, label="runs")
        ax.set_xlabel(LABELS[m], fontsize=8)
        ax.set_ylabel("held-out acc. (inherited weights)", fontsize=8)
        ax.set_title(f"resource: {res}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "snas_resource_tradeoff.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "snas_resource.yaml"))
    p.add_argument("--out", default=str(HERE / "results" / "snas_resource"))
    p.add_argument("--resources", nargs="+", default=None)
    p.add_argument("--lambdas", type=float, nargs="+", default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=None)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override search settings (YAML values)")
    p.add_argument("--resume", action="store_true", help="keep the runs already in raw.jsonl")
    p.add_argument("--summarise-only", action="store_true", help="with --resume: run no new search, time and summarise the runs in raw.jsonl")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = yaml.safe_load(Path(args.config).read_text())
    for k in ("resources", "lambdas", "seeds"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    for kv in args.set:
        k, v = kv.split("=", 1)
        cfg["search"][k] = yaml.safe_load(v)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["NASFORGE_LATENCY_CACHE"] = str(out / "latency_cache.json")
    raw = out / "raw.jsonl"
    rows = [json.loads(x) for x in raw.read_text().splitlines() if x.strip()] if args.resume and raw.exists() else []
    if not args.resume:
        raw.write_text("")
    done = {(r["resource"], r["lambda"], r["seed"]) for r in rows}
    t0 = time.perf_counter()
    for res, lam, seed in plan(cfg):
        if (res, lam, seed) in done or args.summarise_only:
            continue
        r = one_run(res, lam, seed, cfg["search"], out)
        rows.append(r)
        with open(raw, "a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
        print(f"{r['run']}: {r['search_seconds']:.1f} s, edges {r['edges']}, FLOPs {r['flops']}, params {r['params']}, child acc {r['child_acc']:.3f}", flush=True)
    t1 = time.perf_counter()
    time_networks(rows, cfg["search"], cfg["latency"])
    raw.write_text("".join(json.dumps(r) + "\n" for r in rows))  # now with the measured latencies
    wall = time.perf_counter() - t0
    lambdas = sorted(float(x) for x in cfg["lambdas"])
    summary = summarise(rows, list(cfg["resources"]), lambdas)
    cols = [k for k in rows[0] if k not in ("arch", "input")]
    with open(out / "raw.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    command = "python experiments/snas_resource.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "summary.json").write_text(json.dumps({
        "command": command.strip(), "wall_seconds_this_invocation": wall, "search_seconds_total": sum(r["search_seconds"] for r in rows),
        "latency_timing_seconds": time.perf_counter() - t1, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(), "config": cfg, **summary,
    }, indent=1, default=str))
    md = markdown(summary, list(cfg["resources"]))
    (out / "summary.md").write_text(md + f"\nsearch time {sum(r['search_seconds'] for r in rows):.0f} s over {len(rows)} runs; wall time of this invocation {wall:.0f} s\n")
    plot(rows, summary, list(cfg["resources"]), out)
    print(md)
    print(f"wall time {wall:.1f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
