"""cost.py: DARTS-style parameter count, FlopCounterMode forward FLOPs checked against
analytic counts, FlopCounterMode's depthwise-conv backward over-count and our exact
backward count, latency measurement (value not asserted: timing is not tested)."""

from __future__ import annotations

import torch
import torch.nn as nn

from nasforge import zoo
from nasforge.cost import backward_flops_analytic, count_flops, count_parameters, measure_latency
from nasforge.nets import build_network


def conv_flops(N, C_in, C_out, H, W, k, groups=1):
    """2 FLOPs per multiply-add: each output element needs (C_in / groups)·k² of them."""
    return 2 * N * C_out * H * W * (C_in // groups) * k * k


def test_count_parameters_excludes_auxiliary_only():
    net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=32, C=4, layers=5, auxiliary=True)
    aux = sum(p.numel() for p in net.auxiliary_head.parameters())
    assert count_parameters(net, exclude_aux=False) == sum(p.numel() for p in net.parameters())
    assert count_parameters(net) == count_parameters(net, exclude_aux=False) - aux
    bn_buffers = sum(b.numel() for b in net.buffers())
    assert bn_buffers > 0  # running statistics exist but are not parameters
    before = count_parameters(net)
    net.classifier.weight.requires_grad_(False)  # only trainable parameters count
    assert count_parameters(net) == before - net.classifier.weight.numel()


def test_forward_flops_match_analytic():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    f = count_flops(model, (2, 3, 6, 6))
    expected = conv_flops(2, 3, 8, 6, 6, 3) + conv_flops(2, 8, 8, 6, 6, 3, groups=8) + 2 * 2 * 8 * 36 * 5
    assert f.forward == expected
    assert f.macs == expected // 2


def test_flopcounter_overcounts_depthwise_backward():
    C, N, H = 16, 2, 8
    dw = nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)
    x = torch.randn(N, C, H, H, requires_grad=True)  # both gradients computed
    f = count_flops(dw, (x,), backward=True)
    fwd = conv_flops(N, C, C, H, H, 3, groups=C)
    assert f.forward == fwd
    # exact: grad_input and grad_weight each cost one forward
    assert f.backward == 2 * fwd == backward_flops_analytic(dw, (x,))
    # FlopCounterMode counts grad_weight as a dense conv (ignores groups): C times too many
    assert f.backward_flopcounter == fwd + C * fwd


def test_flopcounter_backward_is_right_for_dense_conv():
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    f = count_flops(conv, (x,), backward=True)
    assert f.backward == f.backward_flopcounter == 2 * f.forward
    x2 = torch.randn(2, 4, 5, 5)  # no input gradient needed: weight gradient only
    assert count_flops(conv, (x2,), backward=True).backward == f.forward


def test_network_backward_count_and_mode_restored():
    net = build_network(zoo.get("DARTS"), num_classes=10, in_channels=3, input_size=16, C=4, layers=3, auxiliary=True)
    net.train()
    f = count_flops(net, (1, 3, 16, 16), backward=True)
    assert net.training  # mode restored
    assert f.forward > 0 and f.backward < f.backward_flopcounter  # separable convs: raw count is inflated
    assert f.backward <= 2 * f.forward
    assert all(p.grad is None for p in net.parameters())


def test_rnn_flops_per_token():
    model = __import__("nasforge.nets", fromlist=["RNNModel"]).RNNModel(zoo.get("DARTS_RNN"), 100, 8, 8, 8)
    f = count_flops(model, (torch.zeros(1, 1, dtype=torch.long), model.init_hidden(1)))
    # W0 (16x16) + 8 node matrices (8x16) + decoder (8x100), one token
    assert f.macs == 16 * 16 + 8 * 8 * 16 + 8 * 100


def test_measure_latency_runs():
    model = nn.Linear(4, 4)
    model.train()
    t = measure_latency(model, (2, 4), "cpu", warmup=1, repeats=3)
    assert t > 0 and model.training
