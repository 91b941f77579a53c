"""Time one step of a peer implementation, imported unchanged from its folder, on a device.

``benchmarks/peers.py`` runs this next to the project's own step benchmarks. Nothing of the
peers is copied into nasforge: the peer's folder is an argument, its modules are imported
from there and driven through their public classes, exactly as their training scripts
drive them. Workloads (the same work as ``search_step.py``, ``train_step.py`` and
``enas_step.py --mode rnn``):

- ``darts-search`` (quark0/darts ``cnn/``): the search network and ``Architect`` of
  ``train_search.py``; one step = the architecture step (``--order 1``: first order,
  ``--order 2``: unrolled) on a held-out batch, then the weight step (SGD, momentum 0.9,
  weight decay 3e-4, clip 5) on the training batch. Architect settings are the script's
  defaults (Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3; DARTS Sec. 3.1.1).
- ``darts-train`` (quark0/darts ``cnn/``): ``NetworkCIFAR`` with the ``DARTS_V2`` genotype,
  auxiliary head weighted 0.4, drop path 0.2, SGD as above (``train.py``'s settings).
  ``--amp bf16|fp16`` wraps forward and loss in ``torch.autocast`` as ``train_step.py`` does.
  ``--style imagenet``: ``NetworkImageNet`` (14 cells, C = 48, 224×224, 1000 classes,
  batch 64 unless overridden) with ``train_imagenet.py``'s defaults: no auxiliary tower,
  no drop path.
- ``enas-rnn`` (carpedm20/ENAS-pytorch): the ``Trainer`` built from the repository's own
  argument defaults (hidden 1000, batch 64, BPTT 35, 12 blocks unless overridden); one step
  = ``train_shared(max_step=0)`` (sample a child, forward/backward, clip, SGD). Needs PTB.

On the CPU the DARTS code's unconditional ``.cuda()`` calls are made no-ops and its
``torch.cuda.FloatTensor`` (drop-path mask) is the CPU tensor type; on CUDA they run as
written, on the chosen device. Modules a step never uses (TensorBoard, drawing, image
libraries) are replaced by inert stand-ins when they are not installed.

Prints one JSON line: workload, settings, per-step seconds, their median, peak RSS (MiB)
and, on CUDA, peak allocated GPU memory (MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import torch
import torch.nn as nn


class _Inert:
    """Absorbs any call or attribute access (for optional imports a step never reaches)."""

    def __call__(self, *args, **kwargs):
        return self

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self


class _InertModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


def _stand_in(names: tuple[str, ...]) -> None:
    """Register inert modules for ``names`` whose top-level package is not installed."""
    import importlib.util

    missing = {n.split(".")[0] for n in names if n.split(".")[0] not in sys.modules and importlib.util.find_spec(n.split(".")[0]) is None}
    for name in names:
        if name.split(".")[0] in missing:
            sys.modules[name] = _InertModule(name)


def _cpu_only_cuda_calls() -> None:
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.FloatTensor = torch.FloatTensor


def _darts_search(a, dev: torch.device):
    sys.path.insert(0, str(Path(a.peer_dir) / "cnn"))
    from architect import Architect  # noqa: PLC0415 (the peer's module)
    from model_search import Network  # noqa: PLC0415

    settings = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4, arch_weight_decay=1e-3)
    crit = nn.CrossEntropyLoss()
    model = Network(a.channels or 16, 10, a.layers or 8, crit)
    if dev.type == "cuda":
        model = model.cuda()
        crit = crit.cuda()
    opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(model, settings)
    bs, size = a.batch_size or 64, a.size or 32
    x, y, xv, yv = (t.to(dev) for t in (torch.randn(bs, 3, size, size), torch.randint(0, 10, (bs,)), torch.randn(bs, 3, size, size), torch.randint(0, 10, (bs,))))

    def step():
        arch.step(x, y, xv, yv, 0.025, opt, unrolled=a.order == 2)
        opt.zero_grad()
        crit(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5)
        opt.step()

    return step, {"order": a.order, "batch_size": bs, "size": size, "layers": a.layers or 8, "channels": a.channels or 16}


def _darts_train(a, dev: torch.device):
    _stand_in(("torchvision", "torchvision.datasets", "torchvision.transforms"))
    sys.path.insert(0, str(Path(a.peer_dir) / "cnn"))
    import genotypes  # noqa: PLC0415 (the peer's module)
    from model import NetworkCIFAR, NetworkImageNet  # noqa: PLC0415

    imagenet = a.style == "imagenet"
    if imagenet:  # train_imagenet.py's defaults: no auxiliary tower, no drop path, 1000 classes
        classes, model = 1000, NetworkImageNet(a.channels or 48, 1000, a.layers or 14, False, genotypes.DARTS_V2).to(dev)
        model.drop_path_prob = 0.0
    else:
        classes, model = 10, NetworkCIFAR(a.channels or 36, 10, a.layers or 20, True, genotypes.DARTS_V2).to(dev)
        model.drop_path_prob = 0.2
    model.train()
    crit = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    bs, size = a.batch_size or (64 if imagenet else 96), a.size or (224 if imagenet else 32)
    x, y = torch.randn(bs, 3, size, size, device=dev), torch.randint(0, classes, (bs,), device=dev)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = torch.amp.GradScaler(dev.type) if a.amp == "fp16" else None

    def step():
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            logits, aux = model(x)
            loss = crit(logits, y) + (0.4 * crit(aux, y) if aux is not None else 0.0)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    return step, {"style": a.style, "batch_size": bs, "size": size, "layers": a.layers or (14 if imagenet else 20),
                  "channels": a.channels or (48 if imagenet else 36), "amp": a.amp}


def _enas_rnn(a, dev: torch.device):
    if not a.ptb or not (Path(a.ptb) / "train.txt").is_file():
        raise SystemExit(f"enas-rnn needs the PTB folder (train.txt, valid.txt, test.txt); got --ptb {a.ptb!r}")
    _stand_in(("pygraphviz", "cv2", "torchvision", "torchvision.datasets", "torchvision.transforms", "tensorboardX", "tensorboardX.summary"))
    repo = str(Path(a.peer_dir).resolve())
    sys.path.insert(0, repo)
    cwd = os.getcwd()
    os.chdir(repo)  # the repository resolves some paths relative to itself
    hid, bs, bptt, nodes = a.nhid or 1000, a.batch_size or 64, a.bptt or 35, a.nodes or 12
    logs = tempfile.mkdtemp(prefix="enas_peer_")
    sys.argv = [
        "main.py", "--network_type", "rnn", "--dataset", "ptb", "--num_gpu", "1" if dev.type == "cuda" else "0",
        "--data_dir", str(Path(a.ptb).resolve().parent), "--log_dir", logs, "--controller_max_step", "1",
        "--shared_hid", str(hid), "--shared_embed", str(hid), "--batch_size", str(bs),
        "--shared_rnn_max_length", str(bptt), "--num_blocks", str(nodes), "--use_tensorboard", "False",
    ]
    import config  # noqa: PLC0415 (the peer's modules)
    import data  # noqa: PLC0415
    import trainer  # noqa: PLC0415
    import utils  # noqa: PLC0415

    args, _ = config.get_args()
    utils.prepare_dirs(args)
    tr = trainer.Trainer(args, data.text.Corpus(str(Path(a.ptb).resolve())))
    os.chdir(cwd)

    def step():
        tr.train_shared(max_step=0)

    return step, {"batch_size": bs, "nhid": hid, "bptt": bptt, "nodes": nodes}


WORKLOADS = {"darts-search": _darts_search, "darts-train": _darts_train, "enas-rnn": _enas_rnn}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("peer_dir", help="quark0-darts/ for darts-*, carpedm20-ENAS-pytorch/ for enas-rnn")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="darts-search: first or second order")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="input height = width (DARTS)")
    p.add_argument("--layers", type=int, default=None, help="cells (DARTS)")
    p.add_argument("--channels", type=int, default=None, help="initial channels C (DARTS)")
    p.add_argument("--nhid", type=int, default=None, help="hidden = embedding size (ENAS RNN)")
    p.add_argument("--bptt", type=int, default=None)
    p.add_argument("--nodes", type=int, default=None, help="ENAS RNN cell nodes")
    p.add_argument("--ptb", default=None, help="PTB folder (enas-rnn)")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="darts-train only")
    p.add_argument("--style", choices=("cifar", "imagenet"), default="cifar", help="darts-train: NetworkCIFAR or NetworkImageNet")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
    if dev.type == "cuda":
        if dev.index is not None:
            torch.cuda.set_device(dev)  # the peers' bare .cuda() calls go to this device
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        _cpu_only_cuda_calls()
    torch.manual_seed(0)
    step, settings = WORKLOADS[a.workload](a, dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for i in range(a.warmup + a.steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
    res = {"impl": "peer", "workload": a.workload, "device": str(dev), "threads": torch.get_num_threads(), **settings,
           "step_s": [round(t, 4) for t in times], "median_s": round(statistics.median(times), 4),
           "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if dev.type == "cuda":
        res["peak_gpu_MiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
