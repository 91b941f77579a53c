"""Measured latency of a cell supernet's candidate ops on this device: SNAS's fourth resource.

SNAS (Xie et al. 2019, Sec. 2.4) penalises FLOPs, parameters and memory access, which
are proxies; this module adds what a user usually cares about, the time the derived
network takes on their own machine. Every candidate op of every edge is timed **on the
given device at its real input shape** (the supernet's per-edge shape, recorded by one
forward pass, with the batch size asked for), so the expected cost ``Σ_k Z_k c_k`` of an
edge is in seconds and the search can trade accuracy for measured time.

- What is timed: the op as the final network builds it (:func:`nasforge.ops.make_op`
  with affine BN and the architecture's ``op_set``, its own leading ReLU included),
  **forward only**, eval mode, no autograd, NCHW float32 — the inference latency of the
  derived network, not the cost of training it. ``none`` costs 0 and is not timed (a
  ``none`` edge disappears from the derived cell).
- How: ``warmup`` untimed runs, then the **median** of ``repeats`` timed runs
  (``torch.cuda.synchronize`` around each on CUDA).
- Cache: per device, in a small JSON file: ``$NASFORGE_LATENCY_CACHE`` if set, else
  ``$XDG_CACHE_HOME/nasforge/latency.json`` (``~/.cache/nasforge/latency.json``). The key
  holds the device (CUDA device name, or the CPU model and torch's thread count), the
  op, its op set, C, stride, H, W and the batch; an entry also records the torch version,
  warm-up and repeats. A second search on the same machine measures nothing. The file is
  written atomically and merged with what another process wrote meanwhile.
- Summing per-op times ignores what the derived network does besides its ops (stem,
  preprocessing, concatenation, classifier, Python overhead), so ``Σ c`` is a model of the
  latency, not the latency: the experiment ``experiments/snas_resource.py`` measures the
  derived network itself too (:func:`nasforge.cost.measure_latency`).

Tests inject ``timer`` (``timer(module, x) -> seconds``) so nothing depends on timing.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from nasforge.ops import make_op

log = logging.getLogger(__name__)

ENV_CACHE = "NASFORGE_LATENCY_CACHE"
WARMUP = 3
REPEATS = 10

Timer = Callable[[nn.Module, torch.Tensor], float]


def cache_path() -> Path:
    """``$NASFORGE_LATENCY_CACHE``, else ``$XDG_CACHE_HOME/nasforge/latency.json`` (default ``~/.cache``)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nasforge" / "latency.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str | torch.device = "cpu") -> str:
    """What the timings depend on: the CUDA device's name, or the CPU model and torch's threads."""
    device = torch.device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{torch.cuda.get_device_name(idx)}"
    if device.type == "cpu":
        return f"cpu:{_cpu_model()}:{torch.get_num_threads()} threads"
    return device.type


def cache_key(device: str, op: str, op_set: str, C: int, stride: int, H: int, W: int, batch: int) -> str:
    return f"{device}|{op}|{op_set}|C={C}|stride={stride}|{H}x{W}|batch={batch}"


class LatencyCache:
    """Per-op latencies (seconds) in a JSON file ``{"version": 1, "entries": {key: {...}}}``."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else cache_path()
        self.entries: dict[str, dict] = self._read()
        self.dirty = False

    def _read(self) -> dict[str, dict]:
        try:
            d = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("latency cache %s is unreadable (%s); measuring again", self.path, e)
            return {}
        entries = d.get("entries") if isinstance(d, dict) else None
        return {k: v for k, v in entries.items() if isinstance(v, dict) and "seconds" in v} if isinstance(entries, dict) else {}

    def get(self, key: str) -> float | None:
        e = self.entries.get(key)
        return float(e["seconds"]) if e is not None else None

    def put(self, key: str, seconds: float, **info) -> None:
        self.entries[key] = {"seconds": float(seconds), **info}
        self.dirty = True

    def save(self) -> None:
        """Merge with the file's current entries (another process may have added some), write atomically."""
        if not self.dirty:
            return
        merged = {**self._read(), **self.entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".latency-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "entries": merged}, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only home must not stop a search
            log.warning("could not write the latency cache %s (%s)", self.path, e)
            return
        self.entries, self.dirty = merged, False


def time_forward(module: nn.Module, x: torch.Tensor, warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """Median seconds of ``module(x)`` (eval mode, no autograd) after ``warmup`` untimed runs."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    was_training = module.training
    module.eval()
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                module(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                module(x)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        module.train(was_training)
    return statistics.median(times)


def op_latency(
    op: str, C: int, stride: int, H: int, W: int, batch: int = 1, *, op_set: str = "darts",
    device: str | torch.device = "cpu", cache: LatencyCache | None = None, timer: Timer | None = None,
    warmup: int = WARMUP, repeats: int = REPEATS,
) -> float:
    """Forward seconds of candidate ``op`` on an (batch, C, H, W) input, from the cache or measured."""
    if op == "none":
        return 0.0
    device = torch.device(device)
    key = cache_key(device_name(device), op, op_set, C, stride, H, W, batch)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    module = make_op(op, C, C, stride, affine=True, op_set=op_set).to(device)
    x = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(0)).to(device)
    seconds = float(timer(module, x)) if timer is not None else time_forward(module, x, warmup, repeats)
    if cache is not None:
        cache.put(key, seconds, torch=torch.__version__, warmup=warmup, repeats=repeats, measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return seconds


def measure_latency_costs(
    net: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 1, device: str | torch.device = "cpu",
    op_set: str = "darts", cache: LatencyCache | None = None, timer: Timer | None = None,
    warmup: int = WARMUP, repeats: int = REPEATS,
) -> dict[str, torch.Tensor]:
    """Latency costs ``{cell_type: Tensor[num_edges, num_ops]}`` (seconds, summed over the cells of each type).

    ``input_shape`` = (channels, height, width) of one image; every op of every edge is
    timed at its edge's (C, H, W) with ``batch`` images. ``cache=None`` uses the default
    cache file (:func:`cache_path`) and saves it afterwards.
    """
    from nasforge.search.resource import edge_shapes

    if batch < 1 or warmup < 0 or repeats < 1:
        raise ValueError("measure_latency_costs: batch and repeats must be >= 1, warmup >= 0")
    cache = LatencyCache() if cache is None else cache
    shapes = edge_shapes(net, input_shape)
    out = {t: torch.zeros(net.num_edges, net.num_ops, dtype=torch.float64) for t in net.cell_types}
    t0 = time.perf_counter()
    try:
        for cell in net.cells:
            kind = "reduce" if cell.reduction else "normal"
            for e, mixed in enumerate(cell.ops):
                _, C, H, W = shapes[id(mixed)]
                for k, name in enumerate(mixed.primitives):
                    out[kind][e, k] += op_latency(
                        name, C, mixed.stride, H, W, batch, op_set=op_set, device=device, cache=cache,
                        timer=timer, warmup=warmup, repeats=repeats,
                    )
    finally:
        cache.save()
    log.info("latency costs of %d edges ready in %.1f s (cache %s)", sum(len(c.ops) for c in net.cells), time.perf_counter() - t0, cache.path)
    return out


__all__ = ["ENV_CACHE", "LatencyCache", "cache_key", "cache_path", "device_name", "measure_latency_costs", "op_latency", "time_forward"]
