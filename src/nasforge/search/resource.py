"""Per-op resource costs of a cell supernet, for SNAS's resource constraint (Xie et al. 2019, Sec. 2.4).

SNAS penalises the expected cost of the sampled child: for every edge, ``Σ_k Z_k · c_k``
with ``Z`` the (Gumbel-softmax) sample and ``c_k`` the cost of op k on that edge
("reparametrization" in the official code). Three costs are measured here from the
actual op modules of the supernet at their actual input shapes (one image):

- ``flops``: :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and
  matmuls), plus ``k²`` per output element of pooling (FlopCounterMode counts no
  pooling) — our addition, so that pooling is not free;
- ``params``: the op's parameters;
- ``mac``: memory access cost (ShuffleNet V2's notion): Σ over the op's layers of
  input + output + weight elements; identity counts its input and output (one copy).

``none`` costs 0 in all three, so a resource penalty pushes edges towards ``none``. A
user's op (:func:`nasforge.ops.register_op`) is measured the same way; its MAC counts the
layers above and any module with its own weights, else one read and write (as identity).
Costs of the shared ReLU are not counted (FlopCounterMode does not count element-wise
ops; MAC counts it once per state).

A fourth resource, ``latency`` (:data:`LATENCY`), is each op's forward time measured on
the user's device at its real input shape (:mod:`nasforge.search.latency`); it is not
part of :data:`RESOURCES` (the three static costs every epoch record carries, and that
``all`` sums) because it needs a timing run and a device.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nasforge.spaces.mixed_op import CandidateOp, EdgeInput, MixedOp

RESOURCES = ("flops", "params", "mac")
#: measured on the device (nasforge.search.latency); selectable as SNAS's --resource latency
LATENCY = "latency"
ALL_RESOURCES = (*RESOURCES, LATENCY)

_LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _op_costs(op: CandidateOp, x: torch.Tensor) -> dict[str, float]:
    if op.name == "none":
        return {"flops": 0.0, "params": 0.0, "mac": 0.0}
    mac = [0.0]
    pool_flops = [0.0]
    hooks = []

    def hook(m, inp, out):
        w = sum(p.numel() for p in m.parameters(recurse=False))
        mac[0] += _numel(inp[0] if inp else None) + _numel(out) + w
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            pool_flops[0] += k * k * out.numel()

    for m in op.modules():
        # layers of the built-ins; for a user's op also any module holding its own weights
        if isinstance(m, _LEAVES) or any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_hook(hook))
    fc = FlopCounterMode(display=False)
    try:
        with fc, torch.no_grad():
            y = op(EdgeInput(x), None, fused=False)
    finally:
        for h in hooks:
            h.remove()
    if mac[0] == 0.0:  # identity: read and write the tensor once
        mac[0] = float(x.numel() + y.numel())
    params = float(sum(p.numel() for p in op.parameters()))
    return {"flops": float(fc.get_total_flops()) + pool_flops[0], "params": params, "mac": mac[0]}


def edge_shapes(net: nn.Module, input_shape: tuple[int, int, int]) -> dict[int, tuple[int, ...]]:
    """``{id(mixed op): (1, C, H, W)}``: each edge's input shape, recorded by running the
    supernet once (batch of one, eval mode, uniform op weights)."""
    shapes: dict[int, tuple[int, ...]] = {}
    hooks = []
    for m in net.modules():
        if isinstance(m, MixedOp):
            hooks.append(m.register_forward_pre_hook(lambda mod, args: shapes.__setitem__(id(mod), tuple(args[0].x.shape))))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            dummy = torch.zeros(1, *input_shape)
            uniform = {t: torch.full((net.num_edges, net.num_ops), 1.0 / net.num_ops) for t in net.cell_types}
            net(dummy, weights=uniform)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return shapes


def measure_costs(net: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, dict[str, torch.Tensor]]:
    """Costs ``{resource: {cell_type: Tensor[num_edges, num_ops]}}`` summed over the cells of each type.

    ``input_shape`` = (channels, height, width) of one image; each op is measured at its
    edge's input shape (:func:`edge_shapes`).
    """
    shapes = edge_shapes(net, input_shape)
    was_training = net.training
    net.eval()
    try:
        out = {r: {t: torch.zeros(net.num_edges, net.num_ops, dtype=torch.float64) for t in net.cell_types} for r in RESOURCES}
        for cell in net.cells:
            kind = "reduce" if cell.reduction else "normal"
            for e, mixed in enumerate(cell.ops):
                x = torch.zeros(shapes[id(mixed)])
                for k, op in enumerate(mixed.ops):
                    c = _op_costs(op, x)
                    for r in RESOURCES:
                        out[r][kind][e, k] += c[r]
    finally:
        net.train(was_training)
    return out


def expected_cost(weights: dict[str, torch.Tensor], costs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_cell types Σ_edges Σ_k w[e,k] · c[e,k]`` (differentiable in ``weights``)."""
    total = None
    for t, w in weights.items():
        c = costs[t].to(dtype=w.dtype, device=w.device)
        v = (w * c).sum()
        total = v if total is None else total + v
    assert total is not None
    return total


def max_cost(costs: dict[str, torch.Tensor]) -> float:
    """Cost of the most expensive child (every edge on its costliest op): the linear-penalty scale."""
    return float(sum(c.max(dim=1).values.sum() for c in costs.values()))


def resource_penalty(
    weights: dict[str, torch.Tensor],
    costs: dict[str, dict[str, torch.Tensor]],
    resources: tuple[str, ...],
    log: bool = True,
) -> torch.Tensor:
    """Penalty without λ: Σ over resources of log(expected cost) (``log``) or expected/max cost."""
    total = None
    for r in resources:
        ec = expected_cost(weights, costs[r])
        scale = max(max_cost(costs[r]), 1e-12)
        v = torch.log(ec / scale + 1e-8) if log else ec / scale
        total = v if total is None else total + v
    assert total is not None
    return total


def child_cost(choice: dict[str, list[list[int]]], costs: dict[str, torch.Tensor]) -> float:
    """Cost of a discrete child (per edge the list of chosen op indices)."""
    return float(sum(costs[t][e, k] for t, ch in choice.items() for e, ks in enumerate(ch) for k in ks))


def log10_or_nan(v: float) -> float:
    return math.log10(v) if v > 0 else float("nan")
