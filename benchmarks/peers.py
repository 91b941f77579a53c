"""Peer code and nasforge on the same work, side by side: one table of speed, memory and GFLOP/s.

Usage (from the project's root; PEERS_DIR holds ``quark0-darts/`` and
``carpedm20-ENAS-pytorch/``, the peers' code, unchanged)::

    PYTHONPATH=src python benchmarks/peers.py ../shared/peers --pairs 2 --out peers.jsonl
    PYTHONPATH=src python benchmarks/peers.py ../shared/peers --device cuda --amp bf16 --out gpu.jsonl

Workloads (paper settings; ``--workloads`` picks a subset):

- ``darts1`` / ``darts2``: one DARTS search step, first / second order, batch 64, 32×32,
  8 cells, C = 16 (DARTS Sec. 3.1.1): ``peer_step.py darts-search`` vs ``search_step.py``;
- ``train``: one DARTS_V2 training step, 20 cells, C = 36, batch 96, auxiliary weight 0.4,
  drop path 0.2 (DARTS Sec. 3.2): ``peer_step.py darts-train`` vs ``train_step.py``;
- ``darts1-8x8``: ``darts1`` on 8×8 inputs;
- ``enas-rnn``: one ENAS RNN shared-weight step, hidden 1000, batch 64, BPTT 35, 12 nodes
  (carpedm20/ENAS-pytorch defaults): ``peer_step.py enas-rnn`` vs ``enas_step.py --mode rnn``.

The runs are interleaved (pair 1: peer, ours for every workload; pair 2: again ...), one
process at a time, so drift of a shared machine hits both sides alike. Each process
reports the median of its timed steps after warm-up; both sides get the same warm-up, long
enough for the steady state a long run sees: 4 steps for the training steps (a nasforge
training process keeps its freed memory, and its heap stops growing only after ~4 steps:
minor page faults per step 779k, 62k, 31k, 90k, then under 10; the step times 9.1, 6.9,
6.6, 7.5, then 6.3 s), 2 for the first-order searches, 1 for the (long) second-order step. Peak memory: on the CPU the child's
peak RSS as the kernel counts it (``os.wait4``, as ``/usr/bin/time -v``, in a small launcher
that forks the benchmark: Linux carries the RSS high-water mark across exec, so a process
forked from this one counted at least this one's RSS); on CUDA the
child's ``torch.cuda.max_memory_allocated``. The same run measures the machine's fp32
matmul peak (median GFLOP/s of ``--matmul-repeats`` n×n products; also the AMP dtype's
with ``--amp``), and every workload's achieved GFLOP/s is set against it.

FLOPs are counted analytically, once, and used for both sides (2 per multiply-add of
convolutions and matrix products, ``nasforge.cost.count_flops`` on nasforge's reference
network for the workload at batch 1, times the batch; BN, pooling and element-wise work
are not counted). F = one forward pass. A training step (``train``, ``enas-rnn``) = 3F
(forward, input gradients, weight gradients: each costs one forward, exact for depthwise
convolutions). A first-order search step = 5F: an α-only pass (forward + input gradients,
2F) and a weight pass (3F). A second-order step = 13F: the unrolled weight gradient (3F),
the validation pass at w′ needing ∇α and ∇w′ (3F), two α-only passes at w ± εv (4F) and
the weight step (3F). Work an implementation does beyond these (e.g. weight gradients in
an α step) is not credited, so achieved GFLOP/s compare like the speeds do.

On CUDA PyTorch's defaults apply to both sides: fp32 matrix products without TF32 (so the
measured peak is plain fp32), while cuDNN may run fp32 convolutions in TF32, so a
convolution workload can pass 100% of the fp32 peak. ``--amp`` applies to ``train`` only
(both sides under the same ``torch.autocast``); its percentage is of the AMP dtype's peak.

Writes ``--out`` (JSON lines: the machine, every run, one summary per workload) and the
same path with ``.md`` (the Markdown table), and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass
class Workload:
    title: str
    kind: str  # search | train | enas
    defaults: dict
    steps: int = 3
    warmup: int = 1
    order: int = 1
    fixed: tuple[str, ...] = ()  # settings the size overrides leave alone (they define the workload)
    settings: dict = field(default_factory=dict)


WORKLOADS = {
    "darts1": Workload("DARTS search, 1st order", "search", dict(batch_size=64, size=32, layers=8, channels=16), warmup=2),
    "darts2": Workload("DARTS search, 2nd order", "search", dict(batch_size=64, size=32, layers=8, channels=16), steps=2, order=2),
    # the auxiliary head expects the 8×8 maps a 32×32 input gives at 2/3 depth
    "train": Workload("DARTS_V2 training step", "train", dict(batch_size=96, size=32, layers=20, channels=36), warmup=4, fixed=("size",)),
    # train_imagenet.py's network and defaults (no auxiliary tower, no drop path); batch 64 instead of 128 to fit CPU memory
    "imagenet": Workload("DARTS_V2 ImageNet training step", "train", dict(batch_size=64, size=224, layers=14, channels=48, style="imagenet"), warmup=4, fixed=("size",)),
    "darts1-8x8": Workload("DARTS search, 1st order, 8×8", "search", dict(batch_size=64, size=8, layers=8, channels=16), warmup=2, fixed=("size",)),
    "enas-rnn": Workload("ENAS RNN shared step", "enas", dict(batch_size=64, nhid=1000, bptt=35, nodes=12), steps=4),
}
FLOP_MULTIPLIER = {("search", 1): 5, ("search", 2): 13, ("train", 1): 3, ("enas", 1): 3}


def machine(dev: torch.device) -> dict:
    """CPU model (``/proc/cpuinfo``) and its vector extensions, cores, torch, GPU name on CUDA."""
    cpu, simd = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")]
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        cpu = model[0] if model else cpu
        simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    except OSError:
        pass
    info = {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def matmul_peak(dev: torch.device, n: int, dtype: torch.dtype, repeats: int) -> dict:
    """Median GFLOP/s of ``repeats`` n×n×n products (2n³ FLOPs each) after one warm-up."""
    a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rates = []
    for i in range(repeats + 1):
        sync()
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        if i:
            rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "gflops": round(statistics.median(rates), 1), "all": [round(r, 1) for r in rates]}


def forward_flops(w: Workload) -> int:
    """Conv + matmul FLOPs of one forward pass of the whole batch (see the module doc)."""
    from nasforge.cost import count_flops

    s = w.settings
    torch.manual_seed(0)
    if w.kind == "search":
        sys.path.insert(0, str(BENCH))
        from search_step import NaiveNet  # plain search network: every op of every edge

        net = NaiveNet(s["channels"], s["layers"])
        mix = {t: torch.full((14, 8), 1 / 8) for t in ("normal", "reduce")}
        per_sample = count_flops(net, (torch.randn(1, 3, s["size"], s["size"]), mix)).forward
    elif w.kind == "train":
        from nasforge.arch import load_arch
        from nasforge.nets import build_network

        style = s.get("style", "cifar")
        net = build_network(load_arch("DARTS_V2"), num_classes=1000 if style == "imagenet" else 10, in_channels=3, input_size=s["size"],
                            C=s["channels"], layers=s["layers"], auxiliary=style == "cifar", style=style)
        per_sample = count_flops(net, (1, 3, s["size"], s["size"])).forward  # eval mode: no auxiliary head
    else:
        from nasforge.search.enas_controller import Controller, recurrent_layout
        from nasforge.spaces.enas_rnn import RecurrentSupernet, decode_recurrent

        net = RecurrentSupernet(10000, nhid=s["nhid"], num_nodes=s["nodes"])
        arch = decode_recurrent(Controller(recurrent_layout(s["nodes"])).sample())  # every child costs the same
        per_sample = count_flops(net, (torch.randint(0, 10000, (s["bptt"], 1)), net.init_hidden(1), arch)).forward
    return per_sample * s["batch_size"]


def commands(w: Workload, a, dev: str) -> tuple[list[str], list[str], str]:
    """(peer argv, ours argv, key of ours' median seconds)."""
    s, py, peers = w.settings, sys.executable, Path(a.peers_dir)
    common = ["--steps", str(w.steps), "--warmup", str(w.warmup), "--threads", str(a.threads), "--device", dev]
    peer = [py, str(BENCH / "peer_step.py")]
    if w.kind == "search":
        sizes = ["--batch-size", str(s["batch_size"]), "--size", str(s["size"]), "--layers", str(s["layers"]), "--channels", str(s["channels"])]
        return (peer + ["darts-search", str(peers / "quark0-darts"), "--order", str(w.order)] + sizes + common,
                [py, str(BENCH / "search_step.py"), "--mode", f"darts{w.order}"] + sizes + common, "median_s")
    if w.kind == "train":
        style = s.get("style", "cifar")
        sizes = ["--batch-size", str(s["batch_size"]), "--size", str(s["size"]), "--layers", str(s["layers"]), "--channels", str(s["channels"]),
                 "--amp", a.amp, "--style", style]
        drop = "0.2" if style == "cifar" else "0"
        return (peer + ["darts-train", str(peers / "quark0-darts")] + sizes + common,
                [py, str(BENCH / "train_step.py"), "--drop-path", drop, "--json", "-"] + sizes + common, "step_s_median")
    sizes = ["--batch-size", str(s["batch_size"]), "--nhid", str(s["nhid"]), "--bptt", str(s["bptt"])]
    return (peer + ["enas-rnn", str(peers / "carpedm20-ENAS-pytorch"), "--ptb", a.ptb, "--nodes", str(s["nodes"])] + sizes + common,
            [py, str(BENCH / "enas_step.py"), "--mode", "rnn", "--layers", str(s["nodes"])] + sizes + common, "shared_step_s")


# A benchmark process is started by this small launcher, not by peers.py itself: Linux
# carries a process's RSS high-water mark across exec, so a child forked from this (large)
# process would report at least this process's RSS (956 MB) however little it used. The
# launcher forks the benchmark from its own ~10 MB and reports the benchmark's rusage.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "sys.stderr.write('\\n@peak_rss_kib %d\\n' % usage.ru_maxrss)\n"
    "sys.stderr.flush()\n"
    "os._exit(os.waitstatus_to_exitcode(status) % 256)\n"
)


def run_child(argv: list[str], threads: int, timeout: float) -> dict:
    """Run one benchmark process alone; its last JSON line, exit status and own peak RSS."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, *argv], stdout=subprocess.PIPE, stderr=err, env=env, cwd=ROOT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        out = proc.stdout.read().decode(errors="replace")
        proc.stdout.close()
        proc.wait()
        timer.cancel()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    marks = [ln for ln in stderr.splitlines() if ln.startswith("@peak_rss_kib ")]
    stderr = "\n".join(ln for ln in stderr.splitlines() if not ln.startswith("@peak_rss_kib ")).strip()
    rss_kib = int(marks[-1].split()[1]) if marks else 0
    if sys.platform == "darwin":
        rss_kib /= 1024  # bytes there
    rec = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2), "peak_rss_MiB": round(rss_kib / 1024, 1)}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        rec["result"] = json.loads(lines[-1])
    else:
        rec["error"] = (stderr or out.strip())[-1500:] or f"exit status {proc.returncode}"
    return rec


def summarize(name: str, w: Workload, runs: list[dict], flops: int, peak: dict, amp_peak: dict | None, cuda: bool) -> dict:
    sec = {impl: [r["seconds"] for r in runs if r["impl"] == impl and "seconds" in r] for impl in ("peer", "ours")}
    mem = {impl: [r["peak_MiB"] for r in runs if r["impl"] == impl and "peak_MiB" in r] for impl in ("peer", "ours")}
    pairs = sorted({r["pair"] for r in runs})
    per_pair = []
    for i in pairs:
        pr = {r["impl"]: r.get("seconds") for r in runs if r["pair"] == i}
        if pr.get("peer") and pr.get("ours"):
            per_pair.append(round(pr["peer"] / pr["ours"], 2))
    ref = amp_peak if (amp_peak and w.kind == "train") else peak
    out = {"type": "summary", "workload": name, "title": w.title, "settings": w.settings, "steps": w.steps, "warmup": w.warmup,
           "flops_per_step": flops, "flop_multiplier": FLOP_MULTIPLIER[(w.kind, w.order)], "memory": "peak GPU allocated" if cuda else "peak RSS",
           "peak_ref_gflops": ref["gflops"], "peak_ref_dtype": ref["dtype"], "speedup_per_pair": per_pair, "failed": [r for r in runs if "error" in r]}
    for impl in ("peer", "ours"):
        if sec[impl]:
            med = statistics.median(sec[impl])
            gf = flops / med / 1e9
            out[impl] = {"median_s": round(med, 4), "all_s": sec[impl], "peak_MiB": max(mem[impl]) if mem[impl] else None,
                         "gflops": float(f"{gf:.6g}"), "pct_of_peak": float(f"{100 * gf / ref['gflops']:.6g}")}
    if "peer" in out and "ours" in out:
        out["speedup"] = round(out["peer"]["median_s"] / out["ours"]["median_s"], 2)
        if out["peer"]["peak_MiB"] and out["ours"]["peak_MiB"]:
            out["memory_ratio"] = round(out["ours"]["peak_MiB"] / out["peer"]["peak_MiB"], 2)
    return out


def _mem(mib) -> str:
    return "—" if mib is None else (f"{mib / 1024:.2f} GB" if mib >= 1024 else f"{mib:.0f} MB")


def _sec(side: dict | None) -> str:
    return f"{side['median_s']:.3g}" if side else "failed"


def table(head: dict, summaries: list[dict]) -> str:
    m, pk = head["machine"], head["matmul_peak"]
    lines = [
        f"Measured {head['utc']} on {m['cpu']} ({m['cores']} cores; {', '.join(m['simd']) or 'no AVX2'})" + (f", {m['gpu']}" if "gpu" in m else "")
        + f"; device {head['device']}, {head['threads']} CPU threads, torch {m['torch']}, AMP {head['amp']}, {head['pairs']} pair(s) interleaved.",
        f"Matmul peak in this run: {pk['gflops']} GFLOP/s fp32 (n = {pk['n']}, median of {len(pk['all'])})"
        + (f", {head['amp_peak']['gflops']} GFLOP/s {head['amp_peak']['dtype']}" if head.get("amp_peak") else "") + ".",
        "",
        "| workload | settings | peer s/step | ours s/step | speed-up (per pair) | peer peak mem | ours peak mem | mem ours/peer | GFLOP/step | peer GFLOP/s (% peak) | ours GFLOP/s (% peak) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        st = ", ".join(f"{k.replace('_size', '')} {v}" for k, v in s["settings"].items())
        p, o = s.get("peer"), s.get("ours")
        sp = f"**{s['speedup']}×** ({', '.join(f'{x}' for x in s['speedup_per_pair'])})" if "speedup" in s else "—"
        lines.append(
            f"| {s['title']} | {st} | {_sec(p)} | {_sec(o)} | {sp} | "
            f"{_mem(p['peak_MiB']) if p else '—'} | {_mem(o['peak_MiB']) if o else '—'} | {s.get('memory_ratio', '—')} | "
            f"{s['flops_per_step'] / 1e9:.3g} ({s['flop_multiplier']}F) | "
            + " | ".join(f"{x['gflops']:.3g} ({x['pct_of_peak']:.3g}% of {s['peak_ref_dtype']})" if x else "—" for x in (p, o)) + " |"
        )
    lines += ["", f"Memory: {summaries[0]['memory'] if summaries else ''}. Speed-up = peer median / ours median. "
              "F = forward conv+matmul FLOPs; see `benchmarks/peers.py` for the step formulas."]
    for s in summaries:
        for f in s["failed"]:
            lines.append(f"- {s['workload']} {f['impl']} pair {f['pair']} failed: `{f['error'].splitlines()[-1][:200]}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("peers_dir", help="folder holding quark0-darts/ and carpedm20-ENAS-pytorch/")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    p.add_argument("--pairs", type=int, default=2, help="peer/ours pairs per workload")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast for the training step (both sides)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1), help="CPU threads of every process")
    p.add_argument("--out", default="peers.jsonl", help="JSON lines; the Markdown table goes next to it as .md")
    p.add_argument("--ptb", default=None, help="PTB folder for enas-rnn (default: $NASFORGE_DATA/ptb, else PEERS_DIR/../data/ptb)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per process")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size for the peak (default 2048 on CPU, 8192 on CUDA)")
    p.add_argument("--matmul-repeats", type=int, default=5)
    g = p.add_argument_group("size overrides (quick runs; applied to every selected workload where meaningful; --size leaves train and darts1-8x8 alone)")
    for name in ("batch-size", "size", "layers", "channels", "nhid", "bptt", "nodes", "steps", "warmup"):
        g.add_argument(f"--{name}", type=int, default=None)
    a = p.parse_args(argv)

    names = [n.strip() for n in a.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    peers = Path(a.peers_dir)
    need = {"quark0-darts/cnn/model_search.py": any(WORKLOADS[n].kind != "enas" for n in names),
            "carpedm20-ENAS-pytorch/trainer.py": "enas-rnn" in names}
    missing = [f for f, needed in need.items() if needed and not (peers / f).is_file()]
    if missing:
        p.error(f"{peers} lacks {', '.join(missing)}")
    if a.ptb is None:
        data = os.environ.get("NASFORGE_DATA")
        a.ptb = str(Path(data) / "ptb" if data else peers.resolve().parent / "data" / "ptb")
    if "enas-rnn" in names and not (Path(a.ptb) / "train.txt").is_file():
        p.error(f"enas-rnn needs PTB (train.txt) in {a.ptb}; pass --ptb")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {a.device}: CUDA is not available here")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    torch.set_num_threads(a.threads)

    work = {}
    for n in names:
        w = WORKLOADS[n]
        w.settings = {k: (getattr(a, k) if getattr(a, k, None) is not None and k not in w.fixed else v) for k, v in w.defaults.items()}
        w.steps, w.warmup = a.steps or w.steps, a.warmup if a.warmup is not None else w.warmup
        work[n] = w
    head = {"type": "machine", "utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(dev),
            "device": str(dev), "threads": a.threads, "amp": a.amp, "pairs": a.pairs, "argv": sys.argv[1:] if argv is None else argv}
    n = a.matmul_n or (8192 if dev.type == "cuda" else 2048)
    head["matmul_peak"] = matmul_peak(dev, n, torch.float32, a.matmul_repeats)
    if a.amp != "off":
        head["amp_peak"] = matmul_peak(dev, n, torch.bfloat16 if a.amp == "bf16" else torch.float16, a.matmul_repeats)
    print(f"{head['machine']['cpu']}" + (f" / {head['machine']['gpu']}" if "gpu" in head["machine"] else "") + f": matmul fp32 {head['matmul_peak']['gflops']} GFLOP/s", flush=True)
    flops = {n: forward_flops(w) * FLOP_MULTIPLIER[(w.kind, w.order)] for n, w in work.items()}

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    with out.open("w", encoding="utf-8") as f:
        f.write(json.dumps(head) + "\n")
        for i in range(1, a.pairs + 1):
            for n, w in work.items():
                peer_cmd, ours_cmd, key = commands(w, a, str(dev))
                for impl, cmd, k in (("peer", peer_cmd, "median_s"), ("ours", ours_cmd, key)):
                    rec = {"type": "run", "workload": n, "impl": impl, "pair": i, **run_child(cmd, a.threads, a.timeout)}
                    if "result" in rec:
                        rec["seconds"] = rec["result"][k]
                        rec["peak_MiB"] = rec["result"]["peak_gpu_MiB"] if dev.type == "cuda" else rec["peak_rss_MiB"]
                    runs.append(rec)
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    print(f"pair {i} {n} {impl}: " + (f"{rec['seconds']:.3f} s/step, {_mem(rec['peak_MiB'])}" if "seconds" in rec else f"FAILED ({rec['error'].splitlines()[-1][:160]})"), flush=True)
        summaries = [summarize(n, w, [r for r in runs if r["workload"] == n], flops[n], head["matmul_peak"], head.get("amp_peak"), dev.type == "cuda") for n, w in work.items()]
        for s in summaries:
            f.write(json.dumps(s) + "\n")
    md = table(head, summaries)
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if all("speedup" in s for s in summaries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
