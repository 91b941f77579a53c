"""Time and peak memory of one training step of a zoo cell network at DARTS's CIFAR evaluation settings.

One step = forward (with the auxiliary head and drop path 0.2), cross-entropy + 0.4 ×
auxiliary loss, backward, gradient-norm clip 5 and an SGD step (momentum 0.9, weight
decay 3e-4), on a random batch of 96 × 3 × 32 × 32 images: the inner loop of
``nasforge.train.cnn.train_epoch`` with the DARTS defaults (20 cells, C = 36).

Reports the median (and min/max) wall time over ``--steps`` steps after ``--warmup``
steps, and the process's peak resident memory (``resource.getrusage`` ``ru_maxrss``;
on Linux in KiB). For the whole-process peak as the kernel sees it, run under GNU time::

    OMP_NUM_THREADS=2 flock /tmp/nasforge-heavy.lock /usr/bin/time -v \\
        python benchmarks/train_step.py --threads 2

Results are printed as text and, with ``--json PATH``, written as JSON (``--json -``: one
JSON line on stdout instead of the text, as ``benchmarks/peers.py`` reads it).

``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) runs the same step on a GPU (timed
between ``torch.cuda.synchronize`` calls; ``peak_gpu_MiB`` from
``torch.cuda.max_memory_allocated``). ``--amp bf16|fp16`` runs forward and loss under
``torch.autocast`` (fp16 with a gradient scaler, unscaled before the clip); the weights and
the SGD step stay fp32.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.arch import load_arch
from nasforge.nets import build_network
from nasforge.train.cnn import count_params
from nasforge.utils.device import resolve_device
from nasforge.utils.malloc import tune_malloc


def peak_rss_mib() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20  # KiB on Linux, bytes on macOS


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="DARTS_V2")
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--drop-path", type=float, default=None, help="default 0.2 (cifar), 0 (imagenet)")
    p.add_argument("--style", choices=("cifar", "imagenet"), default="cifar",
                   help="imagenet: NetworkImageNet, 1000 classes, no auxiliary head (DARTS train_imagenet.py defaults)")
    p.add_argument("--plain", action="store_true", help="reference: plain modules (Cell.fused off), NCHW")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-malloc-tuning", action="store_true", help="glibc's default trimming (see nasforge.utils.malloc)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast dtype of forward and loss")
    p.add_argument("--json", default=None, help="also write the results to this file")
    a = p.parse_args(argv)
    if not a.no_malloc_tuning:
        tune_malloc()  # as the nasforge command does

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = resolve_device(a.device)
    arch = load_arch(a.arch)
    imagenet = a.style == "imagenet"
    classes = 1000 if imagenet else 10
    drop = a.drop_path if a.drop_path is not None else (0.0 if imagenet else 0.2)
    model = build_network(
        arch, num_classes=classes, in_channels=3, input_size=a.size, C=a.channels, layers=a.layers,
        auxiliary=not imagenet, drop_path_prob=drop, style=a.style, channels_last=not a.plain,
    ).to(device)
    if a.plain:
        for m in model.modules():
            if hasattr(m, "fused"):
                m.fused = False
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(a.batch_size, 3, a.size, a.size, device=device)
    y = torch.randint(0, classes, (a.batch_size,), device=device)
    rss_before = peak_rss_mib()
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = torch.amp.GradScaler(device.type) if a.amp == "fp16" else None

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits, aux = model(x)
            loss = F.cross_entropy(logits, y) + (0.4 * F.cross_entropy(aux, y) if aux is not None else 0.0)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(a.warmup):
        step()
    times = [step() for _ in range(a.steps)]
    res = {
        "arch": a.arch,
        "style": a.style,
        "plain": a.plain,
        "layers": a.layers,
        "channels": a.channels,
        "batch_size": a.batch_size,
        "input": [3, a.size, a.size],
        "params_M_without_aux": count_params(model) / 1e6,
        "device": str(device),
        "amp": a.amp,
        "threads": torch.get_num_threads(),
        "warmup": a.warmup,
        "steps": a.steps,
        "step_s_median": statistics.median(times),
        "step_s_min": min(times),
        "step_s_max": max(times),
        "images_per_s": a.batch_size / statistics.median(times),
        "peak_rss_MiB": peak_rss_mib(),
        "peak_rss_MiB_after_build": rss_before,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        res["cuda_peak_alloc_MiB"] = res["peak_gpu_MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
    if a.json == "-":
        print(json.dumps(res))
        return 0
    print(
        f"{a.arch} {a.layers} cells C={a.channels} batch {a.batch_size} {a.size}x{a.size} on {device} ({res['threads']} threads, amp {a.amp}): "
        f"median {res['step_s_median']:.3f} s/step (min {res['step_s_min']:.3f}, max {res['step_s_max']:.3f}; {a.steps} steps after {a.warmup} warm-up), "
        f"{res['images_per_s']:.1f} images/s, peak RSS {res['peak_rss_MiB']:.0f} MiB, {res['params_M_without_aux']:.2f}M params"
    )
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
