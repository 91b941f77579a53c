"""Channels-last (NHWC) weights and activations for the final image networks.

oneDNN's depthwise, 1×1 and k×k convolution kernels are faster on NHWC on CPU (DARTS_V2
training step at batch 32: 1.55 s NCHW → 1.08 s NHWC, one thread), and tensor cores
prefer it on CUDA. The layout changes no value and no ``state_dict`` key or shape, so
checkpoints written by NCHW networks load and evaluate the same.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ChannelsLast(nn.Module):
    """Base of a network that keeps itself NHWC: call :meth:`_layout` at the end of
    ``__init__`` and pass the input through :meth:`_input` in ``forward``."""

    channels_last: bool = False

    def _layout(self, channels_last: bool) -> None:
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x
