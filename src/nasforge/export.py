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


__all__ = [
    "DEFAULT_ATOL", "FORMATS", "ExportError", "ExportResult", "ExportedModel", "LogitsOnly", "check_export", "evaluate_exported",
    "export_checkpoint", "export_model", "exported_format", "is_exported", "load_exported", "load_trained_cnn",
    "sidecar_path", "verify_sidecar", "write_sidecar",
]
