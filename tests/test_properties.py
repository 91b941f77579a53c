"""Property-based tests (hypothesis): mutated architecture files and YAML configs either
load (and build) or raise the project's own error type — never anything else.

Mutations start from valid files (the zoo's cell, recurrent and macro architectures and
a BlockQNN block) and replace, delete, add, duplicate or drop one entry anywhere in the
JSON tree with values chosen to break things (negative and huge integers, NaN, wrong
types, deep nesting). Configs: random keys of every command's config with random values,
and random YAML text. 60 examples per test by default; ``NASFORGE_HYPOTHESIS_EXAMPLES=1500``
searches deeper (all passed with 1500 when written).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasforge.arch import arch_from_dict
from nasforge.config import resolve, to_dict
from nasforge.errors import NasforgeError
from nasforge.zoo import get as zoo_get

SETTINGS = settings(max_examples=int(os.environ.get("NASFORGE_HYPOTHESIS_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BLOCK = {"kind": "block", "version": 1, "rows": [[1, "conv", 3, 0, 0], [2, "max_pool", 3, 0, 0], [3, "add", 0, 1, 2], [4, "terminal", 0, 0, 0]]}
SEEDS = {
    "cell": zoo_get("DARTS_V2").to_dict(),
    "cell_edge_all": zoo_get("SNAS_mild_edge_all").to_dict(),
    "recurrent": zoo_get("DARTS_RNN_V2").to_dict(),
    "macro": zoo_get("ENAS_macro").to_dict(),
    "block": BLOCK,
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "none", "skip_connect", "sep_conv_3x3", "conv_3x3", "tanh", "add", "terminal", "cell", "darts", "x" * 300]),
    st.text(max_size=8),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=8)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@st.composite
def mutated(draw, seed_name: str | None = None) -> dict:
    name = seed_name or draw(st.sampled_from(sorted(SEEDS)))
    d = copy.deepcopy(SEEDS[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(d)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = d
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "int_shift"]))
        if op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add":
            if isinstance(parent, dict):
                parent[draw(st.text(max_size=6))] = draw(values)
            else:
                parent.insert(key, draw(values))
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "int_shift" and isinstance(parent[key], int) and not isinstance(parent[key], bool):
            parent[key] += draw(st.sampled_from([-1000, -2, -1, 1, 2, 1000]))
    return d


def _build(arch: Any) -> None:
    """Build a tiny network of the architecture (forward one batch)."""
    kind = arch.kind
    if kind == "recurrent":
        from nasforge.nets.rnn import RNNModel

        model = RNNModel(arch, 20, 4, 4, 4)
        model.eval()
        x = torch.randint(0, 20, (3, 2))
        model(x, model.init_hidden(2))
        return
    from nasforge.train.cnn import build_cnn
    from nasforge.train.config import TrainConfig

    cfg = TrainConfig(layers=3, channels=4, auxiliary=False)
    model = build_cnn(arch, cfg, num_classes=3, channels=1, size=8)
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_architectures_build(seed: str) -> None:
    _build(arch_from_dict(copy.deepcopy(SEEDS[seed])))


@SETTINGS
@given(d=mutated())
def test_mutated_architectures_load_and_build_or_raise_our_error(d: dict) -> None:
    try:
        arch = arch_from_dict(d)
    except NasforgeError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert arch_from_dict(json.loads(json.dumps(arch.to_dict()))).to_dict() == arch.to_dict()  # round trip
    try:
        _build(arch)
    except NasforgeError:
        pass


@SETTINGS
@given(d=mutated())
def test_mutated_architecture_files_load_or_raise_our_error(d: dict, tmp_path: Path) -> None:
    from nasforge.arch import load_arch

    f = tmp_path / "a.json"
    f.write_text(json.dumps(d))
    try:
        load_arch(f)
    except NasforgeError:
        pass


# ---------------------------------------------------------------------------- configs
def _config_classes() -> list[type]:
    from nasforge.runners.search_run import MultiTrialConfig
    from nasforge.search.darts import DartsConfig
    from nasforge.search.darts_rnn_config import DartsRNNConfig
    from nasforge.search.enas_config import EnasConfig
    from nasforge.search.snas import SnasConfig
    from nasforge.train.config import LMConfig, TrainConfig

    return [DartsConfig, SnasConfig, EnasConfig, DartsRNNConfig, MultiTrialConfig, TrainConfig, LMConfig]


CLASSES = _config_classes()
config_values = st.one_of(
    values,
    st.integers(min_value=-5, max_value=5),
    st.floats(min_value=-2, max_value=2),
    st.sampled_from([0, 1, 0.5, 0.999, 1.0, -1, 1e400, ".nan", "nan", "inf", "1e3", "true", "yes", [0.9, 0.999], [[0.5, 3]]]),
)


@st.composite
def yaml_config(draw) -> tuple[type, dict]:
    cls = draw(st.sampled_from(CLASSES))
    names = [f.name for f in dataclasses.fields(cls)]
    keys = draw(st.lists(st.one_of(st.sampled_from(names), st.text(max_size=5)), max_size=4, unique=True))
    return cls, {k: draw(config_values) for k in keys}


@SETTINGS
@given(case=yaml_config())
def test_random_yaml_configs_resolve_or_raise_config_errors(case: tuple[type, dict], tmp_path: Path) -> None:
    cls, data = case
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        cfg = resolve(cls, f, {})
    except NasforgeError as e:
        assert str(e) and "\n" not in str(e)
        return
    # a resolved config is written to config.yaml and read back on --resume: it must pass again
    f.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    assert resolve(cls, f, {}) == cfg


@SETTINGS
@given(cls=st.sampled_from(CLASSES), text=st.text(max_size=60))
def test_random_yaml_text_resolves_or_raises_config_errors(cls: type, text: str, tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        resolve(cls, f, {})
    except NasforgeError:
        pass


@SETTINGS
@given(case=yaml_config(), flag=config_values)
def test_flags_over_yaml_resolve_or_raise_config_errors(case: tuple[type, dict], flag: Any, tmp_path: Path) -> None:
    cls, data = case
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    key = dataclasses.fields(cls)[len(data) % len(dataclasses.fields(cls))].name
    try:
        resolve(cls, f, {key: flag})
    except NasforgeError:
        pass
