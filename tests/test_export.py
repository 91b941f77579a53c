"""``nasforge export``: TorchScript and ONNX files reproduce the trained network's logits
(atol 1e-5; ONNX run by onnxruntime) and ``nasforge eval`` scores them like the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasforge.cli import main
from nasforge.export import ExportError, check_export, export_model, load_trained_cnn
from nasforge.exported import is_exported, load_exported


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """DARTS_V2 trained for one epoch on digits: 3 cells (two reductions), auxiliary head,
    drop path on, so eval mode and the logits-only wrapper both matter."""
    d = tmp_path_factory.mktemp("train")
    cfg = d / "tiny.yaml"
    cfg.write_text("epochs: 1\nlayers: 3\nchannels: 4\nbatch_size: 64\ndrop_path_prob: 0.2\nlimit: 256\n")
    assert main(["train", "DARTS_V2", "--data", "digits", "--config", str(cfg), "--no-progress", "--out", str(d / "run")]) == 0
    return d / "run"


def _images(n: int = 16) -> torch.Tensor:
    from nasforge.data import load_image_dataset

    return load_image_dataset("digits", limit=64).test.x[:n]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_reproduces_the_model(trained: Path, tmp_path: Path, fmt: str, capsys) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    assert main(["export", str(trained / "checkpoint.pt"), "--format", fmt, "--out", str(out)]) == 0
    assert "max |exported - PyTorch|" in capsys.readouterr().out
    model, meta = load_trained_cnn(trained / "checkpoint.pt")
    loaded = load_exported(out)
    assert loaded.runtime == ("onnxruntime" if fmt == "onnx" else "torch.jit")
    assert loaded.meta["arch"]["kind"] == "cell" and loaded.meta["data"]["name"] == "digits"
    for x in (_images(16), _images(5), torch.randn(1, 1, 8, 8)):  # other batch sizes than the traced one
        with torch.no_grad():
            ref, aux = model(x)
        assert aux is None  # eval mode: no auxiliary logits
        got = loaded(x)
        assert got.shape == ref.shape == (x.shape[0], 10)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_eval_scores_the_exported_file_like_the_checkpoint(trained: Path, tmp_path: Path, fmt: str, capsys) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{ 'onnx' if fmt == 'onnx' else 'torchscript.pt'}"
    assert main(["export", str(trained), "--format", fmt, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(trained), "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(["eval", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["format"] == fmt and got["images"] == ref["images"] == 256  # limit 256
    assert got["accuracy"] == ref["accuracy"] and got["loss"] == pytest.approx(ref["loss"], abs=1e-5)


def test_check_catches_a_model_that_differs(trained: Path, tmp_path: Path) -> None:
    model, meta = load_trained_cnn(trained / "checkpoint.pt")
    r = export_model(model, meta, "torchscript", tmp_path / "m.pt")
    assert r.max_abs_diff <= 1e-5
    from nasforge.export import LogitsOnly

    with torch.no_grad():
        model.classifier.bias.add_(1e-3)
    with pytest.raises(ExportError, match="differs from the PyTorch model"):
        check_export(LogitsOnly(model).eval(), r.path, [_images(4)])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script/save, for the bogus file
def test_export_errors(trained: Path, tmp_path: Path, capsys) -> None:
    assert not is_exported(trained / "checkpoint.pt")
    with pytest.raises(ExportError, match="not a model exported by nasforge"):
        load_exported(trained / "checkpoint.pt")
    assert main(["export", str(tmp_path / "nothing.pt"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    bogus = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(bogus))  # TorchScript without our metadata
    assert not is_exported(bogus)
