"""The ENAS controller as a multi-trial strategy over the NAS-Bench-201 table
(NASFORGE_DATA): REINFORCE against random search, CLI and resume."""

from __future__ import annotations

import random
import statistics

from nasforge.arch import load_arch
from nasforge.ops import NB201_PRIMITIVES
from nasforge.search.enas import ENAS, EnasConfig
from nasforge.spaces.nb201_table import NB201Table
from nasforge.utils.io import read_jsonl


def _random_search(table: NB201Table, seed: int, queries: int) -> float:
    rng = random.Random(seed)
    seen = {}
    for _ in range(queries):
        ops = tuple(rng.choice(NB201_PRIMITIVES) for _ in range(6))
        seen[ops] = table.accuracy(ops, "cifar10-val")
    best = max(seen, key=seen.get)
    return table.accuracy(best, "cifar10-test")


def test_reinforce_beats_random_search_on_nb201(shared_data):
    """10 seeds × 300 table queries each (every controller sample is a query, repeats too);
    both keep the best-by-validation cell; compare its test accuracy."""
    table = NB201Table.load(shared_data / "nas-bench-201")
    rl, rs = [], []
    for seed in range(10):
        s = ENAS(EnasConfig(space="nb201", trials=300, seed=seed, device="cpu"), None, progress=False, table=table)
        best = s.run()
        rl.append(table.accuracy(best, "cifar10-test"))
        rs.append(_random_search(table, seed, 300))
    assert statistics.mean(rl) > statistics.mean(rs), (rl, rs)


def test_nb201_cli_writes_a_cell_and_resumes(shared_data, tmp_path):
    import contextlib
    import io

    from nasforge import cli

    def run(*args):
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            return cli.main(list(args)), err.getvalue()

    out = tmp_path / "nb"
    rc, err = run("search", "enas", "--space", "nb201", "--trials", "40", "--controller-steps", "20", "--no-progress", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert arch.kind == "cell" and arch.inputs == 1 and arch.meta["queries"] == 40
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["queries"] for r in recs] == [20, 40]
    # continuing the finished run to more trials is not allowed to lose the first records
    rc, err = run("search", "enas", "--space", "nb201", "--trials", "60", "--controller-steps", "20", "--no-progress", "--out", str(out), "--resume")
    assert rc == 0, err
    assert [r["queries"] for r in read_jsonl(out / "metrics.jsonl")] == [20, 40, 60]
