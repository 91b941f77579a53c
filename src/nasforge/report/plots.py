"""Report figures (matplotlib, object API on the Agg canvas: no display, no global state).

Each function writes one PNG and returns its path. Series of very different magnitudes
(parameters next to a density, say) get one panel each; comparable ones share an axis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from nasforge.report.series import AlphaSeries, Series, edge_labels

DPI = 100


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def _comparable(series: Sequence[Series]) -> bool:
    mags = [max(abs(y) for y in s.ys) for s in series if s.ys]
    mags = [m for m in mags if m > 0]
    return len(series) <= 8 and (not mags or max(mags) / min(mags) < 50)


def _style(s: Series) -> dict:
    few = len(s.xs) <= 30
    return {"marker": "o" if few else None, "markersize": 3, "linewidth": 1.5}


def plot_group(title: str, series: Sequence[Series], path: Path, x_label: str) -> Path:
    """One group of series (e.g. all losses) against their index key."""
    series = [s.finite() for s in series]
    series = [s for s in series if s.ys]
    if _comparable(series):
        fig = _figure(7.5, 3.6)
        ax = fig.add_subplot(1, 1, 1)
        for s in series:
            ax.plot(s.xs, s.ys, label=s.name, **_style(s))
        ax.set_xlabel(x_label)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        _log_if_wide(ax, [y for s in series for y in s.ys])
    else:
        n = len(series)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig = _figure(3.4 * cols, 2.7 * rows)
        for i, s in enumerate(series):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.plot(s.xs, s.ys, color=f"C{i % 10}", **_style(s))
            ax.set_title(s.name, fontsize=9)
            ax.set_xlabel(x_label, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            _log_if_wide(ax, s.ys)
        fig.suptitle(title)
        fig.tight_layout()
    return _save(fig, path)


def _log_if_wide(ax, ys: Sequence[float]) -> None:
    pos = [y for y in ys if y > 0]
    if pos and len(pos) == len(ys) and max(pos) / min(pos) > 1e3:
        ax.set_yscale("log")


def _pick(n: int, k: int = 4) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def plot_alpha(a: AlphaSeries, path: Path, x_label: str = "epoch") -> Path:
    """Heatmaps edge × operation of the probabilities at up to four records (first … last)."""
    idx = _pick(len(a.mats))
    n_edges = len(a.mats[0])
    labels = edge_labels(n_edges)
    cols = len(idx)
    fig = _figure(max(4.0, 2.2 + 2.3 * cols), max(3.0, 1.2 + 0.28 * n_edges))
    # colour range of the shown values: near-uniform early α still shows its structure
    vmax = max(max(max(r) for r in a.mats[i]) for i in idx)
    vmin = min(min(min(r) for r in a.mats[i]) for i in idx)
    if vmax - vmin < 1e-9:
        vmin, vmax = 0.0, max(vmax, 1e-9)
    im = None
    for c, i in enumerate(idx):
        ax = fig.add_subplot(1, cols, c + 1)
        im = ax.imshow(a.mats[i], aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{x_label} {a.xs[i]:g}", fontsize=9)
        ax.set_xticks(range(len(a.ops)))
        ax.set_xticklabels(a.ops, rotation=70, ha="right", fontsize=7)
        ax.set_yticks(range(n_edges))
        ax.set_yticklabels(labels if c == 0 else [""] * n_edges, fontsize=7)
    fig.suptitle(f"{a.key}: softmax over operations per edge")
    fig.tight_layout()
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.8, pad=0.02)
    return _save(fig, path)


def plot_alpha_evolution(a: AlphaSeries, path: Path, x_label: str = "epoch") -> Path:
    """Edges × records: the colour is the edge's strongest operation, its shade that
    operation's probability (pale = undecided, deep = sure): how each edge's choice
    settles or flips over the search. One axis, so it stays cheap for long runs."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    mats = np.asarray(a.mats, dtype=float)  # [t, edge, op]
    n_t, n_edges, n_ops = mats.shape
    top = mats.argmax(-1).T  # [edge, t]
    conf = mats.max(-1).T
    lo = 1.0 / n_ops
    shade = np.clip((conf - lo) / max(1e-9, conf.max() - lo), 0.0, 1.0) if conf.max() > lo else np.zeros_like(conf)
    cmap = colormaps["tab10"]
    rgb = np.array([cmap(int(k) % 10)[:3] for k in top.ravel()]).reshape(n_edges, n_t, 3)
    img = 1.0 - (1.0 - rgb) * (0.25 + 0.75 * shade[..., None])
    fig = _figure(min(14.0, 3.5 + 0.25 * n_t), max(3.0, 1.2 + 0.28 * n_edges))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(img, aspect="auto", interpolation="nearest", extent=(-0.5, n_t - 0.5, n_edges - 0.5, -0.5))
    ticks = _pick(n_t, 10)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{a.xs[i]:g}" for i in ticks], fontsize=7)
    ax.set_yticks(range(n_edges))
    ax.set_yticklabels(edge_labels(n_edges), fontsize=7)
    ax.set_xlabel(x_label)
    used = sorted(set(int(k) for k in top.ravel()))
    ax.legend(handles=[Patch(color=cmap(k % 10), label=a.ops[k]) for k in used], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{a.key}: strongest operation per edge (deeper = more probable)", fontsize=10)
    return _save(fig, path)


def plot_lines(title: str, lines: Sequence[tuple[str, Sequence[float], Sequence[float]]], path: Path, x_label: str, y_label: str = "") -> Path:
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for label, xs, ys in lines:
        ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 30 else None, markersize=3)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_trials(trials: Sequence[tuple[float, float | None, str]], path: Path) -> Path:
    """Reward of every finished trial (in finishing order) and the best-so-far curve.
    ``trials``: ``(index, reward or None, status)``."""
    fig = _figure(7.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    ok = [(x, r) for x, r, st in trials if r is not None and math.isfinite(r) and st == "done"]
    bad = [x for x, r, st in trials if st != "done"]
    if ok:
        ax.scatter([x for x, _ in ok], [r for _, r in ok], s=14, color="C0", alpha=0.7, label="reward of trial")
        best, bx, by = -math.inf, [], []
        for x, r in sorted(ok):
            best = max(best, r)
            bx.append(x)
            by.append(best)
        ax.step(bx, by, where="post", color="C3", linewidth=2, label="best so far")
    if bad:
        lo = min((r for _, r in ok), default=0.0)
        ax.scatter(bad, [lo] * len(bad), marker="x", color="gray", label="failed trial")
    ax.set_xlabel("trial (finishing order)")
    ax.set_ylabel("reward")
    ax.set_title("multi-trial search: reward per trial and best so far")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_scatter(points: Sequence[tuple[float, float]], path: Path, x_label: str, y_label: str, title: str, highlight: tuple[float, float] | None = None) -> Path:
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.7)
    if highlight is not None:
        ax.scatter([highlight[0]], [highlight[1]], s=80, marker="*", color="C3", label="best trial", zorder=3)
        ax.legend(fontsize=8)
    xs = [p[0] for p in points if p[0] > 0]
    if xs and max(xs) / min(xs) > 100:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


__all__ = ["plot_alpha", "plot_alpha_evolution", "plot_group", "plot_lines", "plot_scatter", "plot_trials"]
