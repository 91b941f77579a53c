"""The public Python API: the README's example runs as written; the API raises, never exits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nasforge as nf
from nasforge.errors import ConfigError, NasforgeError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- api-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no api-example block"
    return m.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)  # noqa: S102 (our own README)
    result, model, final = scope["result"], scope["model"], scope["final"]
    assert result.arch.kind == "cell" and (tmp_path / "runs/api-search/arch.json").is_file()
    assert result.arch_path == Path("runs/api-search/arch.json")
    import torch

    logits, _ = model(torch.zeros(2, 1, 8, 8))
    assert logits.shape == (2, 10)
    assert 0.0 <= final.metrics["test_acc"] <= 1.0
    assert (tmp_path / "runs/api-final/checkpoint.pt").is_file()
    assert "derived architecture" in capsys.readouterr().out


def test_search_without_out_writes_nothing_and_returns_an_arch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = nf.search("snas", data="digits", epochs=1, layers=3, channels=8, limit=32, max_steps=1, eval_limit=16, batch_size=16)
    assert result.arch.kind == "cell" and result.out is None and result.arch_path is None
    assert list(tmp_path.iterdir()) == []


def test_api_errors_are_nasforge_errors_never_exits(tmp_path):
    with pytest.raises(ConfigError, match="unknown search method"):
        nf.search("dartz")
    with pytest.raises(ConfigError, match="unknown config key 'epoch'"):
        nf.search("darts", epoch=1)
    with pytest.raises(ConfigError, match="does not apply|has no space"):
        nf.search("darts", space="rnn", layers=3)
    with pytest.raises(NasforgeError):
        nf.build("no-such-arch.json", num_classes=10)
    with pytest.raises(ConfigError, match="out="):
        nf.search("random", space="nb201", trials=2)


def test_registry_lists_every_method_with_its_kind_and_spaces():
    methods = nf.methods()
    assert {"darts", "snas", "enas", "blockqnn", "random"} <= set(methods)
    assert methods["darts"].kind == "one-shot" and set(methods["darts"].spaces) == {"cell", "nb201", "rnn"}
    assert methods["blockqnn"].kind == "multi-trial"
    for spec in methods.values():
        for v in spec.variants:
            assert v.spaces and v.config.__dataclass_fields__
