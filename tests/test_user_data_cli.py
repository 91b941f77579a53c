"""``--data PATH`` on the command line: an image folder and an ``.npz`` file made here are
searched (DARTS, SNAS, ENAS micro), trained with ``nasforge train`` and evaluated; bad data
gives a one-line error and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasforge.arch import load_arch
from nasforge.cli import main
from nasforge.utils.io import read_jsonl

SEARCH = ["--epochs", "1", "--layers", "3", "--channels", "8", "--limit", "32", "--max-steps", "1", "--eval-limit", "16",
          "--batch-size", "16", "--device", "cpu", "--no-progress"]
ENAS = ["--space", "micro", "--epochs", "1", "--layers", "1", "--channels", "4", "--limit", "32", "--max-steps", "1",
        "--controller-steps", "1", "--derive-samples", "1", "--eval-batches", "1", "--batch-size", "16", "--device", "cpu", "--no-progress"]
TRAIN_YAML = "limit: 32\nauxiliary: false\ndrop_path_prob: 0.0\n"


@pytest.fixture
def folder(tmp_path) -> Path:
    """3 classes x 12 gray 10x10 PNGs (class k has mean brightness ~ 60 + 60 k)."""
    root = tmp_path / "pics"
    r = np.random.RandomState(0)
    for k, name in enumerate(("circle", "square", "star")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            a = np.clip(r.normal(60 + 60 * k, 20, (10, 10)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def npz(tmp_path) -> Path:
    r = np.random.RandomState(1)
    p = tmp_path / "arrays.npz"
    np.savez(p, x_train=r.randint(0, 256, (48, 8, 8, 3)).astype(np.uint8), y_train=np.arange(48) % 4,
             x_test=r.randint(0, 256, (12, 8, 8, 3)).astype(np.uint8), y_test=np.arange(12) % 4)
    return p


def _train(tmp_path: Path, arch: Path, data: Path, out: str, *extra: str) -> dict:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(TRAIN_YAML)
    rc = main(["train", str(arch), "--data", str(data), "--config", str(cfg), "--epochs", "1", "--layers", "3", "--channels", "8",
               "--batch-size", "16", "--device", "cpu", "--out", str(tmp_path / out), "--no-progress", *extra])
    assert rc == 0
    return json.loads((tmp_path / out / "result.json").read_text())


def test_darts_search_then_train_and_eval_on_an_image_folder(tmp_path, folder, capsys):
    out = tmp_path / "darts"
    assert main(["search", "darts", "--data", str(folder), "--out", str(out), *SEARCH]) == 0
    assert load_arch(out / "arch.json").kind == "cell"
    assert read_jsonl(out / "metrics.jsonl")[-1]["epoch"] == 1
    result = _train(tmp_path, out / "arch.json", folder, "final")
    assert result["data"] == str(folder.resolve())
    ckpt_data = result["data"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "final" / "checkpoint.pt")]) == 0
    assert ckpt_data in capsys.readouterr().out


def test_snas_and_enas_micro_on_an_npz_then_train(tmp_path, npz):
    assert main(["search", "snas", "--data", str(npz), "--out", str(tmp_path / "snas"), *SEARCH]) == 0
    assert load_arch(tmp_path / "snas" / "arch.json").kind == "cell"
    assert main(["search", "enas", "--data", str(npz), "--input-size", "12", "--out", str(tmp_path / "enas"), *ENAS]) == 0
    arch = tmp_path / "enas" / "arch.json"
    assert load_arch(arch).kind == "cell"
    result = _train(tmp_path, arch, npz, "final", "--input-size", "12")
    assert result["data"] == str(npz.resolve())
    ckpt = (tmp_path / "final" / "config.yaml").read_text()
    assert "input_size: 12" in ckpt


def test_mixed_sizes_need_input_size_on_the_command_line(tmp_path, folder, capsys):
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(folder / "star" / "big.png")
    assert main(["search", "darts", "--data", str(folder), "--out", str(tmp_path / "x"), *SEARCH]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasforge: error: ") and len(err.splitlines()) == 1
    assert "10x10" in err and "16x16" in err and "--input-size" in err
    assert main(["search", "darts", "--data", str(folder), "--input-size", "12", "--out", str(tmp_path / "y"), *SEARCH]) == 0


@pytest.mark.parametrize("case", ["empty class", "unreadable image", "label out of range"])
def test_bad_user_data_is_one_line_and_exit_2(tmp_path, folder, capsys, case):
    if case == "empty class":
        (folder / "hexagon").mkdir()
        data, expected = folder, "hexagon"
    elif case == "unreadable image":
        (folder / "star" / "oops.png").write_bytes(b"not a png at all")
        data, expected = folder, "oops.png"
    else:
        data, expected = tmp_path / "bad.npz", "label 7"
        np.savez(data, x_train=np.zeros((20, 6, 6), np.uint8), y_train=np.arange(20) % 3, x_test=np.zeros((2, 6, 6), np.uint8), y_test=np.array([0, 7]))
    assert main(["search", "enas", "--data", str(data), "--out", str(tmp_path / "e"), *ENAS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasforge: error: ") and len(err.splitlines()) == 1 and expected in err
    assert main(["train", "DARTS_V2", "--data", str(data), "--out", str(tmp_path / "t"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "t" / "checkpoint.pt").exists()
