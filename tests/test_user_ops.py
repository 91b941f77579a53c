"""Your own op set (issue 10 part 6): ``--ops`` for the cell searches (DARTS, SNAS, ENAS
micro) and ``register_op`` for a user's op, which is then searched by DARTS, and whose
derived cell trains and exports to ONNX."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nasforge import cli
from nasforge.arch import load_arch
from nasforge.errors import ArchError, ConfigError
from nasforge.ops import OPS, check_ops, is_builtin_op, make_op, register_op, unregister_op
from nasforge.utils.io import read_jsonl

USER_OP = "conv_1x1_relu"
TINY = ["--data", "digits", "--limit", "32", "--batch-size", "16", "--layers", "3", "--channels", "8", "--nodes", "2",
        "--epochs", "1", "--max-steps", "1", "--eval-limit", "16", "--seed", "0", "--device", "cpu", "--no-progress"]
TINY_MICRO = ["--space", "micro", "--data", "digits", "--layers", "1", "--channels", "4", "--batch-size", "16",
              "--controller-steps", "1", "--max-steps", "1", "--limit", "64", "--derive-samples", "1", "--eval-batches", "1",
              "--epochs", "1", "--device", "cpu", "--no-progress"]


class ConvReLU(nn.Module):
    """A user's op, deliberately not an ``nn.Sequential``: 1×1 conv (strided), BN, ReLU."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


@pytest.fixture
def user_op():
    register_op(USER_OP, ConvReLU, "1x1 conv, BN, ReLU (test)")
    try:
        yield USER_OP
    finally:
        unregister_op(USER_OP)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _ops_of(arch) -> set[str]:
    return {op for g in arch.cells().values() for node in g.nodes for op, _ in node}


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method,extra,message",
    [
        ("darts", ["--ops", "sep_conv_3x3,conv_9x9_magic"], "unknown op 'conv_9x9_magic' in --ops"),
        ("darts", ["--ops", "sep_conv_3x3,skip_connect,sep_conv_3x3"], "--ops lists 'sep_conv_3x3' more than once"),
        ("darts", ["--ops", "none"], "--ops needs at least one op other than 'none'"),
        ("darts", ["--ops", ","], "--ops is empty"),
        ("darts", ["--space", "nb201", "--ops", "none,skip_connect"], "--ops is for --space cell"),
        ("darts", ["--space", "rnn", "--ops", "tanh,relu"], "--ops does not apply to `search darts --space rnn`"),
        ("snas", ["--ops", "none,bogus"], "unknown op 'bogus' in --ops"),
        ("enas", ["--space", "macro", "--ops", "sep_conv_3x3"], "--ops is for --space micro"),
        ("enas", ["--space", "micro", "--ops", "skip_connect,skip_connect"], "--ops lists 'skip_connect' more than once"),
    ],
)
def test_bad_ops_exit_2_with_one_line(tmp_path, method, extra, message):
    rc, _, err = run_cli("search", method, "--out", str(tmp_path / "run"), "--data", "digits", "--no-progress", *extra)
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_ops_from_yaml_are_validated_too(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ops: [none, not_an_op]\n")
    rc, _, err = run_cli("search", "darts", "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress")
    assert rc == 2 and "unknown op 'not_an_op' in --ops" in err


def test_check_ops_accepts_a_registered_list():
    assert check_ops(["none", "skip_connect"]) == ("none", "skip_connect")
    with pytest.raises(ConfigError, match="nasforge.register_op"):
        check_ops(["mine"])


# -- register_op ---------------------------------------------------------------------------------
def test_register_op_rejects_bad_names_duplicates_and_broken_builders(user_op):
    with pytest.raises(ConfigError, match="is a built-in op"):
        register_op("sep_conv_3x3", ConvReLU)
    with pytest.raises(ConfigError, match="already registered"):
        register_op(user_op, ConvReLU)
    for bad in ("", "a,b", "9x", "has space", None):
        with pytest.raises(ConfigError, match="op name"):
            register_op(bad, ConvReLU)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be callable"):
        register_op("not_callable", 3)  # type: ignore[arg-type]
    # stride ignored: wrong output shape at stride 2
    with pytest.raises(ConfigError, match=r"maps a \(2, 4, 8, 8\) input to \(2, 4, 8, 8\), expected \(2, 4, 4, 4\)"):
        register_op("no_stride", lambda ci, co, s, a: nn.Conv2d(ci, co, 1))
    with pytest.raises(ConfigError, match="modifies its input in place"):
        register_op("inplace_relu", lambda ci, co, s, a: nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(ci, co, 1, stride=s)))
    with pytest.raises(ConfigError, match="failed"):
        register_op("crashes", lambda ci, co, s, a: nn.Conv2d(ci + 1, co, 1, stride=s))
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        register_op("returns_a_function", lambda ci, co, s, a: (lambda x: x))
    for name in ("no_stride", "inplace_relu", "crashes", "returns_a_function", "not_callable"):
        assert name not in OPS
    with pytest.raises(ConfigError, match="a built-in op"):
        unregister_op("none")
    assert not is_builtin_op(user_op) and is_builtin_op("sep_conv_3x3")
    assert isinstance(make_op(user_op, 8, 8, 2, affine=True), ConvReLU)


def test_user_op_runs_plain_in_the_supernet_and_its_alias_is_never_written(user_op):
    from nasforge.spaces.cell_supernet import CellSupernet
    from nasforge.spaces.mixed_op import EdgeInput, MixedOp

    # an op whose output is a view of its input: summing it with another op must not write into x
    register_op("view_op", lambda ci, co, s, a: _View(s))
    try:
        mixed = MixedOp(["view_op", "skip_connect", user_op], 4, 1)
        assert mixed.ops[0].plan is None and not mixed.ops[0].pre_relu and mixed.ops[0].tail is None
        assert isinstance(mixed.ops[2].body, ConvReLU)  # nothing cut off a user's op
        x = torch.randn(2, 4, 6, 6)
        x0 = x.clone()
        out, owned = mixed(EdgeInput(x), None, [0, 1])
        assert torch.equal(x, x0) and torch.equal(out, 2 * x0)
        # the supernet with built-ins and the user op: fused == plain modules, gradients too
        torch.manual_seed(0)
        prims = ("none", "sep_conv_3x3", "max_pool_3x3", user_op, "view_op")
        net = CellSupernet(10, 1, C=4, layers=3, nodes=2, primitives=prims)
        w = {t: torch.softmax(torch.randn(net.num_edges, len(prims)), -1).requires_grad_(True) for t in net.cell_types}
        xb = torch.randn(4, 1, 8, 8)
        outs = []
        for fused in (True, False):
            net.fused = fused
            net.zero_grad()
            y = net(xb, weights=w)
            g = torch.autograd.grad(y.square().sum(), [w["normal"], *net.parameters()], allow_unused=True)
            outs.append((y.detach(), g))
        torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-5, rtol=1e-4)
        for a, b in zip(outs[0][1], outs[1][1]):
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)
    finally:
        unregister_op("view_op")


class _View(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]


def test_an_arch_naming_an_unregistered_op_is_an_arch_error(tmp_path):
    p = tmp_path / "a.json"
    cell = {"nodes": [[["my_secret_op", 0], ["skip_connect", 1]]], "concat": [2]}
    p.write_text(json.dumps({"kind": "cell", "version": 1, "inputs": 2, "normal": cell, "reduce": cell}))
    with pytest.raises(ArchError, match="unknown op 'my_secret_op'.*register it with nasforge.register_op"):
        load_arch(p)


# -- searches ------------------------------------------------------------------------------------
def test_darts_with_a_restricted_op_set_derives_only_those_ops(tmp_path):
    ops = ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "none"]
    out = tmp_path / "run"
    rc, _, err = run_cli("search", "darts", "--ops", ",".join(ops), "--out", str(out), *TINY)
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert _ops_of(arch) <= {"sep_conv_3x3", "max_pool_3x3", "skip_connect"}
    assert arch.meta["ops"] == ops
    rec = read_jsonl(out / "metrics.jsonl")[-1]
    assert len(rec["alpha_softmax"]["normal"][0]) == 4
    # the report labels α's columns with the ops searched
    from nasforge.report.build import _ops_hint
    from nasforge.report.rundata import load_run
    from nasforge.report.series import alpha_series

    run = load_run(out)
    assert {a.key: a.ops for a in alpha_series(run.records, _ops_hint(run))}["alpha_softmax.normal"] == ops


def test_user_op_is_searched_by_darts_then_trains_and_exports_to_onnx(tmp_path, user_op):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from nasforge.export import load_trained_cnn
    from nasforge.exported import load_exported
    from nasforge.report.draw import describe, graph

    out = tmp_path / "search"
    rc, _, err = run_cli("search", "darts", "--ops", f"{user_op},none", "--out", str(out), *TINY)
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert _ops_of(arch) == {user_op} and arch.meta["ops"] == [user_op, "none"]
    rec = read_jsonl(out / "metrics.jsonl")[-1]
    assert len(rec["alpha_softmax"]["normal"][0]) == 2 and rec["child_cost"]["params"] > 0
    assert user_op in graph(arch).source and user_op in describe(arch)
    # the derived cell trains (one epoch) ...
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 1\nlayers: 3\nchannels: 8\nbatch_size: 16\nlimit: 32\nauxiliary: false\n")
    rc, _, err = run_cli("train", str(out / "arch.json"), "--data", "digits", "--config", str(cfg), "--out", str(tmp_path / "train"),
                         "--device", "cpu", "--no-progress")
    assert rc == 0, err
    model, _ = load_trained_cnn(tmp_path / "train" / "checkpoint.pt")
    assert sum(isinstance(m, ConvReLU) for m in model.modules()) == 3 * 2 * 2  # 3 cells x 2 nodes x 2 edges
    # ... and exports to ONNX, reproducing the PyTorch logits
    onnx_path = tmp_path / "m.onnx"
    rc, stdout, err = run_cli("export", str(tmp_path / "train" / "checkpoint.pt"), "--format", "onnx", "--out", str(onnx_path))
    assert rc == 0, err
    loaded = load_exported(onnx_path)
    assert loaded.runtime == "onnxruntime"
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        ref, _ = model(x)
    torch.testing.assert_close(loaded(x), ref, atol=1e-5, rtol=0)


def test_user_op_final_network_trains_a_step(user_op):
    from nasforge.arch import CellArch, CellGenotype
    from nasforge.nets import build_network

    g = CellGenotype([[(user_op, 0), ("sep_conv_3x3", 1)], [(user_op, 2), ("none", 0)]], [2, 3])
    arch = CellArch(normal=g, reduce=g)
    net = build_network(arch, num_classes=10, in_channels=1, input_size=8, C=8, layers=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in net.parameters()]
    loss = F.cross_entropy(net(x)[0], y)
    loss.backward()
    opt.step()
    user_params = {id(p) for m in net.modules() if isinstance(m, ConvReLU) for p in m.parameters()}
    moved = [id(p) for p, b in zip(net.parameters(), before) if not torch.equal(p.detach(), b)]
    assert user_params and user_params <= set(moved)
    # cost: the user op's 1x1 convs are counted (params and FLOPs)
    from nasforge.cost import count_flops, count_parameters

    ref = build_network(
        CellArch(normal=CellGenotype([[("none", 0), ("sep_conv_3x3", 1)], [("none", 2), ("none", 0)]], [2, 3]),
                 reduce=CellGenotype([[("none", 0), ("sep_conv_3x3", 1)], [("none", 2), ("none", 0)]], [2, 3])),
        num_classes=10, in_channels=1, input_size=8, C=8, layers=3,
    )
    user_weights = sum(m.conv.weight.numel() + m.bn.weight.numel() + m.bn.bias.numel() for m in net.modules() if isinstance(m, ConvReLU))
    assert count_parameters(net) - count_parameters(ref) == user_weights
    assert count_flops(net.eval(), (1, 1, 8, 8)).forward > count_flops(ref.eval(), (1, 1, 8, 8)).forward


def test_snas_searches_a_user_op_and_costs_it(tmp_path, user_op):
    out = tmp_path / "snas"
    rc, _, err = run_cli("search", "snas", "--ops", f"none,skip_connect,{user_op}", "--preset", "moderate", "--out", str(out), *TINY)
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert _ops_of(arch) <= {"skip_connect", user_op} and arch.meta["ops"] == ["none", "skip_connect", user_op]
    rec = read_jsonl(out / "metrics.jsonl")[-1]
    assert rec["expected_cost"]["flops"] > 0 and rec["expected_cost"]["mac"] > 0


def test_enas_micro_with_ops(tmp_path, user_op):
    out = tmp_path / "enas"
    rc, _, err = run_cli("search", "enas", *TINY_MICRO, "--ops", f"{user_op},skip_connect", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert _ops_of(arch) <= {user_op, "skip_connect"} and arch.meta["ops"] == [user_op, "skip_connect"]
    assert arch.meta["method"] == "enas"
