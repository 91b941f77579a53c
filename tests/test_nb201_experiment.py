"""Smoke run of experiments/nb201_strategies.py (2 seeds, budget 20): it writes the raw
results, the summary with Welch p-values and the figure."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_experiment_smoke(shared_data, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("nb201_strategies", ROOT / "experiments" / "nb201_strategies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "res"
    assert mod.main(["--seeds", "2", "--budgets", "20", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "raw.csv")))
    strategies = {"random", "reinforce", "qlearning", "qlearning-paper"}
    assert {r["strategy"] for r in rows} >= strategies and any(r["strategy"].startswith("ablation:") for r in rows)
    main_rows = [r for r in rows if r["strategy"] in strategies]
    assert len(main_rows) == 4 * 3 * 2  # strategies × columns × seeds
    assert {r["test_column"] for r in main_rows} == {"cifar10-test", "cifar100-test", "imagenet-test"}
    assert all(int(r["queries"]) == 20 for r in main_rows)
    summary = json.loads((out / "summary.json").read_text())
    res = summary["results"]
    assert len(res) == 4 * 3 and all(x["seeds"] == 2 for x in res)
    assert all((x["p_vs_random"] is None) == (x["strategy"] == "random") for x in res)
    assert summary["ablation"] and summary["wall_seconds"] > 0
    assert (out / "nb201_strategies.png").stat().st_size > 10_000
    assert "Selection by `cifar100-val`" in (out / "summary.md").read_text()
