"""Early-stop evaluation of a block: a short training run whose accuracy is the reward.

Zhong et al., CVPR 2018, §3.3 ("Early Stop Strategy") and §4.1. The paper trains each
sampled network briefly and corrects its accuracy for cost (eq. 7):

    reward = ACC_EarlyStop − μ·log(FLOPs) − ρ·log(Density),   Density = edges / nodes

Values used in the paper's CIFAR search [S: Gomez Robles & Vanschoren, arXiv 1911.03769,
"parameters used in BlockQNN"]: 12 epochs, Adam (lr 0.001, β 0.9/0.999, ε 1e-8), learning
rate ×0.2 every 5 epochs, prediction head FC 1024 + ReLU + dropout 0.4 + FC. μ and ρ: the
paper's values could not be checked [U] (the Keras reproduction hard-codes μ = 1, ρ = 8
on its own FLOP scale; another uses 0.5/0.5); our defaults are μ = 0.005, ρ = 0.01 with
FLOPs counted per image, which shifts the accuracy by a few hundredths at most between
blocks (see ``docs/blockqnn.md``).

Our defaults for a quick search on ``digits`` (8×8): 2 epochs, batch 64, ``C = 8``,
one block per stage, 3 stages, head FC 64. The functions here run in worker processes
(process pool or Ray): :func:`evaluate` takes a plain-dict task and returns plain metrics.
"""

from __future__ import annotations

import math
import os
import time
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from nasforge.arch import arch_from_dict
from nasforge.errors import TrainingError

#: early-stop settings of the paper's CIFAR search [S]
PAPER_EARLY_STOP = {"epochs": 12, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "lr_step": 5, "lr_gamma": 0.2, "head_hidden": 1024, "dropout": 0.4}

#: defaults of our quick search on digits
DEFAULTS: dict[str, Any] = {
    "data": "digits",
    "data_dir": None,
    "epochs": 2,
    "batch_size": 64,
    "lr": 1e-3,
    "lr_step": 5,
    "lr_gamma": 0.2,
    "channels": 8,
    "blocks_per_stage": 1,
    "stages": 3,
    "style": "cifar",
    "head_hidden": 64,
    "dropout": 0.4,
    "valid_fraction": 0.2,
    "limit": None,
    "seed": 0,
    "device": "cpu",
    "threads": 1,
    "deterministic": False,
}


def cost_corrected_reward(accuracy: float, flops: float | None, density: float | None, mu: float, rho: float) -> float:
    """Eq. 7 (terms with a missing or non-positive cost are dropped)."""
    r = float(accuracy)
    if mu and flops and flops > 0:
        r -= mu * math.log(flops)
    if rho and density and density > 0:
        r -= rho * math.log(density)
    return r


@lru_cache(maxsize=4)
def _dataset(name: str, data_dir: str | None, seed: int, valid_fraction: float, limit: int | None):
    from nasforge.data import load_image_dataset

    return load_image_dataset(name, data_dir, seed=seed, valid_fraction=valid_fraction, limit=limit)


def _accuracy(model: torch.nn.Module, pair, device: torch.device, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(pair.y), batch_size):
            x = pair.x[i : i + batch_size].to(device)
            y = pair.y[i : i + batch_size].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(pair.y))


def evaluate(task: dict) -> dict:
    """Train the block's network for a few epochs; return accuracy, FLOPs, density, params."""
    from nasforge.cost import count_flops, count_parameters
    from nasforge.data import BatchLoader
    from nasforge.nets.blocks import BlockNetwork

    cfg = {**DEFAULTS, **task.get("config", {})}
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, int(cfg["threads"])))
    if cfg["deterministic"]:
        from nasforge.utils.rng import set_deterministic

        set_deterministic(True)
    arch = arch_from_dict(task["arch"])
    ds = _dataset(cfg["data"], cfg["data_dir"], int(cfg["seed"]), float(cfg["valid_fraction"]), cfg["limit"])
    device = torch.device(cfg["device"])
    seed = int(cfg["seed"]) * 1_000_003 + int(task.get("trial_id", 0))
    torch.manual_seed(seed)
    model = BlockNetwork(
        arch,
        num_classes=ds.num_classes,
        in_channels=ds.channels,
        C=int(cfg["channels"]),
        blocks_per_stage=int(cfg["blocks_per_stage"]),
        stages=int(cfg["stages"]),
        style=cfg["style"],
        head_hidden=int(cfg["head_hidden"]),
        dropout=float(cfg["dropout"]),
    ).to(device)
    flops = count_flops(model, (1, ds.channels, ds.size, ds.size)).forward
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(cfg["lr_step"]), gamma=float(cfg["lr_gamma"]))
    gen = torch.Generator().manual_seed(seed)
    loader = BatchLoader(ds.train, int(cfg["batch_size"]), shuffle=True, generator=gen)
    loss_v = float("nan")
    for _ in range(int(cfg["epochs"])):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise TrainingError(f"early-stop training of trial {task.get('trial_id')} diverged (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
        sched.step()
    eval_pair = ds.valid if ds.valid is not None else ds.test
    acc = _accuracy(model, eval_pair, device)
    return {
        "accuracy": acc,
        "flops": int(flops),
        "density": arch.density(),
        "params": count_parameters(model),
        "train_loss": loss_v,
        "seconds": time.perf_counter() - t0,
        "pid": os.getpid(),
    }


@lru_cache(maxsize=2)
def _nb201(path: str | None):
    from nasforge.spaces.nb201_table import NB201Table

    return NB201Table.load(path)


def evaluate_nb201(task: dict) -> dict:
    """Look the cell up in the NAS-Bench-201 table (no training): ``accuracy`` in [0, 1]
    from the selection column ``metric`` (named in the result), and the matching test
    column (``test_metric``, ``test_accuracy`` in [0, 1]) for reports — never for selection."""
    from nasforge.spaces.nb201 import test_metric

    cfg = task.get("config", {})
    table = _nb201(cfg.get("table"))
    metric = cfg.get("metric", "cifar10-val")
    ops = tuple(task["arch"]["ops"])
    tm = test_metric(metric)
    return {"accuracy": table.accuracy(ops, metric) / 100.0, "metric": metric, "test_metric": tm, "test_accuracy": table.accuracy(ops, tm) / 100.0}
