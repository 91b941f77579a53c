"""Training a recurrent cell as a word-level language model: DARTS's PTB evaluation.

DARTS (Liu et al., ICLR 2019) Sec. 3.3 / App. A.2 and the official ``rnn/train.py``
(quark0/darts), itself AWD-LSTM's recipe (Merity et al., 2018):

- truncated BPTT with a random length per step: ``bptt`` (35) with probability 0.95,
  else ``bptt / 2``, then ``seq_len = max(5, int(N(that, 5)))`` capped at
  ``bptt + max_seq_len_delta`` (20); the learning rate of that step is scaled by
  ``seq_len / bptt``; hidden states carry over between steps (detached);
- loss = NLL + ``beta`` × temporal activation regularisation (mean squared difference of
  consecutive cell outputs, β = 1e-3) [+ ``alpha`` × activation regularisation, 0];
- SGD lr 20, weight decay 8e-7, gradient-norm clip 0.25, batch 64; after an epoch whose
  validation loss exceeds the best of all but the last ``nonmono`` = 5 epochs, switch to
  averaged SGD (``ASGD(t0=0, lambd=0)``, the same lr); under ASGD the validation loss is
  measured with the averaged weights;
- validation with batch 10, test with batch 1, on the best-validation weights (the
  averaged ones once ASGD runs); perplexity = exp(mean NLL per token).

Differences from the official code: one sequence length is drawn with our own
``torch.Generator`` (saved in the checkpoint) rather than NumPy's global RNG; no
``small_batch_size`` gradient accumulation (the whole batch is one step); the mean loss
divides by the number of predicted tokens (the code divides by the number of rows, one
more); a NaN loss stops with a :class:`~nasforge.errors.TrainingError` instead of
silently reloading the last saved model.
"""

from __future__ import annotations

import logging

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.data import Corpus, batchify, get_batch, load_corpus
from nasforge.memory import check_training_memory, memory_check_disabled
from nasforge.data.text import CORPORA
from nasforge.errors import ArchError
from nasforge.nets import RNNModel
from nasforge.train.common import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    RESULT,
    TrainResult,
    amp_enabled,
    autocast,
    check_finite,
    run_settings,
    load_model_state,
    make_scaler,
    progress,
    read_training_checkpoint,
)
from nasforge.train.config import LMConfig
from nasforge.utils.device import resolve_device
from nasforge.utils.io import atomic_write_json
from nasforge.utils.rng import get_rng_state, seed_everything, set_rng_state
from nasforge.utils.rundir import RunDir



logger = logging.getLogger(__name__)

def ppl(loss: float) -> float:
    """Perplexity ``exp(loss)`` (inf when it overflows, nan stays nan)."""
    if math.isnan(loss):
        return loss
    return math.exp(loss) if loss < 700 else float("inf")


def build_lm(arch: Any, cfg: LMConfig, ntoken: int) -> RNNModel:
    if getattr(arch, "kind", None) != "recurrent":
        raise ArchError(f"the LM trainer needs a 'recurrent' architecture, got kind {getattr(arch, 'kind', '?')!r}")
    return RNNModel(
        arch, ntoken, cfg.emsize, cfg.nhid, cfg.nhid,
        dropout=cfg.dropout, dropouth=cfg.dropouth, dropoutx=cfg.dropoutx, dropouti=cfg.dropouti, dropoute=cfg.dropoute,
    )


def make_optimizer(model: nn.Module, cfg: LMConfig, asgd: bool) -> torch.optim.Optimizer:
    if asgd:
        return torch.optim.ASGD(model.parameters(), lr=cfg.lr, t0=0, lambd=0.0, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate_lm(model: RNNModel, source: torch.Tensor, bptt: int, batch_size: int, device: torch.device, amp: bool = False) -> float:
    """Mean NLL per token of a batchified ``source`` (``(nbatch, batch_size)``), in eval mode."""
    model.eval()
    hidden = model.init_hidden(batch_size)
    total, count = 0.0, 0
    for i in range(0, source.size(0) - 1, bptt):
        data, targets = get_batch(source, i, bptt)
        with autocast(device, amp):
            log_prob, hidden = model(data, hidden)
        total += F.nll_loss(log_prob.float().reshape(-1, log_prob.size(2)), targets.reshape(-1), reduction="sum").item()
        count += targets.numel()
    return total / max(count, 1)


def nonmono_trigger(history: list[float], val_loss: float, nonmono: int) -> bool:
    """Switch SGD -> ASGD (NT-ASGD, Merity et al. 2018; DARTS ``rnn/train.py``): more than
    ``nonmono`` earlier epochs and a loss worse than the best of all but the last ``nonmono``."""
    return len(history) > nonmono and val_loss > min(history[:-nonmono])


class averaged_weights:
    """Swap ASGD's averaged parameters (``state['ax']``) into the model for a while."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.opt = model, optimizer
        self.active = isinstance(optimizer, torch.optim.ASGD)

    def __enter__(self) -> None:
        if not self.active:
            return
        self.saved = [p.data.clone() for p in self.model.parameters()]
        for p in self.model.parameters():
            ax = self.opt.state.get(p, {}).get("ax")
            if ax is not None:
                p.data.copy_(ax)

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        for p, s in zip(self.model.parameters(), self.saved):
            p.data.copy_(s)


def train_epoch(
    model: RNNModel,
    train_data: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: "torch.amp.GradScaler",
    cfg: LMConfig,
    gen: torch.Generator,
    *,
    device: torch.device,
    amp: bool,
    epoch: int,
    run_dir: Path | None,
    show_progress: bool,
) -> float:
    """One pass over ``train_data`` with random BPTT lengths; returns mean NLL per token."""
    model.train()
    ntoken = model.ntoken
    hidden = model.init_hidden(cfg.batch_size)
    total, count, step, i = 0.0, 0, 0, 0
    bar = progress(None, total=max(1, (train_data.size(0) - 2) // cfg.bptt), desc=f"epoch {epoch}/{cfg.epochs}", enabled=show_progress)
    while i < train_data.size(0) - 1 - 1:
        bptt = cfg.bptt if torch.rand((), generator=gen).item() < 0.95 else cfg.bptt / 2.0
        seq_len = max(5, int(bptt + 5.0 * torch.randn((), generator=gen).item()))
        seq_len = min(seq_len, cfg.bptt + cfg.max_seq_len_delta)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.param_groups[0]["lr"] = lr * seq_len / cfg.bptt
        data, targets = get_batch(train_data, i, cfg.bptt, seq_len)
        hidden = [h.detach() for h in hidden]
        optimizer.zero_grad(set_to_none=True)
        step += 1
        with autocast(device, amp):
            log_prob, hidden, rnn_hs, dropped_hs = model(data, hidden, return_h=True)
            raw_loss = F.nll_loss(log_prob.float().reshape(-1, ntoken), targets.reshape(-1))
            loss = raw_loss
            if cfg.alpha > 0:
                loss = loss + cfg.alpha * dropped_hs[-1].float().pow(2).mean()
            if cfg.beta > 0 and rnn_hs[-1].size(0) > 1:
                h = rnn_hs[-1].float()
                loss = loss + cfg.beta * (h[1:] - h[:-1]).pow(2).mean()
        value = check_finite(raw_loss.detach(), epoch, step, run_dir)
        check_finite(loss.detach(), epoch, step, run_dir)
        scaler.scale(loss).backward()
        if cfg.clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.param_groups[0]["lr"] = lr
        total += value * targets.numel()
        count += targets.numel()
        i += seq_len
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.3f}", ppl=f"{ppl(total / count):.1f}", refresh=False)
    if bar is not None:
        bar.close()
    return total / max(count, 1)


def train_lm(
    arch: Any,
    cfg: LMConfig,
    run_dir: str | Path,
    *,
    corpus: Corpus | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the language model of a ``recurrent`` architecture as in DARTS's PTB evaluation.

    ``corpus`` defaults to ``load_corpus(cfg.data, cfg.data_dir)``. Returns the test loss
    and perplexity of the best-validation weights (also written to ``result.json``).
    """
    say = log or logger.info
    cfg.validate()
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    device = resolve_device(cfg.device)
    rd = RunDir(run_dir, command="train", method="lm", space=getattr(arch, "kind", None), config=dataclasses.asdict(cfg),
                resume=resume, overwrite=overwrite)
    with rd, run_settings(cfg.deterministic, cfg.threads):
        if corpus is None:
            corpus = load_corpus(cfg.data, cfg.data_dir)
            if cfg.data.lower() not in CORPORA:  # a folder: keep its absolute path for `nasforge eval`
                cfg = dataclasses.replace(cfg, data=os.path.abspath(corpus.path))
        rd.set_config(dataclasses.asdict(cfg))
        amp = amp_enabled(cfg.amp, device)
        train_data = batchify(corpus.train, cfg.batch_size, device)
        val_data = batchify(corpus.valid, cfg.eval_batch_size, device)
        test_data = batchify(corpus.test, cfg.test_batch_size, device)
        ntoken = len(corpus.dictionary)
        if cfg.memory_check and not memory_check_disabled():  # before the network is built or anything written
            check_training_memory(lambda: build_lm(arch, cfg, ntoken), (cfg.bptt,), cfg.batch_size, device,
                                  forward=lambda m, n: m(torch.zeros(cfg.bptt, n, dtype=torch.long), m.init_hidden(n)))

        seed_everything(cfg.seed)
        model = build_lm(arch, cfg, ntoken).to(device)
        asgd = False
        optimizer = make_optimizer(model, cfg, asgd)
        scaler = make_scaler(amp)
        gen = torch.Generator().manual_seed(cfg.seed)
        start, val_history, best = 0, [], {}
        best_state: dict | None = None

        if resume:
            ckpt = read_training_checkpoint(ckpt_path, "lm", map_location="cpu")
            rd.check_header(ckpt.get("header"), ckpt_path)
            load_model_state(model, ckpt["model"], ckpt_path)
            asgd = bool(ckpt.get("asgd"))
            optimizer = make_optimizer(model, cfg, asgd)
            optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            gen.set_state(ckpt["data_rng"])
            start = int(ckpt["epoch"])
            val_history = [float(v) for v in ckpt.get("val_history", [])]
            best = dict(ckpt.get("best") or {})
            best_state = ckpt.get("best_model")
            rd.truncate_metrics(start)
            say(f"resuming {run_dir} after epoch {start}/{cfg.epochs}")
        else:
            rd.write_config(cfg)
            rd.write_arch(arch)
        params = sum(p.numel() for p in model.parameters())
        if start == 0:
            say(f"{getattr(arch, 'name', '') or 'recurrent cell'}: {params / 1e6:.3f}M parameters, {corpus.summary()}, {cfg.epochs} epochs on {device}")

        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            train_loss = train_epoch(
                model, train_data, optimizer, scaler, cfg, gen,
                device=device, amp=amp, epoch=epoch + 1, run_dir=run_dir, show_progress=show_progress,
            )
            with averaged_weights(model, optimizer):
                val_loss = evaluate_lm(model, val_data, cfg.bptt, cfg.eval_batch_size, device, amp)
                if not best or val_loss < best["valid_loss"]:
                    best = {"metric": "valid_loss", "valid_loss": val_loss, "epoch": epoch + 1}
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "optimizer": "asgd" if asgd else "sgd",
                "train_loss": train_loss,
                "train_ppl": ppl(train_loss),
                "valid_loss": val_loss,
                "valid_ppl": ppl(val_loss),
            }
            if not asgd and nonmono_trigger(val_history, val_loss, cfg.nonmono):
                asgd = True
                optimizer = make_optimizer(model, cfg, asgd)
                record["switched_to_asgd"] = True
                say(f"epoch {epoch + 1}: validation loss stopped improving, switching to ASGD")
            val_history.append(val_loss)
            record["seconds"] = time.perf_counter() - t0
            rd.save_epoch(  # the record (also mirrored to TensorBoard when installed), then the checkpoint
                record,
                None,
                {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "kind": "lm",
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "best_model": best_state,
                    "optimizer": optimizer.state_dict(),
                    "asgd": asgd,
                    "scaler": scaler.state_dict() if amp else None,
                    "rng": get_rng_state(),
                    "data_rng": gen.get_state(),
                    "val_history": val_history,
                    "config": dataclasses.asdict(cfg),
                    "arch": arch.to_dict(),
                    "data": {"name": corpus.name, "ntoken": ntoken},
                    "best": best,
                    "params": params,
                },
            )
            say(
                f"epoch {epoch + 1}/{cfg.epochs} | {record['optimizer']} lr {record['lr']:g} | train ppl {record['train_ppl']:.2f} "
                f"| valid ppl {record['valid_ppl']:.2f} | {record['seconds']:.1f}s"
            )

        if best_state is not None:
            load_model_state(model, best_state, ckpt_path)
        test_loss = evaluate_lm(model, test_data, cfg.bptt, cfg.test_batch_size, device, amp)
        result = TrainResult(
            run_dir=str(run_dir),
            kind="lm",
            epochs=cfg.epochs,
            metrics={"test_loss": test_loss, "test_ppl": ppl(test_loss), "valid_loss": best.get("valid_loss", float("nan")),
                     "valid_ppl": ppl(best.get("valid_loss", float("nan")))},
            params=params,
        )
        atomic_write_json(run_dir / RESULT, {**result.to_dict(), "best": best, "arch": getattr(arch, "name", ""), "data": corpus.name})
        say(f"test perplexity: {ppl(test_loss):.2f} (test loss {test_loss:.4f}, {len(corpus.test)} tokens, {corpus.name}; best valid epoch {best.get('epoch')})")
        return result
