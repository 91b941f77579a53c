"""Data-parallel supernet search with ``torch.distributed`` (run under ``torchrun``).

Every process holds the whole supernet and α; each global batch is split across the
processes (process r takes rows r, r+N, ...). After every backward the gradients of the
weights and of α are averaged with ``all_reduce`` (gloo on CPU, NCCL on CUDA), and all
processes start from rank 0's weights and α (``broadcast``), so identical optimiser
steps keep weights and α identical on every rank. (DDP's module wrapper is not used:
the second-order step needs gradients with respect to chosen tensors only, at weights
swapped in place.) BN running statistics stay per process, as with ``DistributedDataParallel``.
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch."""
        return t[self.rank :: self.world_size] if self.active else t

    def all_reduce_mean(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.active or not tensors:
            return tensors
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world_size
        out, o = [], 0
        for t in tensors:
            out.append(flat[o : o + t.numel()].view_as(t).to(t.dtype))
            o += t.numel()
        return out

    def all_reduce_grads(self, params: list[torch.Tensor]) -> None:
        ps = [p for p in params if p.grad is not None]
        for p, g in zip(ps, self.all_reduce_mean([p.grad for p in ps])):
            p.grad.copy_(g)

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        if not self.active:
            return
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_from_env(device: torch.device) -> DistContext:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
    return DistContext(rank=rank, world_size=dist.get_world_size())


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()
