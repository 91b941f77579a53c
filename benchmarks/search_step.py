"""Seconds per search step and peak RSS of DARTS (1st/2nd order) and SNAS.

Paper setting (DARTS Sec. 3.1.1): batch 64, 32×32×3 images, 8 cells, C = 16, 4 nodes,
10 classes. Random images (no data set needed). One *step* is what one training batch
costs in the real search loop (``DartsSearch.step`` / ``SnasSearch.step``): for DARTS the
α update on a held-out batch plus the weight update on the training batch.

Run one mode per process so that peak RSS belongs to that mode, e.g.::

    OMP_NUM_THREADS=2 flock /tmp/nasforge-heavy.lock /usr/bin/time -v \\
        python benchmarks/search_step.py --mode darts1 --steps 3 --warmup 1

Prints one JSON line: mode, options, the per-step wall times, their median, the per-step
process CPU times (all threads; steadier than wall time on a shared host), and the peak RSS
(``getrusage``; ``/usr/bin/time -v`` reports the same figure as "Maximum resident set size").
``--profile`` prints torch.profiler's table of the most expensive ops for one step.
``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) runs the same step on a GPU: the
timings are taken between ``torch.cuda.synchronize`` calls, and the JSON line adds
``peak_gpu_MiB`` (``torch.cuda.max_memory_allocated``). The search runs in fp32 (no AMP:
the α gradients of the paper's algorithm are fp32).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from nasforge.search.darts import DartsConfig, DartsSearch
from nasforge.search.snas import SnasConfig, SnasSearch
from nasforge.utils.device import resolve_device
from nasforge.utils.malloc import tune_malloc


def _synthetic(batch_size: int, size: int) -> str:
    """Random CIFAR-shaped images (4 batches a split) registered as an in-memory data set."""
    from nasforge.data import register_dataset

    n = batch_size * 8  # the search holds out half of the training images for α
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)
    return register_dataset((x, y), test=(x[:batch_size], y[:batch_size]), num_classes=10)


class NaiveMixedOp(torch.nn.Module):
    """Reference for comparison: DARTS' MixedOp as in the paper/official code (NCHW, every op run)."""

    def __init__(self, C, stride):
        super().__init__()
        from nasforge.ops import DARTS_PRIMITIVES, make_op

        self.ops = torch.nn.ModuleList()
        for p in DARTS_PRIMITIVES:
            op = make_op(p, C, C, stride, affine=False)
            if "pool" in p:
                op = torch.nn.Sequential(op, torch.nn.BatchNorm2d(C, affine=False))
            self.ops.append(op)

    def forward(self, x, w):
        return sum(wk * op(x) for wk, op in zip(w, self.ops))


class NaiveCell(torch.nn.Module):
    def __init__(self, C_pp, C_p, C, reduction, reduction_prev, nodes=4):
        super().__init__()
        from nasforge.ops import FactorizedReduce, ReLUConvBN

        self.pre0 = FactorizedReduce(C_pp, C, affine=False) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0, False)
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, 0, False)
        self.nodes, self.reduction = nodes, reduction
        self.ops = torch.nn.ModuleList(NaiveMixedOp(C, 2 if reduction and j < 2 else 1) for i in range(nodes) for j in range(2 + i))

    def forward(self, s0, s1, weights):
        states = [self.pre0(s0), self.pre1(s1)]
        offset = 0
        for _ in range(self.nodes):
            s = sum(self.ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.nodes:], dim=1)


class NaiveNet(torch.nn.Module):
    def __init__(self, C=16, layers=8, num_classes=10):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), torch.nn.BatchNorm2d(3 * C))
        C_pp, C_p, C_curr, rp = 3 * C, 3 * C, C, False
        self.cells = torch.nn.ModuleList()
        for i in range(layers):
            red = i in (layers // 3, 2 * layers // 3)
            if red:
                C_curr *= 2
            self.cells.append(NaiveCell(C_pp, C_p, C_curr, red, rp))
            rp, C_pp, C_p = red, C_p, 4 * C_curr
        self.classifier = torch.nn.Linear(C_p, num_classes)

    def forward(self, x, weights):
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weights["reduce" if cell.reduction else "normal"])
        return self.classifier(s1.mean((2, 3)))


def naive_first_order_step(net, alphas, w_opt, a_opt, train, held):
    """First-order DARTS step as the official code does it: loss.backward() (all gradients) twice."""
    import torch.nn.functional as F

    a_opt.zero_grad()
    F.cross_entropy(net(held[0], {t: F.softmax(a, -1) for t, a in alphas.items()}), held[1]).backward()
    a_opt.step()
    w_opt.zero_grad()
    F.cross_entropy(net(train[0], {t: F.softmax(a, -1) for t, a in alphas.items()}), train[1]).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    w_opt.step()


def naive_second_order_step(net, alphas, w_opt, a_opt, train, held):
    """Second-order DARTS step structured as the official code: an unrolled *copy* of the
    network at w' = w − ξ(μv + ∇w L_train + λw), ``loss.backward()`` on it (gradients of α
    and of all of w'), the finite-difference Hessian-vector product from two α-only
    ``autograd.grad`` passes at w ± εv, then the weight step of the first-order reference."""
    import copy

    import torch.nn.functional as F

    def loss_of(model, batch):
        return F.cross_entropy(model(batch[0], {t: F.softmax(a, -1) for t, a in alphas.items()}), batch[1])

    group = w_opt.param_groups[0]
    eta, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
    params = list(net.parameters())
    grads = torch.autograd.grad(loss_of(net, train), params)
    unrolled = copy.deepcopy(net)
    with torch.no_grad():
        for p, u, g in zip(params, unrolled.parameters(), grads):
            buf = w_opt.state.get(p, {}).get("momentum_buffer")
            u.copy_(p - eta * (g + wd * p + (mom * buf if buf is not None else 0.0)))
    a_opt.zero_grad()
    loss_of(unrolled, held).backward()
    vector = [u.grad for u in unrolled.parameters()]
    r = 0.01 / float(torch.sqrt(sum((v**2).sum() for v in vector)))
    keys = list(alphas)
    implicit = []
    for sign in (1.0, -2.0):
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=sign * r)
        implicit.append(torch.autograd.grad(loss_of(net, train), [alphas[k] for k in keys]))
    with torch.no_grad():
        for p, v in zip(params, vector):
            p.add_(v, alpha=r)
        for k, gp, gn in zip(keys, *implicit):
            alphas[k].grad -= eta * (gp - gn) / (2 * r)
    a_opt.step()
    w_opt.zero_grad()
    loss_of(net, train).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    w_opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("darts1", "darts2", "darts2-reuse", "snas"), default="darts1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: OMP_NUM_THREADS)")
    p.add_argument("--checkpoint-cells", action="store_true")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--no-fused", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--naive", action="store_true", help="darts1/darts2 on a plain re-implementation of the official search network and step (reference)")
    p.add_argument("--no-malloc-tuning", action="store_true", help="glibc's default trimming (see nasforge.utils.malloc)")
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet's forward (inductor); the first warm-up step includes the compile")
    a = p.parse_args()
    if a.naive and a.mode not in ("darts1", "darts2"):
        p.error("--naive is a reference for --mode darts1 and darts2 only")
    malloc_tuned = False if a.no_malloc_tuning else tune_malloc()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    common = dict(
        batch_size=a.batch_size, layers=a.layers, channels=a.channels, input_size=a.size, epochs=50,
        checkpoint_cells=a.checkpoint_cells, channels_last=not a.no_channels_last, device=str(dev),
        data=_synthetic(a.batch_size, a.size),
    )
    if a.mode == "snas":
        search = SnasSearch(SnasConfig(**common), None, progress=False)
    else:
        cfg = DartsConfig(order=1 if a.mode == "darts1" else 2, reuse_unrolled_grad=a.mode == "darts2-reuse", **common)
        search = DartsSearch(cfg, None, progress=False)
    if a.no_fused:
        search.net.fused = False
    if a.compile:
        search.net.forward = torch.compile(search.net.forward)
    search.epoch_begin(0)
    train = next(search._batches(search.train_pair))
    held = next(search._batches(search.heldout_pair))
    step = search.step
    if a.naive:
        torch.manual_seed(0)
        net = NaiveNet(a.channels, a.layers).to(dev)
        alphas = {t: (1e-3 * torch.randn(14, 8, device=dev)).requires_grad_() for t in ("normal", "reduce")}
        w_opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        a_opt = torch.optim.Adam(alphas.values(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
        tr = (train[0].contiguous().to(dev), train[1].to(dev))
        he = (held[0].contiguous().to(dev), held[1].to(dev))
        del search

        naive_step = naive_first_order_step if a.mode == "darts1" else naive_second_order_step

        def step(_t, _h):
            naive_step(net, alphas, w_opt, a_opt, tr, he)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, cpu = [], []
    for i in range(a.warmup + a.steps):
        sync()
        t, c = time.perf_counter(), time.process_time()
        step(train, held)
        sync()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(train, held)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    steps = times[a.warmup :]
    res = {
        "mode": f"naive-{a.mode}" if a.naive else a.mode, "device": str(dev), "batch_size": a.batch_size, "size": a.size, "layers": a.layers, "channels": a.channels,
        "threads": torch.get_num_threads(), "checkpoint_cells": a.checkpoint_cells and not a.naive, "channels_last": not (a.no_channels_last or a.naive),
        "fused": not (a.no_fused or a.naive), "malloc_tuned": malloc_tuned, "compiled": a.compile, "warmup_seconds": [round(t, 1) for t in times[: a.warmup]], "step_seconds": [round(t, 3) for t in steps], "median_s": round(statistics.median(steps), 3),
        "cpu_s": [round(c, 2) for c in cpu[a.warmup :]],
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
    }
    if dev.type == "cuda":
        res["peak_gpu_MiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
