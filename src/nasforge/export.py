"""Export a trained cell network to TorchScript or ONNX, check it, load and evaluate it.

``nasforge export CHECKPOINT --format torchscript|onnx --out FILE`` rebuilds the network
of a ``nasforge train`` checkpoint exactly as ``nasforge eval`` does (architecture +
config + data shape stored in the checkpoint; :func:`nasforge.train.cnn.build_cnn`),
puts it in eval mode and exports its *logits* (the cell networks' ``forward`` returns
``(logits, aux)``; the auxiliary head is a training device and is left out of the file).

- **TorchScript**: :func:`torch.jit.trace` on a batch of the data set's shape, saved
  with :func:`torch.jit.save` and a ``nasforge.json`` extra file. (PyTorch ≥ 2.10 marks
  TorchScript deprecated in favour of ``torch.export``; it still loads from C++ and
  Python without the model code, which is why it is offered. The warnings are silenced.)
- **ONNX**: :func:`torch.onnx.export` with the TorchScript-based exporter
  (``dynamo=False``: the dynamo exporter needs ``onnxscript``, not a dependency here),
  opset 17, a dynamic batch axis, input ``images`` and output ``logits``; the same JSON
  goes into the model's ``metadata_props`` under ``nasforge``.

The JSON records the architecture, the data set and its normalisation (the exported
model takes images normalised as :mod:`nasforge.data` does: ``(x - mean) / std`` per
channel), the epoch and the evaluation settings, so :func:`evaluate_exported` (what
``nasforge eval FILE`` runs on an exported file) scores the file on the same test split
as ``nasforge eval CHECKPOINT``.

Every export is checked by reloading the file (TorchScript: ``torch.jit.load``; ONNX:
``onnxruntime`` on CPU, or only ``onnx.checker`` when onnxruntime is not installed) and
comparing its outputs with the PyTorch model's on real test images and on a batch of
another size (``atol`` 1e-5 by default); a mismatch raises :class:`ExportError`.

Trust (what ``nasforge eval FILE`` will load): loading TorchScript (``torch.jit.load``)
deserialises code and pickled data from the file, so it must only be done with files one
trusts. Every export therefore writes a side-car ``FILE.nasforge.json`` holding the
file's SHA-256 and size, and :func:`load_exported` loads a TorchScript file only when
that side-car sits beside it and matches the file's bytes; any other TorchScript file
(one from elsewhere, or one changed after export) is refused with one line saying why,
before ``torch.jit.load`` runs. The side-car is a checksum, not a signature: it tells
"this is the file ``nasforge export`` wrote here, unchanged", not who wrote it; anyone
able to write both files can make ``eval`` load theirs. So evaluate only exported files
from your own runs or from a source you trust. ONNX files run in onnxruntime (no Python
code); their side-car is checked when present.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.errors import CheckpointError, NasforgeError
from nasforge.utils.sidecar import sidecar_path, sidecar_problem, write_sidecar

from nasforge.exported import (  # noqa: F401  (shared with the reading side; ExportError re-exported)
    DEFAULT_ATOL, EXPORT_FORMAT, EXPORT_VERSION, EXTRA_FILE, FORMATS, META_KEY, OPSET, ExportedModel, ExportError, LogitsOnly, _quiet,
    evaluate_exported, exported_format, is_exported, load_exported, verify_sidecar,
)

# ---------------------------------------------------------------------------- loading
def load_trained_cnn(path: str | Path) -> tuple[nn.Module, dict]:
    """The network of a ``nasforge train`` CNN checkpoint in eval mode on the CPU, and the
    metadata of the export. Built with the training package's own helpers
    (``read_training_checkpoint``, ``config_from_checkpoint``, ``build_cnn``,
    ``load_model_state``), as :func:`nasforge.train.evaluate.evaluate_checkpoint` does."""
    from nasforge.arch import arch_from_dict
    from nasforge.errors import ArchError
    from nasforge.train.cnn import build_cnn
    from nasforge.train.common import config_from_checkpoint, load_model_state, read_training_checkpoint
    from nasforge.train.config import TrainConfig

    path = Path(path)
    ckpt = read_training_checkpoint(path)
    if ckpt["kind"] != "cnn":
        raise ExportError(f"checkpoint {path} holds a {ckpt['kind']} run; export handles cell networks (cnn) only")
    try:
        arch = arch_from_dict(ckpt["arch"], where=f"architecture in {path}")
    except ArchError as e:
        raise CheckpointError(f"checkpoint {path} holds an invalid architecture ({e})") from None
    cfg = config_from_checkpoint(TrainConfig, ckpt, path)
    info = dict(ckpt.get("data") or {})
    for k in ("name", "num_classes", "channels", "size"):
        if k not in info:
            raise CheckpointError(f"checkpoint {path} does not record the data shape ({k!r} missing under 'data')")
    model = build_cnn(arch, cfg, num_classes=info["num_classes"], channels=info["channels"], size=info["size"])
    load_model_state(model, ckpt["model"], path)
    model.eval()
    meta = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "kind": "cnn",
        "arch": ckpt["arch"],
        "data": info,
        "input": {"shape": [info["channels"], info["size"], info["size"]], "normalised": "(x - mean) / std per channel, x in [0, 1]"},
        "output": "logits",
        "epoch": int(ckpt["epoch"]),
        "eval": {"seed": cfg.seed, "limit": cfg.limit, "valid_fraction": cfg.valid_fraction, "batch_size": cfg.eval_batch_size or cfg.batch_size},
        "source": str(path),
    }
    return model, meta


def _example_batches(meta: dict, n: int = 8) -> list[torch.Tensor]:
    """Real test images when the data set can be loaded, else random ones; two batch sizes."""
    c, h, w = meta["input"]["shape"]
    x = None
    try:
        from nasforge.data import load_image_dataset

        ds = load_image_dataset(meta["data"]["name"], seed=meta["eval"]["seed"], limit=max(n, 16))
        if (ds.channels, ds.size) == (c, h):
            x = ds.test.x[:n].float()
    except NasforgeError:
        pass
    gen = torch.Generator().manual_seed(0)
    if x is None:
        x = torch.randn(n, c, h, w, generator=gen)
    return [x, torch.randn(3, c, h, w, generator=gen)]


# ---------------------------------------------------------------------------- export
@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    checked_with: str
    meta: dict = field(default_factory=dict)


def export_model(model: nn.Module, meta: dict, fmt: str, out: str | Path, *, opset: int = OPSET, atol: float = DEFAULT_ATOL,
                 check: bool = True) -> ExportResult:
    """Export ``model`` (eval mode, logits only) to ``out`` and check the file against it."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (expected one of {', '.join(FORMATS)})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = LogitsOnly(_without_auxiliary(model)).eval()
    batches = _example_batches(meta)
    text = json.dumps(meta)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with torch.no_grad(), _quiet():
            if fmt == "torchscript":
                traced = torch.jit.trace(net, batches[0], check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={EXTRA_FILE: text})
            else:
                _export_onnx(net, batches[0], tmp, text, opset)
        tmp.replace(out)
        write_sidecar(out, fmt)
    except NasforgeError:
        raise
    except Exception as e:  # torch raises many kinds for untraceable models
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{fmt} export failed: {first[:200]}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    diff, how = (math.nan, "not checked")
    if check:
        diff, how = check_export(net, out, batches, atol=atol)
    return ExportResult(out, fmt, diff, how, meta)


def _without_auxiliary(model: nn.Module) -> nn.Module:
    """A copy without the auxiliary head (used only in training mode; tracing would keep
    its weights, most of a small network's file)."""
    import copy

    if not isinstance(getattr(model, "auxiliary_head", None), nn.Module):
        return model
    model = copy.deepcopy(model)
    del model.auxiliary_head
    model.auxiliary = False
    return model


def _export_onnx(net: nn.Module, x: torch.Tensor, path: Path, text: str, opset: int) -> None:
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package (pip install 'nasforge[export]')") from None
    torch.onnx.export(
        net, (x,), str(path), dynamo=False, opset_version=opset, input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True,
    )
    m = onnx.load(str(path))
    prop = m.metadata_props.add()
    prop.key, prop.value = META_KEY, text
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def check_export(net: nn.Module, path: str | Path, batches: list[torch.Tensor], *, atol: float = DEFAULT_ATOL) -> tuple[float, str]:
    """Largest absolute difference between ``net`` and the exported file on ``batches``;
    raises :class:`ExportError` above ``atol``. Returns (difference, how it was checked)."""
    loaded = load_exported(path)
    if loaded.runtime == "onnx-checker":
        return math.nan, "onnx.checker only (onnxruntime not installed)"
    worst = 0.0
    with torch.no_grad():
        for x in batches:
            ref = net(x)
            got = loaded(x)
            if got.shape != ref.shape:
                raise ExportError(f"exported {path} gives outputs of shape {tuple(got.shape)}, the model {tuple(ref.shape)}")
            worst = max(worst, float((got - ref).abs().max()))
    if not worst <= atol:
        raise ExportError(f"exported {path} differs from the PyTorch model by {worst:.3g} (> atol {atol:g})")
    return worst, loaded.runtime


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path, **kw: Any) -> ExportResult:
    """:func:`load_trained_cnn` + :func:`export_model`."""
    model, meta = load_trained_cnn(checkpoint)
    return export_model(model, meta, fmt, out, **kw)


__all__ = [
    "DEFAULT_ATOL", "FORMATS", "ExportError", "ExportResult", "ExportedModel", "LogitsOnly", "check_export", "evaluate_exported",
    "export_checkpoint", "export_model", "exported_format", "is_exported", "load_exported", "load_trained_cnn",
    "sidecar_path", "verify_sidecar", "write_sidecar",
]
