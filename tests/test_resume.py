"""``--resume`` after a SIGKILL mid-epoch gives bit-identical weights (deterministic, CPU).

Two runs of ``python -m nasforge train`` with the same seed: one uninterrupted, one
killed with SIGKILL as soon as its first ``checkpoint.pt`` exists (i.e. while the next
epoch runs), then continued with ``--resume``. Every tensor of the final model and
optimiser must be equal, and the metrics (apart from timings) too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasforge import cli
from nasforge.utils.io import read_jsonl

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EPOCHS = 3


def _cmd(out: Path, cfg: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "nasforge", "train", "DARTS_V2", "--data", "digits", "--config", str(cfg),
        "--epochs", str(EPOCHS), "--seed", "3", "--deterministic", "--device", "cpu", "--no-progress", "--out", str(out), *extra,
    ]


@pytest.fixture
def small_cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "small.yaml"
    cfg.write_text("layers: 3\nchannels: 6\nbatch_size: 24\nlr: 0.05\ndrop_path_prob: 0.2\ncutout: 3\nlimit: 600\n")
    return cfg


def _no_timing(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in recs]


def test_sigkill_mid_epoch_then_resume_is_bit_exact(tmp_path, small_cfg):
    full, killed = tmp_path / "full", tmp_path / "killed"
    # start the run to kill first, the uninterrupted one alongside it (one thread each)
    victim = subprocess.Popen(_cmd(killed, small_cfg), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ref = subprocess.Popen(_cmd(full, small_cfg), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while not ckpt.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert victim.poll() is None, "the run ended before it could be killed: " + victim.stderr.read().decode()
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    epoch_at_kill = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= epoch_at_kill < EPOCHS  # killed while a later epoch was running

    resumed = subprocess.run(_cmd(killed, small_cfg, "--resume"), env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed} after epoch {epoch_at_kill}/{EPOCHS}" in resumed.stdout
    out, err = ref.communicate(timeout=240)
    assert ref.returncode == 0, err

    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == EPOCHS
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(pa["momentum_buffer"], pb["momentum_buffer"])
    assert torch.equal(a["data_rng"], b["data_rng"])
    assert _no_timing(read_jsonl(full / "metrics.jsonl")) == _no_timing(read_jsonl(killed / "metrics.jsonl"))
    # both print the same final test accuracy
    assert out.strip().splitlines()[-1] == resumed.stdout.strip().splitlines()[-1]


def test_resume_refuses_a_changed_setting(tmp_path, small_cfg, capsys):
    out = tmp_path / "run"
    args = ["train", "DARTS_V2", "--config", str(small_cfg), "--epochs", "1", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args[:-2] + ["--lr", "0.1", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config key 'lr' is 0.1 here but 0.05" in err
    # the run's own settings (or none at all) resume; a finished run just reports its accuracy
    assert cli.main(["train", "DARTS_V2", "--resume", "--no-progress", "--out", str(out)]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    assert cli.main(["train", "DARTS_V1", "--resume", "--no-progress", "--out", str(out)]) == 2
    assert "is not the one trained" in capsys.readouterr().err


def test_resume_without_checkpoint_is_an_error(tmp_path, capsys):
    assert cli.main(["train", "DARTS_V2", "--resume", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasforge: error: checkpoint not found") and err.count("\n") == 1
