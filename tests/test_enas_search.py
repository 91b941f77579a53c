"""ENAS search runs end to end: CLI, metrics, arch.json, exact resume after SIGKILL, and
the derived micro cell trains with ``nasforge train``."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasforge import cli
from nasforge.arch import load_arch
from nasforge.search.enas import ENAS, EnasConfig, cosine_restart_lr
from nasforge.utils.io import load_checkpoint, read_jsonl

TINY_MACRO = ["--space", "macro", "--data", "digits", "--layers", "3", "--channels", "4", "--batch-size", "32",
              "--controller-steps", "3", "--max-steps", "4", "--limit", "200", "--derive-samples", "3", "--eval-batches", "1",
              "--device", "cpu", "--no-progress"]


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def test_cosine_restarts_follow_t0_tmul():
    lrs = [cosine_restart_lr(e, 0.05, 5e-4, 10, 2) for e in range(31)]
    assert lrs[0] == pytest.approx(0.05) and lrs[10] == pytest.approx(0.05) and lrs[30] == pytest.approx(0.05)
    assert lrs[9] < 0.01 and lrs[29] < 0.01 and lrs[20] == pytest.approx(0.5 * (0.05 + 5e-4))


def test_macro_search_cli_writes_arch_metrics_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = run_cli("search", "enas", *TINY_MACRO, "--epochs", "2", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert arch.kind == "macro" and arch.num_layers == 3 and arch.meta["method"] == "enas"
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == [1, 2]
    for key in ("reward", "baseline", "entropy", "controller_loss", "best_arch", "best_reward", "train_loss", "valid_acc", "lr"):
        assert key in recs[0], key
    assert load_arch.__module__  # arch.json validated on load
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["epoch"] == 2 and ck["rl"]["steps"] == 6
    # refusing to overwrite, and --resume of a finished run is a no-op that keeps the files
    rc, _, err = run_cli("search", "enas", *TINY_MACRO, "--epochs", "2", "--out", str(out))
    assert rc == 2 and "already holds" in err


def test_bad_space_and_image_space_on_text_are_one_line_errors(tmp_path):
    rc, _, err = run_cli("search", "enas", "--space", "cells", "--out", str(tmp_path / "x"), "--no-progress")
    assert rc == 2 and "--space" in err and "invalid choice" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _strip(recs):
    return [{k: v for k, v in r.items() if k != "time"} for r in recs]


def test_resume_after_sigkill_continues_identically(tmp_path):
    args = [*TINY_MACRO, "--epochs", "4", "--deterministic", "--max-steps", "6", "--controller-steps", "6"]
    ref = tmp_path / "ref"
    rc, _, err = run_cli("search", "enas", *args, "--out", str(ref))
    assert rc == 0, err

    run = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # same kernels as this process
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "search", "enas", *args, "--out", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoint.pt").exists():
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if killed:
        ck = load_checkpoint(run / "checkpoint.pt")
        assert ck["epoch"] < 4
    rc, _, err = run_cli("search", "enas", *args, "--out", str(run), "--resume")
    assert rc == 0, err
    assert _strip(read_jsonl(run / "metrics.jsonl")) == _strip(read_jsonl(ref / "metrics.jsonl"))
    assert (run / "arch.json").read_text() == (ref / "arch.json").read_text()
    a, b = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt")
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k
    for k in a["rl"]["controller"]:
        assert torch.equal(a["rl"]["controller"][k], b["rl"]["controller"][k]), k
    assert a["rl"]["baseline"] == b["rl"]["baseline"]


def test_micro_search_then_nasforge_train_on_the_decoded_cell(tmp_path):
    out = tmp_path / "search"
    rc, _, err = run_cli("search", "enas", "--space", "micro", "--data", "digits", "--layers", "1", "--channels", "4",
                         "--batch-size", "32", "--controller-steps", "2", "--max-steps", "2", "--limit", "200",
                         "--derive-samples", "2", "--eval-batches", "1", "--epochs", "1", "--device", "cpu",
                         "--no-progress", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert arch.kind == "cell" and len(arch.normal.nodes) == 5 and len(arch.reduce.nodes) == 5
    cfg = tmp_path / "small.yaml"
    cfg.write_text("layers: 3\nchannels: 4\nbatch_size: 64\nlimit: 200\nauxiliary: false\n")
    rc, stdout, err = run_cli("train", str(out / "arch.json"), "--data", "digits", "--config", str(cfg), "--epochs", "1",
                              "--device", "cpu", "--no-progress", "--out", str(tmp_path / "train"))
    assert rc == 0, err
    assert "test accuracy" in stdout
    assert read_jsonl(tmp_path / "train" / "metrics.jsonl")[0]["epoch"] == 1


def test_shared_weight_training_lowers_the_loss_of_sampled_children():
    # a random child per minibatch: each (layer, op) branch gets ~1/6 of the steps, so
    # learning is slower than for one fixed network, but it is steady
    cfg = EnasConfig(space="macro", data="digits", layers=3, channels=8, batch_size=32, epochs=6, controller_steps=2,
                     limit=800, eval_batches=4, derive_samples=2, device="cpu")
    s = ENAS(cfg, None, progress=False)
    s.run()
    losses = [r["train_loss"] for r in s.history]
    assert losses[-1] < losses[0] - 0.05
    assert max(r["valid_acc"] for r in s.history[-2:]) > 0.2  # 10 classes: above chance


def test_rnn_search_then_nasforge_train_on_the_derived_recurrent_cell(tmp_path):
    """A tiny word corpus folder: ENAS RNN search, then the LM trainer on its arch.json."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = __import__("random").Random(0)
    words = [f"w{i}" for i in range(30)]
    for split, n in (("train", 400), ("valid", 80), ("test", 80)):
        lines = [" ".join(rng.choice(words[: 5 + (k % 25)]) for _ in range(8)) for k in range(n)]
        (corpus / f"{split}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "search"
    rc, _, err = run_cli("search", "enas", "--space", "rnn", "--data", str(corpus), "--layers", "5", "--channels", "16",
                         "--batch-size", "8", "--bptt", "10", "--controller-steps", "2", "--max-steps", "5", "--epochs", "1",
                         "--derive-samples", "2", "--eval-batches", "1", "--device", "cpu", "--no-progress", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert arch.kind == "recurrent" and len(arch.nodes) == 4
    cfg = tmp_path / "lm.yaml"
    cfg.write_text("emsize: 16\nnhid: 16\nbatch_size: 8\neval_batch_size: 4\ntest_batch_size: 4\nbptt: 10\n")
    rc, stdout, err = run_cli("train", str(out / "arch.json"), "--data", str(corpus), "--config", str(cfg), "--epochs", "1",
                              "--device", "cpu", "--no-progress", "--out", str(tmp_path / "lm"))
    assert rc == 0, err
    assert "perplexity" in stdout.lower()


def test_load_search_gives_the_trained_and_the_initial_controller_and_weights(tmp_path):
    """``load_search`` rebuilds a finished micro search from its run folder: the checkpoint's
    shared weights and controller (``initial=False``), or the same seed's initial ones."""
    import nasforge as nf
    from nasforge.errors import CheckpointError
    from nasforge.search.enas import load_search

    out = tmp_path / "run"
    kw = dict(space="micro", layers=1, channels=4, batch_size=32, controller_steps=3, max_steps=3, limit=200,
              derive_samples=2, eval_batches=1, device="cpu", controller_lr=0.05)
    nf.search("enas", data="digits", out=out, epochs=2, seed=3, **kw)
    ck = load_checkpoint(out / "checkpoint.pt")
    trained = load_search(out)
    initial = load_search(out, initial=True)
    fresh = ENAS(EnasConfig(data="digits", epochs=2, seed=3, **kw))  # a new search with the same seed: its start
    for name, p in trained.controller.state_dict().items():
        assert torch.equal(p, ck["rl"]["controller"][name])
        assert torch.equal(initial.controller.state_dict()[name], fresh.controller.state_dict()[name])
    assert any(not torch.equal(p, initial.controller.state_dict()[n]) for n, p in trained.controller.state_dict().items())
    assert all(torch.equal(p, ck["net"][n]) for n, p in trained.net.state_dict().items())
    assert trained.epoch == 2 and trained.rl.steps == 6 and initial.epoch == 0 and initial.rl.steps == 0
    # a child's accuracy on whole splits: a fraction of correct images, the same on a second call
    arch = trained.decode(trained.controller.sample())
    acc = trained.accuracy(arch, "test")
    assert 0.0 <= acc <= 1.0 and acc * len(trained.sp.test_pair) == pytest.approx(round(acc * len(trained.sp.test_pair)))
    assert trained.accuracy(arch, "test") == acc and 0.0 <= trained.accuracy(arch) <= 1.0
    assert trained.accuracy(arch, "test", images=10) * 10 == pytest.approx(round(trained.accuracy(arch, "test", images=10) * 10))
    nf.search("darts", data="digits", space="cell", out=tmp_path / "d", epochs=1, layers=1, channels=4, limit=64, batch_size=32)
    with pytest.raises(CheckpointError, match="not the checkpoint of an ENAS search"):
        load_search(tmp_path / "d")
