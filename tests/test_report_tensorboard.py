"""The optional TensorBoard mirror of metrics records (``nasforge.utils.tensorboard``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasforge.utils import tensorboard as tb


class _FakeWriter:
    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.scalars: list[tuple[str, float, int]] = []
        self.flushed = 0

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        pass


def test_scalars_flatten_numbers_and_skip_the_rest() -> None:
    rec = {
        "epoch": 3, "train_loss": 0.5, "ok": True, "note": "x", "bad": float("nan"),
        "entropy": {"normal": 2.0, "reduce": 1.5}, "alpha_softmax": {"normal": [[0.5, 0.5]]},
        "arch": {"kind": "cell", "version": 1, "normal": {"nodes": []}},
    }
    assert tb.scalars(rec) == {"train_loss": 0.5, "entropy/normal": 2.0, "entropy/reduce": 1.5}


def test_mirror_steps_by_the_index_key(tmp_path: Path) -> None:
    m = tb.ScalarMirror(tmp_path / "tb", key="trial", writer_factory=_FakeWriter)
    m.write({"trial": 7, "reward": 0.25, "best_reward": 0.3})
    m.write({"reward": 0.1})  # no index: running count
    assert m.writer.scalars == [("reward", 0.25, 7), ("best_reward", 0.3, 7), ("reward", 0.1, 2)]
    assert m.writer.flushed == 2


def test_mirror_is_off_without_tensorboard_or_when_disabled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(tb.ENV, "0")
    assert not tb.available()
    assert tb.mirror_for(tmp_path / "off" / "metrics.jsonl") is None
    tb.mirror_record(tmp_path / "off" / "metrics.jsonl", "epoch", {"epoch": 1, "loss": 1.0})  # a no-op, no error
    assert not (tmp_path / "off" / "tensorboard").exists()


def test_event_files_hold_the_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    try:
        for e, loss in enumerate([2.0, 1.5, 1.0], start=1):
            tb.mirror_record(metrics, "epoch", {"epoch": e, "train_loss": loss, "entropy": {"normal": 2.0 / e}})
    finally:
        tb.close_all()
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    assert [(s.step, s.value) for s in acc.Scalars("train_loss")] == [(1, 2.0), (2, 1.5), (3, 1.0)]
    assert [s.step for s in acc.Scalars("entropy/normal")] == [1, 2, 3]
