"""Smoke run of experiments/snas_vs_darts.py (2 seeds, a tiny supernet, 2 steps per epoch,
one retraining epoch): it runs both searches through the API, keeps their metrics and
arch files, and writes the per-epoch rows, the summary with the distance of softmax(α)
from uniform, the retraining results and the figure."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_SEARCH = ["epochs=2", "limit=64", "max_steps=2", "eval_limit=16", "layers=2", "channels=4", "input_size=8", "batch_size=16"]
TINY_RETRAIN = ["epochs=1", "limit=64", "layers=2", "channels=4", "input_size=8", "eval_every=1"]


def test_experiment_smoke(shared_data, tmp_path):
    spec = importlib.util.spec_from_file_location("snas_vs_darts", ROOT / "experiments" / "snas_vs_darts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "res"
    argv = ["--seeds", "2", "--out", str(out), "--work", str(tmp_path / "work"),
            "--search-set", *TINY_SEARCH, "--retrain-set", *TINY_RETRAIN]
    assert mod.main(argv) == 0
    rows = list(csv.DictReader(open(out / "epochs.csv")))
    assert len(rows) == 2 * 2 * 2  # methods × seeds × epochs
    assert {(r["method"], r["seed"], r["epoch"]) for r in rows} == {(m, s, e) for m in ("darts", "snas") for s in "01" for e in "12"}
    for r in rows:
        assert 0.0 <= float(r["supernet_acc"]) <= 1.0 and 0.0 <= float(r["child_acc"]) <= 1.0
        assert math.isclose(float(r["gap"]), float(r["supernet_acc"]) - float(r["child_acc"]), abs_tol=1e-9)
        assert 0.0 < float(r["entropy"]) <= float(r["entropy_max"]) + 1e-6
        assert math.isclose(float(r["entropy_max"]), math.log(8))
        assert 0.0 <= float(r["tv_from_uniform"]) <= float(r["max_dev_from_uniform"]) * 8
    assert all(r["temperature"] for r in rows if r["method"] == "snas")
    for m in ("darts", "snas"):
        for s in (0, 1):
            run = out / "runs" / "fashion-mnist" / f"{m}-s{s}"
            assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
            assert json.loads((run / "arch.json").read_text())["kind"] == "cell"
    rt = list(csv.DictReader(open(out / "retrain.csv")))
    assert len(rt) == 4 and all(0.0 <= float(r["test_acc"]) <= 1.0 and int(r["params"]) > 0 for r in rt)
    assert all(int(r["edges"]) == 16 for r in rt if r["method"] == "darts")  # DARTS keeps 2 edges per node, 4 nodes, 2 cell types
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["per_epoch"]) == 2 * 2 and all(s["seeds"] == 2 for s in summary["per_epoch"])
    assert {r["method"] for r in summary["retrain"]} == {"darts", "snas"}
    assert summary["wall_seconds"] > 0 and summary["config"]["search"]["max_steps"] == 2
    assert (out / "snas_vs_darts.png").stat().st_size > 10_000
    md = (out / "summary.md").read_text()
    assert "| darts | 2 |" in md and "| snas | 2 |" in md and "retrained" in md
    # an interrupted run is summarised from the rows already written, with the same numbers
    (out / "snas_vs_darts.png").unlink()
    assert mod.main(["--out", str(out), "--summarise-only"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["per_epoch"] == summary["per_epoch"] and again["retrain"] == summary["retrain"] and again["config"]["partial"]
    assert (out / "snas_vs_darts.png").is_file()


def test_distance_from_uniform():
    spec = importlib.util.spec_from_file_location("snas_vs_darts", ROOT / "experiments" / "snas_vs_darts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tv, dev = mod.distance_from_uniform({"normal": [[0.25] * 4, [1.0, 0.0, 0.0, 0.0]]})
    assert math.isclose(tv, 0.5 * 0.75) and math.isclose(dev, 0.75)  # edges: 0 and 0.75, mean 0.375
