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
``nb201``, each an adapter in :mod:`nasforge.search.enas_spaces`; the epochs, run folder,
checkpoints and ``--resume`` are the one-shot loop's (:mod:`nasforge.search.oneshot`). Defaults left as ``None`` depend on the space (:meth:`EnasConfig.resolved`,
in :mod:`nasforge.search.enas_config` with the command-line flags).
Validation data: ENAS holds out 5,000 of CIFAR-10's 50,000 training images
(``train_portion = 0.9``); PTB uses its validation split.

BatchNorm while rewarding: children are scored with batch statistics (the running
statistics are shared by every child and do not describe any one of them), without
updating the running statistics.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from nasforge.errors import CheckpointError
from nasforge.search.enas_config import SPACES, EnasConfig, cosine_restart_lr
from nasforge.search.enas_controller import Controller, Reinforce
from nasforge.search.enas_spaces import EnasSpace, make_space
from nasforge.search.oneshot import ConfigBacked
from nasforge.search.registry import SearchResult, register_method
from nasforge.utils.device import resolve_device
from nasforge.utils.rng import get_rng_state, seed_everything, set_deterministic, set_rng_state


class ENAS(ConfigBacked):
    """ENAS search over a shared-weight space; ``run()`` returns the derived architecture."""

    method = "enas"

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
        self.sp: EnasSpace = make_space(cfg, self.device, self.gen, table)  # nb201: table = a loaded NB201Table
        self.net, self.w_opt, self.layout = self.sp.net, self.sp.w_opt, self.sp.layout
        self.decode = self.sp.decode
        self.controller = Controller(
            self.layout, hidden=cfg.controller_hidden, tanh_constant=cfg.tanh_constant,
            temperature=cfg.temperature, skip_target=cfg.skip_target,
        ).to(self.device)
        self.rl = Reinforce(
            self.controller, lr=cfg.controller_lr, baseline_decay=cfg.baseline_decay,
            entropy_weight=cfg.entropy_weight, skip_weight=cfg.skip_weight, aggregate=cfg.controller_aggregate,
        )

    # -- shared weights, rewards, deriving ------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        return self.sp.lr_at(epoch)

    def train_shared(self) -> dict[str, float]:
        """One epoch on ω, a fresh child per minibatch (§2.2, "Training the shared parameters ω")."""
        return self.sp.train_shared(self.controller.sample, self._bar, self.epoch)

    def reward(self, arch: Any, batch: Any) -> float:
        """Validation accuracy of ``arch`` on ``batch`` (RNN: ``c / perplexity``; NB201: table)."""
        return self.sp.reward(arch, batch)

    def train_controller(self, steps: int) -> dict[str, Any]:
        """``steps`` REINFORCE steps, each on a fresh validation minibatch (§2.2, "Training θ")."""
        stats: list[dict] = []
        for _ in self._bar(range(steps), "controller θ"):
            batch = self.sp.valid_batch()
            stats.append(self.rl.step(lambda actions: self.reward(self.decode(actions), batch)))
        best = max(stats, key=lambda s: s["best_reward"])
        mean = {k: sum(s[k] for s in stats) / len(stats) for k in ("reward", "entropy", "loss")}
        return {
            "reward": mean["reward"], "baseline": self.rl.baseline, "entropy": mean["entropy"], "controller_loss": mean["loss"],
            "best_reward": best["best_reward"], "best_actions": best["best_actions"],
        }

    def derive(self, samples: int | None = None) -> tuple[Any, float]:
        """Sample ``derive_samples`` children and keep the best on one validation minibatch."""
        batch = self.sp.valid_batch()
        best: tuple[float, Any] | None = None
        for _ in range(samples or self.cfg.derive_samples):
            arch = self.decode(self.controller.sample())
            r = self.reward(arch, batch)
            if best is None or r > best[0]:
                best = (r, arch)
        assert best is not None
        return best[1], best[0]

    def accuracy(self, arch: Any, split: str = "valid", images: int | None = None) -> float:
        """Accuracy of a child with the current shared weights on an image split (``valid``
        or ``test``, its first ``images`` images or all; micro and macro spaces), scored
        like the reward."""
        return self.sp.accuracy(arch, split, images)

    def evaluate(self, arch: Any) -> dict[str, float]:
        """Per-epoch metrics of a child on ``eval_batches`` validation minibatches."""
        vals = [self.reward(arch, self.sp.valid_batch()) for _ in range(self.cfg.eval_batches)]
        return self.sp.eval_metrics(sum(vals) / len(vals))

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "rl": self.rl.state_dict(),
            "rng": get_rng_state(),
            "gen": self.gen.get_state(),
            "history": self.history,
            "config": dataclasses.asdict(self.cfg),
            **self.sp.state_dict(),
        }

    def load_state_dict(self, d: dict) -> None:
        saved = d.get("config", {})
        for key in ("space", "layers", "channels", "data"):
            if key in saved and saved[key] != getattr(self.cfg, key):
                raise CheckpointError(f"checkpoint was written with {key}={saved[key]!r} but this run has {key}={getattr(self.cfg, key)!r}")
        self.epoch = int(d["epoch"])
        self.rl.load_state_dict(d["rl"])
        self.sp.load_state_dict(d)
        self.history = list(d["history"])
        self.gen.set_state(d["gen"])
        set_rng_state(d["rng"])

    def _bar(self, it, desc: str):
        if not self.progress:
            return it
        from tqdm import tqdm

        return tqdm(it, desc=f"epoch {self.epoch + 1} {desc}", leave=False, dynamic_ncols=True)

    # -- the one-shot protocol (nasforge.search.oneshot; space, config_dict: ConfigBacked) ------
    def finished(self) -> bool:
        if self.cfg.space == "nb201":
            return self.rl.steps >= self.cfg.trials
        return self.epoch >= self.cfg.epochs

    def run_epoch(self) -> tuple[dict, None]:
        """Shared weights, then the controller (nb201: ``controller_steps`` table queries)."""
        record = self._nb201_epoch() if self.cfg.space == "nb201" else self._epoch()
        self.epoch += 1
        self.history.append(record)
        return record, None

    def _epoch(self) -> dict:
        t0 = time.time()
        lr = self.lr_at(self.epoch)
        for g in self.w_opt.param_groups:  # type: ignore[union-attr]
            g["lr"] = lr
        shared = self.train_shared()
        ctrl = self.train_controller(self.cfg.controller_steps)
        best_arch = self.decode(ctrl.pop("best_actions"))
        return {"epoch": self.epoch + 1, "lr": lr, **shared, **ctrl, **self.evaluate(best_arch),
                "best_arch": self.sp.arch_json(best_arch), "time": time.time() - t0}

    def _nb201_epoch(self) -> dict:
        """The controller as a multi-trial strategy over the NAS-Bench-201 table: one query per
        REINFORCE step; the result is the best-by-validation cell."""
        from nasforge.spaces.nb201_table import ops_to_cellstr

        cfg, seen, table = self.cfg, self.sp.seen, self.sp.table  # type: ignore[attr-defined]
        n = min(cfg.controller_steps, cfg.trials - self.rl.steps)
        stats: list[dict] = []
        for _ in self._bar(range(n), "controller θ"):
            def reward(actions: list) -> float:
                ops = self.decode(actions)
                seen[ops] = self.reward(ops, None)
                return seen[ops]

            stats.append(self.rl.step(reward))
        best_ops = max(seen, key=seen.get)
        return {
            "epoch": self.epoch + 1, "queries": self.rl.steps,
            "reward": sum(s["reward"] for s in stats) / len(stats), "baseline": self.rl.baseline,
            "entropy": sum(s["entropy"] for s in stats) / len(stats),
            "controller_loss": sum(s["loss"] for s in stats) / len(stats),
            "best_arch": ops_to_cellstr(best_ops), "best_reward": seen[best_ops],
            "best_test_acc": table.accuracy(best_ops, "cifar10-test"),
        }

    def final_arch(self, last: Any) -> Any:
        """The derived child (§2.2 "Deriving Architectures"); nb201: the best cell queried."""
        if self.cfg.space == "nb201":
            from nasforge.search.nb201_cells import nb201_arch

            seen = self.sp.seen  # type: ignore[attr-defined]
            best_ops = max(seen, key=seen.get)
            return nb201_arch(list(best_ops), "ENAS_nb201", {"method": "enas", "space": "nb201", "queries": self.rl.steps,
                                                             "valid_acc": seen[best_ops] * 100.0})
        arch, reward = self.derive()
        arch.meta = {**arch.meta, "method": "enas", "space": self.cfg.space, "data": self.cfg.data, "reward": reward,
                     "epochs": self.cfg.epochs, "seed": self.cfg.seed}
        return arch

    def epoch_line(self, r: dict) -> str:
        what = f"{r['queries']} queries" if "queries" in r else f"epoch {r['epoch']}/{self.cfg.epochs}"
        return f"enas {what}: reward {r['reward']:.4f}, best reward {r['best_reward']:.4f}"

    def run(self, resume: bool = False, overwrite: bool = False) -> Any:
        """Alternate shared-weight and controller training, derive, write arch.json
        (:func:`nasforge.search.oneshot.run_oneshot`); nb201: returns the best cell's ops."""
        from nasforge.search.oneshot import run_oneshot

        arch = run_oneshot(self, self.run_dir, resume=resume, overwrite=overwrite, progress=self.progress)
        if self.cfg.space == "nb201":
            from nasforge.search.nb201_cells import nb201_ops

            return nb201_ops(arch)
        return arch


def load_search(run_dir: str | Path, *, initial: bool = False, device: str = "cpu") -> ENAS:
    """The ENAS search of a run folder, for analysis after it: its shared weights (``.net``)
    and controller (``.controller``) as saved in ``checkpoint.pt`` after the last finished
    epoch (loaded with ``weights_only=True``), with its data splits (``.accuracy``,
    ``.reward``, ``.derive``). ``initial=True``: the same search (config and seed) before
    any training, i.e. the controller and shared weights at their initial values."""
    from nasforge.config import from_dict
    from nasforge.utils.io import load_checkpoint
    from nasforge.utils.rundir import CHECKPOINT

    path = Path(run_dir) / CHECKPOINT
    ckpt = load_checkpoint(path, map_location=device)
    header = ckpt.get("header") or {}
    if header.get("method") != "enas" or "config" not in ckpt or "rl" not in ckpt:
        raise CheckpointError(f"{path} is not the checkpoint of an ENAS search (method {header.get('method')!r})")
    cfg = from_dict(EnasConfig, {**ckpt["config"], "device": device}, where=str(path))
    search = ENAS(cfg, None, progress=False)
    if not initial:
        search.load_state_dict(ckpt)
    return search


@register_method(
    "enas", config=EnasConfig, kind="one-shot", spaces=tuple(s for s in SPACES if s != "nb201"), space_defaults={"rnn": {"data": "ptb"}},
    summary="ENAS: a REINFORCE controller over shared weights (Pham et al. 2018)",
)
def run_enas(cfg: EnasConfig, out=None, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> SearchResult:
    search = ENAS(cfg, out, progress=progress)
    arch = search.run(resume=resume, overwrite=overwrite)
    if not hasattr(arch, "to_dict") and out is not None and (Path(out) / "arch.json").is_file():
        from nasforge.arch import load_arch

        arch = load_arch(Path(out) / "arch.json")  # the NB201 mode returns the best cell's ops
    last = search.history[-1] if getattr(search, "history", None) else {}
    keys = ("valid_acc", "valid_ppl", "best_valid_acc", "best_test_acc", "reward")
    metrics = {k: float(last[k]) for k in keys if isinstance(last, dict) and isinstance(last.get(k), (int, float))}
    return SearchResult("enas", cfg.space, arch, Path(out) if out is not None else None, metrics)
