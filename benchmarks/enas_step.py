"""Seconds per ENAS shared-weight step and controller step, and peak RSS / GPU memory.

Search settings of the ENAS code (melodyguan/enas@4bcfd73 scripts):

- ``macro``: 12 layers, 36 filters, batch 128, 32×32×3 (``cifar10_macro_search.sh``);
- ``micro``: 6 normal + 2 reduction cells, 5 nodes, 20 filters, batch 160
  (``cifar10_micro_search.sh``);
- ``rnn``: 12 nodes, batch 64, bptt 35, 10k vocabulary; hidden size 1000 as in
  ENAS-pytorch's config [U] (ENAS-LM uses other sizes; ``--nhid`` to change).

A *shared step* samples a child with the controller, runs its forward/backward on one
training batch and takes the SGD step (what one minibatch costs in ENAS phase 1). A
*controller step* samples a child with gradients, scores it on one validation batch
(no grad) and takes the REINFORCE/Adam step (phase 2). ``--mode darts-micro`` times a
first-order DARTS weight step on the same supernet (every op of every edge runs,
weights = softmax(α)) and ``--mode micro-child`` one sampled child built as a stand-alone
network (``nets.build_network``, same cells/channels/batch), for the comparison "one
ENAS micro step ≈ one child's forward/backward, far less than a DARTS step on the same
cell count". Random data; no data set needed.

Run one mode per process, e.g.::

    OMP_NUM_THREADS=2 flock /tmp/nasforge-heavy.lock /usr/bin/time -v \\
        python benchmarks/enas_step.py --mode micro --steps 5 --warmup 2

Prints one JSON line: mode, settings, median seconds of each step kind, peak RSS (MiB)
and, on CUDA, peak allocated GPU memory (MiB). ``--device`` is ``auto``, ``cpu``, ``cuda``
or ``cuda:N``; every timed call is bracketed by ``torch.cuda.synchronize`` on CUDA. No AMP:
the shared steps are timed in fp32 as the ENAS code runs them.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge.search.enas_controller import Controller, Reinforce, macro_layout, micro_layout, recurrent_layout
from nasforge.utils.device import resolve_device
from nasforge.utils.malloc import tune_malloc


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, steps: int, warmup: int, dev: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(steps):
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("macro", "micro", "rnn", "darts-micro", "micro-child"), default="macro")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--nhid", type=int, default=1000)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-malloc-tuning", action="store_true", help="glibc's default trimming (see nasforge.utils.malloc)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    if not a.no_malloc_tuning:
        tune_malloc()  # as the nasforge command does
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    defaults = {"macro": (128, 36, 12), "micro": (160, 20, 6), "darts-micro": (160, 20, 6), "micro-child": (160, 20, 6), "rnn": (64, a.nhid, 12)}
    bs, C, L = defaults[a.mode]
    bs, C, L = a.batch_size or bs, a.channels or C, a.layers or L

    if a.mode == "rnn":
        from nasforge.spaces.enas_rnn import RecurrentSupernet, decode_recurrent

        ntoken = 10000
        net = RecurrentSupernet(ntoken, nhid=C, num_nodes=L).to(dev)
        layout, decode = recurrent_layout(L), decode_recurrent
        x = torch.randint(0, ntoken, (a.bptt + 1, bs), device=dev)
        hidden = [net.init_hidden(bs)]
        opt = torch.optim.SGD(net.parameters(), lr=20.0)

        def loss_of(arch, train: bool):
            lp, h = net(x[:-1], hidden[0], arch)
            if train:
                hidden[0] = h.detach()
            return F.nll_loss(lp.view(-1, ntoken), x[1:].reshape(-1))

        clip = 0.25
    else:
        x = torch.randn(bs, 3, 32, 32, device=dev)
        y = torch.randint(0, 10, (bs,), device=dev)
        if a.mode == "macro":
            from nasforge.spaces.enas_macro import MacroSupernet, decode_macro

            net = MacroSupernet(10, 3, num_layers=L, C=C).to(dev)
            layout, decode = macro_layout(L), decode_macro
        else:
            from nasforge.spaces.enas_micro import MicroSupernet, decode_micro

            net = MicroSupernet(10, 3, C=C, normal_layers=L, channels_last=dev.type == "cpu").to(dev)
            layout, decode = micro_layout(), decode_micro
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)

        def loss_of(arch, train: bool):
            return F.cross_entropy(net(x, arch), y)

        clip = 5.0

    ctrl = Controller(layout).to(dev)
    rl = Reinforce(ctrl)
    result: dict = {"mode": a.mode, "device": str(dev), "batch_size": bs, "channels": C, "layers": L,
                    "threads": torch.get_num_threads(), "params_M": sum(p.numel() for p in net.parameters()) / 1e6}

    if a.mode == "micro-child":
        # one sampled micro child as a stand-alone network (same cells, channels, batch)
        from nasforge.nets import build_network

        arch = decode(ctrl.sample())
        child = build_network(arch, num_classes=10, in_channels=3, input_size=32, C=C, layers=L + 2).to(dev)
        if dev.type == "cpu":
            child = child.to(memory_format=torch.channels_last)
        copt = torch.optim.SGD(child.parameters(), lr=0.05, momentum=0.9, nesterov=True)

        def child_step():
            loss = F.cross_entropy(child(x)[0], y)
            copt.zero_grad(set_to_none=True)
            loss.backward()
            copt.step()

        times = _timed(child_step, a.steps, a.warmup, dev)
        result["standalone_child_step_s"] = statistics.median(times)
        result["child_params_M"] = sum(p.numel() for p in child.parameters()) / 1e6
    elif a.mode == "darts-micro":
        sn = net.net  # the CellSupernet under the ENAS adapter
        alphas = {t: (1e-3 * torch.randn(sn.num_edges, sn.num_ops, device=dev)).requires_grad_() for t in ("normal", "reduce")}

        def darts_step():
            w = {t: F.softmax(al, dim=-1) for t, al in alphas.items()}
            loss = F.cross_entropy(sn(x, weights=w), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(sn.parameters(), clip)
            opt.step()

        times = _timed(darts_step, a.steps, a.warmup, dev)
        result["darts_first_order_weight_step_s"] = statistics.median(times)
    else:
        def shared_step():
            arch = decode(ctrl.sample())
            net.train()
            loss = loss_of(arch, True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()

        @torch.no_grad()
        def reward(actions):
            arch = decode(actions)
            if a.mode == "rnn":
                net.eval()
                return 80.0 / math.exp(min(float(loss_of(arch, False)), 50.0))
            return float((net(x, arch).argmax(1) == y).float().mean())

        def controller_step():
            rl.step(reward)

        times = _timed(shared_step, a.steps, a.warmup, dev)
        result["shared_step_s"] = statistics.median(times)
        result["shared_step_all_s"] = [round(t, 4) for t in times]
        times = _timed(controller_step, a.steps, a.warmup, dev)
        result["controller_step_s"] = statistics.median(times)
        # the controller alone (sampling + REINFORCE update, no child evaluation)
        times = _timed(lambda: rl.step(lambda acts: 0.5), a.steps, a.warmup, dev)
        result["controller_only_step_s"] = statistics.median(times)
    result["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        result["peak_gpu_MiB"] = torch.cuda.max_memory_allocated(dev) / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
