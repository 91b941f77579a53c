"""CNN training (DARTS evaluation recipe) on the embedded digits set, through the CLI.

One small run of a zoo cell network (``nasforge train`` called in-process) is shared by the tests of this file: it must reach
>= 95% test accuracy with a falling training loss, write the run-directory files, and
``nasforge eval`` must print the accuracy ``nasforge train`` printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nasforge import cli
from nasforge.arch import load_arch
from nasforge.data import load_image_dataset
from nasforge.errors import TrainingError
from nasforge.train import TrainConfig, train_cnn
from nasforge.train.config import AUGMENT_DEFAULTS
from nasforge.utils.io import read_jsonl


def nasforge(*args: str) -> SimpleNamespace:
    """Run the CLI in this process; returncode, stdout and stderr like ``subprocess.run``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, SimpleNamespace]:
    out = tmp_path_factory.mktemp("train") / "run"
    cfg = out.parent / "small.yaml"
    cfg.write_text("layers: 5\nchannels: 8\nbatch_size: 64\nlr: 0.05\ndrop_path_prob: 0.1\n")
    r = nasforge("train", "DARTS_V2", "--data", "digits", "--config", str(cfg), "--epochs", "5", "--device", "cpu", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, r


def _printed_acc(text: str) -> float:
    m = re.search(r"test accuracy: ([0-9.]+)%", text)
    assert m, text
    return float(m.group(1))


def test_small_cell_network_learns_digits(digits_run):
    out, r = digits_run
    acc = _printed_acc(r.stdout.strip().splitlines()[-1])  # the final line is the test accuracy
    assert acc >= 95.0
    recs = read_jsonl(out / "metrics.jsonl")
    assert [rec["epoch"] for rec in recs] == [1, 2, 3, 4, 5]
    assert recs[-1]["train_loss"] < 0.6 * recs[0]["train_loss"]
    assert recs[-1]["test_acc"] * 100 == pytest.approx(acc, abs=0.006)
    # DARTS schedules: cosine lr from 0.05, drop path prob * epoch / epochs
    assert recs[0]["lr"] == pytest.approx(0.05) and recs[-1]["lr"] < recs[0]["lr"]
    assert [rec["drop_path_prob"] for rec in recs] == pytest.approx([0.1 * e / 5 for e in range(5)])
    for key in ("train_acc", "test_loss", "seconds"):
        assert key in recs[0]


def test_run_directory_files(digits_run):
    out, _ = digits_run
    for name in ("config.yaml", "arch.json", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (out / name).is_file(), name
    arch = load_arch(out / "arch.json")
    assert arch.to_dict() == load_arch("DARTS_V2").to_dict()
    result = json.loads((out / "result.json").read_text())
    assert result["kind"] == "cnn" and result["epochs"] == 5 and result["metrics"]["test_acc"] >= 0.95
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 5 and ckpt["config"]["layers"] == 5 and ckpt["config"]["cutout"] == AUGMENT_DEFAULTS["digits"][2]


def test_eval_reproduces_train_accuracy(digits_run):
    out, r = digits_run
    ev = nasforge("eval", str(out / "checkpoint.pt"), "--device", "cpu")
    assert ev.returncode == 0, ev.stderr
    assert _printed_acc(ev.stdout) == _printed_acc(r.stdout)


def test_training_again_into_a_run_dir_is_refused(digits_run):
    out, _ = digits_run
    r = nasforge("train", "DARTS_V2", "--epochs", "1", "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    arch = load_arch("DARTS_V2")
    data = load_image_dataset("digits", limit=128)
    cfg = TrainConfig(epochs=2, layers=2, channels=4, batch_size=32, device="cpu")
    saved = {}

    def log(line: str) -> None:  # called after epoch 1's checkpoint: poison one training image
        if line.startswith("epoch 1/"):
            saved["bytes"] = (tmp_path / "checkpoint.pt").read_bytes()
            data.train.x[5, 0, 0, 0] = float("nan")

    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, step \d+"):
        train_cnn(arch, cfg, tmp_path, data=data, show_progress=False, log=log)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved["bytes"]
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]


def test_metrics_mirrored_to_tensorboard_once(tmp_path, monkeypatch):
    from nasforge.utils import tensorboard as tb

    calls: list[tuple[str, float, int]] = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter
        def __init__(self, log_dir: str):
            self.log_dir = log_dir

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setattr(tb, "_summary_writer_cls", lambda: FakeWriter)
    monkeypatch.delenv(tb.ENV, raising=False)
    cfg = TrainConfig(epochs=2, layers=2, channels=4, batch_size=64, limit=128, device="cpu")
    try:
        train_cnn(load_arch("DARTS_V2"), cfg, tmp_path, show_progress=False, log=None)
    finally:
        tb.close_all()
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    test_acc = [(v, step) for tag, v, step in calls if tag == "test_acc"]
    assert test_acc == [(r["test_acc"], r["epoch"]) for r in recs]  # once per epoch, not twice
