"""Evaluate a trained network from its ``checkpoint.pt`` alone.

The checkpoint holds the architecture, the resolved config and the data shape, so the
network is rebuilt without the run directory's other files. A cell network is scored by
test accuracy (its last-epoch weights, the ones DARTS reports); a language model by test
perplexity with the best-validation weights and the test batch size of its config
(DARTS: 1), exactly as :func:`nasforge.train.train_lm` reports it at the end of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasforge.arch import arch_from_dict
from nasforge.data import batchify, load_corpus, load_image_dataset
from nasforge.errors import ArchError, CheckpointError, DataError
from nasforge.train.cnn import build_cnn, evaluate_classifier
from nasforge.train.common import amp_enabled, config_from_checkpoint, load_model_state, read_training_checkpoint
from nasforge.train.config import LMConfig, TrainConfig
from nasforge.train.lm import build_lm, evaluate_lm, ppl
from nasforge.utils.device import resolve_device


def _arch(ckpt: dict, path: Path) -> Any:
    try:
        return arch_from_dict(ckpt["arch"], where=f"architecture in {path}")
    except ArchError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid architecture ({e})") from None


def evaluate_checkpoint(
    path: str | Path,
    data: str | None = None,
    data_dir: str | None = None,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    split: str = "test",
) -> dict:
    """Score the network of a training checkpoint on ``split`` of ``data``.

    ``data`` defaults to the data set the run was trained on. Returns a dict with
    ``kind`` ("cnn"/"lm"), ``split``, ``loss`` and ``accuracy`` or ``perplexity``, ``data``
    and ``epoch``.
    """
    path = Path(path)
    ckpt = read_training_checkpoint(path)
    kind = ckpt["kind"]
    arch = _arch(ckpt, path)
    dev = resolve_device(device or "auto")
    if kind == "cnn":
        cfg = config_from_checkpoint(TrainConfig, ckpt, path)
        info = ckpt.get("data") or {}
        name = data or info.get("name") or cfg.data
        ds = load_image_dataset(name, data_dir, seed=cfg.seed, valid_fraction=cfg.valid_fraction if split == "valid" else 0.0, limit=cfg.limit, input_size=cfg.input_size)
        expected = (info.get("channels"), info.get("num_classes"))
        if expected != (None, None) and expected != (ds.channels, ds.num_classes):
            raise DataError(
                f"{name} has {ds.channels} channel(s) and {ds.num_classes} classes but the network in {path} "
                f"was trained for {expected[0]} and {expected[1]}"
            )
        model = build_cnn(arch, cfg, num_classes=ds.num_classes, channels=ds.channels, size=ds.size)
        load_model_state(model, ckpt["model"], path)
        model.to(dev)
        pair = ds.test if split == "test" else ds.valid
        if pair is None:
            raise DataError(f"the run in {path} has no validation split (valid_fraction 0)")
        loss, acc = evaluate_classifier(model, pair, batch_size or cfg.eval_batch_size or cfg.batch_size, dev, amp_enabled(cfg.amp, dev))
        return {"kind": kind, "split": split, "data": ds.name, "loss": loss, "accuracy": acc, "images": len(pair), "epoch": int(ckpt["epoch"])}
    if kind == "lm":
        cfg = config_from_checkpoint(LMConfig, ckpt, path)
        corpus = load_corpus(data or cfg.data, data_dir if (data_dir or data) else cfg.data_dir)
        ntoken = (ckpt.get("data") or {}).get("ntoken")
        if ntoken is not None and ntoken != len(corpus.dictionary):
            raise DataError(f"{corpus.name} has a vocabulary of {len(corpus.dictionary)} words but the model in {path} has {ntoken}")
        model = build_lm(arch, cfg, len(corpus.dictionary))
        load_model_state(model, ckpt.get("best_model") or ckpt["model"], path)
        model.to(dev)
        bs = batch_size or (cfg.test_batch_size if split == "test" else cfg.eval_batch_size)
        source = batchify(corpus.test if split == "test" else corpus.valid, bs, dev)
        loss = evaluate_lm(model, source, cfg.bptt, bs, dev, amp_enabled(cfg.amp, dev))
        return {"kind": kind, "split": split, "data": corpus.name, "loss": loss, "perplexity": ppl(loss), "epoch": int(ckpt["epoch"])}
    raise CheckpointError(f"checkpoint {path} holds an unknown kind of run {kind!r}")
