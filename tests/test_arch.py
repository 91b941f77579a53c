"""Architecture files: exact JSON round-trip for every zoo entry, and validation errors
that name the offending field."""

from __future__ import annotations

import copy
import json

import pytest

from nasforge import zoo
from nasforge.arch import CellArch, CellGenotype, RecurrentArch, arch_from_dict, load_arch, load_arch_file, save_arch
from nasforge.errors import ArchError

ZOO_NAMES = [n for n in zoo.names() if zoo.get_dict(n)["kind"] in ("cell", "recurrent")]


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_roundtrip_exact(name, tmp_path):
    arch = zoo.get(name)
    d = arch.to_dict()
    again = arch_from_dict(json.loads(json.dumps(d)))
    assert again == arch
    assert again.to_dict() == d
    assert d == zoo.get_dict(name)  # the shipped file is exactly what to_dict writes
    path = save_arch(arch, tmp_path / f"{name}.json")
    assert load_arch(path) == arch


def _darts() -> dict:
    return copy.deepcopy(zoo.get_dict("DARTS_V2"))


def _error(d) -> str:
    with pytest.raises(ArchError) as e:
        arch_from_dict(d)
    return str(e.value)


def test_unknown_op_names_field():
    d = _darts()
    d["normal"]["nodes"][1][0][0] = "sep_conv_9x9"
    msg = _error(d)
    assert "sep_conv_9x9" in msg and "normal.nodes[1][0]" in msg


def test_input_index_out_of_range_names_field():
    d = _darts()
    d["reduce"]["nodes"][0][1][1] = 2  # node 2 cannot read itself
    msg = _error(d)
    assert "input index 2 out of range" in msg and "reduce.nodes[0][1]" in msg


def test_node_without_edge():
    d = _darts()
    d["normal"]["nodes"][2] = []
    assert "node 4 in 'normal' has no edge" in _error(d)


def test_wrong_and_missing_kind_and_version():
    d = _darts()
    d["kind"] = "cel"
    assert "wrong kind 'cel'" in _error(d)
    d = _darts()
    del d["kind"]
    assert "missing field 'kind'" in _error(d)
    d = _darts()
    del d["version"]
    assert "missing field 'version'" in _error(d)
    d = _darts()
    d["version"] = 99
    assert "unsupported version 99" in _error(d)


def test_other_fields_named():
    d = _darts()
    d["normal"]["concat"] = [2, 9]
    assert "concat index 9" in _error(d) and "normal.concat" in _error(d)
    d = _darts()
    d["normal"]["nodes"][0][0] = ["sep_conv_3x3"]
    assert "normal.nodes[0][0]" in _error(d)
    d = _darts()
    d["op_set"] = "enas"
    assert "op_set" in _error(d)
    d = _darts()
    d["colour"] = "red"
    assert "unknown field 'colour'" in _error(d)
    d = _darts()
    d["normal"]["nodes"][0][0][1] = "0"
    assert "normal.nodes[0][0][1]" in _error(d)


def test_recurrent_validation():
    d = copy.deepcopy(zoo.get_dict("DARTS_RNN_V2"))
    d["nodes"][3][0] = "gelu"
    assert "unknown activation 'gelu'" in _error(d) and "nodes[3]" in _error(d)
    d = copy.deepcopy(zoo.get_dict("DARTS_RNN_V2"))
    d["nodes"][0][1] = 1
    assert "input index 1 out of range at 'nodes[0]'" in _error(d)


def test_bad_json_file(tmp_path):
    p = tmp_path / "arch.json"
    p.write_text('{"kind": "cell", "version": 1,', encoding="utf-8")
    with pytest.raises(ArchError, match="not valid JSON"):
        load_arch_file(p)
    p.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ArchError, match="expected a JSON object"):
        load_arch_file(p)
    with pytest.raises(ArchError, match="not found"):
        load_arch_file(tmp_path / "missing.json")


def test_edge_all_and_one_input_cells_roundtrip():
    edge_all = zoo.get("SNAS_mild_edge_all")
    assert [len(n) for n in edge_all.normal.nodes] == [2, 3, 4, 5]
    nb201 = CellArch(
        normal=CellGenotype([[("nor_conv_3x3", 0)], [("skip_connect", 0), ("nor_conv_1x1", 1)], [("avg_pool_3x3", 0), ("none", 1), ("nor_conv_3x3", 2)]], [3]),
        reduce=None,
        inputs=1,
        name="nb201",
    )
    assert arch_from_dict(json.loads(json.dumps(nb201.to_dict()))) == nb201
    rnn = RecurrentArch(nodes=[("tanh", 0), ("relu", 1)], concat=[1, 2])
    assert arch_from_dict(rnn.to_dict()) == rnn
