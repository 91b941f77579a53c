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

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nasforge.arch import CellArch, CellGenotype
from nasforge.errors import ConfigError
from nasforge.search.architect import Architect
from nasforge.search.registry import SearchResult, register_method
from nasforge.search.supernet_loop import SupernetConfig, SupernetSearch, frozen_stats, nb201_arch

__all__ = ["DartsConfig", "DartsSearch", "derive_darts_cell", "run_darts", "run_supernet_search"]


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


# -- entry point -----------------------------------------------------------------------------------
def run_supernet_search(search_cls, cfg, out, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> SearchResult:
    """Run a DARTS/SNAS search (``out``: the run folder, or ``None`` for no files)."""
    from nasforge.search.ddp import shutdown

    search = search_cls(cfg, out, progress=progress)
    try:
        arch = search.run(resume=resume, overwrite=overwrite)
    finally:
        shutdown(search.dist)
    last = search.history[-1] if search.history else {}
    metrics = {k: float(v) for k, v in last.items() if k in ("supernet_acc", "child_acc")}
    return SearchResult(search.method, cfg.space, arch, Path(out) if out is not None else None, metrics)


@register_method("darts", config=DartsConfig, kind="one-shot", spaces=("cell", "nb201"), summary="DARTS: differentiable search (Liu et al. 2019)")
def run_darts(cfg: DartsConfig, out=None, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> SearchResult:
    return run_supernet_search(DartsSearch, cfg, out, resume=resume, overwrite=overwrite, progress=progress)
