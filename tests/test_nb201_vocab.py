"""The NAS-Bench-201 vocabulary (spaces/nb201.py): cell string <-> ops <-> cell arch."""

from __future__ import annotations

import pytest

from nasforge.arch import arch_from_dict
from nasforge.errors import ArchError, ConfigError
from nasforge.spaces import nb201
from nasforge.spaces import nb201_table


def test_round_trips_over_the_whole_space():
    for i in range(0, 5**6, 7):
        ops = nb201.index_to_ops(i)
        s = nb201.ops_to_cellstr(ops)
        assert nb201.cellstr_to_ops(s) == ops
        arch = nb201.ops_to_arch(ops, "x", {"space": "nb201"})
        assert nb201.arch_to_ops(arch) == ops
        assert nb201.arch_to_ops(arch_from_dict(arch.to_dict())) == ops
    assert len({nb201.index_to_ops(i) for i in range(5**6)}) == 5**6


def test_cellstr_layout_and_errors():
    ops = ("nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect")
    assert nb201.ops_to_cellstr(ops) == "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    arch = nb201.ops_to_arch(ops)
    assert arch.inputs == 1 and arch.reduce is None and arch.normal.concat == [3]
    assert [len(n) for n in arch.normal.nodes] == [1, 2, 3]
    with pytest.raises(ArchError, match="6 edges"):
        nb201.ops_to_cellstr(ops[:5])
    with pytest.raises(ArchError, match="unknown NAS-Bench-201 op 'conv'"):
        nb201.ops_to_arch(("conv",) * 6)
    with pytest.raises(ArchError, match="misses edge"):
        nb201.cellstr_to_ops("|none~0|+|none~0|+|none~0|none~1|none~2|")


def test_columns():
    assert [nb201.test_metric(m) for m in ("cifar10-val", "cifar100-val", "imagenet-val")] == ["cifar10-test", "cifar100-test", "imagenet-test"]
    with pytest.raises(ConfigError, match="unknown NAS-Bench-201 metric 'cifar10'"):
        nb201.test_metric("cifar10")


def test_old_names_still_importable():
    assert nb201_table.EDGES is nb201.EDGES and nb201_table.ops_to_cellstr is nb201.ops_to_cellstr
    assert nb201_table.cellstr_to_ops is nb201.cellstr_to_ops and nb201_table.METRICS is nb201.METRICS
