"""``nasforge report RUN_DIR``: one self-contained HTML page about a run, plus its PNGs.

The page shows, for whatever the run directory holds (see :mod:`nasforge.report.series`
for how ``metrics.jsonl`` is read without a per-method key list):

1. status (finished / in progress: records so far against the configured budget);
2. drawing of the derived architecture(s) (``arch.json``, ``greedy_arch.json``; while a
   search runs, the last architecture found in ``metrics.jsonl``) through
   :func:`nasforge.report.draw.draw` — graphviz's ``dot`` renders it; without ``dot``
   the page shows the text description and the DOT source instead;
3. curves of every numeric series, one figure per group (losses, accuracies, rewards,
   cost, entropy/temperature, schedules, time);
4. α-softmax heatmaps (edge × operation at a few epochs) and the probability of every
   operation per edge over epochs;
5. the entropy of the architecture distribution over epochs (the logged one and/or the
   mean edge entropy computed from the α-softmax matrices: DARTS's softmax vs SNAS's
   annealed concrete distribution);
6. the derived architecture per epoch as a table, with drawings of the epochs where it
   changed, and the cost (parameters, FLOPs) of the network built from it;
7. for multi-trial searches (BlockQNN, random search): the reward of every trial, the
   best-so-far curve, accuracy against FLOPs and the best trials;
8. the resolved config and the run's files.

Figures are PNG files in ``OUT/figures`` and are also embedded (base64) in
``OUT/index.html``, so the page opens anywhere with no network and no other file. A small
script records where the figures landed on the page (``<script id="nasforge-layout">``)
for tests and tools that screenshot the report.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasforge.errors import NasforgeError
from nasforge.report import plots
from nasforge.report.rundata import RunData, load_run
from nasforge.report.series import (
    alpha_series,
    arch_history,
    arch_key,
    compact_arch,
    grouped,
    scalar_series,
)
from nasforge.report.html import CSS as _CSS
from nasforge.report.html import LAYOUT_JS as _LAYOUT_JS
from nasforge.report.html import compact as _compact
from nasforge.report.html import esc as _esc
from nasforge.report.html import fmt as _fmt
from nasforge.report.html import pre as _pre
from nasforge.report.html import slug as _slug
from nasforge.report.html import table as _table
from nasforge.utils.io import atomic_write_text

#: final-network settings used for the cost of derived cells (DARTS evaluation: 20 cells, C = 36)
COST_LAYERS, COST_CHANNELS = 20, 36
#: image data sets: (channels, size, classes)
IMAGE_SHAPES = {"digits": (1, 8, 10), "fashion-mnist": (1, 28, 10), "cifar10": (3, 32, 10)}
MAX_EVOLUTION_DRAWINGS = 4
MAX_COSTED = 8  # distinct derived cells whose final network is built and counted


@dataclass
class Section:
    id: str
    title: str
    parts: list[str] = field(default_factory=list)


class _Page:
    def __init__(self, out: Path, embed: bool = True):
        self.out = out
        self.fig_dir = out / "figures"
        self.embed = embed
        self.sections: list[Section] = []
        self.figures: list[Path] = []

    def section(self, id: str, title: str) -> Section:
        s = Section(id, title)
        self.sections.append(s)
        return s

    def image(self, sec: Section, path: Path, id: str, caption: str = "") -> None:
        self.figures.append(path)
        if self.embed:
            src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        else:
            src = html.escape(path.relative_to(self.out).as_posix())
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        sec.parts.append(f'<figure><img id="{html.escape(id)}" class="figure" src="{src}" alt="{html.escape(caption or id)}">{cap}</figure>')


# ------------------------------------------------------------------------------ sections
def _draw_arch(page: _Page, sec: Section, arch: Any, stem: str, id: str, caption: str) -> bool:
    """Drawing of ``arch`` (PNG via graphviz); without ``dot``, its DOT source. True if drawn."""
    from nasforge.report.draw import draw, graph

    try:
        png = draw(arch, page.fig_dir / f"{stem}.png", "png")
    except NasforgeError as e:
        sec.parts.append(f'<p class="note">No drawing: {_esc(e)}</p>')
        try:
            sec.parts.append("<details><summary>DOT source (render with graphviz: <code>dot -Tpng</code>)</summary>" + _pre(graph(arch).source) + "</details>")
        except NasforgeError:
            pass
        return False
    page.image(sec, png, id, caption)
    return True


def _arch_section(page: _Page, run: RunData, history: list[tuple[float, str, dict]]) -> None:
    from nasforge.arch import arch_from_dict
    from nasforge.report.draw import describe

    sec = page.section("architecture", "Architecture")
    archs = list(run.archs)
    if not archs and history:
        x, key, d = history[-1]
        try:
            archs.append((f"latest derived architecture ({key} of record {x:g}; the run has not written arch.json yet)", arch_from_dict(d)))
        except NasforgeError as e:
            run.arch_errors.append(str(e))
    if not archs:
        sec.parts.append('<p class="note">No architecture yet (no arch.json, none in metrics.jsonl).</p>')
    for i, (title, arch) in enumerate(archs):
        name = getattr(arch, "name", "") or ""
        sec.parts.append(f"<h3>{_esc(title)}{(' — ' + _esc(name)) if name else ''}</h3>")
        _draw_arch(page, sec, arch, f"arch-{i}", f"fig-arch-{i}", f"{title} ({arch.kind})")
        sec.parts.append(_pre(describe(arch), "describe"))
    for err in run.arch_errors:
        sec.parts.append(f'<p class="note">{_esc(err)}</p>')


def _curves_section(page: _Page, run: RunData) -> dict[str, list]:
    by_x = scalar_series(run.records)
    groups_all: dict[str, list] = {}
    if not by_x:
        return groups_all
    sec = page.section("curves", "Curves")
    for xk, series in by_x.items():
        for group, ss in grouped(series).items():
            groups_all.setdefault(group, []).extend(ss)
            png = plots.plot_group(f"{group} (by {xk})", ss, page.fig_dir / f"curve-{_slug(xk)}-{_slug(group)}.png", xk)
            page.image(sec, png, f"fig-curve-{_slug(xk)}-{_slug(group)}", f"{group}: {', '.join(s.name for s in ss)}")
    return groups_all


def _ops_hint(run: RunData) -> list[str] | None:
    """Operation names for α matrices whose records do not list them: the space's candidates."""
    from nasforge import ops

    if isinstance(run.config.get("ops"), list):  # --ops: the candidates searched
        return [str(o) for o in run.config["ops"]]
    if run.config.get("space") == "nb201":
        return list(ops.NB201_PRIMITIVES)
    if run.config.get("space") in ("cell", None) and run.method not in ("enas",):
        return list(ops.DARTS_PRIMITIVES)
    return None


def _alpha_section(page: _Page, run: RunData, groups: dict[str, list]) -> None:
    alphas = alpha_series(run.records, _ops_hint(run))
    logged = [s for s in groups.get("entropy and temperature", []) if "entropy" in s.name.lower()]
    if not alphas and not logged:
        return
    sec = page.section("alpha", "Architecture distribution (α-softmax) and its entropy")
    if alphas:
        sec.parts.append(
            "<p>Rows are edges <code>i→j</code> of the cell (nodes 0, 1 are the cell inputs for "
            "two-input cells), columns the candidate operations; colour is the probability.</p>"
        )
    for a in alphas:
        xk = "epoch" if any("epoch" in r for r in run.records) else "record"
        page.image(sec, plots.plot_alpha(a, page.fig_dir / f"alpha-{_slug(a.key)}.png", xk), f"fig-alpha-{_slug(a.key)}", f"{a.key} at a few {xk}s")
        if len(a.mats) > 1:
            page.image(sec, plots.plot_alpha_evolution(a, page.fig_dir / f"alpha-evolution-{_slug(a.key)}.png", xk), f"fig-alpha-evolution-{_slug(a.key)}", f"{a.key} per edge over {xk}s")
    lines = [(s.name, s.xs, s.ys) for s in logged]
    lines += [(f"mean edge entropy of {a.key} (computed)", a.xs, a.entropies()) for a in alphas]
    if lines:
        png = plots.plot_lines("entropy of the architecture distribution", lines, page.fig_dir / "entropy.png", "epoch", "nats")
        page.image(sec, png, "fig-entropy", "entropy: high = undecided (uniform), low = one operation per edge")
        sec.parts.append(
            f'<p class="note">Uniform over {len(alphas[0].ops)} operations = {math.log(len(alphas[0].ops)):.3f} nats.</p>' if alphas else ""
        )


def _final_cost(arch: Any, data: str) -> tuple[int, int] | None:
    """(parameters, forward FLOPs) of the final network of a ``cell`` arch on ``data``."""
    if getattr(arch, "kind", None) != "cell":
        return None
    import torch

    from nasforge.cost import count_flops, count_parameters
    from nasforge.nets import build_network

    ch, size, classes = IMAGE_SHAPES.get(data, IMAGE_SHAPES["cifar10"])
    with torch.no_grad():
        model = build_network(arch, num_classes=classes, in_channels=ch, input_size=size, C=COST_CHANNELS, layers=COST_LAYERS, auxiliary=False)
        model.eval()
        return count_parameters(model), int(count_flops(model, (torch.zeros(1, ch, size, size),)).forward)


def _evolution_section(page: _Page, run: RunData, history: list[tuple[float, str, dict]]) -> None:
    from nasforge.arch import arch_from_dict

    if len(history) < 1:
        return
    sec = page.section("evolution", "Derived architecture over the search")
    data = str(run.config.get("data", "cifar10"))
    rows, changes, costs = [], [], []
    prev = None
    cost_cache: dict[str, tuple[int, int] | None] = {}
    # the run's own cost series (DARTS/SNAS child_cost, ...) make the final-network count redundant
    want_cost = not any(s for ss in scalar_series(run.records).values() for s in ss if s.group == "cost")
    for x, key, d in history:
        k = arch_key(d)
        changed = prev is not None and k != prev
        if prev is None or changed:
            changes.append((x, d))
        if want_cost and k not in cost_cache and len(cost_cache) < MAX_COSTED:
            try:
                cost_cache[k] = _final_cost(arch_from_dict(d), data)
            except (NasforgeError, RuntimeError, ValueError) as e:
                cost_cache[k] = None
                run.notes.append(f"cost of the architecture at {x:g}: {e}")
        c = cost_cache.get(k)
        if c is not None:
            costs.append((x, c))
        rows.append([f"{x:g}", "changed" if changed else ("" if prev is not None else "first"), compact_arch(d)])
        prev = k
    n_changes = len(changes) - 1
    sec.parts.append(f"<p>{len(history)} records, the derived architecture changed {n_changes} time(s).</p>")
    sec.parts.append(_table(["epoch", "", "derived architecture (op(input) per node)"], rows))
    shown = changes if len(changes) <= MAX_EVOLUTION_DRAWINGS else changes[:1] + changes[-(MAX_EVOLUTION_DRAWINGS - 1):]
    if history and arch_key(shown[-1][1]) != arch_key(history[-1][2]):
        shown.append((history[-1][0], history[-1][2]))
    for x, d in shown:
        try:
            a = arch_from_dict(d)
        except NasforgeError:
            continue
        sec.parts.append(f"<h3>epoch {x:g}</h3>")
        if not _draw_arch(page, sec, a, f"evolution-{_slug(f'{x:g}')}", f"fig-evolution-{_slug(f'{x:g}')}", f"derived architecture at epoch {x:g}"):
            sec.parts.append(_pre(compact_arch(d)))
    if costs:
        xs = [c[0] for c in costs]
        png = plots.plot_group(
            f"cost of the derived cell's final network ({COST_LAYERS} cells, C={COST_CHANNELS}, {data})",
            [_series("parameters", xs, [c[1][0] for c in costs]), _series("forward FLOPs", xs, [c[1][1] for c in costs])],
            page.fig_dir / "derived-cost.png", "epoch",
        )
        page.image(sec, png, "fig-derived-cost", "parameters and FLOPs (nasforge.cost) of the network built from each epoch's derived cell")


def _series(name: str, xs: list[float], ys: list[float]):
    from nasforge.report.series import Series

    return Series(name, "epoch", list(xs), [float(y) for y in ys])


def _trial_points(run: RunData) -> list[dict]:
    """One dict per finished trial: index, reward, status, accuracy, flops, id."""
    recs = [r for r in run.records if "trial" in r]
    if recs:
        return [{"x": r["trial"], "reward": r.get("reward"), "status": r.get("status", "done"), "accuracy": r.get("accuracy"),
                 "flops": r.get("flops"), "id": r.get("id", r["trial"])} for r in recs]
    out = []
    for t in run.trials:
        if t.get("finish_seq") is None:
            continue
        m = t.get("metrics") if isinstance(t.get("metrics"), dict) else {}
        out.append({"x": t["finish_seq"], "reward": t.get("reward"), "status": t.get("status"), "accuracy": m.get("accuracy"),
                    "flops": m.get("flops"), "id": t.get("id")})
    return sorted(out, key=lambda p: p["x"])


def _trials_section(page: _Page, run: RunData) -> None:
    if not run.is_multi_trial:
        return
    from nasforge.arch import arch_from_dict

    pts = _trial_points(run)
    sec = page.section("trials", "Trials")
    pending = sum(1 for t in run.trials if t.get("status") == "pending")
    done = [p for p in pts if p["status"] == "done" and isinstance(p["reward"], (int, float))]
    sec.parts.append(f"<p>{len(pts)} trials finished ({len(done)} successfully, {len(pts) - len(done)} failed), {pending} running or queued.</p>")
    if pts:
        png = plots.plot_trials([(p["x"], p["reward"], p["status"]) for p in pts], page.fig_dir / "trials-reward.png")
        page.image(sec, png, "fig-trials-reward", "reward of every trial and the best so far")
    cost_pts = [(float(p["flops"]), float(p["accuracy"])) for p in done if isinstance(p.get("flops"), (int, float)) and isinstance(p.get("accuracy"), (int, float))]
    if cost_pts:
        best = max(done, key=lambda p: p["reward"])
        hl = (float(best["flops"]), float(best["accuracy"])) if isinstance(best.get("flops"), (int, float)) and isinstance(best.get("accuracy"), (int, float)) else None
        png = plots.plot_scatter(cost_pts, page.fig_dir / "trials-cost.png", "forward FLOPs", "accuracy", "accuracy against cost of every trial", hl)
        page.image(sec, png, "fig-trials-cost", "accuracy against FLOPs (the reward trades them off)")
    if run.trials:
        ranked = sorted((t for t in run.trials if t.get("status") == "done" and t.get("reward") is not None), key=lambda t: -t["reward"])[:10]
        rows = []
        for t in ranked:
            m = t.get("metrics") if isinstance(t.get("metrics"), dict) else {}
            a = t.get("arch")
            try:
                desc = compact_arch(a) if not (isinstance(a, dict) and "kind" in a) else _one_line(arch_from_dict(a))
            except NasforgeError:
                desc = compact_arch(a) if isinstance(a, dict) else str(a)
            rows.append([t["id"], t["reward"], m.get("accuracy"), m.get("flops"), m.get("params"), desc])
        sec.parts.append("<h3>best trials</h3>" + _table(["trial", "reward", "accuracy", "FLOPs", "params", "architecture"], rows))


def _one_line(arch: Any) -> str:
    from nasforge.report.draw import describe

    if callable(getattr(arch, "describe", None)):
        return str(arch.describe())
    if hasattr(arch, "to_dict"):
        return compact_arch(arch.to_dict())
    return " ".join(describe(arch).split())


def _summary_section(page: _Page, run: RunData) -> None:
    sec = page.section("config", "Config and files")
    for title, d in (("summary.json", run.summary), ("result.json", run.result)):
        if d:
            sec.parts.append(f"<h3>{title}</h3>" + _table(["key", "value"], [[k, v if not isinstance(v, (dict, list)) else _compact(v)] for k, v in d.items()]))
    if run.config:
        sec.parts.append("<h3>config.yaml</h3>" + _table(["key", "value"], [[k, v if not isinstance(v, (dict, list)) else _compact(v)] for k, v in run.config.items()]))
    sec.parts.append("<h3>files</h3>" + _pre("\n".join(run.files)))
    for n in run.notes:
        sec.parts.append(f'<p class="note">{_esc(n)}</p>')


def _render(page: _Page, run: RunData, refresh: int | None) -> str:
    title = f"nasforge report: {run.path.name or run.path}"
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    nav = "".join(f'<a href="#{s.id}">{_esc(s.title)}</a>' for s in page.sections)
    body = "".join(f'<section id="{s.id}"><h2>{_esc(s.title)}</h2>{"".join(s.parts)}</section>' for s in page.sections)
    head = (
        f"<p class=\"status\"><b>method</b> {_esc(run.method)} · <b>space</b> {_esc(run.config.get('space', '—'))} · "
        f"<b>data</b> {_esc(run.config.get('data', run.result.get('data', '—')))} · <b>seed</b> {_esc(run.config.get('seed', '—'))}<br>"
        f"<b>status</b> {_esc(run.status_line())}</p>"
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(title)}</title>{meta_refresh}<style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{head}<nav>{nav}</nav>{body}"
        f"<script>{_LAYOUT_JS}</script></body></html>\n"
    )


def build_report(run_dir: str | Path, out: str | Path | None = None, *, embed: bool = True, refresh: int | None = None) -> Path:
    """Write ``OUT/index.html`` (default ``OUT = RUN_DIR/report``) and ``OUT/figures/*.png``
    for the run in ``run_dir``; returns the HTML path. ``refresh`` adds an automatic
    reload every that many seconds (for ``--watch``). ``embed=False`` links the PNGs
    instead of embedding them."""
    run = load_run(run_dir)
    out = Path(out) if out is not None else run.path / "report"
    page = _Page(out, embed=embed)
    history = arch_history(run.records)
    _arch_section(page, run, history)
    groups = _curves_section(page, run)
    _alpha_section(page, run, groups)
    _evolution_section(page, run, history)
    _trials_section(page, run)
    _summary_section(page, run)
    html_path = out / "index.html"
    atomic_write_text(html_path, _render(page, run, refresh if not run.finished else None))
    return html_path


__all__ = ["build_report"]
