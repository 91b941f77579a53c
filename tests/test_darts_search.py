"""End to end: ``nasforge search darts|snas`` on digits, retraining the result, resume, NB201 lookup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasforge.arch import load_arch
from nasforge.cli import main
from nasforge.utils.io import load_checkpoint, read_jsonl

TINY = ["--data", "digits", "--limit", "160", "--batch-size", "32", "--layers", "3", "--channels", "4", "--nodes", "2",
        "--seed", "0", "--device", "cpu", "--no-progress", "--eval-limit", "48"]


@pytest.mark.parametrize("method,extra", [("darts", ["--order", "1"]), ("darts", ["--order", "2"]), ("snas", ["--preset", "moderate"])])
def test_two_epoch_search_writes_a_trainable_arch(tmp_path, method, extra):
    out = tmp_path / "search"
    assert main(["search", method, "--out", str(out), "--epochs", "2", *TINY, *extra]) == 0
    arch = load_arch(out / "arch.json")
    assert arch.kind == "cell" and arch.reduce is not None
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == [1, 2]
    for key in ("train_loss", "supernet_acc", "child_acc", "arch", "alpha_softmax", "entropy", "expected_cost", "child_cost", "lr"):
        assert key in recs[-1], key
    assert len(recs[-1]["alpha_softmax"]["normal"]) == 5 and len(recs[-1]["alpha_softmax"]["normal"][0]) == 8
    assert 0.0 <= recs[-1]["child_acc"] <= 1.0
    if method == "snas":
        assert recs[0]["temperature"] > recs[1]["temperature"]
    else:
        assert len(arch.normal.nodes[1]) == 2  # top-2 edges per node
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2
    # the derived architecture trains from scratch with `nasforge train`
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 1\nlayers: 3\nchannels: 8\nbatch_size: 32\nlimit: 96\nauxiliary: false\ndrop_path_prob: 0.0\n")
    assert main(["train", str(out / "arch.json"), "--data", "digits", "--config", str(cfg), "--out", str(tmp_path / "final"), "--device", "cpu", "--no-progress"]) == 0
    assert read_jsonl(tmp_path / "final" / "metrics.jsonl")


def _cmd(out: Path, epochs: int, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "nasforge", "search", "darts", "--out", str(out), "--epochs", str(epochs), *TINY, "--deterministic"]
    return cmd + (["--resume"] if resume else [])


def test_resume_after_sigkill_gives_the_same_alpha(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full = tmp_path / "full"
    subprocess.run(_cmd(full, 2), check=True, env=env, timeout=300)
    broken = tmp_path / "broken"
    proc = subprocess.Popen(_cmd(broken, 2), env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not (broken / "checkpoint.pt").exists():
        time.sleep(0.05)
    assert (broken / "checkpoint.pt").exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(broken / "checkpoint.pt")["epoch"]
    assert done < 2  # killed before the end
    subprocess.run(_cmd(broken, 2, resume=True), check=True, env=env, timeout=300)
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(broken / "checkpoint.pt")
    for t in a["alphas"]:
        assert torch.equal(a["alphas"][t], b["alphas"][t]), t
    assert json.loads((full / "arch.json").read_text()) == json.loads((broken / "arch.json").read_text())
    assert [r["epoch"] for r in read_jsonl(broken / "metrics.jsonl")] == [1, 2]


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(["search", "darts", "--out", str(tmp_path / "x"), "--space", "moon", *TINY]) == 2
    assert "--space" in capsys.readouterr().err
    assert main(["search", "snas", "--out", str(tmp_path / "y"), "--space", "rnn", *TINY]) == 2
    assert main(["search", "darts", "--out", str(tmp_path / "z"), "--resume", *TINY]) == 2


@pytest.mark.parametrize("method", ["darts", "snas"])
def test_nb201_search_derives_a_cell_found_in_the_table(tmp_path, shared_data, method):
    from nasforge.spaces.nb201_table import NB201Table
    from nasforge.search.supernet_loop import nb201_ops

    out = tmp_path / "nb"
    args = ["search", method, "--space", "nb201", "--out", str(out), "--epochs", "1", "--data", "digits", "--limit", "96",
            "--batch-size", "32", "--channels", "4", "--device", "cpu", "--no-progress", "--nb201-table", str(shared_data / "nas-bench-201")]
    assert main(args) == 0
    arch = load_arch(out / "arch.json")
    assert arch.inputs == 1 and arch.reduce is None and arch.normal.concat == [3]
    ops = nb201_ops(arch)
    assert len(ops) == 6
    table = NB201Table.load(shared_data / "nas-bench-201")
    rec = read_jsonl(out / "metrics.jsonl")[-1]
    assert rec["nb201"]["cifar10-val"] == pytest.approx(table.accuracy(ops, "cifar10-val"))


def test_kill_right_after_the_checkpoint_loses_no_metrics_record(tmp_path, monkeypatch):
    """The record of an epoch is on disk before its checkpoint, so a kill between the two
    cannot leave a checkpoint whose epochs are missing from ``metrics.jsonl``."""
    import nasforge.utils.rundir as loop  # every run folder's checkpoint goes through RunDir.save_epoch

    real_save = loop.save_checkpoint

    class Killed(BaseException):
        pass

    def save_then_die(obj, path):
        real_save(obj, path)
        raise Killed

    out = tmp_path / "run"
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main(["search", "darts", "--out", str(out), "--epochs", "2", *TINY])
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1]
    assert main(["search", "darts", "--out", str(out), "--epochs", "2", *TINY, "--resume"]) == 0
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
