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

    # `search enas --space nb201` runs the controller as a multi-trial strategy (nasforge.search.reinforce):
    # the budget counts distinct cells, as for random search and BlockQNN, and --metric picks the column
    out = tmp_path / "nb"
    rc, err = run("search", "enas", "--space", "nb201", "--trials", "40", "--metric", "cifar100-val", "--no-progress", "--out", str(out))
    assert rc == 0, err
    arch = load_arch(out / "arch.json")
    assert arch.kind == "cell" and arch.inputs == 1 and arch.meta["metric"] == "cifar100-val"
    recs = read_jsonl(out / "metrics.jsonl")
    assert [r["trial"] for r in recs] == list(range(1, 41)) and {r["metric"] for r in recs} == {"cifar100-val"}
    # continuing the finished run to more trials keeps the first records
    rc, err = run("search", "enas", "--space", "nb201", "--trials", "60", "--no-progress", "--out", str(out), "--resume")
    assert rc == 0, err
    assert [r["trial"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 61))
    # the one-shot ENAS flags do not apply to the table search
    rc, err = run("search", "enas", "--space", "nb201", "--controller-steps", "20", "--out", str(tmp_path / "x"))
    assert rc == 2 and "--controller-steps does not apply" in err
