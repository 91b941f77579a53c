"""The inference path of the final networks: no autograd state, BatchNorm folded into the
convolution before it.

In eval mode a BN is a fixed per-channel affine map, so ``BN(conv(x))`` is one conv with
scaled weights and a bias (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`): one pass
over the activations fewer for every ReLU-Conv-BN, depthwise-1×1-BN and stem. The
folded copy computes the same function to float rounding; the network it was made from
is not changed (its ``state_dict`` stays the training one).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
        and bn.running_mean is not None and conv.out_channels == bn.num_features
    )


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every ``Conv2d`` directly followed by a
    ``BatchNorm2d`` in an ``nn.Sequential`` folded into one conv (the BN becomes an
    identity). Other modules are copied unchanged."""
    net = copy.deepcopy(model).eval()
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if _foldable(conv, bn):
                fused = fuse_conv_bn_eval(conv, bn)
                if conv.weight.dim() == 4 and conv.weight.is_contiguous(memory_format=torch.channels_last):
                    fused = fused.to(memory_format=torch.channels_last)
                seq[i], seq[i + 1] = fused, nn.Identity()
    return net
