"""SNAS: stochastic neural architecture search (Xie, Zheng, Liu & Lin, ICLR 2019).

On the same cell supernet as DARTS, every edge's op is a one-hot random variable
relaxed by the Gumbel-softmax (concrete) distribution (Sec. 2.2)::

    Z = softmax((log α + G) / τ),   G = −log(−log U),  U ~ Uniform(0, 1)

one sample per cell type per step (``--nsample 1`` in the official code), shared by all
cells of that type. A single loss — the network's cross-entropy on a training batch plus
the resource penalty — updates the weights θ and α together (single level: no held-out
batch, no second-order term; Sec. 2.3). The temperature is annealed linearly from 1.0 to
0.03 over the run (official ``Temp_Scheduler``: τ_e = (1 − e/E)(1 − 0.03) + 0.03, per
epoch). The resource constraint (Sec. 2.4) adds ``λ · C(Z)`` where ``C`` is the expected
cost of the sampled child, per edge ``Σ_k Z_k c_k`` with ``c_k`` the measured FLOPs,
parameters or memory access cost of op k at its place in the network
(:mod:`nasforge.search.resource`), or, with ``resource="latency"``, its forward time
measured on the search's device at its real shapes (:mod:`nasforge.search.latency`,
cached per device; not in the paper); ``log_penalty`` (default, as in the README command's
``--log_penalty``) uses ``log C`` instead of ``C`` / C_max.

Derivation (``genotype_edge_all`` in the official code): every edge keeps its argmax op,
``none`` included, no top-2 rule; edges whose argmax is ``none`` disappear, and so do
nodes left without edges (they are dropped from the cell output and renumbered). The
child keeps the supernet's weights and is evaluated without retraining every epoch
(``child_acc`` beside ``supernet_acc`` in ``metrics.jsonl``); ``nasforge train arch.json``
retrains it from scratch.

Defaults: official README command and ``train_search.py`` (SNAS-Series @9a43adb): 150
epochs, batch 64, 8 cells, C = 16; θ: SGD lr 0.025 cosine to 0.001, momentum 0.9, wd
3e-4, clip 5; α: Adam 3e-4, betas (0.5, 0.999), wd 1e-3 (the official script's
distributed branch; its single-GPU branch uses plain SGD at 3e-4 for α), α's gradient
clipped to norm 10; log α initialised N(1, 0.01). SNAS pools carry an affine BN in the final network (``op_set``
``snas``); in the search network all BNs are non-affine as in DARTS. λ presets are OUR
choice (which λ gave SNAS mild/moderate/aggressive is not documented): with the
log-scaled penalty summed over the chosen resources, mild 0.01, moderate 0.05,
aggressive 0.2; the README command's λ = 1.5e-3 is the official scale of its own penalty.
Drop path 0.3 on every edge output during the search (README command
``--drop_path_prob 0.3``; the official search cell applies it to each edge's mixed output
in training; we keep it constant over the run, whether the official script schedules it
was not checked). Like DARTS, the
training data are split 50/50: θ and α see only the first half, the second half gives
the held-out accuracies (the official code keeps a validation queue for reporting too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nasforge.arch import CellArch, CellGenotype
from nasforge.errors import ConfigError
from nasforge.search import resource
from nasforge.search.darts import run_supernet_search
from nasforge.search.registry import register_method
from nasforge.search.supernet_loop import SupernetConfig, SupernetSearch, nb201_arch

__all__ = ["SnasConfig", "SnasSearch", "gumbel_softmax_sample", "temperature", "derive_edge_all", "PRESETS"]

#: α's gradient is clipped to this norm before its step (official ``train_search.py``)
ARCH_GRAD_CLIP = 10.0

#: λ presets for the log-scaled penalty (our choice; see the module docstring)
PRESETS = {"none": 0.0, "mild": 0.01, "moderate": 0.05, "aggressive": 0.2}


@dataclass
class SnasConfig(SupernetConfig):
    epochs: int = 150
    temp: float = 1.0
    temp_min: float = 0.03
    temp_annealing: bool = True
    resource: str = "all"  # flops | params | mac | latency | all (flops+params+mac summed; README --separation all)
    preset: str = "mild"
    penalty: float | None = None  # λ; overrides the preset
    log_penalty: bool = True
    drop_path: float = 0.3  # on every edge output during the search (README --drop_path_prob 0.3)

    def validate(self) -> None:
        super().validate()
        if self.resource not in (*resource.ALL_RESOURCES, "all"):
            raise ConfigError(f"--resource must be one of {[*resource.ALL_RESOURCES, 'all']}, got {self.resource!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"--drop-path must be in [0, 1), got {self.drop_path}")
        if self.preset not in PRESETS:
            raise ConfigError(f"--preset must be one of {list(PRESETS)}, got {self.preset!r}")
        if not 0.0 < self.temp_min <= self.temp:
            raise ConfigError(f"temperatures must satisfy 0 < temp_min <= temp, got {self.temp_min} and {self.temp}")
        if self.penalty is not None and self.penalty < 0:
            raise ConfigError(f"--penalty must be >= 0, got {self.penalty}")

    @property
    def lam(self) -> float:
        return float(self.penalty) if self.penalty is not None else PRESETS[self.preset]

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(resource.RESOURCES) if self.resource == "all" else (self.resource,)


def temperature(epoch: int, epochs: int, t0: float = 1.0, t_min: float = 0.03) -> float:
    """Linear annealing of the official ``Temp_Scheduler``: ``(1 − e/E)(t0 − t_min) + t_min``."""
    return (1.0 - epoch / epochs) * (t0 - t_min) + t_min


def gumbel_softmax_sample(log_alpha: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``softmax((log α − log(−log U)) / τ)`` row-wise (official ``_get_categ_mask``)."""
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype).to(log_alpha.device)
    g = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
    return F.softmax((log_alpha + g) / tau, dim=-1)


def derive_edge_all(
    ops: list[int], primitives: tuple[str, ...], nodes: int, inputs: int, strength: torch.Tensor | None = None
) -> tuple[list[list[tuple[str, int]]], list[int], list[list[int]], list[int]]:
    """Argmax op per edge; drop ``none`` edges and nodes left without edges.

    Returns ``(nodes, concat)`` of the derived cell (renumbered) and ``(choice, keep)`` in
    supernet numbering (per-edge op lists; intermediate nodes kept in the output). If no
    node survives, the strongest non-``none`` edge from an input node is kept (``strength``:
    per-edge op probabilities).
    """
    none = primitives.index("none") if "none" in primitives else -1
    edges = [(inputs + j, i) for j in range(nodes) for i in range(inputs + j)]
    alive = set(range(inputs))
    node_edges: dict[int, list[tuple[int, int]]] = {}
    for e, (dst, src) in enumerate(edges):
        if ops[e] != none and src in alive:
            node_edges.setdefault(dst, []).append((e, src))
        if e == len(edges) - 1 or edges[e + 1][0] != dst:
            if node_edges.get(dst):
                alive.add(dst)
    if len(alive) == inputs:  # everything disappeared: keep the strongest non-none input edge
        best = None
        for e, (dst, src) in enumerate(edges):
            if src < inputs:
                row = strength[e] if strength is not None else torch.ones(len(primitives))
                for k in range(len(primitives)):
                    if k != none and (best is None or float(row[k]) > best[0]):
                        best = (float(row[k]), e, k, dst, src)
        assert best is not None
        _, e, k, dst, src = best
        ops = list(ops)
        ops[e] = k
        node_edges = {dst: [(e, src)]}
        alive = set(range(inputs)) | {dst}
    kept = sorted(n for n in alive if n >= inputs)
    renum = {n: n for n in range(inputs)}
    renum.update({n: inputs + r for r, n in enumerate(kept)})
    out_nodes = [[(primitives[ops[e]], renum[src]) for e, src in node_edges[n]] for n in kept]
    choice = [[] for _ in edges]
    for n in kept:
        for e, _src in node_edges[n]:
            choice[e] = [ops[e]]
    concat = [renum[n] for n in kept]
    return out_nodes, concat, choice, kept


class SnasSearch(SupernetSearch):
    method = "snas"

    def __init__(self, cfg: SnasConfig, run_dir=None, **kw):
        super().__init__(cfg, run_dir, **kw)
        self.noise = torch.Generator().manual_seed(cfg.seed + 2)
        self.net.drop_prob = cfg.drop_path
        self.tau = cfg.temp
        self._last_cost = float("nan")

    def init_alphas(self) -> None:
        """log α ~ N(1, 0.01) (official ``model_search.py``)."""
        self.alphas = {
            t: torch.empty(self.net.num_edges, self.net.num_ops).normal_(1.0, 0.01).to(self.device).requires_grad_(True)
            for t in self.net.cell_types
        }

    def costs(self) -> dict[str, dict[str, torch.Tensor]]:
        """The static costs, plus measured per-op latency (search batch, this device) for ``--resource latency``."""
        costs = super().costs()
        if resource.LATENCY in self.cfg.resources and resource.LATENCY not in costs:
            from nasforge.search.latency import measure_latency_costs
            from nasforge.search.supernet_loop import _cpu_copy

            costs[resource.LATENCY] = measure_latency_costs(
                _cpu_copy(self.net), self.input_shape, batch=self.cfg.batch_size, device=self.device, op_set="snas"
            )
        return costs

    def epoch_record(self, stats, lr):
        """The base record, with the latency's expected and child cost (seconds) when it is the resource."""
        record = super().epoch_record(stats, lr)
        costs = self.costs()
        if resource.LATENCY in costs:
            _, choice, _ = self.derive()
            w = {t: v.detach().cpu() for t, v in self.eval_weights().items()}
            record["expected_cost"][resource.LATENCY] = float(resource.expected_cost(w, costs[resource.LATENCY]))
            record["child_cost"][resource.LATENCY] = resource.child_cost(self.net.normalise(choice), costs[resource.LATENCY])
        return record

    def epoch_begin(self, epoch: int) -> None:
        cfg: SnasConfig = self.cfg  # type: ignore[assignment]
        self.tau = temperature(epoch, cfg.epochs, cfg.temp, cfg.temp_min) if cfg.temp_annealing else cfg.temp

    def sample(self) -> dict[str, torch.Tensor]:
        return {t: gumbel_softmax_sample(a, self.tau, self.noise) for t, a in self.alphas.items()}

    def step(self, train, heldout) -> dict[str, float]:
        cfg: SnasConfig = self.cfg  # type: ignore[assignment]
        x, y = train
        self.w_opt.zero_grad(set_to_none=True)
        self.a_opt.zero_grad(set_to_none=True)
        z = self.sample()
        logits = self.net(x, weights=z)
        ce = F.cross_entropy(logits, y)
        loss = ce
        penalty = torch.zeros(())
        if cfg.lam > 0:
            costs = self.costs()
            penalty = resource.resource_penalty(z, {r: costs[r] for r in cfg.resources}, cfg.resources, cfg.log_penalty)
            loss = loss + cfg.lam * penalty.to(loss.device)
        self.check_finite(loss, "the SNAS loss")
        loss.backward()
        alphas = list(self.alphas.values())
        self.dist.all_reduce_grads(alphas)
        torch.nn.utils.clip_grad_norm_(alphas, ARCH_GRAD_CLIP)
        self.a_opt.step()
        self.weight_step()
        return {
            "train_loss": float(ce.detach()),
            "train_acc": float((logits.detach().argmax(1) == y).float().mean()),
            "penalty": float(penalty.detach()),
        }

    def eval_weights(self) -> dict[str, torch.Tensor]:
        """A Gumbel-softmax sample at the current temperature (fixed noise per epoch)."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        with torch.no_grad():
            return {t: gumbel_softmax_sample(a.detach(), self.tau, g) for t, a in self.alphas.items()}

    def derive(self):
        cfg = self.cfg
        probs = {t: F.softmax(a.detach().cpu(), dim=-1) for t, a in self.alphas.items()}
        meta = {"method": "snas", "epoch": self.epoch, "space": cfg.space, "seed": cfg.seed, "lambda": cfg.lam, "resource": cfg.resource}
        if cfg.space == "cell":
            meta["ops"] = list(self.primitives)  # the candidates searched
        if cfg.space == "nb201":
            ops = [self.primitives[int(k)] for k in probs["normal"].argmax(-1)]
            return nb201_arch(ops, "snas-nb201", meta), {"normal": [[int(k)] for k in probs["normal"].argmax(-1)]}, None
        cells, choice, keep = {}, {}, {}
        for t in self.net.cell_types:
            ops = [int(k) for k in probs[t].argmax(-1)]
            nodes, concat, ch, kept = derive_edge_all(ops, self.primitives, self.net.nodes, self.net.inputs, probs[t])
            cells[t] = CellGenotype(nodes, concat)
            choice[t], keep[t] = ch, kept
        arch = CellArch(normal=cells["normal"], reduce=cells.get("reduce"), inputs=self.net.inputs, name="snas-search", op_set="snas", meta=meta)
        return arch, choice, keep

    def extra_metrics(self):
        return {"temperature": self.tau, "lambda": self.cfg.lam}

    def extra_state(self) -> dict:
        return {"noise": self.noise.get_state(), "tau": self.tau}

    def load_extra_state(self, d: dict) -> None:
        if "noise" in d:
            self.noise.set_state(d["noise"])
        self.tau = float(d.get("tau", self.tau))


@register_method("snas", config=SnasConfig, kind="one-shot", spaces=("cell", "nb201"), summary="SNAS: stochastic search with a resource penalty (Xie et al. 2019)")
def run_snas(cfg: SnasConfig, out=None, *, resume: bool = False, overwrite: bool = False, progress: bool = True):
    return run_supernet_search(SnasSearch, cfg, out, resume=resume, overwrite=overwrite, progress=progress)
