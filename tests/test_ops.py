"""Every candidate op: output shape at stride 1 and 2 (even and odd sizes, C_in = C_out and
C_in != C_out), parameter counts of the DARTS definitions, registry errors."""

from __future__ import annotations

import math

import pytest
import torch

from nasforge.errors import ArchError
from nasforge.ops import DARTS_PRIMITIVES, ENAS_MICRO_PRIMITIVES, NB201_PRIMITIVES, OPS, make_op


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [8, 7, 1])
@pytest.mark.parametrize("channels", [(4, 4), (4, 6)])
@pytest.mark.parametrize("op_set", ["darts", "snas"])
def test_output_shape(name, stride, size, channels, op_set):
    C_in, C_out = channels
    op = make_op(name, C_in, C_out, stride, affine=True, op_set=op_set)
    x = torch.randn(2, C_in, size, size + 1, requires_grad=True)
    y = op(x)
    assert y.shape == (2, C_out, math.ceil(size / stride), math.ceil((size + 1) / stride))
    if name != "none":
        y.sum().backward()  # differentiable end to end
        assert x.grad is not None


def test_primitive_lists_are_registered():
    for name in DARTS_PRIMITIVES + ENAS_MICRO_PRIMITIVES + NB201_PRIMITIVES:
        assert name in OPS


def test_darts_parameter_counts():
    C = 16
    # (ReLU, dw k×k, pw 1×1, BN) twice: 2 (k²C + C² + 2C)
    for k in (3, 5, 7):
        assert n_params(make_op(f"sep_conv_{k}x{k}", C)) == 2 * (k * k * C + C * C + 2 * C)
    for k in (3, 5):  # once
        assert n_params(make_op(f"dil_conv_{k}x{k}", C)) == k * k * C + C * C + 2 * C
    assert n_params(make_op("conv_7x1_1x7", C)) == 2 * 7 * C * C + 2 * C
    assert n_params(make_op("nor_conv_3x3", C)) == 9 * C * C + 2 * C
    # factorized reduce: two 1×1 convs to C/2 each, BN(C)
    assert n_params(make_op("skip_connect", C, stride=2)) == 2 * C * (C // 2) + 2 * C
    for name in ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"):
        assert n_params(make_op(name, C)) == 0, name
    # SNAS follows each pool by an affine BN (SNAS operations.py)
    for name in ("max_pool_3x3", "avg_pool_3x3"):
        assert n_params(make_op(name, C, op_set="snas")) == 2 * C


def test_identity_zero_and_pool_values():
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(make_op("skip_connect", 4)(x), x)
    assert torch.count_nonzero(make_op("none", 4, stride=2)(x)) == 0
    # average pooling excludes padding (count_include_pad=False): a constant stays constant
    ones = torch.ones(1, 4, 5, 5)
    assert torch.allclose(make_op("avg_pool_3x3", 4)(ones), ones)


def test_factorized_reduce_uses_both_offset_grids():
    fr = make_op("skip_connect", 2, 2, stride=2)
    torch.nn.init.ones_(fr.conv_1.weight)
    torch.nn.init.zeros_(fr.conv_2.weight)
    x = torch.zeros(1, 2, 4, 4)
    x[:, :, 1::2, 1::2] = 1.0  # only odd positions are on: conv_1 (even grid) sees nothing
    fr.eval()
    out = fr(x)
    torch.nn.init.zeros_(fr.conv_1.weight)
    torch.nn.init.ones_(fr.conv_2.weight)
    out2 = fr(x)
    assert not torch.allclose(out, out2)


def test_unknown_op_and_bad_stride():
    with pytest.raises(ArchError, match="unknown op 'conv_9x9'"):
        make_op("conv_9x9", 4)
    with pytest.raises(ArchError, match="stride must be 1 or 2"):
        make_op("sep_conv_3x3", 4, stride=3)
