"""Cost of a network: parameters, FLOPs / multiply-adds, measured latency.

- :func:`count_parameters` counts trainable parameters the way DARTS
  ``cnn/utils.count_parameters_in_MB`` does (and SNAS's copy of it): every parameter whose
  name does not contain ``"auxiliary"`` — so the auxiliary head is out even when built,
  BN affine weights/biases, the stem and the classifier are in, running statistics are
  out (they are buffers). Tied weights (the RNN LM's encoder/decoder) count once.
- :func:`count_flops` runs one forward pass in eval mode under
  :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
  multiply-add of convolutions and matrix products (BN, pooling, activations and
  additions are not counted). ``macs = flops // 2`` is the "multiply-adds" the NAS papers
  quote; their conventions differ (DARTS's "574M" for its ImageNet cell is not
  reproduced by a plain conv+linear count), so compare within nasforge only.
- Backward: ``FlopCounterMode``'s formula for ``aten.convolution_backward`` computes the
  weight gradient as a dense convolution and ignores ``groups``, so for a depthwise
  convolution (groups = C) it counts the weight gradient ``C`` times too high
  (``tests/test_cost.py`` shows it: a 16-channel depthwise 3×3 conv gets 17× its forward
  FLOPs as backward instead of 2×). :func:`backward_flops_analytic` counts the backward
  of every convolution as (input gradient + weight gradient) = forward FLOPs for each
  gradient actually computed, which is exact for grouped convolutions too.
- :func:`measure_latency` times the forward pass on a device: ``warmup`` untimed runs,
  then the median of ``repeats`` timed runs (CUDA synchronised around each).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

aten = torch.ops.aten


def count_parameters(model: nn.Module, exclude_aux: bool = True) -> int:
    """Trainable parameters, without the auxiliary head by default (DARTS's count)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad and not (exclude_aux and "auxiliary" in name)
    )


def _example_inputs(inputs: Any) -> tuple:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(s, int) for s in inputs):
        return (torch.randn(*inputs),)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    raise TypeError(f"inputs must be a shape, a tensor or a tuple of inputs, got {type(inputs).__name__}")


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    return obj


def _conv_backward_exact(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed, _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Backward of a (grouped) convolution: each computed gradient costs one forward."""
    fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


@dataclass
class FlopCount:
    """FLOPs of one forward pass (and optionally one backward pass) at a given input."""

    forward: int
    backward: int | None = None  # analytic (exact for grouped/depthwise convolutions)
    backward_flopcounter: int | None = None  # FlopCounterMode's own (over-counts depthwise)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass (= FLOPs / 2)."""
        return self.forward // 2


def count_flops(model: nn.Module, inputs: Sequence[int] | torch.Tensor | tuple, backward: bool = False) -> FlopCount:
    """Count forward FLOPs (eval mode, no grad) of ``model`` on ``inputs`` (a shape such as
    ``(1, 3, 32, 32)``, a tensor, or a tuple of forward arguments). With ``backward=True``
    also count one backward pass of ``sum(first output)`` in train mode, both with
    FlopCounterMode's formulas and with the exact grouped-convolution backward."""
    args = _example_inputs(inputs)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            model(*args)
        result = FlopCount(forward=fc.get_total_flops())
        if backward:
            result.backward, result.backward_flopcounter = _backward_flops(model, args)
    finally:
        model.train(was_training)
    return result


def _backward_flops(model: nn.Module, args: tuple) -> tuple[int, int]:
    def run(custom: dict | None) -> int:
        model.zero_grad(set_to_none=True)
        out = model(*args)
        first = out[0] if isinstance(out, (tuple, list)) else out
        with FlopCounterMode(display=False, custom_mapping=custom) as fc:
            first.float().sum().backward()
        return fc.get_total_flops()

    model.eval()  # same graph as the forward count (no aux head, no dropout/drop path)
    raw = run(None)
    exact = run({aten.convolution_backward: _conv_backward_exact})
    model.zero_grad(set_to_none=True)
    return exact, raw


def backward_flops_analytic(model: nn.Module, inputs: Sequence[int] | torch.Tensor | tuple) -> int:
    """FLOPs of one backward pass with convolution backward counted exactly (see module doc)."""
    args = _example_inputs(inputs)
    was_training = model.training
    try:
        return _backward_flops(model, args)[0]
    finally:
        model.train(was_training)


def measure_latency(
    model: nn.Module,
    inputs: Sequence[int] | torch.Tensor | tuple,
    device: str | torch.device = "cpu",
    warmup: int = 5,
    repeats: int = 20,
) -> float:
    """Median wall-clock seconds of one eval-mode forward pass on ``device``."""
    if warmup < 0 or repeats < 1:
        raise ValueError("measure_latency: warmup must be >= 0 and repeats >= 1")
    device = torch.device(device)
    args = _to_device(_example_inputs(inputs), device)
    was_training = model.training
    model.eval()
    model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(*args)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(*args)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times)


__all__ = ["FlopCount", "backward_flops_analytic", "count_flops", "count_parameters", "measure_latency"]
