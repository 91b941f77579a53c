"""ENAS on PTB (NASFORGE_DATA): a short recurrent-cell search lowers perplexity."""

from __future__ import annotations

from nasforge.arch import load_arch
from nasforge.search.enas import ENAS, EnasConfig
from nasforge.utils.io import read_jsonl


def test_short_enas_rnn_search_on_ptb_lowers_perplexity(shared_data, tmp_path):
    cfg = EnasConfig(space="rnn", data="ptb", data_dir=str(shared_data / "ptb"), epochs=3, layers=6, channels=32,
                     batch_size=16, bptt=20, max_steps=25, controller_steps=4, derive_samples=3, eval_batches=4, device="cpu")
    s = ENAS(cfg, tmp_path / "run", progress=False)
    arch = s.run()
    recs = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    ppl = [r["valid_ppl"] for r in recs]
    assert ppl[-1] < 0.85 * ppl[0], ppl
    assert recs[-1]["train_ppl"] < recs[0]["train_ppl"]
    assert ppl[0] < 10000 * 1.5  # vocabulary 10k: starts near uniform
    saved = load_arch(tmp_path / "run" / "arch.json")
    assert saved.kind == "recurrent" and len(saved.nodes) == 5 and saved.to_dict() == arch.to_dict()
