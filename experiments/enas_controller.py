"""ENAS: does the controller learn? (issue 13, item 4; micro space, Fashion-MNIST)

    OMP_NUM_THREADS=1 NASFORGE_DATA=/path/to/data PYTHONPATH=src \\
        python experiments/enas_controller.py --config experiments/enas_controller.yaml

For every seed the script runs one ENAS micro search through the Python API
(``nf.search("enas", space="micro", ...)``) and reads its ``metrics.jsonl``: per epoch the
controller's mean reward over its REINFORCE steps (accuracy of the sampled children on
validation minibatches with the shared weights), the baseline and the policy's entropy.
A rising reward alone does not show that the controller learns (the shared weights get
better too), so after the search it loads the run folder's checkpoint
(:func:`nasforge.search.enas.load_search`) and compares, **on the same final shared
weights** and on test images the search never saw:

- ``derived``: the search's result (best of ``derive_samples`` children of the trained
  controller on one validation minibatch, ENAS §2.2);
- ``trained``: children sampled from the trained controller;
- ``untrained``: children sampled from the controller at its initial weights (same seed);
- ``untrained_derived``: ENAS's derive procedure run with the untrained controller (a
  control for the best-of-N selection on the validation minibatch).

Then the derived cell, ``untrained_derived`` and the first ``retrain.archs`` untrained
samples are retrained from scratch with ``nf.train`` at one fixed budget (seed = the
search's seed). Writes under ``--out`` (default ``experiments/results/enas_controller``):
``epochs.csv``, ``archs.csv`` (one row per evaluated architecture, with its retrained test
accuracy where retrained), ``runs/s<seed>/`` (``metrics.jsonl``, ``arch.json``),
``summary.json`` (means ± std, Welch t-tests, wall times), ``summary.md`` and
``enas_controller.png`` (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from snas_vs_darts import ms, parse_sets, pm, welch_p, write_csv, write_summary  # noqa: E402

PARAM_FREE = {"skip_connect", "max_pool_3x3", "avg_pool_3x3", "none"}
GROUPS = ("derived", "trained", "untrained", "untrained_derived")


def cell_ops(arch: Any) -> dict[str, Any]:
    ops = [op for cell in (arch.normal, arch.reduce) for node in cell.nodes for op, _ in node]
    return {"param_free_share": sum(op in PARAM_FREE for op in ops) / len(ops), "ops": " ".join(sorted(ops))}


def epoch_rows(seed: int, metrics_path: Path) -> list[dict]:
    rows = []
    for line in metrics_path.read_text().splitlines():
        d = json.loads(line)
        rows.append({"seed": seed, "epoch": d["epoch"], "reward": d["reward"], "baseline": d["baseline"], "entropy": d["entropy"],
                     "best_child_valid_acc": d["valid_acc"], "train_acc": d["train_acc"], "train_loss": d["train_loss"],
                     "lr": d["lr"], "seconds": d["time"]})
    return rows


def read_csv(path: Path) -> list[dict]:
    import csv

    if not path.is_file():
        return []
    ints, strs = {"seed", "epoch", "index"}, {"group", "ops", "arch"}
    return [{k: v if k in strs or v == "" else (int(v) if k in ints else float(v)) for k, v in r.items()}
            for r in csv.DictReader(open(path, encoding="utf-8"))]


def sample_archs(search: Any, n: int, seed: int) -> list[Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [search.decode(search.controller.sample(generator=g)) for _ in range(n)]


def run_seed(cfg: dict, seed: int, out: Path, work: Path, retrain: bool, times: dict) -> tuple[list[dict], list[dict]]:
    import nasforge as nf
    from nasforge.search.enas import load_search

    data, ev = cfg["data"], cfg["evaluate"]
    run = work / f"s{seed}"
    t = time.perf_counter()
    res = nf.search("enas", data=data, space="micro", out=run, overwrite=True, seed=seed, **cfg["search"])
    times[f"search s{seed}"] = time.perf_counter() - t
    keep = out / "runs" / f"s{seed}"
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "arch.json"):
        shutil.copy(run / name, keep / name)
    ep = epoch_rows(seed, keep / "metrics.jsonl")
    print(f"seed {seed}: search {times[f'search s{seed}']:.0f} s; reward per epoch " + " ".join(f"{r['reward']:.3f}" for r in ep), flush=True)

    t = time.perf_counter()
    trained, initial = load_search(run), load_search(run, initial=True)
    control = load_search(run)  # the trained shared weights, driven by the untrained controller
    control.controller.load_state_dict(initial.controller.state_dict())
    archs = {
        "derived": [res.arch],
        "trained": sample_archs(trained, ev["samples"], 10_000 + seed),
        "untrained": sample_archs(initial, ev["samples"], 20_000 + seed),
        "untrained_derived": [control.derive()[0]],
    }
    rows = []
    for group, items in archs.items():
        for i, arch in enumerate(items):
            acc = trained.accuracy(arch, ev["split"], ev.get("images"))
            rows.append({"seed": seed, "group": group, "index": i, "shared_acc": acc, "retrained_acc": "", "params": "",
                         "retrain_seconds": "", **cell_ops(arch), "arch": json.dumps(arch.to_dict(), separators=(",", ":"))})
    times[f"evaluate s{seed}"] = time.perf_counter() - t
    mean = {g: statistics.mean(r["shared_acc"] for r in rows if r["group"] == g) for g in GROUPS}
    print("  shared-weight test acc: " + ", ".join(f"{g} {100 * m:.1f}" for g, m in mean.items()) + f" ({times[f'evaluate s{seed}']:.0f} s)", flush=True)
    if not retrain:
        return ep, rows
    from nasforge.arch import arch_from_dict

    todo = [r for r in rows if r["group"] in ("derived", "untrained_derived")]
    todo += [r for r in rows if r["group"] == "untrained"][: cfg["retrain_archs"]]
    for r in todo:
        t = time.perf_counter()
        tr = nf.train(arch_from_dict(json.loads(r["arch"])), data=data, out=work / f"s{seed}-{r['group']}-{r['index']}",
                      overwrite=True, seed=seed, **cfg["retrain"])
        r.update(retrained_acc=tr.metrics["test_acc"], params=tr.params, retrain_seconds=time.perf_counter() - t)
        times[f"retrain s{seed} {r['group']} {r['index']}"] = r["retrain_seconds"]
        print(f"  retrained {r['group']} {r['index']}: test acc {tr.metrics['test_acc']:.4f}, {tr.params} params, {r['retrain_seconds']:.0f} s", flush=True)
    return ep, rows


def summarise(ep_rows: list[dict], arch_rows: list[dict]) -> dict:
    per_epoch = []
    for e in sorted({r["epoch"] for r in ep_rows}):
        g = [r for r in ep_rows if r["epoch"] == e]
        s: dict[str, Any] = {"epoch": e, "seeds": len(g)}
        for f in ("reward", "baseline", "entropy", "best_child_valid_acc", "train_acc"):
            s[f], s[f + "_std"] = ms([float(r[f]) for r in g])
        per_epoch.append(s)
    first, last = min(r["epoch"] for r in ep_rows), max(r["epoch"] for r in ep_rows)
    r_first = [float(r["reward"]) for r in ep_rows if r["epoch"] == first]
    r_last = [float(r["reward"]) for r in ep_rows if r["epoch"] == last]
    seeds = sorted({r["seed"] for r in ep_rows})
    rises = [all(float(a["reward"]) < float(b["reward"]) for a, b in zip(rs, rs[1:]))
             for rs in ([r for r in ep_rows if r["seed"] == s] for s in seeds)]
    groups = {}
    for g in GROUPS:
        rs = [r for r in arch_rows if r["group"] == g]
        rt = [float(r["retrained_acc"]) for r in rs if r["retrained_acc"] != ""]
        groups[g] = {"n": len(rs), "shared_acc": ms([float(r["shared_acc"]) for r in rs]), "retrained_n": len(rt), "retrained_acc": ms(rt),
                     "param_free_share": ms([float(r["param_free_share"]) for r in rs])}

    def vals(g: str, f: str) -> list[float]:
        return [float(r[f]) for r in arch_rows if r["group"] == g and r[f] != ""]

    tests = {
        "reward_first_vs_last_epoch_p": welch_p(r_first, r_last),
        "shared_acc_derived_vs_untrained_p": welch_p(vals("derived", "shared_acc"), vals("untrained", "shared_acc")),
        "shared_acc_trained_vs_untrained_p": welch_p(vals("trained", "shared_acc"), vals("untrained", "shared_acc")),
        "shared_acc_derived_vs_untrained_derived_p": welch_p(vals("derived", "shared_acc"), vals("untrained_derived", "shared_acc")),
        "retrained_acc_derived_vs_untrained_p": welch_p(vals("derived", "retrained_acc"), vals("untrained", "retrained_acc")),
        "retrained_acc_derived_vs_untrained_derived_p": welch_p(vals("derived", "retrained_acc"), vals("untrained_derived", "retrained_acc")),
    }
    per_seed = []
    for s in seeds:
        from scipy import stats

        rs = [r for r in ep_rows if r["seed"] == s]
        rho = float(stats.spearmanr([r["epoch"] for r in rs], [float(r["reward"]) for r in rs])[0]) if len(rs) > 2 else float("nan")
        row: dict[str, Any] = {"seed": s, "reward_spearman_vs_epoch": rho, "reward_first": next(float(r["reward"]) for r in ep_rows if r["seed"] == s and r["epoch"] == first),
                               "reward_last": next(float(r["reward"]) for r in ep_rows if r["seed"] == s and r["epoch"] == last)}
        for g in GROUPS:
            rs = [r for r in arch_rows if r["seed"] == s and r["group"] == g]
            row[g] = statistics.mean(float(r["shared_acc"]) for r in rs) if rs else float("nan")
        per_seed.append(row)
    op_share = {}
    for g in GROUPS:
        ops = [op for r in arch_rows if r["group"] == g for op in str(r["ops"]).split()]
        op_share[g] = {op: ops.count(op) / len(ops) for op in sorted(set(ops))}
    return {"per_epoch": per_epoch, "groups": groups, "tests": tests, "per_seed": per_seed, "op_share": op_share,
            "reward_rises_every_epoch": rises, "reward_first": ms(r_first), "reward_last": ms(r_last)}


def control_summary(s: dict, control: Path) -> dict:
    """Compare with a run of this script whose controller was frozen (``controller_lr`` ≈ 0:
    random children on shared weights, the same derive step): the reward per epoch without
    a learning controller, and its derived cells retrained alike."""
    ep, rows = read_csv(control / "epochs.csv"), read_csv(control / "archs.csv")
    c = summarise(ep, rows)
    last = max(r["epoch"] for r in ep)

    def vals(rs: list[dict], g: str, f: str) -> list[float]:
        return [float(r[f]) for r in rs if r["group"] == g and r[f] != ""]

    return {"dir": str(control), "per_epoch": [{"epoch": e["epoch"], "reward": e["reward"], "reward_std": e["reward_std"]} for e in c["per_epoch"]],
            "groups": c["groups"], "op_share": c["op_share"], "reward_last": c["reward_last"],
            "reward_last_enas_vs_frozen_p": welch_p([r["reward_last"] for r in s["per_seed"]], [float(r["reward"]) for r in ep if r["epoch"] == last]),
            "_derived_retrained": vals(rows, "derived", "retrained_acc")}


def control_markdown(s: dict, c: dict) -> str:
    p = lambda v: "n/a" if v is None else f"{v:.2g}"  # noqa: E731
    lines = [f"Control: the same searches with the controller frozen at its initial weights ({c['dir']}). Mean reward per epoch, "
             "ENAS vs frozen (mean ± std over seeds):", "", "| epoch | ENAS | frozen controller |", "|---|---|---|"]
    for e, f in zip(s["per_epoch"], c["per_epoch"]):
        lines.append(f"| {e['epoch']} | {pm(e['reward'], e['reward_std'])} | {pm(f['reward'], f['reward_std'])} |")
    lines += ["", f"Last epoch reward ENAS vs frozen: Welch p = {p(c['reward_last_enas_vs_frozen_p'])}.", "",
              "On the frozen run's own shared weights and retrained (same budgets as above):", "",
              "| architectures (frozen run) | n | shared-weight acc | retrained n | retrained acc | param-free share |", "|---" * 6 + "|"]
    for g in ("derived", "untrained"):
        d = c["groups"][g]
        lines.append(f"| {'best of N, frozen controller' if g == 'derived' else LABELS[g]} | {d['n']} | {pm(*d['shared_acc'], 100, 1)} | "
                     f"{d['retrained_n']} | {pm(*d['retrained_acc'], 100, 2)} | {pm(*d['param_free_share'], 1, 2)} |")
    lines += ["", f"Retrained derived cells, ENAS vs frozen controller: Welch p = {p(c['retrained_derived_enas_vs_frozen_p'])}."]
    return "\n".join(lines) + "\n"


LABELS = {"derived": "derived (trained controller, best of N)", "trained": "sampled, trained controller",
          "untrained": "sampled, untrained controller", "untrained_derived": "best of N, untrained controller"}


def markdown(s: dict) -> str:
    p = lambda v: "n/a" if v is None else f"{v:.2g}"  # noqa: E731
    lines = ["Controller per epoch, mean ± std over seeds: mean reward of its REINFORCE steps (accuracy of the sampled "
             "children on validation minibatches, shared weights), baseline, entropy of the policy (nats, sum over decisions), "
             "accuracy of the epoch's best child on validation minibatches.", "",
             "| epoch | reward | baseline | entropy | best child valid acc |", "|---" * 5 + "|"]
    for e in s["per_epoch"]:
        lines.append(f"| {e['epoch']} | {pm(e['reward'], e['reward_std'])} | {pm(e['baseline'], e['baseline_std'])} | "
                     f"{pm(e['entropy'], e['entropy_std'], 1, 2)} | {pm(e['best_child_valid_acc'], e['best_child_valid_acc_std'])} |")
    rises = s["reward_rises_every_epoch"]
    lines += ["", f"Reward first → last epoch: {pm(*s['reward_first'])} → {pm(*s['reward_last'])} (Welch p = "
              f"{p(s['tests']['reward_first_vs_last_epoch_p'])}); rises every epoch in {sum(rises)} of {len(rises)} seeds.", "",
              "Architectures on the same final shared weights (accuracy on test images the search never saw, %) and "
              "retrained from scratch at one fixed budget (test accuracy, %), mean ± std over all architectures of all seeds; "
              "param-free share = share of the cells' ops that are pooling or identity:", "",
              "| architectures | n | shared-weight acc | retrained n | retrained acc | param-free share |", "|---" * 6 + "|"]
    for g, d in s["groups"].items():
        lines.append(f"| {LABELS[g]} | {d['n']} | {pm(*d['shared_acc'], 100, 1)} | {d['retrained_n']} | "
                     f"{pm(*d['retrained_acc'], 100, 2)} | {pm(*d['param_free_share'], 1, 2)} |")
    lines += ["", "Welch t-tests: " + ", ".join(f"{k.removesuffix('_p')} p = {p(v)}" for k, v in s["tests"].items()), "",
              "Per seed (shared-weight acc %, mean over each group's architectures):", "",
              "| seed | reward epoch 1 | reward last | Spearman ρ (reward, epoch) | " + " | ".join(GROUPS) + " |", "|---" * (4 + len(GROUPS)) + "|"]
    for r in s["per_seed"]:
        lines.append(f"| {r['seed']} | {r['reward_first']:.3f} | {r['reward_last']:.3f} | {r['reward_spearman_vs_epoch']:.2f} | "
                     + " | ".join(f"{100 * r[g]:.1f}" for g in GROUPS) + " |")
    ops = sorted({op for d in s["op_share"].values() for op in d})
    lines += ["", "Share of each op among the cells' 20 ops (normal + reduce), over all architectures of a group:", "",
              "| op | " + " | ".join(GROUPS) + " |", "|---" * (1 + len(GROUPS)) + "|"]
    for op in ops:
        lines.append(f"| {op} | " + " | ".join(f"{s['op_share'][g].get(op, 0.0):.2f}" for g in GROUPS) + " |")
    return "\n".join(lines) + "\n"


def plot(s: dict, ep_rows: list[dict], arch_rows: list[dict], path: Path, control: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4.2))
    for seed in sorted({r["seed"] for r in ep_rows}):
        rs = [r for r in ep_rows if r["seed"] == seed]
        ax[0].plot([r["epoch"] for r in rs], [float(r["reward"]) for r in rs], color="grey", lw=0.8, alpha=0.6)
    pe = s["per_epoch"]
    ax[0].errorbar([e["epoch"] for e in pe], [e["reward"] for e in pe], yerr=[e["reward_std"] for e in pe], marker="o", capsize=2,
                   color="tab:blue", label="mean reward (mean ± std over seeds; grey: each seed)")
    if control:
        ce = control["per_epoch"]
        ax[0].errorbar([e["epoch"] for e in ce], [e["reward"] for e in ce], yerr=[e["reward_std"] for e in ce], marker="s", ms=3, capsize=2,
                       ls="--", color="tab:grey", label="controller frozen at its initial weights (control)")
    ax[0].set(xlabel="epoch", ylabel="reward (child accuracy on valid minibatches)", title="(a) controller reward per epoch")
    ax[0].legend(fontsize=7)
    colors = {"derived": "tab:red", "trained": "tab:blue", "untrained": "tab:grey", "untrained_derived": "tab:green"}
    for k, (f, title) in enumerate((("shared_acc", "(b) on the final shared weights (test images)"),
                                    ("retrained_acc", "(c) retrained from scratch, fixed budget"))):
        a = ax[k + 1]
        for x, g in enumerate(GROUPS):
            v = [100 * float(r[f]) for r in arch_rows if r["group"] == g and r[f] != ""]
            if v:
                a.bar(x, statistics.mean(v), color=colors[g], alpha=0.45)
                a.scatter([x + 0.12 * (int(r["seed"]) - 1) for r in arch_rows if r["group"] == g and r[f] != ""], v, color="k", s=10, zorder=3)
        a.set_xticks(range(len(GROUPS)), [LABELS[g].replace(", ", ",\n").replace(" (", "\n(") for g in GROUPS], fontsize=7)
        a.set(ylabel="test accuracy (%)", title=title)
        lo = min([100 * float(r[f]) for r in arch_rows if r[f] != ""], default=0)
        a.set_ylim(max(0, lo - 5), None)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path, ep_rows: list[dict], arch_rows: list[dict], cfg: dict, times: dict, wall: float, cpu: float, command: str,
           control: Path | None = None) -> None:
    s = summarise(ep_rows, arch_rows)
    if control is not None:
        c = control_summary(s, control)
        c["retrained_derived_enas_vs_frozen_p"] = welch_p([float(r["retrained_acc"]) for r in arch_rows if r["group"] == "derived" and r["retrained_acc"] != ""],
                                                         c.pop("_derived_retrained"))
        s["control"] = c
    md = markdown(s) + ("\n" + control_markdown(s, s["control"]) if "control" in s else "")
    write_summary(out, s, md, cfg, times, wall, cpu, command)
    plot(s, ep_rows, arch_rows, out / "enas_controller.png", s.get("control"))
    print(md)
    print(f"wall time {wall:.1f} s (CPU {cpu:.1f} s); wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(HERE / "enas_controller.yaml"))
    p.add_argument("--out", default=str(HERE / "results" / "enas_controller"))
    p.add_argument("--seeds", type=int, default=None, help="use seeds 0..N-1 instead of the config's")
    p.add_argument("--search-set", nargs="*", default=[], metavar="KEY=VALUE", help="override search config keys")
    p.add_argument("--retrain-set", nargs="*", default=[], metavar="KEY=VALUE", help="override retraining config keys")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override top-level keys (retrain_archs) and evaluate.* keys")
    p.add_argument("--no-retrain", action="store_true")
    p.add_argument("--summarise-only", action="store_true", help="only summarise epochs.csv/archs.csv already in --out")
    p.add_argument("--control", default=None, help="results folder of a run with the controller frozen (controller_lr=1e-12), to compare with")
    p.add_argument("--work", default=None, help="folder for the full run folders (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = yaml.safe_load(Path(args.config).read_text())
    if args.seeds is not None:
        cfg["seeds"] = list(range(args.seeds))
    cfg["search"].update(parse_sets(args.search_set))
    cfg["retrain"].update(parse_sets(args.retrain_set))
    for k, v in parse_sets(args.set).items():
        if k.startswith("evaluate."):
            cfg["evaluate"][k.partition(".")[2]] = v
        else:
            cfg[k] = v
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/enas_controller.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.summarise_only:  # summary.json is written at the end: without one the run was interrupted (partial)
        old = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
        report(out, read_csv(out / "epochs.csv"), read_csv(out / "archs.csv"), old.get("config") or {**cfg, "partial": True},
               old.get("seconds", {}), old.get("wall_seconds", float("nan")), old.get("cpu_seconds", float("nan")), old.get("command", command),
               Path(args.control) if args.control else None)
        return 0
    tmp = None if args.work else tempfile.mkdtemp(prefix="enas_controller_")
    work = Path(args.work or tmp)
    t0, c0 = time.perf_counter(), time.process_time()
    ep_rows: list[dict] = []
    arch_rows: list[dict] = []
    times: dict[str, float] = {}
    try:
        for seed in cfg["seeds"]:
            ep, rows = run_seed(cfg, seed, out, work, not args.no_retrain, times)
            ep_rows += ep
            arch_rows += rows
            write_csv(ep_rows, out / "epochs.csv")  # partial results survive an interrupted run
            write_csv(arch_rows, out / "archs.csv")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    report(out, ep_rows, arch_rows, cfg, times, wall, cpu, command, Path(args.control) if args.control else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
