"""`nasforge train` builds and trains every image architecture kind: ENAS macro and BlockQNN blocks."""

import json

import pytest

from nasforge.cli import main


def _write(path, d):
    path.write_text(json.dumps(d))
    return str(path)


@pytest.mark.parametrize(
    "arch",
    [
        {"kind": "macro", "version": 1, "layers": [
            {"op": "conv_3x3", "skips": []}, {"op": "sep_conv_3x3", "skips": [0]},
            {"op": "max_pool_3x3", "skips": [0, 1]}, {"op": "conv_5x5", "skips": [2]},
        ]},
        {"kind": "block", "version": 1, "rows": [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 1, 0], [3, "add", 0, 1, 2], [4, "terminal", 0, 0, 0]]},
    ],
    ids=["macro", "block"],
)
def test_train_then_eval_other_kinds(tmp_path, capsys, arch):
    from nasforge.arch import arch_from_dict

    try:
        arch_from_dict(arch)
    except Exception as e:  # the block row format is the BlockQNN module's: adapt if it differs
        pytest.fail(f"fixture architecture rejected: {e}")
    path = _write(tmp_path / "arch.json", arch)
    out = tmp_path / "run"
    rc = main(["train", path, "--data", "digits", "--epochs", "3", "--channels", "8", "--layers", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    first = capsys.readouterr().out
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert metrics[-1]["test_acc"] > 0.3  # 10 classes: chance is 0.1
    assert main(["eval", str(out / "checkpoint.pt"), "--data", "digits"]) == 0
    acc_line = [l for l in first.splitlines() if l.startswith("test accuracy")][-1]
    assert acc_line.split()[2] in capsys.readouterr().out
