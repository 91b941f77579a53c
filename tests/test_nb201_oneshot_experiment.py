"""Smoke run of experiments/nb201_oneshot.py (2 seeds, C = 4 on 8×8 images, 2 steps per epoch):
it runs DARTS (both orders) and SNAS on the NB201 supernet through the API, keeps their metrics
and arch files, looks every derived cell up in the table, reads the multi-trial baselines and
writes the per-epoch rows, the summary and the figure."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = ["epochs=2", "limit=64", "max_steps=2", "eval_limit=16", "channels=4", "input_size=8", "batch_size=16"]


def load():
    spec = importlib.util.spec_from_file_location("nb201_oneshot", ROOT / "experiments" / "nb201_oneshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_experiment_smoke(shared_data, tmp_path):
    from nasforge.spaces.nb201 import cellstr_to_ops
    from nasforge.spaces.nb201_table import NB201Table

    mod = load()
    out = tmp_path / "res"
    assert mod.main(["--seeds", "2", "--out", str(out), "--work", str(tmp_path / "work"), "--search-set", *TINY]) == 0
    rows = list(csv.DictReader(open(out / "epochs.csv")))
    methods = ("darts-1st", "darts-2nd", "snas")
    assert {(r["method"], r["seed"], r["epoch"]) for r in rows} == {(m, s, e) for m in methods for s in "01" for e in "12"}
    table = NB201Table.load()
    for r in rows:
        ops = cellstr_to_ops(r["cell"])
        for c in mod.COLUMNS:
            assert float(r[c]) == table.accuracy(ops, c)  # the derived cell's own table entry
            assert 0.0 <= float(r["top_pct_" + c]) < 100.0
        assert math.isclose(float(r["share_skip_connect"]), ops.count("skip_connect") / 6)
        assert math.isclose(float(r["share_none"]), ops.count("none") / 6)
        assert 0.0 < float(r["entropy"]) <= math.log(5) + 1e-6 and math.isclose(float(r["entropy_max"]), math.log(5))
    for m in methods:
        for s in (0, 1):
            run = out / "runs" / f"{m}-s{s}"
            lines = (run / "metrics.jsonl").read_text().splitlines()
            assert len(lines) == 2 and json.loads(lines[-1])["arch"]["meta"]["space"] == "nb201"
            assert json.loads((run / "arch.json").read_text())["kind"] == "cell"
    summary = json.loads((out / "summary.json").read_text())
    assert {f["method"] for f in summary["final"]} == set(methods) and all(f["seeds"] == 2 for f in summary["final"])
    assert summary["table"]["cifar10-test"]["optimum"] == max(r["cifar10-test"] for r in table.rows.values())
    assert summary["table"]["cifar10-test"]["top_pct_optimum"] == 0.0
    base = {(b["strategy"], b["budget"], b["column"]) for b in summary["baselines"]}
    assert ("random", 100, "cifar10-test") in base and ("reinforce", 1000, "imagenet-test") in base
    assert summary["config"]["search"]["max_steps"] == 2
    assert (out / "nb201_oneshot.png").stat().st_size > 10_000
    md = (out / "summary.md").read_text()
    assert "| darts-1st | 2 | 2 |" in md and "random (100 table queries" in md and "table optimum" in md
    # an interrupted run is summarised from the rows already written, with the same numbers
    (out / "nb201_oneshot.png").unlink()
    assert mod.main(["--out", str(out), "--summarise-only"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["final"] == summary["final"] and again["config"]["summarised_only"]
    assert (out / "nb201_oneshot.png").is_file()


def test_top_pct():
    mod = load()

    class Table:  # four cells with accuracies 0, 1, 2, 3 on every column
        rows = {(str(i),): {c: float(i) for c in mod.COLUMNS} for i in range(4)}

    s = mod.TableStats(Table())
    assert s.top_pct("cifar10-test", 3.0) == 0.0 and s.top_pct("cifar10-test", 1.0) == 50.0 and s.top_pct("cifar10-test", -1) == 100.0
