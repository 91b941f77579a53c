"""Smoke run of experiments/enas_controller.py (2 seeds, a tiny micro supernet, 2 shared
steps per epoch, one retraining epoch): it runs the searches through the API, keeps their
metrics and arch files, evaluates derived, trained-controller and untrained-controller
children on the same shared weights, retrains some, and writes the tables and the figure."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY_SEARCH = ["epochs=2", "limit=64", "max_steps=2", "layers=1", "channels=4", "input_size=8", "batch_size=16",
               "controller_steps=2", "derive_samples=2", "eval_batches=1"]
TINY_RETRAIN = ["epochs=1", "limit=64", "layers=1", "channels=4", "input_size=8", "eval_every=1"]


def load():
    spec = importlib.util.spec_from_file_location("enas_controller", ROOT / "experiments" / "enas_controller.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_experiment_smoke(shared_data, tmp_path):
    mod = load()
    out = tmp_path / "res"
    argv = ["--seeds", "2", "--out", str(out), "--work", str(tmp_path / "work"), "--search-set", *TINY_SEARCH,
            "--retrain-set", *TINY_RETRAIN, "--set", "evaluate.samples=3", "evaluate.images=32", "retrain_archs=1"]
    assert mod.main(argv) == 0
    ep = list(csv.DictReader(open(out / "epochs.csv")))
    assert [(r["seed"], r["epoch"]) for r in ep] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert all(0.0 <= float(r["reward"]) <= 1.0 and float(r["entropy"]) > 0 for r in ep)
    for s in (0, 1):
        recs = (out / "runs" / f"s{s}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["reward"] for x in recs] == [float(r["reward"]) for r in ep if r["seed"] == str(s)]
        assert json.loads((out / "runs" / f"s{s}" / "arch.json").read_text())["kind"] == "cell"
    rows = list(csv.DictReader(open(out / "archs.csv")))
    per_seed = {g: sum(r["group"] == g for r in rows) for g in mod.GROUPS}
    assert per_seed == {"derived": 2, "trained": 6, "untrained": 6, "untrained_derived": 2}
    assert all(0.0 <= float(r["shared_acc"]) <= 1.0 and float(r["shared_acc"]) * 32 == round(float(r["shared_acc"]) * 32) for r in rows)
    # the derived row is the search's arch.json; retrained: derived, untrained best-of-N and 1 untrained sample per seed
    for s in (0, 1):
        derived = next(r for r in rows if r["group"] == "derived" and r["seed"] == str(s))
        saved = json.loads((out / "runs" / f"s{s}" / "arch.json").read_text())
        assert json.loads(derived["arch"])["normal"] == saved["normal"]
    retrained = [r for r in rows if r["retrained_acc"] != ""]
    assert sorted((r["seed"], r["group"]) for r in retrained) == sorted((s, g) for s in "01" for g in ("derived", "untrained", "untrained_derived"))
    assert all(0.0 <= float(r["retrained_acc"]) <= 1.0 and int(r["params"]) > 0 for r in retrained)
    summary = json.loads((out / "summary.json").read_text())
    assert [e["epoch"] for e in summary["per_epoch"]] == [1, 2] and all(e["seeds"] == 2 for e in summary["per_epoch"])
    assert summary["groups"]["untrained"]["n"] == 6 and summary["groups"]["derived"]["retrained_n"] == 2
    assert set(summary["tests"]) >= {"reward_first_vs_last_epoch_p", "shared_acc_trained_vs_untrained_p", "retrained_acc_derived_vs_untrained_p"}
    assert (out / "enas_controller.png").stat().st_size > 10_000
    assert "| 2 |" in (out / "summary.md").read_text()
    assert set(summary["op_share"]) == set(mod.GROUPS)
    assert all(abs(sum(d.values()) - 1.0) < 1e-9 for d in summary["op_share"].values())
    # summarising again keeps the finished run's numbers, config and wall time ...
    assert mod.main(["--out", str(out), "--summarise-only"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["groups"] == summary["groups"] and again["per_epoch"] == summary["per_epoch"]
    assert again["wall_seconds"] == summary["wall_seconds"] and again["config"] == summary["config"]
    # ... and an interrupted run (no summary.json yet) is summarised from the rows written, marked partial
    (out / "summary.json").unlink()
    assert mod.main(["--out", str(out), "--summarise-only"]) == 0
    part = json.loads((out / "summary.json").read_text())
    assert part["groups"] == summary["groups"] and part["config"]["partial"]
    # a control run (controller frozen) is compared with the run: reward per epoch and retrained derived cells
    ctrl = tmp_path / "frozen"
    assert mod.main(["--seeds", "2", "--out", str(ctrl), "--work", str(tmp_path / "work2"), "--search-set", *TINY_SEARCH, "controller_lr=1e-12",
                     "--retrain-set", *TINY_RETRAIN, "--set", "evaluate.samples=2", "evaluate.images=16", "retrain_archs=0"]) == 0
    assert mod.main(["--out", str(out), "--summarise-only", "--control", str(ctrl)]) == 0
    both = json.loads((out / "summary.json").read_text())
    assert [e["epoch"] for e in both["control"]["per_epoch"]] == [1, 2] and both["control"]["groups"]["derived"]["retrained_n"] == 2
    assert "reward_last_enas_vs_frozen_p" in both["control"] and "retrained_derived_enas_vs_frozen_p" in both["control"]
    assert "frozen controller" in (out / "summary.md").read_text()
