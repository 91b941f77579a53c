"""The run-folder contract of every command that writes a run (``nasforge.utils.rundir``).

For each search method/space and for ``train`` (CNN and LM), on tiny settings:

(a) a folder that holds a run is refused without ``--resume``; ``--overwrite`` replaces it;
(b) a second process on a live run is refused with one line naming the holder's pid;
(c) a run stopped right after its first checkpoint (``NASFORGE_FAULT_STOP_AFTER_SAVE=1``:
    the process SIGSTOPs itself, no timing), SIGKILLed, then ``--resume``d equals an
    uninterrupted run (arch.json and metrics records without timing keys);
(d) an unwritable ``--out`` is one line and exit 2.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasforge.cli import main
from nasforge.utils.io import read_jsonl
from nasforge.utils.rundir import FAULT_ENV

COMMON = ["--seed", "0", "--device", "cpu", "--no-progress", "--deterministic"]
TIMING = ("seconds", "time")


def _corpus(folder: Path) -> Path:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(8)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 60), ("valid", 30), ("test", 10)):
        lines = []
        for _ in range(n):
            s, k = rng.randrange(8), rng.randrange(8, 14)
            lines.append(" ".join(words[(s + t) % 8] for t in range(k)))
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def _case(name: str, tmp: Path) -> tuple[list[str], str]:
    """(argv without --out and budget, budget flag)."""
    img = ["--data", "digits", "--limit", "64", "--batch-size", "32"]
    cell = [*img, "--layers", "3", "--channels", "4", "--nodes", "2", "--max-steps", "2", "--eval-limit", "32"]
    enas = ["--controller-steps", "2", "--max-steps", "2", "--derive-samples", "2", "--eval-batches", "1"]
    if name == "darts-cell":
        return ["search", "darts", *cell], "--epochs"
    if name == "snas-cell":
        return ["search", "snas", *cell, "--preset", "moderate"], "--epochs"
    if name == "darts-rnn":
        return ["search", "darts", "--space", "rnn", "--data", str(_corpus(tmp / "corpus")), "--emsize", "16", "--nhid", "16",
                "--batch-size", "8", "--bptt", "8", "--eval-batch-size", "4", "--max-steps", "2"], "--epochs"
    if name == "enas-macro":
        return ["search", "enas", "--space", "macro", *img, "--layers", "3", "--channels", "4", *enas], "--epochs"
    if name == "enas-micro":
        return ["search", "enas", "--space", "micro", *img, "--layers", "1", "--channels", "4", *enas], "--epochs"
    if name == "enas-rnn":
        return ["search", "enas", "--space", "rnn", "--data", str(_corpus(tmp / "corpus")), "--layers", "3", "--channels", "8",
                "--batch-size", "8", "--bptt", "8", *enas], "--epochs"
    if name == "blockqnn-nsc":
        cfg = tmp / "bq.yaml"
        cfg.write_text("executor: inline\nevaluator: nasforge.runners.faults:synthetic\nmax_layers: 4\nblocks_per_iteration: 2\n")
        return ["search", "blockqnn", "--space", "nsc", "--config", str(cfg)], "--trials"
    if name == "random-nsc":
        cfg = tmp / "rs.yaml"
        cfg.write_text("executor: inline\nevaluator: nasforge.runners.faults:synthetic\nmax_layers: 4\n")
        return ["search", "random", "--space", "nsc", "--config", str(cfg)], "--trials"
    if name.endswith("-nb201"):
        data = os.environ.get("NASFORGE_DATA")
        if not data or not (Path(data) / "nas-bench-201").exists():
            pytest.skip("the NAS-Bench-201 table is not available ($NASFORGE_DATA/nas-bench-201)")
        method = name.split("-")[0]
        if method in ("darts", "snas"):  # the NB201 supernet on digits; the derived cell is looked up in the table
            return ["search", method, "--space", "nb201", *img, "--channels", "4", "--max-steps", "2", "--eval-limit", "32"], "--epochs"
        return ["search", method, "--space", "nb201"], "--trials"
    if name == "train-cnn":
        cfg = tmp / "cnn.yaml"
        cfg.write_text("layers: 3\nchannels: 4\nbatch_size: 32\nlimit: 64\nauxiliary: false\n")
        return ["train", "DARTS_V2", "--data", "digits", "--config", str(cfg)], "--epochs"
    if name == "train-lm":
        cfg = tmp / "lm.yaml"
        cfg.write_text("emsize: 16\nnhid: 16\nbatch_size: 8\nbptt: 8\neval_batch_size: 4\ntest_batch_size: 4\n")
        return ["train", "DARTS_RNN_V2", "--data", str(_corpus(tmp / "corpus")), "--config", str(cfg)], "--epochs"
    raise AssertionError(name)


CASES = ["darts-cell", "darts-nb201", "darts-rnn", "snas-cell", "snas-nb201", "enas-macro", "enas-micro", "enas-rnn",
         "enas-nb201", "blockqnn-nsc", "blockqnn-nb201", "random-nsc", "random-nb201", "train-cnn", "train-lm"]


def test_every_registered_method_and_space_has_a_contract_case():
    """The cases are the registry's (method, space) pairs, as timm tests every registered model."""
    from nasforge.search import methods

    registered = {f"{name}-{space}" for name, spec in methods().items() for space in spec.spaces}
    assert registered == {c for c in CASES if not c.startswith("train-")}
BUDGET = {"--epochs": ("2", "1"), "--trials": ("3", "2")}


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs use one thread, as the subprocesses do (same floating-point sums)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _main(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nasforge: error:") and "Traceback" not in err, err
    return lines[0]


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(path)]


@pytest.mark.parametrize("name", CASES)
def test_run_folder_contract(name, tmp_path, capsys):
    argv, flag = _case(name, tmp_path)
    full, short = BUDGET[flag]
    ref, run = tmp_path / "ref", tmp_path / "run"

    # the uninterrupted reference run
    rc, err = _main(capsys, [*argv, *COMMON, flag, full, "--out", str(ref)])
    assert rc == 0, err
    # (a) a folder holding a run is refused without --resume, nothing in it changes
    before = (ref / "metrics.jsonl").read_bytes()
    rc, err = _main(capsys, [*argv, *COMMON, flag, full, "--out", str(ref)])
    assert rc == 2 and "--overwrite" in _one_line_error(err) and str(ref) in err
    assert (ref / "metrics.jsonl").read_bytes() == before

    # (b) + (c): a run that stops itself right after its first checkpoint, holding the lock
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", FAULT_ENV: "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "victim.log"
    with open(log, "wb") as f:
        victim = subprocess.Popen([sys.executable, "-m", "nasforge", *argv, *COMMON, flag, full, "--out", str(run)],
                                  env=env, stdout=f, stderr=subprocess.STDOUT)
    try:
        _, status = os.waitpid(victim.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), log.read_text()
        rc, err = _main(capsys, [*argv, *COMMON, flag, full, "--out", str(run)])
        line = _one_line_error(err)
        assert rc == 2 and f"pid {victim.pid}" in line and str(run) in line
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    if (run / "checkpoint.pt").exists():
        assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    rc, err = _main(capsys, [*argv, *COMMON, flag, full, "--out", str(run), "--resume"])
    assert rc == 0, err
    assert _records(run / "metrics.jsonl") == _records(ref / "metrics.jsonl")
    assert len(_records(ref / "metrics.jsonl")) == int(full)
    assert json.loads((run / "arch.json").read_text()) == json.loads((ref / "arch.json").read_text())

    # (a) --overwrite replaces the run (here with a shorter budget)
    rc, err = _main(capsys, [*argv, *COMMON, flag, short, "--out", str(run), "--overwrite"])
    assert rc == 0, err
    assert len(read_jsonl(run / "metrics.jsonl")) == int(short)


@pytest.mark.parametrize("name", CASES)
def test_unwritable_run_folder_is_one_line(name, tmp_path, capsys):
    argv, flag = _case(name, tmp_path)
    plain = tmp_path / "a_file"
    plain.write_text("not a folder\n")
    bad = [plain / "run", Path("/proc/nasforge-test/run")]
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        bad.append(ro)
    for out in bad:
        rc, err = _main(capsys, [*argv, *COMMON, flag, BUDGET[flag][1], "--out", str(out)])
        assert rc == 2, err
        assert str(out) in _one_line_error(err)


def test_lock_is_released_and_resume_checks_the_header(tmp_path, capsys):
    """After a run ends its folder can be resumed; a resume with other settings says what differs."""
    argv, flag = _case("darts-cell", tmp_path)
    out = tmp_path / "run"
    assert _main(capsys, [*argv, *COMMON, flag, "1", "--out", str(out)])[0] == 0
    rc, err = _main(capsys, [*argv, "--channels", "6", *COMMON, flag, "2", "--out", str(out), "--resume"])  # last flag wins
    assert rc == 2 and "channels=4 there but 6 here" in _one_line_error(err)
    rc, err = _main(capsys, [*argv, *COMMON, flag, "2", "--out", str(out), "--resume"])
    assert rc == 0, err
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
