"""benchmarks/peers.py end to end on tiny sizes: one cheap workload against the peers' code.

The peers live next to the data (``$NASFORGE_DATA/../peers``); skipped where they are not.
Checks the table and the JSON fields, never the timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEERS = Path(os.environ["NASFORGE_DATA"]).resolve().parent / "peers" if os.environ.get("NASFORGE_DATA") else None


@pytest.mark.skipif(PEERS is None or not (PEERS / "quark0-darts" / "cnn" / "model_search.py").is_file(), reason="peers' code not present ($NASFORGE_DATA/../peers)")
def test_peers_table_tiny(tmp_path):
    out = tmp_path / "peers.jsonl"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers.py"), str(PEERS), "--workloads", "darts1-8x8", "--pairs", "1", "--device", "cpu",
           "--threads", "1", "--batch-size", "2", "--layers", "3", "--channels", "4", "--steps", "1", "--warmup", "0", "--matmul-n", "128", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    head, runs, summary = recs[0], [x for x in recs if x["type"] == "run"], recs[-1]
    assert head["type"] == "machine" and head["machine"]["cpu"] and head["device"] == "cpu"
    assert head["matmul_peak"]["gflops"] > 0 and head["matmul_peak"]["n"] == 128
    assert [(x["impl"], x["pair"]) for x in runs] == [("peer", 1), ("ours", 1)]  # interleaved, peer first
    for x in runs:
        assert x["rc"] == 0 and x["seconds"] > 0 and x["peak_MiB"] > 0
        assert x["result"]["batch_size"] == 2 and x["result"]["size"] == 8 and x["result"]["layers"] == 3
    assert summary["type"] == "summary" and summary["workload"] == "darts1-8x8" and summary["flop_multiplier"] == 5
    assert summary["settings"] == {"batch_size": 2, "size": 8, "layers": 3, "channels": 4}
    assert summary["flops_per_step"] > 0 and not summary["failed"]
    for impl in ("peer", "ours"):
        s = summary[impl]
        assert s["median_s"] == next(x["seconds"] for x in runs if x["impl"] == impl)
        assert s["gflops"] == pytest.approx(summary["flops_per_step"] / s["median_s"] / 1e9, rel=1e-3)
        assert s["pct_of_peak"] == pytest.approx(100 * s["gflops"] / head["matmul_peak"]["gflops"], rel=1e-2)
    assert summary["speedup"] == pytest.approx(summary["peer"]["median_s"] / summary["ours"]["median_s"], rel=1e-2)
    assert summary["memory_ratio"] == pytest.approx(summary["ours"]["peak_MiB"] / summary["peer"]["peak_MiB"], rel=1e-2)
    md = out.with_suffix(".md").read_text()
    assert "| workload |" in md and "DARTS search, 1st order, 8×8" in md and "GFLOP/s fp32" in md
    assert md in r.stdout
