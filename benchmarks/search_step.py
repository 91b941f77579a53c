"""Seconds per search step and peak RSS of DARTS (1st/2nd order) and SNAS.

Paper setting (DARTS Sec. 3.1.1): batch 64, 32×32×3 images, 8 cells, C = 16, 4 nodes,
10 classes. Random images (no data set needed). One *step* is what one training batch
costs in the real search loop (``DartsSearch.step`` / ``SnasSearch.step``): for DARTS the
α update on a held-out batch plus the weight update on the training batch.

Run one mode per process so that peak RSS belongs to that mode, e.g.::

    OMP_NUM_THREADS=2 flock /tmp/nasforge-heavy.lock /usr/bin/time -v \\
        python benchmarks/search_step.py --mode darts1 --steps 3 --warmup 1

Prints one JSON line: mode, options, the per-step times, their median, and the peak RSS
(``getrusage``; ``/usr/bin/time -v`` reports the same figure as "Maximum resident set size").
``--profile`` prints torch.profiler's table of the most expensive ops for one step.
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


def _synthetic(cls):
    class Synthetic(cls):
        def _load_data(self):
            from nasforge.data import TensorPair

            cfg = self.cfg
            n = cfg.batch_size * 4
            g = torch.Generator().manual_seed(0)
            self.num_classes, self.in_channels = 10, 3
            size = cfg.input_size or 32
            self.train_pair = TensorPair(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))
            self.heldout_pair = TensorPair(torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g))
            self.augment = None
            self.input_shape = (3, size, size)

    return Synthetic


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
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    common = dict(
        batch_size=a.batch_size, layers=a.layers, channels=a.channels, input_size=a.size, epochs=50,
        checkpoint_cells=a.checkpoint_cells, channels_last=not a.no_channels_last, device="cpu",
    )
    if a.mode == "snas":
        search = _synthetic(SnasSearch)(SnasConfig(**common), None, progress=False)
    else:
        cfg = DartsConfig(order=1 if a.mode == "darts1" else 2, reuse_unrolled_grad=a.mode == "darts2-reuse", **common)
        search = _synthetic(DartsSearch)(cfg, None, progress=False)
    if a.no_fused:
        search.net.fused = False
    search.epoch_begin(0)
    train = next(search._batches(search.train_pair))
    held = next(search._batches(search.heldout_pair))
    times = []
    for i in range(a.warmup + a.steps):
        t = time.perf_counter()
        search.step(train, held)
        times.append(time.perf_counter() - t)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            search.step(train, held)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    steps = times[a.warmup :]
    print(json.dumps({
        "mode": a.mode, "batch_size": a.batch_size, "size": a.size, "layers": a.layers, "channels": a.channels,
        "threads": torch.get_num_threads(), "checkpoint_cells": a.checkpoint_cells, "channels_last": not a.no_channels_last,
        "fused": not a.no_fused, "step_seconds": [round(t, 3) for t in steps], "median_s": round(statistics.median(steps), 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
    }))


if __name__ == "__main__":
    main()
