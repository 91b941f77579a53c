"""``nasforge compare``: two methods on digits, same space/seed/budget -> table and plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nasforge.cli import main

TINY = "all=--layers 1 --channels 4 --limit 64 --max-steps 3 --eval-limit 32 --batch-size 16"


def _nonblank_png(path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)[..., :3]
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert float((img.mean(-1) < 0.9).mean()) > 0.01 and float(np.std(img)) > 0.05


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp") / "cmp"
    rc = main([
        "compare", "--methods", "darts,snas", "--space", "cell", "--data", "digits", "--seeds", "0", "--epochs", "2",
        "--device", "cpu", "--args", TINY, "--retrain-epochs", "1", "--retrain-args", "--layers 2 --channels 4",
        "--cost-layers", "8", "--cost-channels", "16", "--out", str(out),
    ])
    assert rc == 0
    return out


def test_compare_two_methods_writes_table_and_plot(compared: Path) -> None:
    rows = list(csv.DictReader(open(compared / "compare.csv")))
    assert [r["method"] for r in rows] == ["darts", "snas"]
    for r in rows:
        assert r["status"] == "finished" and r["seed"] == "0"
        assert 0.0 <= float(r["search_acc"]) <= 1.0 and r["measured_as"] == "child_acc (last epoch)"
        assert 0.0 <= float(r["retrain_acc"]) <= 1.0  # RUN/retrain/result.json of `nasforge train`
        assert int(r["params"]) > 0 and int(r["flops"]) > 0 and float(r["wall_s"]) > 0
        assert r["arch"].startswith("normal: ")
        assert (Path(r["run_dir"]) / "arch.json").is_file() and (Path(r["run_dir"]) / "retrain" / "result.json").is_file()
    md = (compared / "compare.md").read_text()
    assert "| darts | 1 |" in md and "| snas | 1 |" in md and "![compare](compare.png)" in md
    page = (compared / "compare.html").read_text()
    assert page.count("<tr>") >= 5 and 'id="fig-compare"' in page and "data:image/png;base64," in page
    _nonblank_png(compared / "compare.png")
    _nonblank_png(compared / "compare-entropy.png")  # DARTS softmax vs SNAS concrete distribution


def test_compare_reuses_finished_runs_and_collects_run_dirs(compared: Path, tmp_path: Path, capsys) -> None:
    rc = main([
        "compare", "--methods", "darts", "--space", "cell", "--data", "digits", "--seeds", "0", "--epochs", "2",
        "--args", TINY, "--retrain-epochs", "1", "--cost-layers", "8", "--cost-channels", "16", "--out", str(compared),
    ])
    assert rc == 0
    out = capsys.readouterr().out
    assert "reusing the finished run" in out and "reusing the retrained network" in out
    runs = [str(compared / "runs" / "darts-seed0"), str(compared / "runs" / "snas-seed0")]
    assert main(["compare", "--runs", *runs, "--out", str(tmp_path / "c2"), "--cost-layers", "8", "--cost-channels", "16"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "c2" / "compare.csv")))
    assert [r["method"] for r in rows] == ["darts-1st", "snas"]  # the runs' own names for themselves
    assert (tmp_path / "c2" / "compare.png").is_file()


def test_compare_errors(tmp_path: Path, capsys) -> None:
    assert main(["compare", "--out", str(tmp_path)]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", "--methods", "darts,foo", "--space", "cell", "--out", str(tmp_path)]) == 2
    assert "unknown search method 'foo'" in capsys.readouterr().err
    assert main(["compare", "--methods", "darts", "--out", str(tmp_path)]) == 2
    assert "--space is required" in capsys.readouterr().err
    assert main(["compare", "--methods", "darts", "--space", "cell", "--args", "bogus", "--out", str(tmp_path)]) == 2
    assert "METHOD=ARGS" in capsys.readouterr().err
    assert main(["compare", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "c")]) == 2
    assert "run directory not found" in capsys.readouterr().err
