"""Hardening (issue 11): bad numbers in configs, oversized architectures, untrusted
TorchScript, a full disk, and networks too large for the memory — each stops with one
line (exit 2), before anything is written, and leaves earlier files intact."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import typing
from pathlib import Path

import pytest
import torch

from nasforge.arch import arch_from_dict, load_arch
from nasforge.cli import main
from nasforge.config import from_dict, resolve
from nasforge.errors import ArchError, CheckpointError, ConfigError

S = ["--data", "digits", "--epochs", "1", "--layers", "3", "--channels", "8", "--limit", "32", "--max-steps", "1",
     "--eval-limit", "16", "--batch-size", "16", "--no-progress"]


def _config_classes() -> list[type]:
    from nasforge.runners.search_run import MultiTrialConfig
    from nasforge.search.darts import DartsConfig
    from nasforge.search.darts_rnn_config import DartsRNNConfig
    from nasforge.search.enas_config import EnasConfig
    from nasforge.search.snas import SnasConfig
    from nasforge.search.supernet_loop import SupernetConfig
    from nasforge.train.config import LMConfig, TrainConfig

    return [SupernetConfig, DartsConfig, SnasConfig, EnasConfig, DartsRNNConfig, MultiTrialConfig, TrainConfig, LMConfig]


def _numeric_fields(cls: type) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        base = {a for a in args if a is not type(None)} or {tp}
        if base & {int, float} or tp in (list[float], list[int]):
            out.append(f)
    return out


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------------------- case 1: numbers
@pytest.mark.parametrize(
    "argv, key, value",
    [
        (["search", "snas", *S, "--penalty", "nan"], "penalty", "nan"),
        (["search", "snas", *S, "--penalty", "inf"], "penalty", "inf"),
        (["search", "darts", *S, "--lr", "nan"], "lr", "nan"),
        (["search", "darts", *S, "--lr", "-0.1"], "lr", "-0.1"),
        (["search", "darts", *S, "--arch-lr", "inf"], "arch_lr", "inf"),
        (["search", "darts", *S, "--train-portion", "1.5"], "train_portion", "1.5"),
    ],
)
def test_case1_non_finite_or_out_of_range_flags_stop_before_the_run_folder(tmp_path: Path, capsys, argv, key, value) -> None:
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = _err_line(capsys)
    assert f"'{key}'" in err and value in err
    assert not out.exists()


def test_yaml_values_are_checked_and_a_flag_overriding_the_file_is_checked_too(tmp_path: Path) -> None:
    from nasforge.search.snas import SnasConfig
    from nasforge.train.config import TrainConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: .nan\n")
    with pytest.raises(ConfigError, match="'lr' must be a finite number, got nan"):
        resolve(TrainConfig, bad, {})
    assert resolve(TrainConfig, bad, {"lr": 0.1}).lr == 0.1  # the flag replaces the bad value
    good = tmp_path / "good.yaml"
    good.write_text("penalty: 0.1\nepochs: 3\n")
    with pytest.raises(ConfigError, match="'penalty' must be a finite number, got inf"):
        resolve(SnasConfig, good, {"penalty": float("inf")})
    with pytest.raises(ConfigError, match="'epochs' must be >= 1, got -2"):
        resolve(SnasConfig, good, {"epochs": -2})
    big = tmp_path / "big.yaml"
    big.write_text("lr: 1e400\n")  # YAML overflows to inf
    with pytest.raises(ConfigError, match="'lr' must be a finite number"):
        resolve(TrainConfig, big, {})


def test_every_numeric_key_of_every_config_has_a_range() -> None:
    from nasforge.config import key_range

    missing = [f"{cls.__name__}.{f.name}" for cls in _config_classes() for f in _numeric_fields(cls) if key_range(cls, f) is None]
    assert not missing, f"add these numeric config keys to nasforge.config.RANGES: {missing}"


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_defaults_pass_and_every_key_rejects_nan_and_out_of_range(cls: type) -> None:
    from nasforge.config import check_ranges, key_range

    check_ranges(cls())
    hints = typing.get_type_hints(cls)
    for f in _numeric_fields(cls):
        is_list = typing.get_origin(hints[f.name]) is list
        is_float = float in typing.get_args(hints[f.name]) or hints[f.name] is float or is_list
        if is_float:
            v = [math.nan, 0.5] if is_list else math.nan
            with pytest.raises(ConfigError, match=f"'{f.name}' must be a finite number"):
                from_dict(cls, {f.name: v})
        rng = key_range(cls, f)
        if rng.lo is not None:
            below = rng.lo if rng.lo_open else (rng.lo - (0.5 if is_float else 1))
            with pytest.raises(ConfigError, match=f"'{f.name}' must be"):
                from_dict(cls, {f.name: [below, below] if is_list else below})
        if rng.hi is not None:
            above = rng.hi if rng.hi_open else (rng.hi + (0.5 if is_float else 1))
            with pytest.raises(ConfigError, match=f"'{f.name}' must be"):
                from_dict(cls, {f.name: [above, above] if is_list else above})


def test_enas_nb201_resolved_config_resumes() -> None:
    """The nb201 space's resolved config (lr 0: nothing is trained) is written to config.yaml
    and read back on --resume: it must pass the checks."""
    from nasforge.search.enas_config import EnasConfig

    cfg = EnasConfig(space="nb201").resolved()
    assert from_dict(EnasConfig, dataclasses.asdict(cfg)).lr == 0.0


def test_a_malformed_list_in_yaml_is_a_config_error(tmp_path: Path, capsys) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("epsilon_schedule: [[a, 1]]\n")
    assert main(["search", "random", "--config", str(y), "--trials", "1", "--out", str(tmp_path / "o")]) == 2
    assert "could not convert string to float" in _err_line(capsys)
    assert not (tmp_path / "o").exists()


def test_ranges_table_names_only_real_keys() -> None:
    from nasforge.config import RANGES

    names = {f.name for cls in _config_classes() for f in dataclasses.fields(cls)}
    assert set(RANGES) <= names, set(RANGES) - names


# ---------------------------------------------------------------------------- case 2: sizes
def _huge_cell(n: int = 100_000) -> dict:
    nodes = [[["skip_connect", 0], ["skip_connect", 1]] for _ in range(n)]
    g = {"nodes": nodes, "concat": [2 + n - 1]}
    return {"kind": "cell", "version": 1, "name": "huge", "inputs": 2, "normal": g, "reduce": g}


def test_case2_a_100k_node_cell_is_refused_by_train_and_show(tmp_path: Path, capsys) -> None:
    f = tmp_path / "huge.json"
    f.write_text(json.dumps(_huge_cell()))
    out = tmp_path / "run"
    assert main(["train", str(f), "--data", "digits", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    err = _err_line(capsys)
    assert "100000 entries, more than the limit of 64" in err and "NASFORGE_ARCH_LIMIT_CELL_NODES" in err
    assert not out.exists()
    assert main(["show", str(f)]) == 2
    assert "limit" in _err_line(capsys)


@pytest.mark.parametrize(
    "d, limit",
    [
        ({"kind": "cell", "version": 1, "normal": {"nodes": [[["skip_connect", 0]] * 300], "concat": [2]}, "reduce": None}, "edges_per_node"),
        ({"kind": "recurrent", "version": 1, "nodes": [["tanh", i] for i in range(65)], "concat": [1]}, "recurrent_nodes"),
        ({"kind": "recurrent", "version": 1, "nodes": [["tanh", 0]], "concat": [1] * 1000}, None),
        ({"kind": "macro", "version": 1, "layers": [{"op": "conv_3x3", "skips": []}] * 257}, "macro_layers"),
        ({"kind": "block", "version": 1, "rows": [[i, "identity", 0, i - 1, 0] for i in range(1, 66)]}, "nsc_rows"),
    ],
)
def test_every_kind_has_size_limits(d: dict, limit: str | None, monkeypatch) -> None:
    with pytest.raises(ArchError):
        arch_from_dict(d)
    if limit is not None:  # the environment variable raises the limit
        monkeypatch.setenv(f"NASFORGE_ARCH_LIMIT_{limit.upper()}", "1000")
        arch_from_dict(d)


def test_published_architectures_are_far_below_the_limits() -> None:
    from nasforge.zoo import names

    for name in names():
        load_arch(name)  # validates, limits included


def test_deeply_nested_json_is_an_arch_error(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArchError):
        load_arch(f)


# ---------------------------------------------------------------------------- memory estimate
def test_memory_check_stops_a_run_too_large_for_the_memory(tmp_path: Path, capsys, monkeypatch) -> None:
    import nasforge.memory as memory

    monkeypatch.delenv("NASFORGE_NO_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 50 * 2**20)  # 50 MB left
    out = tmp_path / "run"
    argv = ["train", "DARTS_V2", "--data", "digits", "--epochs", "1", "--layers", "3", "--channels", "16",
            "--batch-size", "512", "--out", str(out), "--no-progress"]
    assert main(argv) == 2
    err = _err_line(capsys)
    assert "needs an estimated" in err and "52 MB is available" in err and "--no-memory-check" in err
    assert not out.exists()


def test_memory_estimate_grows_with_batch_and_width() -> None:
    from nasforge.memory import estimate_training_memory
    from nasforge.train.cnn import build_cnn
    from nasforge.train.config import TrainConfig

    arch = load_arch("DARTS_V2")

    def est(channels: int, batch: int):
        cfg = TrainConfig(layers=3, channels=channels)
        return estimate_training_memory(lambda: build_cnn(arch, cfg, num_classes=10, channels=1, size=8), (1, 8, 8), batch)

    a, b, c = est(8, 16), est(8, 32), est(16, 16)
    assert a.params == sum(p.numel() for p in build_cnn(arch, TrainConfig(layers=3, channels=8), num_classes=10, channels=1, size=8).parameters())
    assert b.peak_bytes > a.peak_bytes and c.peak_bytes > a.peak_bytes and c.params > a.params
    assert b.activation_bytes_per_sample == a.activation_bytes_per_sample > 0


@pytest.mark.parametrize("name", ["ENAS_macro", "SNAS_mild_edge_all"])
def test_memory_estimate_builds_other_kinds_on_the_meta_device(name: str) -> None:
    from nasforge.memory import estimate_training_memory
    from nasforge.train.cnn import build_cnn
    from nasforge.train.config import TrainConfig

    arch, cfg = load_arch(name), TrainConfig(layers=3, channels=4)
    e = estimate_training_memory(lambda: build_cnn(arch, cfg, num_classes=10, channels=1, size=8), (1, 8, 8), 4)
    assert e.params > 0 and e.activation_bytes_per_sample > 0


def test_available_memory_is_known_on_linux() -> None:
    from nasforge.memory import available_memory

    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo")
    assert available_memory("cpu") > 0


# ---------------------------------------------------------------------------- case 7: TorchScript trust
def _forged_torchscript(path: Path) -> None:
    """A TorchScript file claiming to be a nasforge export (the extra file) without the side-car."""
    meta = {"format": "nasforge-export", "data": {"name": "digits", "channels": 1, "num_classes": 10}}
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path), _extra_files={"nasforge.json": json.dumps(meta)})


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_case7_eval_refuses_torchscript_without_the_export_side_car(tmp_path: Path, capsys, monkeypatch) -> None:
    f = tmp_path / "model.pt"
    _forged_torchscript(f)

    def never(*a, **k):
        raise AssertionError("torch.jit.load ran on an untrusted file")

    with monkeypatch.context() as m:
        m.setattr(torch.jit, "load", never)
        assert main(["eval", str(f)]) == 2
    err = _err_line(capsys)
    assert "refusing to load" in err and "model.pt.nasforge.json" in err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_side_car_must_match_the_file(tmp_path: Path) -> None:
    from nasforge.export import ExportError
    from nasforge.exported import load_exported
    from nasforge.utils.sidecar import sidecar_path, write_sidecar

    f = tmp_path / "model.pt"
    _forged_torchscript(f)
    write_sidecar(f, "torchscript")  # what nasforge export writes: now it is trusted
    assert load_exported(f).runtime == "torch.jit"
    data = bytearray(f.read_bytes())
    data[-30] ^= 0xFF  # changed after export
    f.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="SHA-256 does not match .*changed after export"):
        load_exported(f)
    sidecar_path(f).write_text("{not json")
    with pytest.raises(ExportError, match="not one written by nasforge export"):
        load_exported(f)


# ---------------------------------------------------------------------------- full disk
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_full_disk_keeps_the_previous_checkpoint_and_removes_the_temp_file(tmp_path: Path, monkeypatch, where: str) -> None:
    import nasforge.utils.io as io_mod
    from nasforge.utils.io import load_checkpoint, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    with monkeypatch.context() as m:
        if where == "write":
            real_fdopen = os.fdopen

            class Full:
                def __init__(self, f):
                    self.f = f

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    self.f.close()

                def write(self, data):
                    self.f.write(data[: len(data) // 2])
                    _enospc()

                def __getattr__(self, name):
                    return getattr(self.f, name)

            m.setattr(io_mod.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
        else:
            m.setattr(io_mod.os, where, _enospc)
        with pytest.raises(CheckpointError) as e:
            save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    msg = str(e.value)
    assert "\n" not in msg and "no space left on device" in msg.lower() and "previous file is kept" in msg
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_full_disk_during_training_stops_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    import nasforge.utils.io as io_mod

    real_replace, calls = os.replace, []

    def replace(src, dst):
        if str(dst).endswith("checkpoint.pt"):
            calls.append(dst)
            if len(calls) == 2:  # the second epoch's checkpoint: disk full
                _enospc()
        return real_replace(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", replace)
    out = tmp_path / "run"
    argv = ["train", "DARTS_V2", "--data", "digits", "--epochs", "2", "--layers", "1", "--channels", "4", "--batch-size", "64",
            "--out", str(out), "--no-progress"]
    y = tmp_path / "c.yaml"
    y.write_text("limit: 64\nauxiliary: false\n")
    assert main([*argv, "--config", str(y)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on device" in err.lower() and "checkpoint.pt" in err
    from nasforge.utils.io import load_checkpoint

    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_memory_check_covers_language_models(tmp_path: Path, monkeypatch) -> None:
    import nasforge.memory as memory
    from nasforge.train.config import LMConfig
    from nasforge.train.lm import train_lm

    monkeypatch.delenv("NASFORGE_NO_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": 10 * 2**20)
    (tmp_path / "c").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "c" / f"{split}.txt").write_text("a b c d e f g\n" * 20)
    cfg = LMConfig(data=str(tmp_path / "c"), epochs=1, emsize=8, nhid=8, batch_size=4, bptt=5)
    with pytest.raises(ConfigError, match="needs an estimated .* but only 10 MB is available"):
        train_lm(load_arch("DARTS_RNN_V2"), cfg, tmp_path / "run", show_progress=False, log=None)
    assert not (tmp_path / "run").exists()


def test_a_file_in_place_of_the_run_folder_is_one_line(tmp_path: Path, capsys) -> None:
    f = tmp_path / "afile"
    f.write_text("keep me\n")
    argv = ["train", "DARTS_V2", "--data", "digits", "--epochs", "1", "--layers", "1", "--channels", "4", "--no-progress"]
    assert main([*argv, "--out", str(f)]) == 2
    assert "a file is in the way" in _err_line(capsys)
    assert main([*argv, "--out", str(f / "sub")]) == 2
    assert "a file is in the way" in _err_line(capsys)
    assert f.read_text() == "keep me\n"
