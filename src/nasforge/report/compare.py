"""Comparison of search runs: one row per run, one summary per method, table + plots.

Used by ``nasforge compare`` (:mod:`nasforge.cli.compare`), which either runs the
methods itself on the same space, data, seeds and budget, or collects existing run
directories. For every run the row holds:

- the architecture found (``arch.json``; for a run still going, the last one in
  ``metrics.jsonl``);
- its accuracy during the search, as the run measured it: for one-shot methods the last
  epoch's accuracy of the derived child with the supernet's (inherited) weights
  (``child_acc`` for DARTS/SNAS, ``valid_acc`` for ENAS), else the supernet's; for
  multi-trial methods the accuracy of the best trial after its short training. The key
  used is in the ``measured as`` column — these numbers are *not* comparable across
  kinds of method, which is why retraining exists;
- the test accuracy after retraining from scratch (``RUN/retrain/result.json``, written
  by ``nasforge compare --retrain-epochs N``), the fair comparison;
- parameters and forward FLOPs of the final network built from the architecture (a
  ``cost_fn`` given by the caller; the CLI uses ``nasforge cost``'s builder and presets),
  or those of the retrained network;
- search wall time (:meth:`nasforge.report.rundata.RunData.wall_seconds`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from nasforge.errors import NasforgeError
from nasforge.report.rundata import RunData, load_run
from nasforge.report.series import alpha_series, arch_history, compact_arch
from nasforge.utils.io import atomic_write_text

#: accuracy keys of a one-shot search's last record, most telling first
SEARCH_ACC_KEYS = ("child_acc", "valid_acc", "val_acc", "supernet_acc", "valid_accuracy", "test_acc", "accuracy")
RETRAIN_DIR = "retrain"

CostFn = Callable[[Any, str], "tuple[int, int] | None"]


@dataclass
class RunRow:
    run_dir: str
    method: str
    seed: Any = None
    space: Any = None
    data: Any = None
    status: str = ""
    search_acc: float | None = None
    measured_as: str = ""
    retrain_acc: float | None = None
    params: int | None = None
    flops: int | None = None
    cost_of: str = ""
    wall_s: float | None = None
    arch: str = ""
    arch_dict: dict | None = field(default=None, repr=False)
    entropy: list[tuple[float, float]] = field(default_factory=list, repr=False)


def _last_number(records: Sequence[dict], key: str) -> float | None:
    for r in reversed(records):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def _search_accuracy(run: RunData) -> tuple[float | None, str]:
    if run.is_multi_trial:
        best = None
        for t in run.trials:
            m = t.get("metrics") if isinstance(t.get("metrics"), dict) else {}
            if t.get("status") == "done" and t.get("reward") is not None and (best is None or t["reward"] > best["reward"]):
                best = {**t, "m": m}
        if best is None:
            recs = [r for r in run.records if r.get("status", "done") == "done" and isinstance(r.get("reward"), (int, float))]
            if recs:
                b = max(recs, key=lambda r: r["reward"])
                return (float(b["accuracy"]) if isinstance(b.get("accuracy"), (int, float)) else None), "accuracy of the best trial"
            return None, ""
        acc = best["m"].get("accuracy")
        return (float(acc) if isinstance(acc, (int, float)) else None), "accuracy of the best trial"
    for k in SEARCH_ACC_KEYS:
        v = _last_number(run.records, k)
        if v is not None:
            return v, f"{k} (last epoch)"
    return None, ""


def _entropy(run: RunData) -> list[tuple[float, float]]:
    """Mean edge entropy of the α-softmax per epoch (every cell type's edges averaged):
    DARTS's softmax against SNAS's concrete distribution. Runs without per-edge
    probabilities (ENAS logs its controller's whole-sample entropy) give none."""
    per_x: dict[float, list[float]] = {}
    for a in alpha_series(run.records):
        for x, h in zip(a.xs, a.entropies()):
            per_x.setdefault(x, []).append(h)
    return sorted((x, sum(v) / len(v)) for x, v in per_x.items())


def summarize_run(run_dir: str | Path, cost_fn: CostFn | None = None) -> RunRow:
    """One :class:`RunRow` from a run directory (any method; also a run still going)."""
    from nasforge.arch import arch_from_dict

    run = load_run(run_dir)
    row = RunRow(run_dir=str(run_dir), method=run.method, seed=run.config.get("seed"), space=run.config.get("space"), data=run.config.get("data"))
    row.status = "finished" if run.finished else "in progress"
    row.search_acc, row.measured_as = _search_accuracy(run)
    row.wall_s = run.wall_seconds()
    arch = run.archs[0][1] if run.archs else None
    if arch is None:
        hist = arch_history(run.records)
        if hist:
            try:
                arch = arch_from_dict(hist[-1][2])
            except NasforgeError:
                arch = None
    if arch is not None:
        row.arch_dict = arch.to_dict()
        row.arch = arch.describe() if callable(getattr(arch, "describe", None)) else compact_arch(row.arch_dict)
    retrain = Path(run_dir) / RETRAIN_DIR / "result.json"
    if retrain.is_file():
        try:
            res = json.loads(retrain.read_text())
            acc = (res.get("metrics") or {}).get("test_acc")
            row.retrain_acc = float(acc) if isinstance(acc, (int, float)) else None
            if isinstance(res.get("params"), int):
                row.params, row.cost_of = res["params"], "retrained network"
        except (json.JSONDecodeError, OSError):
            pass
    if arch is not None and cost_fn is not None:
        try:
            c = cost_fn(arch, str(row.data or "cifar10"))
        except (NasforgeError, TypeError, ValueError, RuntimeError) as e:  # a builder that cannot build this arch
            c = None
            row.cost_of = f"no cost: {type(e).__name__}: {str(e)[:120]}"
        if c is not None:
            params, row.flops = c
            if row.params is None:
                row.params = params
            row.cost_of = row.cost_of or "final network (nasforge cost preset)"
    row.entropy = _entropy(run)
    return row


# ------------------------------------------------------------------------------ tables
COLUMNS = (
    ("method", "method"), ("seed", "seed"), ("status", "status"), ("search_acc", "search accuracy"), ("measured_as", "measured as"),
    ("retrain_acc", "retrained test accuracy"), ("params", "params"), ("flops", "FLOPs"), ("wall_s", "search wall time (s)"),
    ("arch", "architecture"), ("run_dir", "run directory"),
)


def _mean_std(vals: list[float], digits: int = 4) -> str:
    if not vals:
        return ""
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def method_summary(rows: Sequence[RunRow]) -> list[dict]:
    """Per method: runs, mean ± std of the accuracies and wall time, and its best run
    (highest retrained accuracy when every run was retrained, else highest search accuracy)."""
    out = []
    for method in dict.fromkeys(r.method for r in rows):
        rs = [r for r in rows if r.method == method]
        retrained = all(r.retrain_acc is not None for r in rs)
        key = (lambda r: r.retrain_acc) if retrained else (lambda r: r.search_acc if r.search_acc is not None else -math.inf)
        best = max(rs, key=key)
        out.append({
            "method": method,
            "runs": len(rs),
            "search accuracy": _mean_std([r.search_acc for r in rs if r.search_acc is not None]),
            "retrained test accuracy": _mean_std([r.retrain_acc for r in rs if r.retrain_acc is not None]),
            "search wall time (s)": _mean_std([r.wall_s for r in rs if r.wall_s is not None], 1),
            "best run": f"seed {best.seed}",
            "best params": best.params,
            "best FLOPs": best.flops,
            "best architecture": best.arch,
        })
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def write_tables(rows: Sequence[RunRow], out: Path, plots: Sequence[Path] = (), drawings: dict[str, Path] | None = None) -> dict[str, Path]:
    """``compare.csv`` (one row per run, plain numbers), ``compare.md`` and
    ``compare.html`` (per-method summary, then per-run rows, plots embedded)."""
    import base64

    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([k for k, _ in COLUMNS])
    for r in rows:
        d = asdict(r)
        w.writerow(["" if d[k] is None else d[k] for k, _ in COLUMNS])
    atomic_write_text(out / "compare.csv", buf.getvalue())

    summary = method_summary(rows)
    md = ["# nasforge compare", "", "## per method", ""]
    if summary:
        keys = list(summary[0])
        md += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        md += ["| " + " | ".join(_md(_cell(s[k])) for k in keys) + " |" for s in summary]
    md += ["", "## per run", "", "| " + " | ".join(t for _, t in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        d = asdict(r)
        md.append("| " + " | ".join(_md(_cell(d[k])) for k, _ in COLUMNS) + " |")
    md += ["", "Search accuracies are measured differently by each kind of method (see `measured as`);",
           "the retrained test accuracy is the comparable figure.", ""]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    atomic_write_text(out / "compare.md", "\n".join(md) + "\n")

    e = html.escape
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nasforge compare</title><style>",
             "body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f0f0f0}img{max-width:100%}",
             "</style></head><body><h1>nasforge compare</h1><h2>per method</h2>"]
    if summary:
        keys = list(summary[0])
        parts.append("<table><tr>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(_cell(s[k]))}</td>" for k in keys) + "</tr>" for s in summary]
        parts.append("</table>")
    parts.append("<h2>per run</h2><table><tr>" + "".join(f"<th>{e(t)}</th>" for _, t in COLUMNS) + "</tr>")
    for r in rows:
        d = asdict(r)
        parts.append("<tr>" + "".join(f"<td>{e(_cell(d[k]))}</td>" for k, _ in COLUMNS) + "</tr>")
    parts.append("</table><p>Search accuracies are measured differently by each kind of method (see <i>measured as</i>); "
                 "the retrained test accuracy is the comparable figure.</p>")
    for p in plots:
        parts.append(f'<figure><img id="fig-{e(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" alt="{e(p.stem)}"></figure>')
    for method, p in (drawings or {}).items():
        parts.append(f"<h3>best architecture of {e(method)}</h3>"
                     f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" alt="{e(method)}">')
    parts.append("</body></html>\n")
    atomic_write_text(out / "compare.html", "".join(parts))
    return {"csv": out / "compare.csv", "md": out / "compare.md", "html": out / "compare.html"}


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------ plots
def plot_compare(rows: Sequence[RunRow], out: Path) -> list[Path]:
    """``compare.png`` (accuracies, parameters, FLOPs, wall time per method, one dot per
    run) and, when runs logged an architecture distribution, ``compare-entropy.png``."""
    from nasforge.report.plots import _figure, _save

    methods = list(dict.fromkeys(r.method for r in rows))
    panels = [("search accuracy", "search_acc"), ("retrained test accuracy", "retrain_acc"), ("parameters", "params"),
              ("forward FLOPs", "flops"), ("search wall time (s)", "wall_s")]
    panels = [(t, k) for t, k in panels if any(getattr(r, k) is not None for r in rows)]
    paths = []
    fig = _figure(3.2 * max(1, len(panels)), 3.4)
    for i, (title, key) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, m in enumerate(methods):
            vals = [float(getattr(r, key)) for r in rows if r.method == m and getattr(r, key) is not None]
            if vals:
                ax.bar(j, statistics.mean(vals), color=f"C{j % 10}", alpha=0.35, width=0.6)
                ax.scatter([j] * len(vals), vals, color=f"C{j % 10}", s=18, zorder=3)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("methods on the same space, data, seeds and budget (bar: mean, dots: runs)", fontsize=10)
    fig.tight_layout()
    paths.append(_save(fig, out / "compare.png"))
    with_entropy = [r for r in rows if len(r.entropy) > 0]
    if with_entropy:
        fig = _figure(7.0, 3.6)
        ax = fig.add_subplot(1, 1, 1)
        for r in with_entropy:
            j = methods.index(r.method)
            ax.plot([x for x, _ in r.entropy], [h for _, h in r.entropy], color=f"C{j % 10}", marker="o", markersize=3,
                    label=f"{r.method} seed {r.seed}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean edge entropy (nats)")
        ax.set_title("entropy of the architecture distribution during the search")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / "compare-entropy.png"))
    return paths


__all__ = ["COLUMNS", "RETRAIN_DIR", "RunRow", "method_summary", "plot_compare", "summarize_run", "write_tables"]
