"""ENAS search spaces as adapters: what differs between macro/micro CNNs, the recurrent cell
and the NAS-Bench-201 table (Pham et al. 2018, §2.1–2.4; the training loop is in
:mod:`nasforge.search.enas`).

Each adapter owns its shared network ω (none for the table), its data, the controller's
action layout and decoder, the shared-weight learning rate, one epoch on ω, the
validation minibatches and the reward of a child:

- :class:`ImageSpace` (``macro``, ``micro``): SGD with Nesterov momentum, cosine lr with
  warm restarts, a fresh child per minibatch; reward = accuracy on a validation minibatch
  with batch statistics (running statistics untouched);
- :class:`RecurrentSpace` (``rnn``): SGD lr 20 (×0.96 per epoch after epoch 15), a
  fresh child per BPTT segment, the hidden state carried across the epoch; reward =
  ``c / valid perplexity``;
- :class:`TableSpace` (``nb201``): no network; reward = the table's validation accuracy.
"""

from __future__ import annotations

import functools

import math
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import ConfigError, TrainingError
from nasforge.search.enas_config import EnasConfig, cosine_restart_lr
from nasforge.search.enas_controller import macro_layout, micro_layout, nb201_layout, recurrent_layout

Bar = Callable[[Iterable, str], Iterable]


class EnasSpace:
    """Base adapter; ``net``/``w_opt`` are None for spaces without shared weights."""

    net: nn.Module | None = None
    w_opt: torch.optim.Optimizer | None = None
    layout: list

    def __init__(self, cfg: EnasConfig, device: torch.device, gen: torch.Generator):
        self.cfg, self.device, self.gen = cfg, device, gen

    def decode(self, actions: list) -> Any:
        raise NotImplementedError

    def lr_at(self, epoch: int) -> float:
        return cosine_restart_lr(epoch, self.cfg.lr, self.cfg.lr_min, self.cfg.lr_t0, self.cfg.lr_tmul)

    def train_shared(self, sample: Callable[[], list], bar: Bar, epoch: int) -> dict[str, float]:
        raise NotImplementedError

    def valid_batch(self) -> Any:
        return None

    def reward(self, arch: Any, batch: Any) -> float:
        raise NotImplementedError

    def eval_metrics(self, mean_reward: float) -> dict[str, float]:
        return {"valid_acc": mean_reward}

    def accuracy(self, arch: Any, split: str = "valid", images: int | None = None) -> float:
        raise ConfigError(f"the {self.cfg.space} space has no image splits to measure a child's accuracy on")

    def arch_json(self, arch: Any) -> Any:
        return arch.to_dict()

    def state_dict(self) -> dict:
        if self.net is None or self.w_opt is None:
            return {}
        return {"net": self.net.state_dict(), "w_opt": self.w_opt.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        if self.net is not None and self.w_opt is not None:
            self.net.load_state_dict(d["net"])
            self.w_opt.load_state_dict(d["w_opt"])

    def _check(self, loss: torch.Tensor, what: str, epoch: int) -> None:
        if not torch.isfinite(loss.detach()):
            raise TrainingError(f"{what} became {float(loss)} in epoch {epoch + 1}: lower the learning rate")


class ImageSpace(EnasSpace):
    """``macro`` (:mod:`nasforge.spaces.enas_macro`) and ``micro`` (:mod:`nasforge.spaces.enas_micro`)."""

    def __init__(self, cfg: EnasConfig, device: torch.device, gen: torch.Generator):
        super().__init__(cfg, device, gen)
        from nasforge.data import load_image_dataset, split

        ds = load_image_dataset(cfg.data, cfg.data_dir, seed=cfg.seed, limit=cfg.limit, input_size=cfg.input_size)
        self.train_pair, self.valid_pair = split(ds.train, 1.0 - cfg.train_portion, seed=cfg.seed)
        self.test_pair = ds.test  # never seen by the search; for analysis after it (accuracy)
        if len(self.train_pair) == 0 or len(self.valid_pair) == 0:
            raise ConfigError(f"data set {cfg.data!r} is too small to split with train_portion={cfg.train_portion}")
        if cfg.space == "macro":
            from nasforge.spaces.enas_macro import MacroSupernet, decode_macro

            self.net = MacroSupernet(ds.num_classes, ds.channels, num_layers=cfg.layers, C=cfg.channels)
            self.layout = macro_layout(cfg.layers)
            self._decode = decode_macro
        else:
            from nasforge.spaces.enas_micro import MicroSupernet, decode_micro

            kw = {} if cfg.ops is None else {"primitives": tuple(cfg.ops)}
            self.net = MicroSupernet(ds.num_classes, ds.channels, C=cfg.channels, normal_layers=cfg.layers, channels_last=device.type == "cpu", **kw)
            self.layout = micro_layout(num_ops=len(self.net.primitives))
            self._decode = functools.partial(decode_micro, primitives=self.net.primitives)
        self.net.to(device)
        self.w_opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)

    def decode(self, actions: list) -> Any:
        return self._decode(actions)

    def train_shared(self, sample: Callable[[], list], bar: Bar, epoch: int) -> dict[str, float]:
        from nasforge.data import BatchLoader

        assert self.net is not None and self.w_opt is not None
        self.net.train()
        loss_sum = correct = seen = steps = 0.0
        loader = BatchLoader(self.train_pair, self.cfg.batch_size, shuffle=True, generator=self.gen)
        for x, y in bar(loader, "shared ω"):
            if self.cfg.max_steps is not None and steps >= self.cfg.max_steps:
                break
            arch = self.decode(sample())
            x, y = x.to(self.device), y.to(self.device)
            logits = self.net(x, arch)
            loss = F.cross_entropy(logits, y)
            self._check(loss, "the shared-weight loss", epoch)
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
            self.w_opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            steps += 1
        return {"train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1), "shared_steps": int(steps)}

    def valid_batch(self) -> Any:
        idx = torch.randint(0, len(self.valid_pair), (min(self.cfg.batch_size, len(self.valid_pair)),), generator=self.gen)
        b = self.valid_pair[idx]
        return b.x.to(self.device), b.y.to(self.device)

    @torch.no_grad()
    def reward(self, arch: Any, batch: Any) -> float:
        from nasforge.spaces.cell_supernet import frozen_bn_stats

        assert self.net is not None
        x, y = batch
        self.net.train()  # batch statistics (see nasforge.search.enas)
        with frozen_bn_stats(self.net):
            logits = self.net(x, arch)
        return float((logits.argmax(1) == y).float().mean())

    def accuracy(self, arch: Any, split: str = "valid", images: int | None = None) -> float:
        """Accuracy of ``arch`` with the shared weights on the first ``images`` (None: all)
        images of ``split`` (``valid``: the held-out part of the training images; ``test``:
        the test images), in minibatches of ``batch_size`` scored like the reward (batch
        statistics)."""
        if split not in ("valid", "test"):
            raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
        pair = self.valid_pair if split == "valid" else self.test_pair
        if images is not None:
            pair = pair[:images]
        correct = 0.0
        for i in range(0, len(pair), self.cfg.batch_size):
            b = pair[i : i + self.cfg.batch_size]
            correct += self.reward(arch, (b.x.to(self.device), b.y.to(self.device))) * len(b)
        return correct / max(len(pair), 1)


class RecurrentSpace(EnasSpace):
    """``rnn`` (:mod:`nasforge.spaces.enas_rnn`) on a word corpus."""

    def __init__(self, cfg: EnasConfig, device: torch.device, gen: torch.Generator):
        super().__init__(cfg, device, gen)
        from nasforge.data import batchify, load_corpus
        from nasforge.spaces.enas_rnn import RecurrentSupernet, decode_recurrent

        corpus = load_corpus(cfg.data, cfg.data_dir)
        self.train_data = batchify(corpus.train, cfg.batch_size).to(device)
        self.valid_data = batchify(corpus.valid, cfg.batch_size).to(device)
        self.net = RecurrentSupernet(
            len(corpus.dictionary), nhid=cfg.channels, num_nodes=cfg.layers, dropout=cfg.dropout,
            dropouth=cfg.dropouth, dropoutx=cfg.dropoutx, dropouti=cfg.dropouti, dropoute=cfg.dropoute,
        ).to(device)
        self.layout = recurrent_layout(cfg.layers)
        self._decode = decode_recurrent
        self.w_opt = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.hidden = self.net.init_hidden(cfg.batch_size)

    def decode(self, actions: list) -> Any:
        return self._decode(actions)

    def lr_at(self, epoch: int) -> float:
        cfg = self.cfg
        return cfg.lr * cfg.rnn_lr_decay ** max(0, epoch - cfg.rnn_lr_decay_start)

    def train_shared(self, sample: Callable[[], list], bar: Bar, epoch: int) -> dict[str, float]:
        from nasforge.data import get_batch

        assert self.net is not None and self.w_opt is not None
        cfg = self.cfg
        self.net.train()
        nll_sum = tokens = steps = 0.0
        positions = range(0, self.train_data.size(0) - 1, cfg.bptt)
        hidden = self.hidden
        for i in bar(positions, "shared ω"):
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
            x, y = get_batch(self.train_data, i, cfg.bptt)
            arch = self.decode(sample())
            log_prob, hidden = self.net(x, hidden.detach(), arch)
            loss = F.nll_loss(log_prob.view(-1, log_prob.size(-1)), y.reshape(-1))
            self._check(loss, "the shared-weight loss", epoch)
            self.w_opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
            self.w_opt.step()
            nll_sum += float(loss.detach()) * y.numel()
            tokens += y.numel()
            steps += 1
        self.hidden = hidden.detach()
        return {"train_ppl": math.exp(min(nll_sum / max(tokens, 1), 50.0)), "shared_steps": int(steps)}

    def valid_batch(self) -> Any:
        from nasforge.data import get_batch

        n = self.valid_data.size(0) - 1 - self.cfg.bptt
        i = int(torch.randint(0, max(n, 1), (1,), generator=self.gen))
        return get_batch(self.valid_data, i, self.cfg.bptt)

    @torch.no_grad()
    def reward(self, arch: Any, batch: Any) -> float:
        assert self.net is not None
        self.net.eval()
        x, y = batch
        log_prob, _ = self.net(x, self.net.init_hidden(x.size(1)), arch)
        self.net.train()
        ppl = math.exp(min(float(F.nll_loss(log_prob.view(-1, log_prob.size(-1)), y.reshape(-1))), 50.0))
        return self.cfg.reward_constant / ppl

    def eval_metrics(self, mean_reward: float) -> dict[str, float]:
        return {"valid_ppl": self.cfg.reward_constant / max(mean_reward, 1e-12)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "hidden": self.hidden}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.hidden = d["hidden"].to(self.device)


class TableSpace(EnasSpace):
    """``nb201``: the NAS-Bench-201 table; one query per controller step (no shared weights)."""

    def __init__(self, cfg: EnasConfig, device: torch.device, gen: torch.Generator, table: Any = None):
        super().__init__(cfg, device, gen)
        from nasforge.spaces.nb201_table import NB201Table

        self.table = table if table is not None else NB201Table.load(cfg.nb201_table)
        self.seen: dict[tuple[str, ...], float] = {}
        self.layout = nb201_layout()

    def decode(self, actions: list) -> tuple[str, ...]:
        from nasforge.ops import NB201_PRIMITIVES

        return tuple(NB201_PRIMITIVES[int(a)] for a in actions)

    def reward(self, arch: Any, batch: Any) -> float:
        return self.table.accuracy(arch, self.cfg.nb201_metric) / 100.0

    def arch_json(self, arch: Any) -> Any:
        return list(arch)

    def state_dict(self) -> dict:
        return {"seen": [[list(k), v] for k, v in self.seen.items()]}

    def load_state_dict(self, d: dict) -> None:
        self.seen = {tuple(k): float(v) for k, v in d["seen"]}


def make_space(cfg: EnasConfig, device: torch.device, gen: torch.Generator, table: Any = None) -> EnasSpace:
    if cfg.space == "nb201":
        return TableSpace(cfg, device, gen, table)
    if cfg.space == "rnn":
        return RecurrentSpace(cfg, device, gen)
    return ImageSpace(cfg, device, gen)
