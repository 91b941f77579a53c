"""What a report finds in ``metrics.jsonl``, whatever method wrote it.

No key list per method: every record is scanned for

- **scalar series**: numeric top-level values (and numeric values of nested dicts, as
  ``outer.inner``), indexed by the record's ``epoch``, ``step`` or ``trial`` key and put
  in a group by the words of their name (losses, accuracies, rewards, cost, entropy and
  temperature, schedules, time, other);
- **α-softmax matrices**: values that are lists of rows of probabilities (rows of equal
  length ≥ 2 summing to 1), e.g. DARTS/SNAS per-edge operation weights, with the operation
  names taken from a list of strings of the row length in the same record;
- **architectures**: values that are architecture dicts (with ``kind`` and ``version``),
  e.g. the cell derived after every epoch.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

#: keys that index records, in order of preference
X_KEYS = ("epoch", "step", "trial", "iteration", "global_step")
#: numeric keys that are identifiers, not measurements
SKIP_KEYS = frozenset(X_KEYS) | {"id", "seed", "version", "attempts", "finish_seq"}

#: (group title, words of a key that put it in the group); first match wins
GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entropy and temperature", frozenset({"entropy", "temperature", "temp", "tau"})),
    ("perplexity", frozenset({"ppl", "perplexity"})),
    ("loss", frozenset({"loss", "nll", "ce", "kl"})),
    ("accuracy", frozenset({"acc", "accuracy", "top1", "top5", "error", "err"})),
    ("reward", frozenset({"reward", "rewards", "baseline", "advantage", "return", "returns"})),
    ("cost", frozenset({"flops", "macs", "params", "parameters", "latency", "density", "cost", "mem", "memory", "bytes", "size", "penalty"})),
    ("schedule", frozenset({"lr", "epsilon", "eps", "drop", "momentum", "decay", "wd"})),
    ("time", frozenset({"seconds", "time", "sec", "wall", "elapsed", "duration"})),
)
OTHER = "other"


def words(key: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", key.lower()) if w]


def group_of(key: str) -> str:
    ws = set(words(key))
    for title, vocab in GROUPS:
        if ws & vocab:
            return title
    return OTHER


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):  # written by MetricsWriter for non-finite floats
        return float(v)
    return None


def x_key(record: dict) -> str | None:
    for k in X_KEYS:
        if _number(record.get(k)) is not None:
            return k
    return None


@dataclass
class Series:
    name: str
    x_key: str
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)

    @property
    def group(self) -> str:
        return group_of(self.name)

    def finite(self) -> "Series":
        pts = [(x, y) for x, y in zip(self.xs, self.ys) if math.isfinite(y)]
        return Series(self.name, self.x_key, [p[0] for p in pts], [p[1] for p in pts])


def scalar_series(records: list[dict]) -> dict[str, list[Series]]:
    """``{x_key: [Series, ...]}`` of every numeric value in the records, in first-seen order.
    Records without an index key are numbered by position (``x_key`` "record")."""
    out: dict[tuple[str, str], Series] = {}
    for i, r in enumerate(records):
        xk = x_key(r) or "record"
        x = _number(r.get(xk)) if xk != "record" else float(i + 1)
        for k, v in r.items():
            if k in SKIP_KEYS:
                continue
            items = [(k, v)]
            if isinstance(v, dict) and not ("kind" in v and "version" in v):
                items = [(f"{k}.{k2}", v2) for k2, v2 in v.items()]
            for name, val in items:
                y = _number(val)
                if y is None:
                    continue
                s = out.setdefault((xk, name), Series(name, xk))
                s.xs.append(x)  # type: ignore[arg-type]
                s.ys.append(y)
    by_x: dict[str, list[Series]] = {}
    for (xk, _), s in out.items():
        by_x.setdefault(xk, []).append(s)
    return by_x


def grouped(series: list[Series]) -> dict[str, list[Series]]:
    """Series by group, groups in the order of :data:`GROUPS` (then ``other``); series
    in "other" that never change (a constant ``steps`` count, say) are left out."""
    order = [g for g, _ in GROUPS] + [OTHER]
    out: dict[str, list[Series]] = {g: [] for g in order}  # constant "other" series (step counts...) are noise
    for s in series:
        f = s.finite()
        if not f.ys:
            continue
        if len(f.ys) > 1 and max(f.ys) == min(f.ys) and s.group == OTHER:
            continue
        out[s.group].append(s)
    return {g: v for g, v in out.items() if v}


# ---------------------------------------------------------------------------- α matrices
def _prob_matrix(v: Any) -> list[list[float]] | None:
    if not (isinstance(v, list) and v and all(isinstance(row, list) for row in v)):
        return None
    n = len(v[0])
    if n < 2 or any(len(row) != n for row in v):
        return None
    rows = []
    for row in v:
        vals = [_number(x) for x in row]
        if any(x is None or not math.isfinite(x) or x < -1e-6 for x in vals):
            return None
        if abs(sum(vals) - 1.0) > 1e-3:  # type: ignore[arg-type]
            return None
        rows.append(vals)
    return rows  # type: ignore[return-value]


def _op_names(record: dict, n: int) -> list[str] | None:
    for k, v in record.items():
        if isinstance(v, list) and len(v) == n and all(isinstance(s, str) for s in v):
            return list(v)
    return None


@dataclass
class AlphaSeries:
    """Per-edge operation probabilities of one record key over the records."""

    key: str
    ops: list[str]
    xs: list[float] = field(default_factory=list)
    mats: list[list[list[float]]] = field(default_factory=list)  # [record][edge][op]

    def entropies(self) -> list[float]:
        """Mean over edges of the entropy (nats) of each edge's distribution."""
        out = []
        for m in self.mats:
            h = [-sum(p * math.log(p) for p in row if p > 0) for row in m]
            out.append(sum(h) / len(h))
        return out


def alpha_series(records: list[dict], ops_hint: list[str] | None = None) -> list[AlphaSeries]:
    """Every key (or ``key.sub`` of a nested dict) holding a probability matrix."""
    found: dict[str, AlphaSeries] = {}
    for i, r in enumerate(records):
        xk = x_key(r)
        x = _number(r.get(xk)) if xk else float(i + 1)
        cands: list[tuple[str, Any]] = []
        for k, v in r.items():
            if isinstance(v, dict):
                cands += [(f"{k}.{k2}", v2) for k2, v2 in v.items()]
            else:
                cands.append((k, v))
        for name, v in cands:
            m = _prob_matrix(v)
            if m is None:
                continue
            a = found.get(name)
            if a is None:
                ncol = len(m[0])
                ops = _op_names(r, ncol) or (ops_hint if ops_hint and len(ops_hint) == ncol else [f"op {j}" for j in range(ncol)])
                a = found[name] = AlphaSeries(name, ops)
            if len(m[0]) != len(a.ops) or (a.mats and len(m) != len(a.mats[0])):
                continue
            a.xs.append(x)  # type: ignore[arg-type]
            a.mats.append(m)
    return list(found.values())


def edge_labels(n_edges: int) -> list[str]:
    """``src→dst`` names for the edges of a DARTS-style cell (2 inputs: nodes 0, 1 are
    c_{k-2}, c_{k-1}) or a 1-input cell / recurrent cell, found from the edge count."""
    for inputs in (2, 1):
        total, nodes = 0, 0
        while total < n_edges:
            total += inputs + nodes
            nodes += 1
        if total == n_edges:
            labels = []
            for j in range(nodes):
                labels += [f"{i}→{inputs + j}" for i in range(inputs + j)]
            return labels
    return [f"edge {e}" for e in range(n_edges)]


# ---------------------------------------------------------------------------- architectures
def arch_history(records: list[dict]) -> list[tuple[float, str, dict]]:
    """``(x, key, arch dict)`` for every architecture dict found in the records."""
    out = []
    for i, r in enumerate(records):
        xk = x_key(r)
        x = _number(r.get(xk)) if xk else float(i + 1)
        for k, v in r.items():
            if isinstance(v, dict) and "kind" in v and "version" in v:
                out.append((x, k, v))  # type: ignore[arg-type]
    return out


def compact_arch(d: dict) -> str:
    """One line per cell/part of an architecture dict, for tables."""
    kind = d.get("kind")
    try:
        if kind == "cell":
            parts = []
            for name in ("normal", "reduce"):
                g = d.get(name)
                if not g:
                    continue
                nodes = [" + ".join(f"{op}({i})" for op, i in node if op != "none") or "0" for node in g["nodes"]]
                parts.append(f"{name}: " + "; ".join(f"n{j}={s}" for j, s in enumerate(nodes)))
            return " | ".join(parts)
        if kind == "recurrent":
            return " ".join(f"{act}({pred})" for act, pred in d["nodes"])
    except (KeyError, TypeError, ValueError):
        pass
    body = {k: v for k, v in d.items() if k not in ("kind", "version", "name", "meta")}
    s = json.dumps(body, separators=(",", ":"))
    return s if len(s) <= 240 else s[:237] + "..."


def arch_key(d: dict) -> str:
    """The architecture without its name/meta, to tell when the derived one changes."""
    return json.dumps({k: v for k, v in d.items() if k not in ("name", "meta")}, sort_keys=True)


__all__ = [
    "GROUPS", "X_KEYS", "AlphaSeries", "Series", "alpha_series", "arch_history", "arch_key", "compact_arch",
    "edge_labels", "group_of", "grouped", "scalar_series", "words", "x_key",
]
