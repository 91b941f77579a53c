"""Bad input to ``nasforge train`` / ``nasforge eval``: one line naming the problem, exit 2.

Each case runs ``python -m nasforge`` in its own process (all started at once) and checks
that stderr is a single ``nasforge: error: ...`` line without a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasforge import cli
from nasforge.arch import load_arch

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    bad_json = tmp / "bad.json"
    bad_json.write_text('{"kind": "cell", "version": 1, "normal": ')
    darts_v2 = load_arch("DARTS_V2").to_dict()
    darts_v2["normal"]["nodes"][1][0][0] = "conv_9x9_magic"
    unknown_op = tmp / "unknown_op.json"
    unknown_op.write_text(json.dumps(darts_v2))
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    resume_dir = tmp / "resume_run"
    resume_dir.mkdir()
    (resume_dir / "checkpoint.pt").write_bytes(os.urandom(300))
    bad_key = tmp / "bad.yaml"
    bad_key.write_text("epochs: 1\nlearning_rate: 0.1\n")

    def out(case: int) -> str:  # one run folder per case: the cases run at the same time
        return str(tmp / f"out{case}")

    return {
        "unknown zoo name": (["train", "NOT_A_NET", "--out", out(1)], "NOT_A_NET"),
        "malformed arch JSON": (["train", str(bad_json), "--out", out(2)], "not valid JSON"),
        "unknown op": (["train", str(unknown_op), "--out", out(3)], "unknown op 'conv_9x9_magic'"),
        "missing data dir": (["train", "DARTS_V2", "--data", "cifar10", "--data-dir", str(tmp / "no_such_dir"), "--out", out(4)], "no_such_dir"),
        "corrupted checkpoint (eval)": (["eval", str(corrupt)], "corrupted"),
        "corrupted checkpoint (resume)": (["train", "DARTS_V2", "--resume", "--out", str(resume_dir)], "corrupted"),
        "unknown config key": (["train", "DARTS_V2", "--config", str(bad_key), "--out", out(5)], "unknown config key 'learning_rate'"),
        "missing corpus": (["train", "DARTS_RNN_V2", "--data", str(tmp / "no_corpus"), "--out", out(6)], "no_corpus"),
    }


def test_bad_input_gives_one_line_error(tmp_path):
    cases = _cases(tmp_path)
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "nasforge", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (args, _) in cases.items()
    }
    for name, p in procs.items():
        out, err = p.communicate(timeout=180)
        expected = cases[name][1]
        assert p.returncode == 2, f"{name}: exit {p.returncode}\n{err}"
        assert "Traceback" not in err, f"{name}:\n{err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nasforge: error: "), f"{name}: {err!r}"
        assert expected in lines[0], f"{name}: {lines[0]!r} does not name {expected!r}"
    assert not list(tmp_path.glob("out*/checkpoint.pt"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "DARTS_RNN_V2", "--layers", "3", "--out", "x"], "--layers applies to cell networks"),
        (["train", "DARTS_V2", "--epochs", "0", "--out", "x"], "'epochs' must be >= 1"),
        (["train", "DARTS_V2", "--device", "tpu", "--out", "x"], "unknown device"),
    ],
)
def test_bad_flags(args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    assert expected in capsys.readouterr().err


def test_eval_of_a_non_training_checkpoint(tmp_path, capsys):
    import torch

    p = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, p)
    assert cli.main(["eval", str(p)]) == 2
    assert "not a nasforge training checkpoint" in capsys.readouterr().err
