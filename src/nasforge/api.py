"""The Python API: search, build and train from a program (``import nasforge as nf``).

    result = nf.search("darts", data=(x_train, y_train), space="cell", epochs=10, out="runs/x")
    model = nf.build(result.arch, num_classes=10, in_channels=3, input_size=32)
    nf.train(result.arch, data="fashion-mnist", epochs=20, out="runs/final")

``data`` is a data-set name (``digits``, ``fashion-mnist``, ``cifar10``, ``ptb``), a pair of
arrays or tensors ``(x, y)``, a map-style ``torch.utils.data.Dataset`` of (image, label),
an image folder (one sub-folder per class) or an ``.npz`` file. Settings are the config
keys of the method (``docs/``; the same names as the command-line flags, with ``_``).
Functions return objects and raise :mod:`nasforge.errors` types; they never exit the process.
The command line (:mod:`nasforge.cli`) is a thin layer over these functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nasforge.errors import ArchError, ConfigError
from nasforge.search.registry import MethodSpec, SearchResult, get_method, resolve_method_config


def data_ref(data: Any) -> str:
    """A config's ``data`` value for ``data``: a built-in name as is, a path made absolute,
    Python objects (arrays, tensors, a ``Dataset``) registered in memory as ``memory:N``."""
    from nasforge.data import dataset_name

    return dataset_name(data)


def run_config(spec: MethodSpec, cfg: Any, out: str | Path | None, *, resume: bool = False, overwrite: bool = False, progress: bool = False) -> SearchResult:
    """Run a resolved config of a registered method (the CLI's entry point too)."""
    space = getattr(cfg, "space", None)
    variants = [v for v in spec.variants if type(cfg) is v.config and (space is None or space in v.spaces)]
    if not variants:
        raise ConfigError(f"search {spec.name} takes a {' or '.join(v.config.__name__ for v in spec.variants)} for its spaces, got {type(cfg).__name__}")
    variant = variants[0]
    if variant.kind == "one-shot":
        return variant.target(cfg, Path(out) if out is not None else None, resume=resume, overwrite=overwrite, progress=progress)
    if out is None:
        raise ConfigError(f"search {spec.name} keeps its trials in a run folder: pass out=...")
    from nasforge.runners.search_run import run_search

    return run_search(spec.name, cfg, out, resume=resume, overwrite=overwrite, progress=progress)


def search(
    method: str,
    data: Any = None,
    *,
    space: str | None = None,
    out: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: Any,
) -> SearchResult:
    """Search with ``method`` (``darts``, ``snas``, ``enas``, ``blockqnn``, ``random``).

    ``settings`` are the method's config keys (e.g. ``epochs=10, layers=5``), applied over
    the YAML file ``config`` and the paper's defaults. ``out`` is the run folder
    (``None``: one-shot methods write nothing). Returns a :class:`SearchResult`
    (``.arch``, ``.arch_path``, ``.metrics``).
    """
    spec = get_method(method)
    overrides = dict(settings)
    if data is not None:
        overrides["data"] = data_ref(data)
    cfg = resolve_method_config(spec, space=space, yaml_path=config, overrides=overrides)
    return run_config(spec, cfg, out, resume=resume, overwrite=overwrite, progress=progress)


def _arch(arch: Any) -> Any:
    from nasforge.arch import arch_from_dict, load_arch

    if isinstance(arch, SearchResult):
        return arch.arch
    if isinstance(arch, (str, os.PathLike)):
        return load_arch(arch)
    if isinstance(arch, dict):
        return arch_from_dict(arch)
    if hasattr(arch, "kind") and hasattr(arch, "to_dict"):
        arch.validate()
        return arch
    raise ArchError(f"expected an architecture (object, dict, JSON path or zoo name), got {type(arch).__name__}")


def build(arch: Any, *, num_classes: int, in_channels: int = 3, input_size: int = 32, **settings: Any):
    """The final network of ``arch`` as a ``torch.nn.Module``.

    ``settings`` are training config keys that shape the network (``layers``, ``channels``,
    ``auxiliary``, ``style``; defaults: the paper's evaluation network). Image networks return
    ``(logits, aux_logits_or_None)`` for cell architectures and logits otherwise.
    """
    from nasforge.config import from_dict
    from nasforge.train.cnn import build_cnn
    from nasforge.train.config import TrainConfig

    a = _arch(arch)
    if a.kind == "recurrent":
        raise ArchError("build() makes image networks; a recurrent cell trains as a language model with nf.train(..., data='ptb')")
    cfg = from_dict(TrainConfig, settings)
    return build_cnn(a, cfg, num_classes=num_classes, channels=in_channels, size=input_size)


def train(
    arch: Any,
    data: Any = None,
    *,
    out: str | Path,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: Any,
):
    """Train ``arch`` from scratch as a final network (CNN, or a language model for a recurrent cell).

    ``settings`` are the trainer's config keys (``epochs``, ``batch_size``, ``layers``,
    ``channels``, ``lr`` ...; ``docs/training.md``). Returns a
    :class:`~nasforge.train.common.TrainResult` (``.metrics``: test accuracy or perplexity).
    """
    import logging

    from nasforge.config import resolve
    from nasforge.train import train_arch
    from nasforge.train.config import LMConfig, TrainConfig

    a = _arch(arch)
    cls = LMConfig if a.kind == "recurrent" else TrainConfig
    overrides = dict(settings)
    if data is not None:
        overrides["data"] = data_ref(data)
    cfg = resolve(cls, config, overrides)
    kw: dict[str, Any] = {"resume": resume, "show_progress": progress, "log": logging.getLogger("nasforge.train").info}
    if overwrite:
        kw["overwrite"] = True
    return train_arch(a, out, cfg, **kw)


__all__ = ["build", "data_ref", "run_config", "search", "train"]
