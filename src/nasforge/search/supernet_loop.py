"""What DARTS and SNAS share: data, supernet, the epoch, state; the run itself is the one-shot loop's.

A strategy subclasses :class:`SupernetSearch` and supplies ``step`` (one optimisation
step on a train batch and a held-out batch), ``eval_weights`` (op weights used to
evaluate the supernet), ``derive`` (the discrete architecture) and, optionally, extra
per-epoch metrics. Everything else — the 50/50 split of the training data (DARTS Sec. 3.1.1:
half for the weights, half for α), the cosine learning rate, evaluation of the supernet
and of the derived child **with the supernet's weights** (no retraining), the epoch record
and data-parallel processes (:mod:`nasforge.search.ddp`) — lives here; run folder, metrics,
checkpoints and ``--resume`` are :func:`nasforge.search.oneshot.run_oneshot`'s.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch import CellArch
from nasforge.errors import CheckpointError, ConfigError, TrainingError
from nasforge.ops import DARTS_PRIMITIVES, NB201_PRIMITIVES, check_ops
from nasforge.search import resource
from nasforge.search.oneshot import ConfigBacked
from nasforge.search.ddp import DistContext, init_from_env
from nasforge.search.nb201_cells import nb201_arch, nb201_ops  # noqa: F401  (used by darts, snas, enas)
from nasforge.spaces.cell_supernet import CellSupernet, frozen_bn_stats
from nasforge.spaces.nb201_supernet import NB201Supernet
from nasforge.utils.device import resolve_device
from nasforge.utils.rng import get_rng_state, seed_everything, set_deterministic, set_rng_state

SPACES = ("cell", "nb201")
log = logging.getLogger(__name__)


@dataclass
class SupernetConfig:
    """Defaults: DARTS Sec. 3.1.1/A.1.1 and ``cnn/train_search.py`` @f276dd3 unless noted."""

    space: str = "cell"  # cell (DARTS CNN cells) | nb201 (NAS-Bench-201 cell)
    ops: list[str] | None = None  # cell space: candidate op names (α column order); None = DARTS_PRIMITIVES
    data: str = "digits"
    data_dir: str | None = None
    limit: int | None = None  # at most this many images per split (quick runs)
    input_size: int | None = None  # resize images to this side (bilinear); None = as stored
    epochs: int = 50
    batch_size: int = 64
    layers: int = 8
    channels: int = 16
    nodes: int = 4  # intermediate nodes (nb201: 3)
    nb201_cells: int = 1  # NAS-Bench-201 cells per stage (benchmark: 5)
    train_portion: float = 0.5  # share of the training data for the weights; the rest is held out
    augment: bool = False  # random crop + flip (DARTS uses them on CIFAR)
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_beta1: float = 0.5
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3
    max_steps: int | None = None  # at most this many steps per epoch (quick runs)
    eval_limit: int | None = None  # held-out images used for per-epoch accuracies (None: all)
    checkpoint_cells: bool = False  # recompute each cell in backward (memory)
    channels_last: bool = True
    nb201_table: str | None = None  # NAS-Bench-201 CSV (default $NASFORGE_DATA/nas-bench-201)
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False

    def validate(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"--space must be one of {list(SPACES)} for this method, got {self.space!r}")
        for name in ("epochs", "batch_size", "layers", "channels", "nodes", "nb201_cells"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.train_portion < 1.0:
            raise ConfigError(f"train_portion must be in (0, 1), got {self.train_portion}")
        if self.input_size is not None and self.input_size < 2:
            raise ConfigError(f"input_size must be >= 2, got {self.input_size}")
        if self.ops is not None:
            if self.space != "cell":
                raise ConfigError(f"--ops is for --space cell; the {self.space} space has its fixed op list")
            check_ops(self.ops, "--ops")


def cosine_lr(cfg: SupernetConfig, epoch: int) -> float:
    """``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` at ``epoch`` (DARTS code: to 0.001, paper: to 0)."""
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / cfg.epochs))


def entropy(p: torch.Tensor) -> float:
    """Mean over edges of the entropy (nats) of each edge's op distribution."""
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean())


class SupernetSearch(ConfigBacked):
    """Base class of the differentiable searches over a cell supernet."""

    method = "supernet"
    #: per cell type, the architecture logits (α); created by subclasses in ``init_alphas``
    alphas: dict[str, torch.Tensor]

    def __init__(self, cfg: SupernetConfig, run_dir: str | Path | None = None, *, progress: bool = True, dist_ctx: DistContext | None = None):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.dist = dist_ctx if dist_ctx is not None else init_from_env(self.device)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        if cfg.deterministic:
            set_deterministic(True)
        seed_everything(cfg.seed)
        self._load_data()
        self.net = self._build_net().to(self.device)
        self.primitives = self.net.primitives
        self.init_alphas()
        self.dist.broadcast(list(self.net.parameters()) + list(self.net.buffers()) + list(self.alphas.values()))
        self.weights = [p for p in self.net.parameters() if p.requires_grad]
        self.w_opt = torch.optim.SGD(self.weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.a_opt = torch.optim.Adam(
            list(self.alphas.values()), lr=cfg.arch_lr, betas=(cfg.arch_beta1, cfg.arch_beta2), weight_decay=cfg.arch_weight_decay
        )
        self.epoch = 0  # epochs completed
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)  # batch order, augmentation
        self.history: list[dict] = []
        self._costs: dict[str, dict[str, torch.Tensor]] | None = None
        self._nb201 = None

    # -- set-up ---------------------------------------------------------------------------
    def _load_data(self) -> None:
        from nasforge.data import Augment, load_image_dataset, split

        cfg = self.cfg
        ds = load_image_dataset(cfg.data, cfg.data_dir, seed=cfg.seed, limit=cfg.limit, input_size=cfg.input_size)
        self.num_classes = ds.num_classes
        self.in_channels = ds.channels
        self.train_pair, self.heldout_pair = split(ds.train, 1.0 - cfg.train_portion, seed=cfg.seed)
        if len(self.train_pair) == 0 or len(self.heldout_pair) == 0:
            raise ConfigError(f"data set {cfg.data!r} is too small to split with train_portion={cfg.train_portion}")
        self.augment = Augment.for_dataset(ds, crop_padding=min(4, ds.size // 4)) if cfg.augment else None
        size = cfg.input_size or int(ds.size)
        self.input_shape = (ds.channels, size, size)

    def _build_net(self) -> nn.Module:
        cfg = self.cfg
        if cfg.space == "nb201":
            return NB201Supernet(
                self.num_classes, self.in_channels, C=cfg.channels, cells_per_stage=cfg.nb201_cells, nodes=3,
                primitives=NB201_PRIMITIVES, channels_last=cfg.channels_last, checkpoint_cells=cfg.checkpoint_cells,
            )
        return CellSupernet(
            self.num_classes, self.in_channels, C=cfg.channels, layers=cfg.layers, nodes=cfg.nodes,
            primitives=tuple(cfg.ops) if cfg.ops is not None else DARTS_PRIMITIVES, op_set=self.op_set, channels_last=cfg.channels_last,
            checkpoint_cells=cfg.checkpoint_cells,
        )

    op_set = "darts"

    def init_alphas(self) -> None:
        """DARTS code: ``1e-3 · randn`` per cell type (the paper says zeros)."""
        self.alphas = {
            t: (1e-3 * torch.randn(self.net.num_edges, self.net.num_ops)).to(self.device).requires_grad_(True)
            for t in self.net.cell_types
        }

    # -- hooks for strategies -------------------------------------------------------------------
    def step(self, train: tuple[torch.Tensor, torch.Tensor], heldout: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def eval_weights(self) -> dict[str, torch.Tensor]:
        return {t: F.softmax(a.detach(), dim=-1) for t, a in self.alphas.items()}

    def derive(self) -> tuple[CellArch, dict[str, list[list[int]]], dict[str, list[int]] | None]:
        """The discrete architecture, its per-edge choice and cell outputs in supernet numbering."""
        raise NotImplementedError

    def epoch_begin(self, epoch: int) -> None:
        pass

    def extra_metrics(self) -> dict[str, Any]:
        return {}

    # -- data -----------------------------------------------------------------------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_size is not None and x.shape[-1] != self.cfg.input_size:
            x = F.interpolate(x, size=(self.cfg.input_size, self.cfg.input_size), mode="bilinear", align_corners=False)
        return x

    def _batches(self, pair, shuffle: bool = True):
        from nasforge.data import BatchLoader

        loader = BatchLoader(pair, self.cfg.batch_size, shuffle=shuffle, generator=self.gen if shuffle else None, augment=self.augment if shuffle else None)
        for x, y in loader:
            x, y = self.dist.shard(x), self.dist.shard(y)
            yield self._prep(x).to(self.device), y.to(self.device)

    def loss(self, x: torch.Tensor, y: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self.net(x, weights=weights), y)

    def check_finite(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss.detach()).all():
            raise TrainingError(f"{what} became {float(loss)} in epoch {self.epoch + 1}: lower the learning rates")

    def weight_step(self, grads_from_backward: bool = True) -> None:
        self.dist.all_reduce_grads(self.weights)
        nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip)
        self.w_opt.step()

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def accuracy(self, weights=None, choice=None, concat=None) -> float:
        self.net.eval()
        correct = total = 0
        limit = self.cfg.eval_limit
        pair = self.heldout_pair if limit is None else self.heldout_pair[: min(limit, len(self.heldout_pair))]
        for x, y in self._batches(pair, shuffle=False):
            out = self.net(x, weights=weights, choice=choice, concat=concat)
            correct += int((out.argmax(1) == y).sum())
            total += int(y.numel())
        self.net.train()
        c = torch.tensor([float(correct), float(total)])
        if self.dist.active:
            import torch.distributed as dist

            dist.all_reduce(c)
        return float(c[0] / max(c[1], 1.0))

    def costs(self) -> dict[str, dict[str, torch.Tensor]]:
        if self._costs is None:
            self._costs = resource.measure_costs(_cpu_copy(self.net), self.input_shape)
        return self._costs

    def nb201_lookup(self, arch: CellArch) -> dict[str, float] | None:
        from nasforge.errors import NasforgeError
        from nasforge.spaces.nb201_table import NB201Table

        if self._nb201 is None:
            try:
                self._nb201 = NB201Table.load(self.cfg.nb201_table)
            except NasforgeError as e:
                log.warning("NAS-Bench-201 table not available (%s); no lookup", e)
                self._nb201 = False
        if self._nb201 is False:
            return None
        ops = nb201_ops(arch)
        return {m: self._nb201.accuracy(ops, m) for m in ("cifar10-val", "cifar10-test", "cifar100-test", "imagenet-test")}

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "method": self.method,
            "epoch": self.epoch,
            "config": dataclasses.asdict(self.cfg),
            "net": self.net.state_dict(),
            "alphas": {t: a.detach().cpu() for t, a in self.alphas.items()},
            "w_opt": self.w_opt.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            "gen": self.gen.get_state(),
            "rng": get_rng_state(),
            "history": self.history,
            "extra": self.extra_state(),
        }

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, d: dict) -> None:
        pass

    def load_state_dict(self, sd: dict) -> None:
        if sd.get("method") != self.method:
            raise CheckpointError(f"checkpoint is from method {sd.get('method')!r}, not {self.method!r}")
        try:
            self.net.load_state_dict(sd["net"])
            with torch.no_grad():
                for t, a in self.alphas.items():
                    a.copy_(sd["alphas"][t].to(a.device))
            self.w_opt.load_state_dict(sd["w_opt"])
            self.a_opt.load_state_dict(sd["a_opt"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not fit this search configuration ({str(e).splitlines()[0][:160]})") from None
        self.gen.set_state(sd["gen"])
        set_rng_state(sd["rng"])
        self.epoch = int(sd["epoch"])
        self.history = list(sd.get("history", []))
        self.load_extra_state(sd.get("extra", {}))

    # -- the loop ---------------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        from tqdm import tqdm

        sums: dict[str, float] = {}
        n = 0
        heldout = self._cycle(self.heldout_pair)
        batches = self._batches(self.train_pair)
        total = (len(self.train_pair) + self.cfg.batch_size - 1) // self.cfg.batch_size
        bar = tqdm(batches, total=total, disable=not (self.progress and self.dist.is_main), desc=f"{self.method} epoch {self.epoch + 1}/{self.cfg.epochs}", leave=False)
        for train in bar:
            stats = self.step(train, next(heldout))
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if self.cfg.max_steps is not None and n >= self.cfg.max_steps:
                break
            bar.set_postfix(loss=f"{stats.get('train_loss', 0.0):.3f}")
        return {k: v / max(n, 1) for k, v in sums.items()}

    def _cycle(self, pair):
        while True:
            yield from self._batches(pair)

    # -- the one-shot protocol (nasforge.search.oneshot; space, config_dict, finished: ConfigBacked) ----

    def run_epoch(self) -> tuple[dict[str, Any], CellArch]:
        t0 = time.time()
        lr = cosine_lr(self.cfg, self.epoch)
        for g in self.w_opt.param_groups:
            g["lr"] = lr
        self.epoch_begin(self.epoch)
        stats = self.train_epoch()
        record = self.epoch_record(stats, lr)
        record["seconds"] = round(time.time() - t0, 3)
        arch = record.pop("_arch")
        self.epoch += 1
        self.history.append({k: record[k] for k in ("epoch", "supernet_acc", "child_acc") if k in record})
        return record, arch

    def final_arch(self, last: CellArch | None) -> CellArch:
        return last if last is not None else self.derive()[0]

    def epoch_line(self, r: dict) -> str:
        return (f"{self.method} epoch {r['epoch']}/{self.cfg.epochs}: train loss {r.get('train_loss', float('nan')):.4f}, "
                f"supernet acc {r['supernet_acc']:.4f}, child acc {r['child_acc']:.4f}")

    def run(self, resume: bool = False, overwrite: bool = False) -> CellArch:
        """Search ``cfg.epochs`` epochs; ``resume`` continues the run folder's checkpoint,
        ``overwrite`` replaces a run already there (:func:`nasforge.search.oneshot.run_oneshot`)."""
        from nasforge.search.oneshot import run_oneshot

        return run_oneshot(self, self.run_dir, resume=resume, overwrite=overwrite, progress=self.progress)

    def epoch_record(self, stats: dict[str, float], lr: float) -> dict[str, Any]:
        arch, choice, concat = self.derive()
        arch.meta["epoch"] = self.epoch + 1  # epochs completed when this arch was derived
        w = self.eval_weights()
        record: dict[str, Any] = {"epoch": self.epoch + 1, "lr": lr}
        record.update(stats)
        record["supernet_acc"] = self.accuracy(weights=w)
        record["child_acc"] = self.accuracy(choice=choice, concat=concat)
        record["arch"] = arch.to_dict()
        probs = {t: F.softmax(a.detach().cpu(), dim=-1) for t, a in self.alphas.items()}
        record["alpha_softmax"] = {t: [[round(float(v), 5) for v in row] for row in p] for t, p in probs.items()}
        record["entropy"] = {t: entropy(p) for t, p in probs.items()}
        costs = self.costs()
        wc = {t: v.detach().cpu() for t, v in w.items()}
        record["expected_cost"] = {r: float(resource.expected_cost(wc, costs[r])) for r in resource.RESOURCES}
        record["child_cost"] = {r: resource.child_cost(self.net.normalise(choice), costs[r]) for r in resource.RESOURCES}
        if self.cfg.space == "nb201":
            record["nb201"] = self.nb201_lookup(arch)
        record.update(self.extra_metrics())
        record["_arch"] = arch
        return record


def _cpu_copy(net: nn.Module) -> nn.Module:
    import copy

    c = copy.deepcopy(net).to("cpu").float()
    c.checkpoint_cells = False
    return c


def frozen_stats(net: nn.Module):
    return lambda: frozen_bn_stats(net)
