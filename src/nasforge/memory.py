"""Peak-memory estimate of a training run, checked before the network is built for real.

A network built from a large architecture or config (many cells, wide channels, a big
batch) can need more memory than the machine has; the kernel then kills the process
after minutes of swapping, with nothing written. :func:`check_training_memory` stops such
a run first, with one line giving the estimate and the memory available.

The estimate (:func:`estimate_training_memory`) builds the network on PyTorch's ``meta``
device (shapes only, no storage, a second or so even for DARTS's 20-cell network), counts
its parameters ``P`` and buffers, and runs one training-mode forward pass on a meta batch
of 2 under a dispatch mode that adds up the bytes of every tensor an operator returns
(views excluded): ``A`` bytes per sample, about what autograd keeps for the backward pass.
The extra memory a training run needs on top of what the process already holds is then

    ``peak = PARAM_FACTOR × 4 P  +  ACT_FACTOR × A × batch_size  +  BASE_BYTES``

``PARAM_FACTOR`` = 5 counts weights, gradients, SGD momentum and the two copies
``save_checkpoint`` makes of them (``state_dict`` serialised into a buffer, then written).

Calibration (this machine, 1 thread, ``utils.malloc.tune_malloc`` as the CLI sets it):
the growth of the peak RSS (``VmHWM`` in ``/proc/self/status``) from just before the
network is built to after two training steps (SGD, cross-entropy + auxiliary loss) and
one ``save_checkpoint``, for DARTS_V2 networks and a DARTS recurrent language model:

======================================  =========  ============  ========  ==========
case                                    params     A per sample  measured  estimate
======================================  =========  ============  ========  ==========
digits 8×8, 3 cells, C = 8, batch 16    0.43 M     0.35 MB       42 MB     77 MB
CIFAR-10 32×32, 8 cells, C = 16, b 32   0.68 M     23.8 MB       513 MB    686 MB
CIFAR-10 32×32, 20 cells, C = 36, b 8   3.83 M     139 MB        773 MB    1.03 GB
LM DARTS_RNN_V2, 10k words, 200, b 16   2.81 M     17.2 MB       272 MB    343 MB
======================================  =========  ============  ========  ==========

(the language model: embedding = hidden = 200, BPTT 35, a "sample" is one sequence of 35
tokens, forward on tokens and the initial hidden state).

The measured activation memory is about 0.6 × ``A`` × batch (autograd keeps less than
every operator output: in-place ReLUs, outputs not needed for the gradient); we take
``ACT_FACTOR`` = 0.8 and ``BASE_BYTES`` = 64 MB (allocator and autograd bookkeeping), an
over-estimate of about 30 % for real-sized runs, so the check refuses only runs that
would not fit with some margin to spare; it guards against runs far too large for the
machine and is not a precise prediction. A network whose training path keeps less than
its operator outputs says so with an ``activation_factor`` attribute used instead of
``ACT_FACTOR``: the DARTS cell networks' fused path (:mod:`nasforge.nets.cell`) keeps
about 0.4 × ``A`` × batch (measured on 2026-12-02, same protocol, DARTS_V2, 32×32:
8 cells, C = 16, batch 32: 346 MB; 20 cells, C = 36, batch 8: 489 MB; batch 96: 4.26 GB),
so they use 0.55 (estimates 400 MB, 606 MB, 5.68 GB). ``--no-memory-check`` (config
``memory_check: false``, or ``NASFORGE_NO_MEMORY_CHECK=1``) skips it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from nasforge.errors import ConfigError

log = logging.getLogger(__name__)

PARAM_FACTOR = 5.0
ACT_FACTOR = 0.8
BASE_BYTES = 64 * 2**20


@dataclass
class MemoryEstimate:
    params: int  # parameters (all, auxiliary head included)
    param_bytes: int  # parameters + buffers
    activation_bytes_per_sample: float
    batch_size: int
    peak_bytes: int  # estimated extra memory of the training run


class _OutputBytes(TorchDispatchMode):
    """Adds up the bytes of every non-view tensor an operator returns."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t._is_view():
                self.bytes += t.numel() * t.element_size()
        return out


def estimate_training_memory(build: Callable[[], nn.Module], input_shape: tuple[int, ...], batch_size: int,
                             forward: Callable[[nn.Module, int], Any] | None = None) -> MemoryEstimate:
    """Estimate the peak extra memory of training ``build()`` on batches of ``input_shape``
    (one sample, e.g. ``(C, H, W)``) of ``batch_size`` (see the module docstring).
    ``forward(model, n)`` runs the model on a meta batch of ``n`` samples when a plain
    ``model(x)`` does not fit (language models: tokens and hidden state)."""
    with torch.device("meta"):
        model = build()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    param_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    counter = _OutputBytes()
    with counter:
        if forward is None:
            model(torch.empty((2, *input_shape), device="meta"))
        else:
            forward(model, 2)
    per_sample = counter.bytes / 2
    act = getattr(model, "activation_factor", None) or ACT_FACTOR
    peak = PARAM_FACTOR * param_bytes + act * per_sample * batch_size + BASE_BYTES
    return MemoryEstimate(params, param_bytes, per_sample, batch_size, int(peak))


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), if there is one."""
    try:
        top = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if top == "max":
            return None
        return int(top) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes the run can still use: free CUDA memory on a GPU; otherwise the smaller of
    ``MemAvailable`` (``psutil`` or ``/proc/meminfo``) and the room under a cgroup limit.
    ``None`` when unknown (then no check is made)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # no driver / device: unknown
            return None
    try:
        import psutil  # type: ignore[import-not-found]

        avail: int | None = int(psutil.virtual_memory().available)
    except ImportError:
        avail = _meminfo_available()
    cg = _cgroup_available()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_training_memory(build: Callable[[], nn.Module], input_shape: tuple[int, ...], batch_size: int,
                          device: torch.device | str = "cpu", *, what: str = "training",
                          forward: Callable[[nn.Module, int], Any] | None = None) -> MemoryEstimate | None:
    """Raise :class:`ConfigError` when the estimated peak exceeds the available memory.

    Returns the estimate (``None`` when it could not be made: the network does not run on
    the ``meta`` device, or the available memory is unknown).
    """
    avail = available_memory(device)
    if avail is None:
        return None
    try:
        est = estimate_training_memory(build, input_shape, batch_size, forward)
    except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:  # an op without a meta kernel
        log.debug("no memory estimate: %s", e)
        return None
    log.debug("memory estimate for %s: %s (%d parameters, %.1f MB activations per sample), %s available",
             what, _gb(est.peak_bytes), est.params, est.activation_bytes_per_sample / 1e6, _gb(avail))
    if not math.isfinite(est.peak_bytes) or est.peak_bytes > avail:
        raise ConfigError(
            f"{what} needs an estimated {_gb(est.peak_bytes)} of memory but only {_gb(avail)} is available "
            f"({est.params:,} parameters, batch {batch_size}); lower batch_size, channels or layers, "
            "or skip this check with --no-memory-check (config memory_check: false)"
        )
    return est


def memory_check_disabled() -> bool:
    """``NASFORGE_NO_MEMORY_CHECK=1`` turns the check off everywhere (tests, scripts)."""
    return os.environ.get("NASFORGE_NO_MEMORY_CHECK", "") not in ("", "0")
