"""Smoke run of experiments/snas_resource.py (one seed, λ ∈ {0, 1}, two resources, a tiny
supernet, two steps): it writes the raw runs, the summary with the trend per resource, the
per-device latency table and both figures. No assertion depends on a timing value."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_experiment_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASFORGE_LATENCY_CACHE", str(tmp_path / "unused.json"))  # main() points it at out/; restored after
    spec = importlib.util.spec_from_file_location("snas_resource", ROOT / "experiments" / "snas_resource.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "res"
    argv = ["--out", str(out), "--resources", "flops", "latency", "--lambdas", "0", "1", "--seeds", "0",
            "--set", "epochs=1", "max_steps=2", "limit=96", "layers=3", "channels=4"]
    assert mod.main(argv) == 0
    rows = [json.loads(x) for x in (out / "raw.jsonl").read_text().splitlines()]
    # λ = 0 runs once (it does not depend on the resource), then each resource at λ = 1
    assert [(r["resource"], r["lambda"]) for r in rows] == [("none", 0.0), ("flops", 1.0), ("latency", 1.0)]
    for r in rows:
        assert r["edges"] == r["edges_normal"] + r["edges_reduce"] and 1 <= r["edges"] <= 28
        assert r["flops"] > 0 and r["params"] > 0 and 0.0 <= r["child_acc"] <= 1.0
        assert r["latency_ms"] > 0 and r["latency_ms_b1"] > 0
        assert (out / "runs" / r["run"] / "arch.json").exists() and not (out / "runs" / r["run"] / "checkpoint.pt").exists()
    lat_run = rows[2]
    assert lat_run["table_latency_ms"] > 0 and rows[1]["table_latency_ms"] is None
    cache = json.loads((out / "latency_cache.json").read_text())
    assert cache["entries"] and all("|batch=64" in k for k in cache["entries"])  # timed at the search batch
    summary = json.loads((out / "summary.json").read_text())
    assert {(p["resource"], p["lambda"]) for p in summary["points"]} == {("flops", 0.0), ("flops", 1.0), ("latency", 0.0), ("latency", 1.0)}
    trend = {(t["resource"], t["metric"]) for t in summary["trend"]}
    assert ("latency", "latency_ms") in trend and ("flops", "edges") in trend
    assert all(t["monotone_in_mean"] in ("non-increasing", "non-decreasing", "no") for t in summary["trend"])
    assert len(list(csv.DictReader(open(out / "raw.csv")))) == 3
    assert "**resource latency**" in (out / "summary.md").read_text()
    for fig in ("snas_resource.png", "snas_resource_tradeoff.png"):
        assert (out / fig).stat().st_size > 10_000
    # --resume keeps the finished runs and runs nothing new
    assert mod.main(argv + ["--resume"]) == 0
    assert len((out / "raw.jsonl").read_text().splitlines()) == 3
