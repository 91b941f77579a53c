"""The ``show``, ``cost`` and ``zoo`` commands, the drawing code, and their one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from nasforge import zoo
from nasforge.cli import main
from nasforge.errors import NasforgeError
from nasforge.report import describe, draw, register_drawer
from nasforge.report.draw import DRAWERS


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_zoo_lists_every_entry(capsys):
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0
    for name in zoo.names():
        assert name in out
    assert "DARTS_V2 (DARTS)" in out and "2.76 ± 0.09% err; 3.3M params" in out


def test_show_zoo_name_and_file(capsys, tmp_path):
    rc, out, _ = run(capsys, "show", "DARTS")
    assert rc == 0 and "node 5 = skip_connect(c_{k-2}) + dil_conv_3x3(node 2)" in out
    assert "quark0/darts" in out
    path = tmp_path / "a.json"
    path.write_text(json.dumps(zoo.get_dict("DARTS_RNN_V2")), encoding="utf-8")
    rc, out, _ = run(capsys, "show", str(path))
    assert rc == 0 and "h_t = mean(nodes 1, 2, 3, 4, 5, 6, 7, 8)" in out


def test_show_draw_source(capsys, tmp_path):
    rc, out, _ = run(capsys, "show", "SNAS_aggressive_edge_all", "--draw", str(tmp_path / "cell.gv"))
    assert rc == 0
    src = (tmp_path / "cell.gv").read_text()
    assert "cluster_normal" in src and "cluster_reduce" in src
    assert "none" not in src.replace("cluster_", "")  # none edges are not drawn


@pytest.mark.skipif(shutil.which("dot") is not None, reason="graphviz dot is installed here")
def test_show_draw_png_without_dot(capsys, tmp_path):
    rc, _, err = run(capsys, "show", "DARTS", "--draw", str(tmp_path / "cell.png"))
    assert rc == 2 and "'dot' program not found" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "cell.gv").exists()  # the source is still written


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
def test_draw_png_with_dot(tmp_path):
    out = draw(zoo.get("DARTS"), tmp_path / "cell.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    out = draw(zoo.get("DARTS_RNN"), tmp_path / "rnn.svg")
    assert b"<svg" in out.read_bytes()


def test_drawer_registry_and_generic_describe(tmp_path):
    class Toy:
        kind = "toy"

        def to_dict(self):
            return {"kind": "toy", "layers": [1, 2]}

    assert '"layers"' in describe(Toy())
    with pytest.raises(NasforgeError, match="no drawing available for architectures of kind 'toy'"):
        draw(Toy(), tmp_path / "t.gv")
    import graphviz

    def toy_drawer(arch):
        g = graphviz.Digraph("toy")
        g.node("a")
        return g

    register_drawer("toy", toy_drawer)
    try:
        assert "digraph toy" in draw(Toy(), tmp_path / "t.gv").read_text()
    finally:
        DRAWERS.pop("toy")


def test_cost_at_paper_settings(capsys):
    rc, out, _ = run(capsys, "cost", "DARTS")
    assert rc == 0 and "parameters: 3.349M" in out and "auxiliary head, not counted" in out
    assert "multiply-adds" in out
    rc, out, _ = run(capsys, "cost", "DARTS_RNN")
    assert rc == 0 and "parameters: 22.960M" in out


def test_cost_small_with_latency(capsys):
    rc, out, _ = run(capsys, "cost", "ENAS", "--data", "digits", "--layers", "3", "--channels", "4", "--latency", "--repeats", "2")
    assert rc == 0 and "input 1x1x8x8" in out and "latency:" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["show", "DARTS_V9"], "unknown zoo architecture 'DARTS_V9'; did you mean"),
        (["cost", "nope"], "unknown zoo architecture 'nope'"),
        (["cost", "DARTS", "--layers", "0"], "--layers must be a positive integer"),
        (["cost", "DARTS", "--data", "ptb"], "does not fit a 'cell' architecture"),
    ],
)
def test_errors_one_line(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_files(tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"kind": "cell", ', encoding="utf-8")
    bad_op = tmp_path / "op.json"
    d = zoo.get_dict("DARTS_V2")
    d["normal"]["nodes"][0][0][0] = "conv_9x9"
    bad_op.write_text(json.dumps(d), encoding="utf-8")
    # the real console entry point, once (a subprocess costs seconds of start-up)
    proc = subprocess.run([sys.executable, "-m", "nasforge", "show", str(bad_json)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    rc, _, err = run(capsys, "cost", str(bad_op))
    assert rc == 2 and "unknown op 'conv_9x9' at 'normal.nodes[0][0]'" in err and len(err.strip().splitlines()) == 1
