"""DARTS: differentiable architecture search (Liu, Simonyan & Yang, ICLR 2019).

Algorithm 1 of the paper, on the cell supernet (:mod:`nasforge.spaces.cell_supernet`):
every edge mixes all candidate ops with weights softmax(α) (eq. 2); alternate

1. update α by descending ``∇α L_val(w − ξ∇w L_train(w, α), α)`` (eq. 6): first order
   (ξ = 0) or second order (unrolled step + finite-difference Hessian-vector product,
   :class:`nasforge.search.architect.Architect`), on a batch of the held-out half;
2. update w by descending ``∇w L_train(w, α)`` on a batch of the training half;

then derive the discrete cell (Sec. 2.4): for every intermediate node keep the 2
strongest incoming edges, an edge's strength being its strongest non-``none`` op
(softmax(α)), and that op. On the NAS-Bench-201 space every edge keeps its argmax op
(``none`` included), as NAS-Bench-201's DARTS baseline does, and the cell is looked up
in the NAS-Bench-201 table.

Defaults (Sec. 3.1.1, App. A.1.1; ``cnn/train_search.py`` @f276dd3): 50 epochs, batch
64, 8 cells, C = 16, 4 nodes, training data split 50/50; w: SGD lr 0.025 cosine to 0.001
(paper: "annealed down to zero"), momentum 0.9, wd 3e-4, gradient clip 5; α: Adam
3e-4, betas (0.5, 0.999), wd 1e-3, initialised ``1e-3·randn`` (paper: zeros).
``--space rnn`` runs the recurrent-cell search (:mod:`nasforge.search.darts_rnn`).

``reuse_unrolled_grad`` (off by default, not in the paper): in second order, step w with
the gradient ∇w L_train(w, α_old) already computed for the unrolled step instead of a
fresh ∇w L_train(w, α_new) — one forward/backward less per step; α moved by one Adam step.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nasforge.arch import CellArch, CellGenotype
from nasforge.config import resolve
from nasforge.errors import ConfigError
from nasforge.ops import parse_ops
from nasforge.search.architect import Architect
from nasforge.search.supernet_loop import SupernetConfig, SupernetSearch, frozen_stats, nb201_arch

__all__ = ["DartsConfig", "DartsSearch", "add_arguments", "run_from_args", "derive_darts_cell"]


@dataclass
class DartsConfig(SupernetConfig):
    order: int = 1  # 1: first-order approximation, 2: unrolled second order
    reuse_unrolled_grad: bool = False

    def validate(self) -> None:
        super().validate()
        if self.order not in (1, 2):
            raise ConfigError(f"--order must be 1 or 2, got {self.order}")


def derive_darts_cell(probs: torch.Tensor, primitives: tuple[str, ...], nodes: int, inputs: int, k: int = 2) -> list[list[tuple[str, int]]]:
    """DARTS ``genotype()``: per node the ``k`` edges with the strongest non-``none`` op, and that op."""
    none = primitives.index("none") if "none" in primitives else -1
    out = []
    e = 0
    for j in range(nodes):
        n_in = inputs + j
        rows = probs[e : e + n_in]
        e += n_in
        best = []
        for i in range(n_in):
            order = [q for q in torch.argsort(rows[i], descending=True).tolist() if q != none]
            best.append((float(rows[i][order[0]]), i, primitives[order[0]]))
        top = sorted(best, key=lambda t: -t[0])[: min(k, n_in)]
        out.append([(op, i) for _, i, op in sorted(top, key=lambda t: t[1])])
    return out


class DartsSearch(SupernetSearch):
    method = "darts"

    def __init__(self, cfg: DartsConfig, run_dir=None, **kw):
        super().__init__(cfg, run_dir, **kw)
        self.architect = Architect(
            self.weights,
            list(self.alphas.values()),
            self._batch_loss,
            self.w_opt,
            self.a_opt,
            order=cfg.order,
            aux_context=frozen_stats(self.net),
            reduce=self.dist.all_reduce_mean,
            unrolled_updates_stats=cfg.order == 2 and cfg.reuse_unrolled_grad,
        )

    def _softmax(self) -> dict[str, torch.Tensor]:
        return {t: F.softmax(a, dim=-1) for t, a in self.alphas.items()}

    def _batch_loss(self, batch) -> torch.Tensor:
        x, y = batch
        return self.loss(x, y, self._softmax())

    def step(self, train, heldout) -> dict[str, float]:
        cfg: DartsConfig = self.cfg  # type: ignore[assignment]
        val_loss = self.architect.step(train, heldout)
        self.w_opt.zero_grad(set_to_none=True)
        x, y = train
        if cfg.order == 2 and cfg.reuse_unrolled_grad:
            grads = self.architect.last_train_grads()
            assert grads is not None
            for p, g in zip(self.weights, grads):
                p.grad = g.clone()
            train_loss, acc = self.architect.last_train_loss, float("nan")
        else:
            logits = self.net(x, weights={t: w.detach() for t, w in self._softmax().items()})
            loss = F.cross_entropy(logits, y)
            self.check_finite(loss, "the training loss")
            loss.backward()
            train_loss = float(loss.detach())
            acc = float((logits.detach().argmax(1) == y).float().mean())
        self.weight_step()
        return {"train_loss": train_loss, "train_acc": acc, "val_loss": val_loss}

    def derive(self):
        cfg = self.cfg
        probs = {t: F.softmax(a.detach().cpu(), dim=-1) for t, a in self.alphas.items()}
        meta = {"method": f"darts-{'1st' if cfg.order == 1 else '2nd'}", "epoch": self.epoch, "space": cfg.space, "seed": cfg.seed}
        if cfg.space == "cell":
            meta["ops"] = list(self.primitives)  # the candidates searched
        if cfg.space == "nb201":
            ops = [self.primitives[int(k)] for k in probs["normal"].argmax(-1)]
            arch = nb201_arch(ops, "darts-nb201", meta)
            choice = {"normal": [[int(k)] for k in probs["normal"].argmax(-1)]}
            return arch, choice, None
        cells = {t: derive_darts_cell(probs[t], self.primitives, self.net.nodes, self.net.inputs) for t in self.net.cell_types}
        concat = list(range(self.net.inputs, self.net.inputs + self.net.nodes))
        arch = CellArch(
            normal=CellGenotype(cells["normal"], concat),
            reduce=CellGenotype(cells["reduce"], concat) if "reduce" in cells else None,
            inputs=self.net.inputs,
            name="darts-search",
            op_set="darts",
            meta=meta,
        )
        choice = {t: self.net.choice_from_nodes(cells[t]) for t in self.net.cell_types}
        return arch, choice, None


# -- command line ------------------------------------------------------------------------------
_FLAGS = {
    "space": "space", "order": "order", "epochs": "epochs", "batch_size": "batch_size", "layers": "layers",
    "channels": "channels", "nodes": "nodes", "input_size": "input_size", "limit": "limit", "seed": "seed",
    "device": "device", "deterministic": "deterministic", "checkpoint_cells": "checkpoint_cells",
    "channels_last": "channels_last", "train_portion": "train_portion", "lr": "lr", "arch_lr": "arch_lr",
    "arch_weight_decay": "arch_weight_decay", "eval_limit": "eval_limit", "augment": "augment",
    "nb201_cells": "nb201_cells", "nb201_table": "nb201_table", "reuse_unrolled_grad": "reuse_unrolled_grad",
    "max_steps": "max_steps", "data_dir": "data_dir", "ops": "ops",
}


def add_common_supernet_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``search darts`` and ``search snas`` (defaults live in the config dataclass)."""
    p.add_argument("--space", default=None, help="search space: cell (DARTS CNN cells, default), nb201 (NAS-Bench-201 cell)" + (", rnn (recurrent cell)" if p.prog.endswith("darts") else ""))
    p.add_argument("--layers", type=int, default=None, help="cells in the search network (8)")
    p.add_argument("--channels", type=int, default=None, help="initial channels C (16)")
    p.add_argument("--nodes", type=int, default=None, help="intermediate nodes per cell (4)")
    p.add_argument("--ops", type=parse_ops, default=None, help="cell space: candidate ops, comma-separated registered names (default: the 8 DARTS ops)")
    p.add_argument("--nb201-cells", type=int, default=None, help="nb201 space: cells per stage (1; the benchmark uses 5)")
    p.add_argument("--nb201-table", default=None, help="nb201 space: NAS-Bench-201 CSV (default: $NASFORGE_DATA/nas-bench-201)")
    p.add_argument("--input-size", type=int, default=None, help="resize images to this side (default: as stored)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images per split (quick runs)")
    p.add_argument("--train-portion", type=float, default=None, help="share of the training data for the weights (0.5)")
    p.add_argument("--lr", type=float, default=None, help="weight learning rate (0.025, cosine to 0.001)")
    p.add_argument("--arch-lr", type=float, default=None, help="α learning rate (Adam, 3e-4)")
    p.add_argument("--arch-weight-decay", type=float, default=None, help="α weight decay (1e-3)")
    p.add_argument("--eval-limit", type=int, default=None, help="held-out images for the per-epoch accuracies (all)")
    p.add_argument("--augment", action="store_true", default=None, help="random crop + flip on training batches")
    p.add_argument("--checkpoint-cells", action="store_true", default=None, help="recompute each cell in backward (less memory)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=None, help="keep NCHW tensors")
    p.add_argument("--max-steps", type=int, default=None, help="at most this many training steps per epoch")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_supernet_arguments(p)
    p.add_argument("--order", type=int, choices=(1, 2), default=None, help="1: first order (default), 2: second order (unrolled)")
    p.add_argument("--reuse-unrolled-grad", action="store_true", default=None, help="2nd order: step w with the unrolled step's gradient")
    try:
        from nasforge.search.darts_rnn_config import add_rnn_arguments
    except ModuleNotFoundError:
        return
    add_rnn_arguments(p)


def config_from_args(cls, args: argparse.Namespace, flags: dict[str, str]):
    overrides = {k: getattr(args, a, None) for k, a in flags.items()}
    overrides["data"] = getattr(args, "data", None)
    yaml_path = getattr(args, "config", None)
    out = getattr(args, "out", None)
    if yaml_path is None and getattr(args, "resume", False) and out and (Path(out) / "config.yaml").is_file():
        yaml_path = Path(out) / "config.yaml"
    return resolve(cls, yaml_path, overrides)


def run_search(search_cls, cfg, args) -> int:
    from nasforge.search.ddp import shutdown

    search = search_cls(cfg, args.out, progress=not getattr(args, "no_progress", False))
    try:
        arch = search.run(resume=bool(getattr(args, "resume", False)))
        if search.dist.is_main and not getattr(args, "no_progress", False):
            print(f"derived architecture -> {Path(args.out) / 'arch.json'} ({arch.meta.get('method', '')})")
    finally:
        shutdown(search.dist)
    return 0


def run_from_args(args: argparse.Namespace) -> int:
    if getattr(args, "space", None) == "rnn":
        from nasforge.search.darts_rnn import run_rnn_search

        if getattr(args, "ops", None) is not None:
            raise ConfigError("--ops is for --space cell; the rnn space has its fixed activation list")

        return run_rnn_search(args)
    return run_search(DartsSearch, config_from_args(DartsConfig, args, _FLAGS), args)
