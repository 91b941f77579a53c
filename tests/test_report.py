"""``nasforge report``: what it finds in real run directories, and the page rendered in
headless Chromium (skipped only where Debian's ``chromium`` is absent; CI installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.report.build import build_report
from nasforge.report.rundata import RunDirError, load_run
from nasforge.report.series import alpha_series, edge_labels, group_of, grouped, scalar_series

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory) -> Path:
    """A real (tiny) first-order DARTS search on digits: 3 epochs of 4 steps."""
    out = tmp_path_factory.mktemp("darts") / "run"
    rc = main([
        "search", "darts", "--space", "cell", "--data", "digits", "--epochs", "3", "--layers", "1", "--channels", "4",
        "--limit", "64", "--max-steps", "4", "--eval-limit", "32", "--batch-size", "16", "--device", "cpu",
        "--no-progress", "--out", str(out),
    ])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def trials_run(tmp_path_factory) -> Path:
    """A real (tiny) random search over NSC blocks: 4 trials of one short epoch each."""
    out = tmp_path_factory.mktemp("random") / "run"
    rc = main([
        "search", "random", "--space", "nsc", "--data", "digits", "--trials", "4", "--epochs", "1", "--limit", "64",
        "--executor", "inline", "--no-progress", "--out", str(out),
    ])
    assert rc == 0
    return out


# ----------------------------------------------------------------------------- reading
def test_series_grouping_and_alpha_detection(darts_run: Path) -> None:
    run = load_run(darts_run)
    assert run.finished and run.method.startswith("darts") and len(run.records) == 3
    by_x = scalar_series(run.records)
    assert set(by_x) == {"epoch"}
    groups = grouped(by_x["epoch"])
    names = {g: {s.name for s in ss} for g, ss in groups.items()}
    assert "train_loss" in names["loss"] and "supernet_acc" in names["accuracy"]
    assert any(n.startswith("entropy.") for n in names["entropy and temperature"])
    assert any("flops" in n for n in names["cost"])
    alphas = {a.key: a for a in alpha_series(run.records)}
    assert set(alphas) == {"alpha_softmax.normal", "alpha_softmax.reduce"}
    a = alphas["alpha_softmax.normal"]
    assert a.xs == [1.0, 2.0, 3.0] and len(a.mats[0]) == 14 and len(a.mats[0][0]) == 8
    # α starts uniform: mean edge entropy log(8), and it can only leave that maximum
    assert a.entropies()[0] == pytest.approx(2.0794, abs=1e-3)
    assert all(h <= 2.0795 for h in a.entropies())


def test_group_and_edge_names() -> None:
    assert group_of("valid_ppl") == "perplexity" and group_of("alpha_entropy") == "entropy and temperature"
    assert group_of("best_reward") == "reward" and group_of("child_cost.params") == "cost"
    assert group_of("controller_lr") == "schedule" and group_of("seconds") == "time"
    assert edge_labels(14)[:3] == ["0→2", "1→2", "0→3"] and edge_labels(14)[-1] == "4→5"
    assert edge_labels(6) == ["0→1", "0→2", "1→2", "0→3", "1→3", "2→3"]  # NAS-Bench-201
    assert len(edge_labels(36)) == 36 and edge_labels(36)[-1] == "7→8"  # DARTS RNN, 8 nodes
    assert edge_labels(7) == [f"edge {i}" for i in range(7)]


def test_report_of_a_run_still_going(darts_run: Path, tmp_path: Path) -> None:
    """Two epochs written, the third torn mid-line, no arch.json yet: the report shows
    the last derived cell from metrics.jsonl and says the run is in progress."""
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(darts_run / "config.yaml", live / "config.yaml")
    lines = (darts_run / "metrics.jsonl").read_text().splitlines()
    (live / "metrics.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    run = load_run(live)
    assert len(run.records) == 2 and not run.finished
    assert "in progress" in run.status_line() and "2 of 3 epochs" in run.status_line()
    page = build_report(live).read_text()
    assert "latest derived architecture" in page and "in progress" in page
    assert 'http-equiv="refresh"' not in page  # only with --watch


def test_report_without_dot_shows_dot_source(trials_run: Path, tmp_path: Path, monkeypatch) -> None:
    import importlib

    draw_mod = importlib.import_module("nasforge.report.draw")  # the package re-exports a function of that name
    monkeypatch.setattr(draw_mod.shutil, "which", lambda name: None)
    page = build_report(trials_run, tmp_path / "rep").read_text()
    assert "No drawing" in page and "DOT source" in page and "digraph" in page
    assert 'id="fig-trials-reward"' in page


def test_cli_report_errors(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a nasforge run directory" in capsys.readouterr().err
    with pytest.raises(RunDirError):
        load_run(tmp_path)


def test_multi_trial_report_reads_the_store_without_leaving_files(trials_run: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in trials_run.iterdir())
    run = load_run(trials_run)
    assert run.is_multi_trial and run.method == "random" and len(run.trials) == 4
    assert all(t["status"] == "done" for t in run.trials)
    out = tmp_path / "rep"
    assert main(["report", str(trials_run), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "best trials" in page and page.count("<tr>") >= 5
    after = sorted(p.name for p in trials_run.iterdir() if p.name != "report")
    assert after == before  # no -shm/-wal left beside a finished store


# ----------------------------------------------------------------------------- Chromium
def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def _render(html: Path, tmp_path: Path):
    """(layout written by the page's script, screenshot as an (H, W, 3) array in [0, 1])."""
    import matplotlib.image as mpimg

    url = html.resolve().as_uri()
    width = 1280
    dom = _chromium([f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom", url], tmp_path / "profile-dom")
    start = dom.stdout.find('id="nasforge-layout">')
    assert start >= 0, f"page script did not run: {dom.stderr[-500:]}"
    start = dom.stdout.index(">", start) + 1
    layout = json.loads(dom.stdout[start:dom.stdout.index("</script>", start)])
    height = int(min(layout["height"] + 20, 16000))
    png = tmp_path / "shot.png"
    shot = _chromium([f"--window-size={width},{height}", "--virtual-time-budget=10000", f"--screenshot={png}", url], tmp_path / "profile-shot")
    assert png.is_file(), shot.stderr[-500:]
    img = mpimg.imread(png)[..., :3]
    assert img.shape[1] == width
    return layout, img


def _assert_visible(layout: dict, img, ids: list[str]) -> None:
    """Each figure loaded and its screen region is a picture, not blank: enough non-white
    pixels and enough variation."""
    import numpy as np

    figs = {f["id"]: f for f in layout["images"]}
    for fid in ids:
        assert fid in figs, f"{fid} not on the page (have {sorted(figs)})"
        f = figs[fid]
        assert f["loaded"] and f["w"] > 100 and f["h"] > 100, f
        y0, x0 = int(f["y"]), int(f["x"])
        region = img[y0:y0 + int(f["h"]), x0:x0 + int(f["w"])]
        assert region.shape[0] > 100 and region.shape[1] > 100, (fid, region.shape)
        ink = float((region.mean(axis=-1) < 0.9).mean())
        assert ink > 0.02 and float(np.std(region)) > 0.05, (fid, ink, float(np.std(region)))
    # and a blank strip below the page end stays blank (the check can tell)
    assert float(np.std(img[-10:])) < 0.02


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (CI installs it)")
def test_darts_report_renders_in_chromium(darts_run: Path, tmp_path: Path) -> None:
    html = build_report(darts_run, tmp_path / "report")
    layout, img = _render(html, tmp_path)
    ids = {f["id"] for f in layout["images"]}
    need = ["fig-arch-0", "fig-curve-epoch-loss", "fig-curve-epoch-accuracy", "fig-alpha-alpha-softmax-normal", "fig-entropy"]
    if shutil.which("dot") is None:  # no graphviz: the page shows the DOT text instead of a drawing
        need.remove("fig-arch-0")
        assert "fig-arch-0" not in ids
    _assert_visible(layout, img, need)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (CI installs it)")
def test_multi_trial_report_renders_in_chromium(trials_run: Path, tmp_path: Path) -> None:
    html = build_report(trials_run, tmp_path / "report")
    layout, img = _render(html, tmp_path)
    need = ["fig-trials-reward", "fig-curve-trial-reward", "fig-trials-cost"]
    if shutil.which("dot") is not None:
        need.append("fig-arch-0")
    _assert_visible(layout, img, need)
