"""Reading what ``nasforge export`` wrote: the side-car check, loading a TorchScript or ONNX
file as a callable model, and evaluating it on a data set (``nasforge eval FILE``).
The writing side is :mod:`nasforge.export`."""

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

FORMATS = ("torchscript", "onnx")
META_KEY = "nasforge"  # ONNX metadata_props key
EXTRA_FILE = "nasforge.json"  # TorchScript extra file
EXPORT_FORMAT = "nasforge-export"
EXPORT_VERSION = 1
OPSET = 17
DEFAULT_ATOL = 1e-5


class ExportError(NasforgeError):
    """A model cannot be exported, or the exported file does not reproduce the model."""


class LogitsOnly(nn.Module):
    """``model(x)[0]`` for networks whose forward returns ``(logits, aux)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from torch.jit import TracerWarning

            warnings.simplefilter("ignore", TracerWarning)
        except ImportError:  # pragma: no cover
            pass
        yield


def verify_sidecar(path: str | Path, *, required: bool) -> None:
    """Raise :class:`ExportError` unless ``FILE.nasforge.json`` matches ``FILE``'s bytes
    (a missing side-car is accepted when not ``required``); see the module docstring."""
    problem = sidecar_problem(path, required=required)
    if problem:
        why = "TorchScript runs code from the file when loaded, so nasforge loads only files written by nasforge export"
        raise ExportError(f"refusing to load {path}: {problem} ({why})")


# ---------------------------------------------------------------------------- reading back
@dataclass
class ExportedModel:
    """An exported network: call it on a float batch ``(N, C, H, W)`` to get logits."""

    path: Path
    format: str
    meta: dict
    runtime: str
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def exported_format(path: str | Path) -> str | None:
    """``"torchscript"``/``"onnx"`` for a file written by :func:`export_model`, else None
    (a training checkpoint, say)."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        # ours carry extra/nasforge.json (load_exported then also demands the side-car); any
        # other zip is read as a checkpoint, with torch.load(weights_only=True)
        if any(n.endswith(f"extra/{EXTRA_FILE}") for n in names):
            return "torchscript"
        return None
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return None


def is_exported(path: str | Path) -> bool:
    return exported_format(path) is not None


def load_exported(path: str | Path) -> ExportedModel:
    """Load a TorchScript or ONNX file written by ``nasforge export`` (ONNX runs on
    onnxruntime's CPU provider)."""
    path = Path(path)
    fmt = exported_format(path)
    if fmt is None:
        raise ExportError(f"{path} is not a model exported by nasforge (TorchScript with {EXTRA_FILE}, or .onnx)")
    verify_sidecar(path, required=fmt == "torchscript")  # before torch.jit.load: see the module docstring
    if fmt == "torchscript":
        extra = {EXTRA_FILE: ""}
        try:
            with _quiet():
                mod = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as e:
            raise ExportError(f"{path} cannot be loaded as TorchScript ({str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__})") from None
        mod.eval()
        meta = _meta(extra[EXTRA_FILE], path)

        def run_ts(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), _quiet():
                return mod(x.float().cpu())

        return ExportedModel(path, fmt, meta, "torch.jit", run_ts)
    try:
        import onnx
    except ImportError:
        raise ExportError("reading ONNX files needs the onnx package (pip install 'nasforge[export]')") from None
    try:
        m = onnx.load(str(path))
    except Exception as e:
        raise ExportError(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    meta = _meta(next((p.value for p in m.metadata_props if p.key == META_KEY), ""), path)
    try:
        import onnxruntime as ort
    except ImportError:
        onnx.checker.check_model(m)

        def no_runtime(x: torch.Tensor) -> torch.Tensor:
            raise ExportError("running ONNX models needs onnxruntime (pip install 'nasforge[export]')")

        return ExportedModel(path, fmt, meta, "onnx-checker", no_runtime)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run_onnx(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.detach().float().cpu().numpy()})[0])

    return ExportedModel(path, fmt, meta, "onnxruntime", run_onnx)


def _meta(text: str, path: Path) -> dict:
    try:
        meta = json.loads(text) if text else {}
    except json.JSONDecodeError:
        meta = {}
    if meta.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path} carries no nasforge metadata ({EXTRA_FILE} / metadata '{META_KEY}'); export it with nasforge export")
    return meta


def evaluate_exported(path: str | Path, data: str | None = None, data_dir: str | None = None, *, device: str | None = None,
                      batch_size: int | None = None, split: str = "test") -> dict:
    """Score an exported file like :func:`nasforge.train.evaluate.evaluate_checkpoint`
    scores its checkpoint (same data split, same keys in the result, plus ``format``).
    Runs on the CPU (``device`` is accepted for the CLI's sake)."""
    from nasforge.data import load_image_dataset
    from nasforge.errors import DataError

    model = load_exported(path)
    meta = model.meta
    ev = meta.get("eval", {})
    info = meta.get("data", {})
    name = data or info.get("name")
    ds = load_image_dataset(name, data_dir, seed=ev.get("seed", 0), valid_fraction=ev.get("valid_fraction", 0.0) if split == "valid" else 0.0, limit=ev.get("limit"))
    if (ds.channels, ds.num_classes) != (info.get("channels"), info.get("num_classes")):
        raise DataError(f"{name} has {ds.channels} channel(s) and {ds.num_classes} classes but {path} was exported for {info.get('channels')} and {info.get('num_classes')}")
    pair = ds.test if split == "test" else ds.valid
    if pair is None:
        raise DataError(f"the run exported in {path} has no validation split (valid_fraction 0)")
    bs = batch_size or ev.get("batch_size") or 256
    loss_sum, correct = 0.0, 0
    for i in range(0, len(pair), bs):
        x, y = pair.x[i:i + bs], pair.y[i:i + bs]
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
    n = len(pair)
    return {"kind": "cnn", "split": split, "data": ds.name, "loss": loss_sum / n, "accuracy": correct / n, "images": n,
            "epoch": int(meta.get("epoch", 0)), "format": model.format}
