"""ENAS: Efficient Neural Architecture Search via Parameter Sharing (Pham et al. 2018).

The training loop of §2.2 (as in the official code's ``train()``): the controller's
policy π(m; θ) and the shared weights ω of all children are trained in alternation. Each
epoch:

1. **shared weights** — one pass over the training data; for every minibatch sample a
   fresh child ``m ~ π``, compute its loss and take one step on ω (CNNs: SGD with
   Nesterov momentum 0.9 and a cosine learning rate with warm restarts, ENAS code
   ``lr_max 0.05, lr_min 5e-4, T0 = 10, T_mul = 2``, weight decay 2.5e-4 macro / 1e-4
   micro, gradient norm clipped at 5; RNN: SGD lr 20, ×0.96 per epoch after epoch 15,
   gradient norm clipped at 0.25, l2 1e-7);
2. **controller** — ``controller_steps`` REINFORCE steps (ENAS code: 50 macro, 30 micro);
   each samples a child and rewards it with its accuracy on a validation minibatch
   (RNN: ``c / valid perplexity`` with ``c = 80``), see
   :class:`~nasforge.search.enas_controller.Reinforce`.

At the end (§2.2 "Deriving Architectures") sample ``derive_samples`` children (10), keep
the one with the best reward on one validation minibatch, and write it to ``arch.json``.
The controller also runs as a plain multi-trial search over the NAS-Bench-201 table
(``--space nb201``): each controller step queries the table once (reward = the table's
validation accuracy); there the controller lr (1e-2) and baseline decay (0.9) are ours,
tuned for a 300-query budget (the paper's 3.5e-4 / 0.99 barely move in 300 steps).

Spaces: ``macro`` (:mod:`nasforge.spaces.enas_macro`), ``micro``
(:mod:`nasforge.spaces.enas_micro`), ``rnn`` (:mod:`nasforge.spaces.enas_rnn`) and
``nb201``. Defaults left as ``None`` depend on the space (:meth:`EnasConfig.resolved`,
in :mod:`nasforge.search.enas_config` with the command-line flags).
Validation data: ENAS holds out 5,000 of CIFAR-10's 50,000 training images
(``train_portion = 0.9``); PTB uses its validation split.

BatchNorm while rewarding: children are scored with batch statistics (the running
statistics are shared by every child and do not describe any one of them), without
updating the running statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch import save_arch
from nasforge.config import write_config
from nasforge.errors import CheckpointError, ConfigError, TrainingError
from nasforge.search.enas_config import (  # noqa: F401  (add_arguments: the search registry's entry point)
    EnasConfig,
    add_arguments,
    config_from_args,
    cosine_restart_lr,
)
from nasforge.search.enas_controller import (
    Controller,
    Reinforce,
    macro_layout,
    micro_layout,
    nb201_layout,
    recurrent_layout,
)
from nasforge.utils.device import resolve_device
from nasforge.utils.io import MetricsWriter, load_checkpoint, save_checkpoint
from nasforge.utils.rng import get_rng_state, seed_everything, set_deterministic, set_rng_state

class ENAS:
    """ENAS search over a shared-weight space; ``run()`` returns the derived architecture."""

    def __init__(self, cfg: EnasConfig, run_dir: str | Path | None = None, *, progress: bool = True, table: Any = None):
        cfg.validate()
        cfg = cfg.resolved()
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.device = resolve_device(cfg.device)
        if cfg.deterministic:
            set_deterministic(True)
        seed_everything(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order and reward batches
        self.epoch = 0
        self.history: list[dict] = []
        self.table = table  # nb201: a loaded NB201Table (else read from cfg.nb201_table)
        self.net: nn.Module | None = None
        self.w_opt: torch.optim.Optimizer | None = None
        self._build()
        self.controller = Controller(
            self.layout, hidden=cfg.controller_hidden, tanh_constant=cfg.tanh_constant,
            temperature=cfg.temperature, skip_target=cfg.skip_target,
        ).to(self.device)
        self.rl = Reinforce(
            self.controller, lr=cfg.controller_lr, baseline_decay=cfg.baseline_decay,
            entropy_weight=cfg.entropy_weight, skip_weight=cfg.skip_weight, aggregate=cfg.controller_aggregate,
        )

    # -- spaces -------------------------------------------------------------------------------
    def _build(self) -> None:
        cfg = self.cfg
        if cfg.space == "nb201":
            from nasforge.spaces.nb201_table import NB201Table

            if self.table is None:
                self.table = NB201Table.load(cfg.nb201_table)
            self.seen: dict[tuple[str, ...], float] = {}
            self.layout = nb201_layout()
            self.decode: Callable[[list], Any] = self._decode_nb201
            return
        if cfg.space == "rnn":
            from nasforge.data import batchify, load_corpus
            from nasforge.spaces.enas_rnn import RecurrentSupernet, decode_recurrent

            corpus = load_corpus(cfg.data, cfg.data_dir)
            self.train_data = batchify(corpus.train, cfg.batch_size).to(self.device)
            self.valid_data = batchify(corpus.valid, cfg.batch_size).to(self.device)
            self.net = RecurrentSupernet(
                len(corpus.dictionary), nhid=cfg.channels, num_nodes=cfg.layers, dropout=cfg.dropout,
                dropouth=cfg.dropouth, dropoutx=cfg.dropoutx, dropouti=cfg.dropouti, dropoute=cfg.dropoute,
            ).to(self.device)
            self.layout = recurrent_layout(cfg.layers)
            self.decode = decode_recurrent
            self.w_opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.hidden = self.net.init_hidden(cfg.batch_size)
            return
        from nasforge.data import load_image_dataset, split

        ds = load_image_dataset(cfg.data, cfg.data_dir, seed=cfg.seed, limit=cfg.limit, input_size=cfg.input_size)
        self.train_pair, self.valid_pair = split(ds.train, 1.0 - cfg.train_portion, seed=cfg.seed)
        if len(self.train_pair) == 0 or len(self.valid_pair) == 0:
            raise ConfigError(f"data set {cfg.data!r} is too small to split with train_portion={cfg.train_portion}")
        if cfg.space == "macro":
            from nasforge.spaces.enas_macro import MacroSupernet, decode_macro

            self.net = MacroSupernet(ds.num_classes, ds.channels, num_layers=cfg.layers, C=cfg.channels)
            self.layout = macro_layout(cfg.layers)
            self.decode = decode_macro
        else:
            from nasforge.spaces.enas_micro import MicroSupernet, decode_micro

            self.net = MicroSupernet(ds.num_classes, ds.channels, C=cfg.channels, normal_layers=cfg.layers, channels_last=self.device.type == "cpu")
            self.layout = micro_layout()
            self.decode = decode_micro
        self.net.to(self.device)
        self.w_opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)

    def _decode_nb201(self, actions: list) -> tuple[str, ...]:
        from nasforge.ops import NB201_PRIMITIVES

        return tuple(NB201_PRIMITIVES[int(a)] for a in actions)

    # -- shared weights -----------------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        cfg = self.cfg
        if cfg.space == "rnn":
            return cfg.lr * cfg.rnn_lr_decay ** max(0, epoch - cfg.rnn_lr_decay_start)
        return cosine_restart_lr(epoch, cfg.lr, cfg.lr_min, cfg.lr_t0, cfg.lr_tmul)

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss.detach()):
            raise TrainingError(f"{what} became {float(loss)} in epoch {self.epoch + 1}: lower the learning rate")

    def train_shared(self) -> dict[str, float]:
        """One epoch on ω, a fresh child per minibatch (§2.2, "Training the shared parameters ω")."""
        assert self.net is not None and self.w_opt is not None
        if self.cfg.space == "rnn":
            return self._train_shared_rnn()
        from nasforge.data import BatchLoader

        self.net.train()
        loss_sum = correct = seen = steps = 0.0
        loader = BatchLoader(self.train_pair, self.cfg.batch_size, shuffle=True, generator=self.gen)
        for x, y in self._bar(loader, "shared ω"):
            if self.cfg.max_steps is not None and steps >= self.cfg.max_steps:
                break
            arch = self.decode(self.controller.sample())
            x, y = x.to(self.device), y.to(self.device)
            logits = self.net(x, arch)
            loss = F.cross_entropy(logits, y)
            self._check(loss, "the shared-weight loss")
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
            self.w_opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            steps += 1
        return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1), "shared_steps": int(steps)}

    def _train_shared_rnn(self) -> dict[str, float]:
        from nasforge.data import get_batch

        assert self.net is not None and self.w_opt is not None
        cfg = self.cfg
        self.net.train()
        nll_sum = tokens = steps = 0.0
        positions = range(0, self.train_data.size(0) - 1, cfg.bptt)
        hidden = self.hidden
        for i in self._bar(positions, "shared ω"):
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
            x, y = get_batch(self.train_data, i, cfg.bptt)
            arch = self.decode(self.controller.sample())
            log_prob, hidden = self.net(x, hidden.detach(), arch)
            loss = F.nll_loss(log_prob.view(-1, log_prob.size(-1)), y.reshape(-1))
            self._check(loss, "the shared-weight loss")
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.w_opt.step()
            nll_sum += float(loss.detach()) * y.numel()
            tokens += y.numel()
            steps += 1
        self.hidden = hidden.detach()
        return {"train_ppl": math.exp(min(nll_sum / max(tokens, 1), 50.0)), "shared_steps": int(steps)}

    # -- rewards ------------------------------------------------------------------------------
    def _valid_batch(self) -> Any:
        """A random validation minibatch (drawn from ``self.gen``)."""
        cfg = self.cfg
        if cfg.space == "rnn":
            from nasforge.data import get_batch

            n = self.valid_data.size(0) - 1 - cfg.bptt
            i = int(torch.randint(0, max(n, 1), (1,), generator=self.gen))
            return get_batch(self.valid_data, i, cfg.bptt)
        idx = torch.randint(0, len(self.valid_pair), (min(cfg.batch_size, len(self.valid_pair)),), generator=self.gen)
        b = self.valid_pair[idx]
        return b.x.to(self.device), b.y.to(self.device)

    @torch.no_grad()
    def reward(self, arch: Any, batch: Any) -> float:
        """Validation accuracy of ``arch`` on ``batch`` (RNN: ``c / perplexity``; NB201: table)."""
        cfg = self.cfg
        if cfg.space == "nb201":
            return self.table.accuracy(arch, cfg.nb201_metric) / 100.0
        assert self.net is not None
        if cfg.space == "rnn":
            self.net.eval()
            x, y = batch
            log_prob, _ = self.net(x, self.net.init_hidden(x.size(1)), arch)
            self.net.train()
            ppl = math.exp(min(float(F.nll_loss(log_prob.view(-1, log_prob.size(-1)), y.reshape(-1))), 50.0))
            return cfg.reward_constant / ppl
        from nasforge.spaces.cell_supernet import frozen_bn_stats

        x, y = batch
        self.net.train()  # batch statistics, see the module docstring
        with frozen_bn_stats(self.net):
            logits = self.net(x, arch)
        return float((logits.argmax(1) == y).float().mean())

    def train_controller(self, steps: int) -> dict[str, Any]:
        """``steps`` REINFORCE steps, each on a fresh validation minibatch (§2.2, "Training θ")."""
        stats: list[dict] = []
        for _ in self._bar(range(steps), "controller θ"):
            batch = None if self.cfg.space == "nb201" else self._valid_batch()
            stats.append(self.rl.step(lambda actions: self.reward(self.decode(actions), batch)))
        best = max(stats, key=lambda s: s["best_reward"])
        mean = {k: sum(s[k] for s in stats) / len(stats) for k in ("reward", "entropy", "loss")}
        return {
            "reward": mean["reward"], "baseline": self.rl.baseline, "entropy": mean["entropy"], "controller_loss": mean["loss"],
            "best_reward": best["best_reward"], "best_actions": best["best_actions"],
        }

    # -- deriving -----------------------------------------------------------------------------
    def derive(self, samples: int | None = None) -> tuple[Any, float]:
        """Sample ``derive_samples`` children and keep the best on one validation minibatch."""
        batch = None if self.cfg.space == "nb201" else self._valid_batch()
        best: tuple[float, Any] | None = None
        for _ in range(samples or self.cfg.derive_samples):
            arch = self.decode(self.controller.sample())
            r = self.reward(arch, batch)
            if best is None or r > best[0]:
                best = (r, arch)
        assert best is not None
        return best[1], best[0]

    def evaluate(self, arch: Any) -> dict[str, float]:
        """Per-epoch metrics of a child on ``eval_batches`` validation minibatches."""
        vals = [self.reward(arch, self._valid_batch()) for _ in range(self.cfg.eval_batches)]
        mean = sum(vals) / len(vals)
        if self.cfg.space == "rnn":
            return {"valid_ppl": self.cfg.reward_constant / max(mean, 1e-12)}
        return {"valid_acc": mean}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        d: dict[str, Any] = {
            "epoch": self.epoch,
            "rl": self.rl.state_dict(),
            "rng": get_rng_state(),
            "gen": self.gen.get_state(),
            "history": self.history,
            "config": dataclasses.asdict(self.cfg),
        }
        if self.net is not None and self.w_opt is not None:
            d["net"] = self.net.state_dict()
            d["w_opt"] = self.w_opt.state_dict()
        if self.cfg.space == "rnn":
            d["hidden"] = self.hidden
        if self.cfg.space == "nb201":
            d["seen"] = [[list(k), v] for k, v in self.seen.items()]
        return d

    def load_state_dict(self, d: dict) -> None:
        saved = d.get("config", {})
        for key in ("space", "layers", "channels", "data"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise CheckpointError(f"checkpoint was written with {key}={saved[key]!r} but this run has {key}={getattr(self.cfg, key)!r}")
        self.epoch = int(d["epoch"])
        self.rl.load_state_dict(d["rl"])
        if self.net is not None and self.w_opt is not None:
            self.net.load_state_dict(d["net"])
            self.w_opt.load_state_dict(d["w_opt"])
        if self.cfg.space == "rnn":
            self.hidden = d["hidden"].to(self.device)
        if self.cfg.space == "nb201":
            self.seen = {tuple(k): float(v) for k, v in d["seen"]}
        self.history = list(d["history"])
        self.gen.set_state(d["gen"])
        set_rng_state(d["rng"])

    # -- main loop ------------------------------------------------------------------------------
    def _bar(self, it, desc: str):
        if not self.progress:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=f"epoch {self.epoch + 1} {desc}", leave=False, dynamic_ncols=True)

    def _arch_json(self, arch: Any) -> Any:
        return list(arch) if self.cfg.space == "nb201" else arch.to_dict()

    def _start(self, resume: bool) -> MetricsWriter | None:
        metrics = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            metrics = MetricsWriter(self.run_dir / "metrics.jsonl")
            ckpt = self.run_dir / "checkpoint.pt"
            if resume:
                if not ckpt.is_file():
                    raise CheckpointError(f"--resume given but {ckpt} does not exist")
                self.load_state_dict(load_checkpoint(ckpt, map_location=self.device))
                metrics.truncate_after(self.epoch)
            else:
                if ckpt.exists() or (self.run_dir / "metrics.jsonl").exists():
                    raise ConfigError(f"run directory {self.run_dir} already holds a run: use --resume or another --out")
            write_config(self.cfg, self.run_dir / "config.yaml")
        return metrics

    def _end_epoch(self, record: dict, metrics: MetricsWriter | None) -> None:
        self.epoch += 1
        self.history.append(record)
        if metrics is not None:
            metrics.write(record)
        if self.run_dir is not None:
            save_checkpoint(self.state_dict(), self.run_dir / "checkpoint.pt")

    def run(self, resume: bool = False) -> Any:
        """Alternate shared-weight training and controller training; derive; write arch.json."""
        if self.cfg.space == "nb201":
            return self.run_nb201(resume)
        metrics = self._start(resume)
        while self.epoch < self.cfg.epochs:
            t0 = time.time()
            lr = self.lr_at(self.epoch)
            for g in self.w_opt.param_groups:  # type: ignore[union-attr]
                g["lr"] = lr
            shared = self.train_shared()
            ctrl = self.train_controller(self.cfg.controller_steps)
            best_arch = self.decode(ctrl.pop("best_actions"))
            record = {"epoch": self.epoch + 1, "lr": lr, **shared, **ctrl, **self.evaluate(best_arch),
                      "best_arch": self._arch_json(best_arch), "time": time.time() - t0}
            self._end_epoch(record, metrics)
        arch, reward = self.derive()
        arch.meta = {"method": "enas", "space": self.cfg.space, "data": self.cfg.data, "reward": reward,
                     "epochs": self.cfg.epochs, "seed": self.cfg.seed}
        if self.run_dir is not None:
            save_arch(arch, self.run_dir / "arch.json")
        return arch

    def run_nb201(self, resume: bool = False) -> tuple[str, ...]:
        """The controller as a multi-trial strategy over the NAS-Bench-201 table: one
        query per REINFORCE step, ``trials`` queries; result = the best-by-validation cell."""
        from nasforge.spaces.nb201_table import ops_to_cellstr

        cfg = self.cfg
        metrics = self._start(resume)
        chunk = cfg.controller_steps
        while self.rl.steps < cfg.trials:
            n = min(chunk, cfg.trials - self.rl.steps)
            stats: list[dict] = []
            for _ in self._bar(range(n), "controller θ"):
                def reward(actions: list) -> float:
                    ops = self._decode_nb201(actions)
                    self.seen[ops] = self.reward(ops, None)
                    return self.seen[ops]

                stats.append(self.rl.step(reward))
            best_ops = max(self.seen, key=self.seen.get)  # type: ignore[arg-type]
            record = {
                "epoch": self.epoch + 1, "queries": self.rl.steps,
                "reward": sum(s["reward"] for s in stats) / len(stats), "baseline": self.rl.baseline,
                "entropy": sum(s["entropy"] for s in stats) / len(stats),
                "controller_loss": sum(s["loss"] for s in stats) / len(stats),
                "best_arch": ops_to_cellstr(best_ops), "best_reward": self.seen[best_ops],
                "best_test_acc": self.table.accuracy(best_ops, "cifar10-test"),
            }
            self._end_epoch(record, metrics)
        best_ops = max(self.seen, key=self.seen.get)  # type: ignore[arg-type]
        if self.run_dir is not None:
            from nasforge.search.supernet_loop import nb201_arch

            arch = nb201_arch(list(best_ops), "ENAS_nb201", {"method": "enas", "space": "nb201", "queries": self.rl.steps,
                                                             "valid_acc": self.seen[best_ops] * 100.0})
            save_arch(arch, self.run_dir / "arch.json")
        return best_ops


def run_from_args(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    search = ENAS(cfg, args.out, progress=not getattr(args, "no_progress", False))
    result = search.run(resume=bool(getattr(args, "resume", False)))
    if not getattr(args, "no_progress", False):
        print(f"derived architecture -> {Path(args.out) / 'arch.json'}")
        if hasattr(result, "describe"):
            print(result.describe())
    return 0
