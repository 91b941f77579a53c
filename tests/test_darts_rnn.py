"""DARTS recurrent-cell search: mixed cell (against the code's formula, α gradient vs finite
differences, recomputation), derivation, a tiny end-to-end search, exact resume, errors,
PTB, the CLI with `nasforge train`, second order (runs; matches the exact unrolled gradient)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nasforge.arch import RecurrentArch, load_arch
from nasforge.errors import CheckpointError, ConfigError
from nasforge.search import get_method, resolve_method_config
from nasforge.search.darts_rnn import DartsRNNConfig, DartsRNNSearch, alpha_entropy, run_darts_rnn
from nasforge.spaces.rnn_supernet import ACTIVATION_FNS, RNN_PRIMITIVES, MixedRecurrentCell, derive_recurrent, edge_index, num_edges
from nasforge.utils.io import load_checkpoint, read_jsonl


@pytest.fixture(autouse=True)
def _restore_deterministic_mode():
    """``--deterministic`` switches a process-wide torch flag: put it back after each test."""
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


NO_DROPOUT = {"dropout": 0.0, "dropouth": 0.0, "dropoutx": 0.0, "dropouti": 0.0, "dropoute": 0.0}


def write_corpus(folder: Path, lines=(100, 30, 10), vocab: int = 8, seed: int = 0) -> Path:
    """Sentences of consecutive words ``w_s w_{s+1} ...``: easy to predict, so the loss falls."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "valid", "test"), lines):
        text = []
        for _ in range(n):
            s, k = rng.randrange(vocab), rng.randrange(10, 20)
            text.append(" ".join(words[(s + t) % vocab] for t in range(k)))
        (folder / f"{split}.txt").write_text("\n".join(text) + "\n")
    return folder


def tiny_args(data: Path, out: Path, tmp: Path, **over) -> SimpleNamespace:
    cfg = {"emsize": 16, "nhid": 16, "batch_size": 8, "eval_batch_size": 4, "bptt": 8, **NO_DROPOUT}
    cfg.update(over.pop("cfg", {}))
    yaml_path = tmp / f"cfg-{out.name}.yaml"
    yaml_path.write_text(json.dumps(cfg))  # JSON is YAML
    base = dict(data=str(data), data_dir=None, out=str(out), config=str(yaml_path), epochs=2, batch_size=None, seed=0,
                device="cpu", resume=False, deterministic=True, no_progress=True, order=1, max_steps=None)
    base.update(over)
    return SimpleNamespace(**base)


def run_rnn_search(a: SimpleNamespace) -> int:
    """What ``nasforge search darts --space rnn`` does with these flags (config, then the registered run)."""
    yaml_path = a.config
    if yaml_path is None and a.resume and (Path(a.out) / "config.yaml").is_file():
        yaml_path = Path(a.out) / "config.yaml"
    keys = ("data", "data_dir", "epochs", "batch_size", "seed", "device", "deterministic", "order", "max_steps")
    cfg = resolve_method_config(get_method("darts"), space="rnn", yaml_path=yaml_path, overrides={k: getattr(a, k) for k in keys})
    run_darts_rnn(cfg, Path(a.out), resume=a.resume, progress=not a.no_progress)
    return 0


# ---------------------------------------------------------------------------- the mixed cell
def code_cell_reference(cell: MixedRecurrentCell, x, h_prev, weights):
    """One step of DARTS ``DARTSCellSearch.cell`` as written in the code (no dropout masks)."""
    bn = lambda v: F.batch_norm(v, None, None, training=True)  # noqa: E731  (batch statistics, no affine)
    c0, h0 = torch.split(torch.cat([x, h_prev], -1).mm(cell._W0), cell.nhid, dim=-1)
    s0 = bn(h_prev + c0.sigmoid() * (h0.tanh() - h_prev))
    states, offset = s0.unsqueeze(0), 0
    for i in range(cell.steps):
        ch = states.view(-1, cell.nhid).mm(cell._Ws[i]).view(i + 1, -1, 2 * cell.nhid)
        c, h = torch.split(ch, cell.nhid, dim=-1)
        c = c.sigmoid()
        s = torch.zeros_like(s0)
        for k, name in enumerate(RNN_PRIMITIVES):
            if name == "none":
                continue
            unweighted = states + c * (ACTIVATION_FNS[name](h) - states)
            s = s + torch.sum(weights[offset : offset + i + 1, k].view(-1, 1, 1) * unweighted, dim=0)
        states = torch.cat([states, bn(s).unsqueeze(0)], 0)
        offset += i + 1
    return states[1:].mean(0)


def tiny_cell(steps: int = 8) -> MixedRecurrentCell:
    torch.manual_seed(0)
    cell = MixedRecurrentCell(3, 4, dropouth=0.0, dropoutx=0.0, steps=steps, init_range=0.5).double()
    cell.train()
    return cell


def test_fused_mixing_equals_the_code_formula():
    cell = tiny_cell()
    x = torch.randn(2, 5, 3, dtype=torch.double)
    h0 = torch.randn(5, 4, dtype=torch.double)
    weights = F.softmax(torch.randn(num_edges(8), 5, dtype=torch.double), -1)
    out, h_last = cell(x, h0, weights)
    h = h0
    for t in range(2):
        h = code_cell_reference(cell, x[t], h, weights)
        torch.testing.assert_close(out[t], h, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_last, h)


def test_recompute_gives_the_same_gradients():
    cell = tiny_cell(steps=4)
    x = torch.randn(3, 5, 3, dtype=torch.double)
    h0 = torch.randn(5, 4, dtype=torch.double)
    alpha = torch.randn(num_edges(4), 5, dtype=torch.double, requires_grad=True)
    grads = []
    for recompute in (False, True):
        cell.recompute = recompute
        out, _ = cell(x, h0, F.softmax(alpha, -1))
        grads.append(torch.autograd.grad(out.pow(2).sum(), [alpha, cell._W0, cell._Ws[2]]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_alpha_gradient_matches_finite_differences():
    cell = tiny_cell(steps=4)
    x = torch.randn(3, 5, 3, dtype=torch.double)
    h0 = torch.randn(5, 4, dtype=torch.double)
    r = torch.randn(3, 5, 4, dtype=torch.double)
    alpha = (0.5 * torch.randn(num_edges(4), 5, dtype=torch.double)).requires_grad_(True)

    def loss(a):
        out, _ = cell(x, h0, F.softmax(a, -1))
        return (out * r).sum()

    (grad,) = torch.autograd.grad(loss(alpha), alpha)
    eps = 1e-6
    fd = torch.zeros_like(alpha)
    with torch.no_grad():
        for idx in range(alpha.numel()):
            a = alpha.detach().clone().view(-1)
            a[idx] += eps
            lp = loss(a.view_as(alpha))
            a[idx] -= 2 * eps
            ln = loss(a.view_as(alpha))
            fd.view(-1)[idx] = (lp - ln) / (2 * eps)
    assert grad.abs().max() > 1e-4  # a real signal, not zeros
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_derivation_top1_per_node_skips_none():
    w = torch.full((num_edges(8), 5), 0.01)
    # node 1: `none` is largest but excluded -> sigmoid from node 0
    w[edge_index(1, 0)] = torch.tensor([0.9, 0.0, 0.0, 0.1, 0.0])
    # node 3: input 2 has the strongest non-none op (relu)
    w[edge_index(3, 0), 1] = 0.3
    w[edge_index(3, 2), 2] = 0.5
    w[edge_index(3, 2), 0] = 0.99
    arch = derive_recurrent(w)
    assert arch.nodes[0] == ("sigmoid", 0)
    assert arch.nodes[2] == ("relu", 2)
    assert arch.concat == list(range(1, 9))
    arch.validate()
    # ties go to the first input and the first op, as in the code
    assert derive_recurrent(torch.zeros(num_edges(8), 5)).nodes == [("tanh", 0)] * 8
    assert abs(alpha_entropy(torch.zeros(36, 5)) - math.log(5.0)) < 1e-12


# ---------------------------------------------------------------------------- the search
def test_tiny_search_learns_and_writes_a_trainable_arch(tmp_path):
    data = write_corpus(tmp_path / "corpus", lines=(80, 30, 10))
    out = tmp_path / "run"
    assert run_rnn_search(tiny_args(data, out, tmp_path)) == 0
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in recs] == [1, 2]
    assert recs[1]["train_loss"] < recs[0]["train_loss"]
    assert recs[1]["valid_loss"] < recs[0]["valid_loss"]
    for r in recs:
        probs = torch.tensor(r["alpha_softmax"])
        assert probs.shape == (36, 5)
        torch.testing.assert_close(probs.sum(-1), torch.ones(36, dtype=probs.dtype))
        assert 0 < r["alpha_entropy"] < 1.61
        RecurrentArch.from_dict(r["arch"]).validate()
    assert recs[1]["alpha_entropy"] < recs[0]["alpha_entropy"] + 1e-6  # α moves away from uniform

    arch = load_arch(out / "arch.json")
    assert arch.kind == "recurrent" and len(arch.nodes) == 8 and arch.concat == list(range(1, 9))
    assert arch.to_dict()["nodes"] == recs[-1]["arch"]["nodes"]
    ck = load_checkpoint(out / "checkpoint.pt")  # weights_only=True
    assert ck["epoch"] == 2 and ck["alpha"].shape == (36, 5)
    assert {"model", "optimizer", "arch_optimizer", "rng"} <= set(ck)

    from nasforge.nets import RNNModel

    model = RNNModel(arch, ntoken=9, ninp=16, nhid=16, nhidlast=16)
    log_prob, hidden = model(torch.randint(0, 9, (5, 3)), model.init_hidden(3))
    assert log_prob.shape == (5, 3, 9) and torch.isfinite(log_prob).all()


def test_resume_gives_the_same_alpha_as_an_unbroken_run(tmp_path):
    data = write_corpus(tmp_path / "corpus", lines=(40, 20, 5))
    straight = tmp_path / "straight"
    run_rnn_search(tiny_args(data, straight, tmp_path, epochs=2, max_steps=4))
    broken = tmp_path / "broken"
    run_rnn_search(tiny_args(data, broken, tmp_path, epochs=1, max_steps=4))
    # resume: config.yaml of the run (no --config), more epochs from the flag
    run_rnn_search(tiny_args(data, broken, tmp_path, epochs=2, max_steps=4, resume=True, config=None))
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(broken / "checkpoint.pt")
    assert b["epoch"] == 2
    assert torch.equal(a["alpha"], b["alpha"])
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra, rb = read_jsonl(straight / "metrics.jsonl"), read_jsonl(broken / "metrics.jsonl")
    assert len(rb) == 2
    for x, y in zip(ra, rb):
        assert {k: v for k, v in x.items() if k != "seconds"} == {k: v for k, v in y.items() if k != "seconds"}
    assert (straight / "arch.json").read_text() == (broken / "arch.json").read_text()


def test_bad_settings_are_clear_errors(tmp_path):
    data = write_corpus(tmp_path / "corpus", lines=(40, 20, 5))
    with pytest.raises(ConfigError, match="word corpus"):
        run_rnn_search(tiny_args("cifar10", tmp_path / "x", tmp_path))
    with pytest.raises(ConfigError, match="emsize"):
        run_rnn_search(tiny_args(data, tmp_path / "y", tmp_path, cfg={"nhid": 12}))
    with pytest.raises(ConfigError, match="unknown config key"):
        run_rnn_search(tiny_args(data, tmp_path / "z", tmp_path, cfg={"dropout_h": 0.1}))
    out = tmp_path / "once"
    run_rnn_search(tiny_args(data, out, tmp_path, epochs=1, max_steps=1))
    with pytest.raises(ConfigError, match="--resume"):
        run_rnn_search(tiny_args(data, out, tmp_path, epochs=1, max_steps=1))
    other = write_corpus(tmp_path / "other", lines=(40, 20, 5), vocab=5)
    with pytest.raises(CheckpointError, match="config differs .*data="):  # the run header names the change
        run_rnn_search(tiny_args(other, out, tmp_path, epochs=2, max_steps=1, resume=True, config=None))


def test_ptb_few_steps_lower_the_loss(shared_data):
    from nasforge.data import load_corpus

    corpus = load_corpus("ptb", shared_data / "ptb")
    # lr 5 rather than the paper's 20: at this toy size (32 units, 30 steps) lr 20 is chaotic and the
    # valid-loss change depends on the thread count (1 thread: -0.01 .. +0.2); lr 5 fell 0.27-0.37
    # for seeds 0-2 with 1 and 2 threads.
    cfg = DartsRNNConfig(emsize=32, nhid=32, batch_size=8, bptt=10, epochs=1, max_steps=30, eval_max_batches=4, seed=0, lr=5.0)
    torch.manual_seed(cfg.seed)
    search = DartsRNNSearch(cfg, corpus, "cpu")
    before = search.evaluate()
    alpha0 = search.alpha.detach().clone()
    arch, history = search.run(None, progress=False)
    assert history[0]["steps"] == 30
    assert history[0]["valid_loss"] < before - 0.2, (before, history[0]["valid_loss"])
    assert not torch.equal(alpha0, search.alpha.detach())
    arch.validate()


def test_second_order_step_runs(tmp_path):
    pytest.importorskip("nasforge.search.architect")
    data = write_corpus(tmp_path / "corpus", lines=(40, 20, 5))
    out = tmp_path / "second"
    assert run_rnn_search(tiny_args(data, out, tmp_path, epochs=1, max_steps=2, order=2)) == 0
    rec = read_jsonl(out / "metrics.jsonl")[0]
    assert rec["steps"] == 2
    load_arch(out / "arch.json").validate()


def test_cli_search_then_train_the_derived_cell(tmp_path, capsys):
    from nasforge.cli import main

    data = write_corpus(tmp_path / "corpus", lines=(40, 20, 10))
    out = tmp_path / "cli"
    tiny = ["--emsize", "16", "--nhid", "16", "--batch-size", "8", "--bptt", "8", "--eval-batch-size", "4"]
    rc = main(["search", "darts", "--space", "rnn", "--data", str(data), "--out", str(out), "--epochs", "1",
               "--max-steps", "2", "--device", "cpu", "--no-progress", *tiny])
    assert rc == 0
    assert len(read_jsonl(out / "metrics.jsonl")) == 1
    arch = load_arch(out / "arch.json")
    assert arch.kind == "recurrent"
    # the derived cell trains as a language model with `nasforge train`
    cfg = tmp_path / "lm.yaml"
    cfg.write_text("emsize: 16\nnhid: 16\nbptt: 8\neval_batch_size: 4\ntest_batch_size: 4\n")
    rc = main(["train", str(out / "arch.json"), "--data", str(data), "--out", str(tmp_path / "lm"), "--epochs", "1",
               "--batch-size", "8", "--config", str(cfg), "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert read_jsonl(tmp_path / "lm" / "metrics.jsonl")
    # an image data set for the rnn space is a one-line error (exit 2)
    capsys.readouterr()
    rc = main(["search", "darts", "--space", "rnn", "--data", "cifar10", "--out", str(tmp_path / "bad"), "--no-progress"])
    assert rc == 2
    assert "word corpus" in capsys.readouterr().err


def test_second_order_alpha_gradient_matches_exact_unrolled_gradient(tmp_path):
    """The Architect's unrolled gradient (finite-difference HVP) on the RNN supernet equals
    d/dα L_val(w − ξ(∇w L_train(w, α) + wd·w), α) from double backward (no clipping, no dropout)."""
    from torch.func import functional_call

    from nasforge.data import get_batch, load_corpus

    data = write_corpus(tmp_path / "corpus", lines=(40, 20, 5))
    cfg = DartsRNNConfig(emsize=6, nhid=6, steps=3, batch_size=4, bptt=5, order=2, clip=1e9, lr=0.5, wdecay=1e-3, **NO_DROPOUT)
    torch.manual_seed(0)
    search = DartsRNNSearch(cfg, load_corpus(str(data)), "cpu")
    search.model.double()
    search.alpha.data = (0.5 * torch.randn(num_edges(3), 5)).double()
    search.model.train()
    x, y = get_batch(search.train_data, 0, cfg.bptt)
    xv, yv = get_batch(search.search_data, 0, cfg.bptt)
    h = search.model.init_hidden(cfg.batch_size) + 0.1
    _, approx = search.architect.second_order_grad(("train", x, y, h), ("valid", xv, yv, h))

    names = [n for n, _ in search.model.named_parameters()]
    w = [p.detach().clone().requires_grad_(True) for _, p in search.model.named_parameters()]
    a = search.alpha.detach().clone().requires_grad_(True)

    def loss(params, xs, ys):
        log_prob, _ = functional_call(search.model, dict(zip(names, params)), (xs, h, F.softmax(a, -1)))
        return F.nll_loss(log_prob.reshape(-1, log_prob.size(-1)), ys.reshape(-1))

    g = torch.autograd.grad(loss(w, x, y), w, create_graph=True)
    w_unrolled = [p - cfg.lr * (gi + cfg.wdecay * p) for p, gi in zip(w, g)]
    (exact,) = torch.autograd.grad(loss(w_unrolled, xv, yv), [a])
    rel = (approx[0] - exact).norm() / exact.norm()
    (first,) = torch.autograd.grad(loss([p.detach() for p in w], xv, yv), [a])  # first order: ∇α L_val(w, α)
    assert exact.norm() > 1e-6 and rel < 1e-2, float(rel)
    assert (first - exact).norm() / exact.norm() > 0.1  # the unrolled term matters here
