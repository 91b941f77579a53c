"""Training a cell network from scratch: DARTS's architecture evaluation (Sec. 3.3, App. A.2).

The loop mirrors the official ``cnn/train.py`` (quark0/darts): every epoch sets the
drop-path probability to ``drop_path_prob * epoch / epochs``, trains with SGD (momentum
0.9, weight decay 3e-4) on the cross-entropy of the classifier plus 0.4 × that of the
auxiliary head, clips the gradient norm at 5, then evaluates on the test set (and on a
held-out validation split when there is one). The learning rate follows a cosine from
0.025 to 0 over the epochs (or DARTS-ImageNet's ×0.97 per epoch). Defaults and the
places where we differ from the code are listed in :mod:`nasforge.train.config`.

Each epoch ends with one ``metrics.jsonl`` record and an atomic ``checkpoint.pt`` that
holds everything needed to continue exactly (model, optimiser, scheduler, AMP scaler,
global RNG states, the data-order generator, config, architecture, data shape, best
metric), and everything :func:`nasforge.train.evaluate.evaluate_checkpoint` needs to
rebuild the network without any other file.
"""

from __future__ import annotations

import logging

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.data import Augment, BatchLoader, ImageDataset, TensorPair, load_image_dataset
from nasforge.errors import ArchError, ConfigError
from nasforge.memory import check_training_memory, memory_check_disabled
from nasforge.nets import build_network
from nasforge.nets.inference import fold_batchnorm
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
from nasforge.train.config import TrainConfig
from nasforge.utils.device import resolve_device
from nasforge.utils.io import atomic_write_json
from nasforge.utils.rng import get_rng_state, seed_everything, set_rng_state
from nasforge.utils.rundir import RunDir



logger = logging.getLogger(__name__)

def count_params(model: nn.Module) -> int:
    """Trainable parameters without the auxiliary head, as DARTS ``utils.count_parameters_in_MB``."""
    return sum(p.numel() for n, p in model.named_parameters() if "auxiliary" not in n)


#: architecture kinds the CNN trainer builds (``cell``: stacked cells; ``macro``: ENAS
#: macro network; ``block``: BlockQNN stacked blocks)
IMAGE_KINDS = ("cell", "macro", "block")


class _LogitsOnly(nn.Module):
    """Adapts a network returning logits to the trainer's ``(logits, aux)`` interface."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.drop_path_prob = 0.0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(x), None


def build_cnn(arch: Any, cfg: TrainConfig, *, num_classes: int, channels: int, size: int) -> nn.Module:
    """The final network of an image architecture.

    ``cell``: DARTS network of ``cfg.layers`` cells with ``cfg.channels`` initial channels.
    ``macro``: ENAS macro network (its layer count is the architecture's), ``cfg.channels``
    filters. ``block``: BlockQNN framework, ``cfg.channels`` stem filters and
    ``max(1, cfg.layers // 3)`` blocks in each of the 3 stages. Only cell networks have an
    auxiliary head and drop path.
    """
    kind = getattr(arch, "kind", None)
    if kind == "cell":
        return build_network(
            arch,
            num_classes=num_classes,
            in_channels=channels,
            input_size=size,
            C=cfg.channels,
            layers=cfg.layers,
            auxiliary=cfg.auxiliary,
            drop_path_prob=0.0,
            style=cfg.style,
        )
    if kind == "macro":
        from nasforge.nets.macro import build_macro_network

        return build_macro_network(arch, num_classes=num_classes, in_channels=channels, input_size=size, C=cfg.channels)
    if kind == "block":
        from nasforge.nets.blocks import build_block_network

        net = build_block_network(
            arch, num_classes=num_classes, in_channels=channels, input_size=size,
            C=cfg.channels, blocks_per_stage=max(1, cfg.layers // 3), style=cfg.style,
        )
        return _LogitsOnly(net)
    raise ArchError(f"the CNN trainer needs one of {list(IMAGE_KINDS)} architectures, got kind {kind!r}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine from ``lr`` to ``lr_min`` over ``epochs`` (DARTS CIFAR) or ×``lr_gamma`` per epoch (DARTS ImageNet)."""
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr_min)


def evaluate_classifier(model: nn.Module, pair: TensorPair, batch_size: int, device: torch.device, amp: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (fraction) of ``model`` in eval mode on ``pair``.

    Runs the inference path: a copy with BatchNorm folded into the convs
    (:func:`~nasforge.nets.inference.fold_batchnorm`) under ``torch.inference_mode``."""
    model.eval()
    with torch.no_grad():
        net = fold_batchnorm(model)
    total, correct, n = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in BatchLoader(pair, batch_size, shuffle=False, device=device, pin_memory=True):
            with autocast(device, amp):
                logits, _ = net(x)
            total += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum().item())
            n += y.shape[0]
    return total / max(n, 1), correct / max(n, 1)


def train_epoch(
    model: nn.Module,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    scaler: "torch.amp.GradScaler",
    criterion: nn.Module,
    cfg: TrainConfig,
    *,
    device: torch.device,
    amp: bool,
    epoch: int,
    run_dir: Path | None,
    show_progress: bool,
) -> tuple[float, float]:
    """One pass over ``loader``; returns mean training objective (incl. auxiliary term, as
    DARTS logs it) and training accuracy on the augmented batches."""
    model.train()
    total, correct, n = 0.0, 0, 0
    bar = progress(loader, total=len(loader), desc=f"epoch {epoch}/{cfg.epochs}", enabled=show_progress)
    for step, (x, y) in enumerate(bar, start=1):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits, aux = model(x)
            loss = criterion(logits, y)
            if aux is not None and cfg.auxiliary_weight > 0:
                loss = loss + cfg.auxiliary_weight * criterion(aux, y)
        value = check_finite(loss.detach(), epoch, step, run_dir)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        b = y.shape[0]
        total += value * b
        correct += int((logits.detach().argmax(1) == y).sum().item())
        n += b
        if show_progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{100 * correct / n:.1f}%", refresh=False)
    if hasattr(bar, "close"):
        bar.close()
    return total / max(n, 1), correct / max(n, 1)


def _data_info(data: ImageDataset) -> dict:
    return {
        "name": data.name,
        "num_classes": int(data.num_classes),
        "channels": int(data.channels),
        "size": int(data.size),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def train_cnn(
    arch: Any,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    data: ImageDataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the cell network of ``arch`` from scratch as in DARTS's evaluation.

    Args:
        arch: a ``cell`` architecture (:class:`nasforge.arch.CellArch`).
        cfg: :class:`TrainConfig` (defaults = the paper's CIFAR-10 evaluation).
        run_dir: where ``config.yaml``, ``arch.json``, ``metrics.jsonl``,
            ``checkpoint.pt`` and ``result.json`` go.
        data: an already-loaded :class:`~nasforge.data.ImageDataset` (e.g. from a search
            method); ``None`` loads ``cfg.data`` from ``cfg.data_dir``.
        resume: continue from ``run_dir/checkpoint.pt`` (same config required).
        show_progress: tqdm bar per epoch on stderr.
        log: receives one line per epoch and the final line (``None``: the ``nasforge.train.cnn`` logger at INFO; the CLI passes ``print``).

    Returns the final-epoch test loss/accuracy (the model DARTS reports is the last one).
    """
    say = log or logger.info
    cfg.validate()
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    device = resolve_device(cfg.device)
    rd = RunDir(run_dir, command="train", method="cnn", space=getattr(arch, "kind", None), config=dataclasses.asdict(cfg),
                resume=resume, overwrite=overwrite)
    with rd, run_settings(cfg.deterministic, cfg.threads):
        if data is None:
            data = load_image_dataset(cfg.data, cfg.data_dir, seed=cfg.seed, valid_fraction=cfg.valid_fraction, limit=cfg.limit, input_size=cfg.input_size)
        cfg = dataclasses.replace(cfg.for_dataset(data.name), data=data.name)
        rd.set_config(dataclasses.asdict(cfg))
        amp = amp_enabled(cfg.amp, device)
        if cfg.memory_check and not memory_check_disabled():  # before the network is built or anything written
            shape = (data.channels, data.size, data.size)
            batch = max(1, min(cfg.batch_size, len(data.train)))  # a batch holds at most the whole split
            check_training_memory(lambda: build_cnn(arch, cfg, num_classes=data.num_classes, channels=data.channels, size=data.size), shape, batch, device)

        seed_everything(cfg.seed)
        model = build_cnn(arch, cfg, num_classes=data.num_classes, channels=data.channels, size=data.size).to(device)
        optimizer = make_optimizer(model, cfg)
        scheduler = make_scheduler(optimizer, cfg)
        scaler = make_scaler(amp)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        data_gen = torch.Generator().manual_seed(cfg.seed)
        augment = Augment.for_dataset(data, crop_padding=cfg.crop_padding or 0, flip=bool(cfg.flip), cutout=cfg.cutout or 0)
        loader = BatchLoader(data.train, cfg.batch_size, shuffle=True, generator=data_gen, augment=augment, device=device, pin_memory=True)
        eval_bs = cfg.eval_batch_size or cfg.batch_size

        start, best = 0, {}
        if resume:
            ckpt = read_training_checkpoint(ckpt_path, "cnn", map_location="cpu")
            rd.check_header(ckpt.get("header"), ckpt_path)
            load_model_state(model, ckpt["model"], ckpt_path)
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"])
            data_gen.set_state(ckpt["data_rng"])
            start, best = int(ckpt["epoch"]), dict(ckpt.get("best") or {})
            rd.truncate_metrics(start)
            say(f"resuming {run_dir} after epoch {start}/{cfg.epochs}")
        else:
            rd.write_config(cfg)
            rd.write_arch(arch)
        params = count_params(model)
        if start == 0:
            say(f"{getattr(arch, 'name', '') or 'cell network'}: {params / 1e6:.3f}M parameters, {data.summary()}, {cfg.epochs} epochs on {device}")

        record: dict = {}
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
            lr = optimizer.param_groups[0]["lr"]
            train_loss, train_acc = train_epoch(
                model, loader, optimizer, scaler, criterion, cfg,
                device=device, amp=amp, epoch=epoch + 1, run_dir=run_dir, show_progress=show_progress,
            )
            scheduler.step()
            record = {"epoch": epoch + 1, "lr": lr, "drop_path_prob": model.drop_path_prob, "train_loss": train_loss, "train_acc": train_acc}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                if data.valid is not None:
                    record["valid_loss"], record["valid_acc"] = evaluate_classifier(model, data.valid, eval_bs, device, amp)
                record["test_loss"], record["test_acc"] = evaluate_classifier(model, data.test, eval_bs, device, amp)
                key = "valid_acc" if data.valid is not None else "test_acc"
                if not best or record[key] > best["value"]:
                    best = {"metric": key, "value": record[key], "epoch": epoch + 1}
            record["seconds"] = time.perf_counter() - t0
            rd.save_epoch(  # the record (also mirrored to TensorBoard when installed), then the checkpoint
                record,
                None,
                {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "kind": "cnn",
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if amp else None,
                    "rng": get_rng_state(),
                    "data_rng": data_gen.get_state(),
                    "config": dataclasses.asdict(cfg),
                    "arch": arch.to_dict(),
                    "data": _data_info(data),
                    "best": best,
                    "params": params,
                },
            )
            say(_epoch_line(record, cfg.epochs))

        if "test_acc" not in record:  # resumed a finished run: nothing trained, evaluate it
            record["test_loss"], record["test_acc"] = evaluate_classifier(model, data.test, eval_bs, device, amp)
        result = TrainResult(
            run_dir=str(run_dir),
            kind="cnn",
            epochs=cfg.epochs,
            metrics={k: record[k] for k in ("test_loss", "test_acc", "valid_loss", "valid_acc") if k in record},
            params=params,
        )
        atomic_write_json(run_dir / RESULT, {**result.to_dict(), "best": best, "arch": getattr(arch, "name", ""), "data": data.name})
        say(f"test accuracy: {100 * record['test_acc']:.2f}% (test loss {record['test_loss']:.4f}, {len(data.test)} images, {data.name})")
        return result


def _epoch_line(r: dict, epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}", f"lr {r['lr']:.5f}", f"train loss {r['train_loss']:.4f} acc {100 * r['train_acc']:.2f}%"]
    if "valid_acc" in r:
        parts.append(f"valid acc {100 * r['valid_acc']:.2f}%")
    if "test_acc" in r:
        parts.append(f"test loss {r['test_loss']:.4f} acc {100 * r['test_acc']:.2f}%")
    parts.append(f"{r['seconds']:.1f}s")
    return " | ".join(parts)
