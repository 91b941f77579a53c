"""The example configs resolve, the paper configs equal the defaults, and the trainers run
on the real data sets (``NASFORGE_DATA``, tiny settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasforge.arch import load_arch
from nasforge.config import resolve
from nasforge.train import LMConfig, TrainConfig, evaluate_checkpoint, train_arch
from nasforge.utils.io import read_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_resolve(path):
    cls = LMConfig if "ptb" in path.name else TrainConfig
    resolve(cls, path)


def test_paper_configs_are_the_defaults():
    cnn = resolve(TrainConfig, CONFIGS / "cifar10-darts.yaml")
    assert cnn == TrainConfig(data="cifar10").for_dataset("cifar10")
    assert (cnn.layers, cnn.channels, cnn.epochs, cnn.batch_size, cnn.lr, cnn.weight_decay) == (20, 36, 600, 96, 0.025, 3e-4)
    assert (cnn.grad_clip, cnn.auxiliary_weight, cnn.drop_path_prob, cnn.cutout) == (5.0, 0.4, 0.2, 16)
    lm = resolve(LMConfig, CONFIGS / "ptb-darts.yaml")
    assert lm == LMConfig()
    assert (lm.emsize, lm.nhid, lm.batch_size, lm.bptt, lm.lr, lm.clip, lm.weight_decay, lm.nonmono) == (850, 850, 64, 35, 20.0, 0.25, 8e-7, 5)


def test_dataset_aware_augmentation():
    assert TrainConfig().for_dataset("digits").flip is False
    c = TrainConfig().for_dataset("cifar10")
    assert (c.crop_padding, c.flip, c.cutout) == (4, True, 16)
    assert TrainConfig(cutout=0).for_dataset("cifar10").cutout == 0  # explicit values win


def test_cnn_on_cifar10_subset(shared_data, tmp_path):
    cfg = TrainConfig(data="cifar10", data_dir=str(shared_data / "cifar-10-subset"), epochs=1, layers=2, channels=4, batch_size=32, limit=128, device="cpu")
    r = train_arch(load_arch("DARTS_V2"), tmp_path, cfg, show_progress=False, log=None)
    rec = read_jsonl(tmp_path / "metrics.jsonl")[0]
    assert rec["epoch"] == 1 and 0.0 <= r.metrics["test_acc"] <= 1.0
    ev = evaluate_checkpoint(tmp_path / "checkpoint.pt", data_dir=str(shared_data / "cifar-10-subset"), device="cpu")
    assert ev["accuracy"] == r.metrics["test_acc"] and ev["images"] == 128
