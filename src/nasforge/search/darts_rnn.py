"""DARTS recurrent-cell search for language modelling (Liu et al., ICLR 2019, §2.3, §3.1.2, App. A.1.2).

The relaxed cell is :class:`nasforge.spaces.rnn_supernet.MixedRecurrentCell` (8 nodes,
ops ``none, tanh, relu, sigmoid, identity``); this module owns its architecture
parameters ``α`` (36 edges × 5 ops, initialised ``1e-3·randn`` as in the code; the paper
says zeros) and runs the bilevel optimisation of ``rnn/train_search.py``. Each step:

1. architecture step on a batch of the **validation** split (the code batchifies PTB
   valid with the training batch size and walks it in step with training): first order
   ``∇_α L_val(w, α)``, or second order ``∇_α L_val(w - ξ∇_w L_train(w, α), α)`` with
   the finite-difference Hessian-vector product (§2.3, ``--order 2``); Adam, lr 3e-3,
   betas (0.9, 0.999), wd 1e-3;
2. weight step on a batch of the **training** split: SGD lr 20 (scaled by ``seq_len /
   bptt``), wd 5e-7, gradient clipping 0.25, plus the code's temporal activation
   regulariser ``beta = 1e-3`` (``alpha = 0``: no AR).

The sequence length is ``bptt`` = 35, halved with probability 0.05 (the code). Defaults
from the paper (App. A.1.2) and ``rnn/train_search.py``: ``emsize = nhid = 300``, batch 256
(evaluation batch 10), 50 epochs, dropouts: output 0.75, hidden 0.25, input ``x`` 0.75,
embedding 0.2, word 0 (the paper lists "0.2 emb, 0.75 input, 0.25 hidden, 0.75 output"),
BatchNorm in the nodes during search only.

After each epoch the cell is derived (``derive_recurrent``: per node the strongest
non-``none`` op over its inputs, top-1) and written with the epoch's losses,
``softmax(α)`` and its entropy to ``metrics.jsonl``; a checkpoint lets ``--resume``
continue exactly. The final ``arch.json`` is a ``recurrent`` architecture that
``nasforge train`` trains with :class:`nasforge.nets.RNNModel`.

Differences from the official code: the second-order step is the shared
:class:`nasforge.search.architect.Architect` (the unrolled step is clipped as in
``rnn/architect.py``, but the vector of the Hessian-vector product is the plain
``∇_w' L_val``, where the RNN code clips it and adds ``wdecay·w'``), and every
evaluation of the training/validation loss within one architecture step reuses one set
of dropout masks (the code draws new masks for each of its four forward passes). The
BatchNorm of the nodes always uses batch statistics (see
:mod:`nasforge.spaces.rnn_supernet`). The code's ``--small_batch_size`` gradient
accumulation is not offered.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nasforge.arch import RecurrentArch
from nasforge.config import to_dict
from nasforge.errors import CheckpointError, DataError, TrainingError
from nasforge.search.architect import Architect
from nasforge.search.darts_rnn_config import DartsRNNConfig
from nasforge.search.registry import SearchResult, register_method
from nasforge.spaces.rnn_supernet import RNN_PRIMITIVES, RNNSupernet, derive_recurrent, num_edges
from nasforge.utils.device import resolve_device
from nasforge.utils.rng import get_rng_state, seed_everything, set_deterministic, set_rng_state

CHECKPOINT_FORMAT = "nasforge.darts_rnn"
log = logging.getLogger(__name__)


def _detach(h: torch.Tensor) -> torch.Tensor:
    return h.detach()


def _nll(log_prob: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(log_prob.reshape(-1, log_prob.size(-1)), targets.reshape(-1))


def alpha_entropy(alpha: torch.Tensor) -> float:
    """Mean over edges of the entropy (nats) of ``softmax(α)``; ``log 5`` ≈ 1.609 at uniform."""
    logp = F.log_softmax(alpha.detach().double(), dim=-1)
    return float(-(logp.exp() * logp).sum(-1).mean())


class DartsRNNSearch:
    """Bilevel DARTS search of the recurrent cell; ``run()`` returns ``(arch, history)``."""

    def __init__(self, cfg: DartsRNNConfig, corpus: Any, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.ntoken = len(corpus.dictionary)
        from nasforge.data import batchify

        try:
            self.train_data = batchify(corpus.train, cfg.batch_size, self.device)
            self.search_data = batchify(corpus.valid, cfg.batch_size, self.device)
            self.val_data = batchify(corpus.valid, cfg.eval_batch_size, self.device)
        except DataError as e:
            raise DataError(f"corpus {getattr(corpus, 'name', '')!r} is too small for batch size {cfg.batch_size}: {e}") from None
        self.model = RNNSupernet(
            self.ntoken,
            cfg.emsize,
            cfg.nhid,
            cfg.dropout,
            cfg.dropouth,
            cfg.dropoutx,
            cfg.dropouti,
            cfg.dropoute,
            steps=cfg.steps,
            recompute=cfg.recompute,
        ).to(self.device)
        self.alpha = (cfg.alpha_init_std * torch.randn(num_edges(cfg.steps), len(RNN_PRIMITIVES))).to(self.device).requires_grad_(True)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.wdecay)
        self.arch_optimizer = torch.optim.Adam([self.alpha], lr=cfg.arch_lr, betas=tuple(cfg.arch_betas), weight_decay=cfg.arch_wdecay)
        self.architect = Architect(
            list(self.model.parameters()),
            [self.alpha],
            self._batch_loss,
            self.optimizer,
            self.arch_optimizer,
            order=cfg.order,
            clip=cfg.clip,  # the RNN code clips the unrolled step's gradient
        )
        self._mask_seed: Optional[int] = None  # second order: one set of dropout masks per α step
        self._last_hidden: dict[str, torch.Tensor] = {}
        self.epoch = 0
        self.history: list[dict] = []
        self._progress = True

    # ------------------------------------------------------------------ architecture
    def op_weights(self) -> torch.Tensor:
        return F.softmax(self.alpha, dim=-1)

    def derive(self) -> RecurrentArch:
        arch = derive_recurrent(self.op_weights(), self.cfg.steps, RNN_PRIMITIVES, name="darts-rnn-search")
        arch.meta = {"method": "darts", "space": "rnn", "order": self.cfg.order, "data": self.cfg.data, "epoch": self.epoch}
        return arch

    def _batch_loss(self, batch: tuple) -> torch.Tensor:
        """Loss closure for the :class:`Architect`: ``batch = (kind, data, targets, hidden)``.

        Keeps the new hidden state of each kind (``train``/``valid``). In the second-order
        step every pass of a kind reuses one set of dropout masks (seeded per α step).
        """
        kind, data, targets, hidden = batch
        if self._mask_seed is None:
            log_prob, h = self.model(data, hidden, self.op_weights())
        else:
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self._mask_seed + (0 if kind == "train" else 1))
                log_prob, h = self.model(data, hidden, self.op_weights())
        self._last_hidden[kind] = h.detach()
        return _nll(log_prob, targets)

    def arch_step(self, hidden_valid, data_valid, targets_valid, hidden_train, data, targets) -> torch.Tensor:
        """One Adam step on α (``Architect.step`` of the code); returns the next validation hidden state.

        First order: ``∇α L_val(w, α)``. Second order (``order: 2``): the unrolled gradient
        of :class:`nasforge.search.architect.Architect` (ξ = the current, ``seq_len``-scaled
        weight lr, weight decay included, clipped unrolled step as in ``rnn/architect.py``).
        """
        if self.cfg.order == 2:
            self._mask_seed = int(torch.randint(0, 2**62, ()))
        try:
            self.architect.step(("train", data, targets, hidden_train), ("valid", data_valid, targets_valid, hidden_valid))
        finally:
            self._mask_seed = None
        hidden_next = self._last_hidden.pop("valid")
        self._last_hidden.clear()
        return hidden_next

    # ------------------------------------------------------------------ weights
    def train_epoch(self, epoch: int, progress: bool = True) -> dict:
        """One pass over the training split (``train()`` of ``rnn/train_search.py``)."""
        from nasforge.data import get_batch

        cfg, model = self.cfg, self.model
        hidden = model.init_hidden(cfg.batch_size)
        hidden_valid = model.init_hidden(cfg.batch_size)
        n_rows = self.train_data.size(0)
        total = max(1, (n_rows - 2) // cfg.bptt + 1)
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        bar = tqdm(total=total, desc=f"darts-rnn epoch {epoch}", disable=not progress, leave=False, dynamic_ncols=True)
        loss_sum, tokens, batch, i = 0.0, 0, 0, 0
        try:
            while i < n_rows - 1 - 1:
                if cfg.max_steps is not None and batch >= cfg.max_steps:
                    break
                bptt = cfg.bptt if float(torch.rand(())) >= cfg.half_bptt_prob else cfg.bptt / 2.0
                seq_len = max(1, int(bptt))
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.param_groups[0]["lr"] = lr * seq_len / cfg.bptt
                model.train()
                data_valid, targets_valid = get_batch(self.search_data, i % (self.search_data.size(0) - 1), cfg.bptt)
                data, targets = get_batch(self.train_data, i, cfg.bptt, seq_len=seq_len)
                hidden, hidden_valid = _detach(hidden), _detach(hidden_valid)

                hidden_valid = self.arch_step(hidden_valid, data_valid, targets_valid, hidden, data, targets)

                self.optimizer.zero_grad(set_to_none=True)
                log_prob, hidden, raw_out, dropped_out = model(data, hidden, self.op_weights().detach(), return_h=True)
                raw_loss = _nll(log_prob, targets)
                loss = raw_loss
                if cfg.ar_alpha > 0:
                    loss = loss + cfg.ar_alpha * dropped_out.pow(2).mean()
                if cfg.tar_beta > 0:
                    loss = loss + cfg.tar_beta * (raw_out[1:] - raw_out[:-1]).pow(2).mean()
                value = raw_loss.item() if not raw_loss.requires_grad else raw_loss.detach().item()
                if not math.isfinite(value):
                    raise TrainingError(f"DARTS RNN search diverged: training loss is {value} at epoch {epoch}, step {batch + 1} (try a lower lr or clip)")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                self.optimizer.step()
                self.optimizer.param_groups[0]["lr"] = lr

                n = targets.numel()
                loss_sum += value * n
                tokens += n
                batch += 1
                i += seq_len
                bar.update(1)
                bar.set_postfix(loss=f"{value:.3f}")
        finally:
            bar.close()
        train_loss = loss_sum / max(tokens, 1)
        return {"train_loss": train_loss, "train_ppl": _ppl(train_loss), "steps": batch, "train_tokens": tokens}

    @torch.no_grad()
    def evaluate(self, source: torch.Tensor | None = None, batch_size: int | None = None, max_batches: int | None = None) -> float:
        """Mean per-token NLL on ``source`` (default: the validation split at the eval batch size)."""
        from nasforge.data import get_batch

        source = self.val_data if source is None else source
        batch_size = self.cfg.eval_batch_size if batch_size is None else batch_size
        max_batches = self.cfg.eval_max_batches if max_batches is None else max_batches
        self.model.eval()
        weights = self.op_weights()
        hidden = self.model.init_hidden(batch_size)
        total, rows = 0.0, 0
        for b, i in enumerate(range(0, source.size(0) - 1, self.cfg.bptt)):
            if max_batches is not None and b >= max_batches:
                break
            data, targets = get_batch(source, i, self.cfg.bptt)
            log_prob, hidden = self.model(data, hidden, weights)
            total += float(_nll(log_prob, targets)) * len(data)
            rows += len(data)
        return total / max(rows, 1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "config": to_dict(self.cfg),
            "ntoken": self.ntoken,
            "model": self.model.state_dict(),
            "alpha": self.alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "history": self.history,
            "rng": get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError("checkpoint is not a DARTS RNN search checkpoint")
        if state.get("ntoken") != self.ntoken:
            raise CheckpointError(f"checkpoint has a vocabulary of {state.get('ntoken')} words, the corpus {self.ntoken}: not the same data")
        alpha = state["alpha"]
        if tuple(alpha.shape) != tuple(self.alpha.shape):
            raise CheckpointError(f"checkpoint α has shape {tuple(alpha.shape)}, this search {tuple(self.alpha.shape)} (different steps)")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint weights do not fit this search (different emsize/nhid?): {str(e).splitlines()[0][:160]}") from None
        with torch.no_grad():
            self.alpha.copy_(alpha.to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    # ------------------------------------------------------------------ main loop
    def epoch_record(self, epoch: int, train: dict, valid_loss: float, seconds: float) -> dict:
        arch = self.derive()
        probs = self.op_weights().detach().cpu()
        return {
            "epoch": epoch,
            "train_loss": train["train_loss"],
            "train_ppl": train["train_ppl"],
            "valid_loss": valid_loss,
            "valid_ppl": _ppl(valid_loss),
            "steps": train["steps"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "arch": arch.to_dict(),
            "alpha_softmax": probs.tolist(),
            "primitives": list(RNN_PRIMITIVES),
            "alpha_entropy": alpha_entropy(self.alpha),
            "seconds": seconds,
        }

    # ------------------------------------------------------------------ the one-shot protocol
    method = "darts"
    space = "rnn"

    def config_dict(self) -> dict:
        return to_dict(self.cfg)

    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs

    def run_epoch(self) -> tuple[dict, None]:
        epoch = self.epoch + 1
        start = time.perf_counter()
        train = self.train_epoch(epoch, self._progress)
        valid_loss = self.evaluate()
        if not math.isfinite(valid_loss):
            raise TrainingError(f"DARTS RNN search diverged: validation loss is {valid_loss} after epoch {epoch}")
        self.epoch = epoch
        record = self.epoch_record(epoch, train, valid_loss, time.perf_counter() - start)
        self.history.append(record)
        return record, None

    def final_arch(self, last: Any) -> RecurrentArch:
        return self.derive()

    def epoch_line(self, r: dict) -> str:
        return f"epoch {r['epoch']}: train ppl {r['train_ppl']:.2f}, valid ppl {r['valid_ppl']:.2f}, entropy {r['alpha_entropy']:.4f}"

    def run(self, run_dir: str | Path | None = None, progress: bool = True, resume: bool = False,
            on_epoch: Optional[Callable[[dict], None]] = None, overwrite: bool = False) -> tuple[RecurrentArch, list[dict]]:
        """Search for ``cfg.epochs`` epochs (from the checkpoint's epoch on resume); ``overwrite``
        replaces a run already in ``run_dir`` (:func:`nasforge.search.oneshot.run_oneshot`)."""
        from nasforge.search.oneshot import run_oneshot

        self._progress = progress
        arch = run_oneshot(self, run_dir, resume=resume, overwrite=overwrite, progress=progress, on_epoch=on_epoch)
        return arch, self.history


def _ppl(loss: float) -> float:
    return math.exp(loss) if loss < 700 else float("inf")


@register_method("darts", config=DartsRNNConfig, kind="one-shot", spaces=("rnn",))
def run_darts_rnn(cfg: DartsRNNConfig, out=None, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> SearchResult:
    """``search darts --space rnn``: search the recurrent cell on a word corpus, write ``arch.json`` in ``out``."""
    from nasforge.data import load_corpus

    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    if cfg.deterministic:
        set_deterministic(True)
    corpus = load_corpus(cfg.data, cfg.data_dir)
    search = DartsRNNSearch(cfg, corpus, device)
    (log.info if progress else log.debug)("DARTS RNN search on %s; %d epochs, order %d, device %s", corpus.summary(), cfg.epochs, cfg.order, device)
    arch, history = search.run(out, progress=progress, resume=resume, overwrite=overwrite)
    last = history[-1] if history else {}
    metrics = {k: float(last[k]) for k in ("valid_ppl",) if k in last}
    return SearchResult("darts", "rnn", arch, Path(out) if out is not None else None, metrics)
