"""``nasforge compare``: several search methods on the same space, data, seeds and budget.

Run the methods (each search is a ``nasforge search`` subprocess; a finished run in
``OUT/runs`` is reused, an unfinished one resumed)::

    nasforge compare --methods darts,snas --space cell --data digits --seeds 0,1 \\
        --epochs 10 --args "all=--limit 500" --retrain-epochs 20 --out cmp

or collect existing run directories::

    nasforge compare --runs runs/darts runs/snas --out cmp

Budget: ``--epochs`` for one-shot methods (darts, snas, enas), ``--trials`` for
multi-trial ones (blockqnn, random); ``--budget N`` sets both where not given. ``--args METHOD=ARGS`` (repeatable; ``all=`` for
every method) passes more flags to a method's search. ``--retrain-epochs N`` trains every
found architecture from scratch with ``nasforge train`` (``--retrain-args`` for its
flags) into ``RUN/retrain``. Writes ``compare.csv``, ``compare.md``, ``compare.html``
and ``compare.png`` (plus ``compare-entropy.png`` for runs with an architecture
distribution) in ``--out``; see :mod:`nasforge.report.compare`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nasforge.errors import ConfigError, NasforgeError

ONE_SHOT = ("darts", "snas", "enas")
MULTI_TRIAL = ("blockqnn", "random")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="run several search methods on the same space/data/seeds/budget (or collect run dirs) and tabulate them",
        description="Compare search methods: best architecture per method, its accuracy (search and retrained), "
        "parameters, FLOPs and search wall time. Writes compare.csv/.md/.html and compare.png.",
    )
    p.add_argument("--out", required=True, help="output folder (runs go to OUT/runs/METHOD-seedS)")
    p.add_argument("--runs", nargs="+", default=None, metavar="RUN_DIR", help="collect these existing run directories instead of running")
    p.add_argument("--methods", default=None, help="comma-separated search methods, e.g. darts,snas")
    p.add_argument("--space", default=None, help="search space given to every method (e.g. cell, nb201, nsc)")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="budget of one-shot methods (darts, snas, enas): search epochs")
    p.add_argument("--trials", type=int, default=None, help="budget of multi-trial methods (blockqnn, random): trials")
    p.add_argument("--budget", type=int, default=None, help="shorthand: --epochs and --trials both N where not given")
    p.add_argument("--device", default=None, help="device for every run (auto, cpu, cuda)")
    p.add_argument("--args", action="append", default=[], metavar="METHOD=ARGS", help="more search flags for METHOD (or all=...)")
    p.add_argument("--retrain-epochs", type=int, default=None, help="retrain every found architecture from scratch for N epochs")
    p.add_argument("--retrain-args", default="", help="more flags for `nasforge train` (e.g. \"--layers 8 --channels 16\")")
    p.add_argument("--cost-layers", type=int, default=None, help="cells of the network whose params/FLOPs are counted (default: `nasforge cost` preset)")
    p.add_argument("--cost-channels", type=int, default=None, help="initial channels of that network (default: preset)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def _split(s: str | None, what: str) -> list[str]:
    items = [x.strip() for x in (s or "").split(",") if x.strip()]
    if not items:
        raise ConfigError(f"--{what} needs at least one value")
    return items


def _method_args(specs: list[str], methods: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {m: [] for m in methods}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        name = name.strip()
        if not sep or (name != "all" and name not in out):
            raise ConfigError(f"--args {spec!r}: expected METHOD=ARGS with METHOD one of {', '.join(['all', *methods])}")
        try:
            extra = shlex.split(rest)
        except ValueError as e:
            raise ConfigError(f"--args {spec!r}: {e}") from None
        for m in (methods if name == "all" else [name]):
            out[m] += extra
    return out


def _cost_fn(args: argparse.Namespace):
    """(params, forward FLOPs) of an architecture's final network, built by ``nasforge
    cost``'s builder with its preset for the data set (``--cost-layers/--cost-channels``)."""
    from nasforge.cli.cost import PRESETS, _build
    from nasforge.cost import count_flops, count_parameters

    def fn(arch: Any, data: str) -> tuple[int, int] | None:
        preset = PRESETS["ptb"] if arch.kind == "recurrent" else PRESETS.get(data, PRESETS["cifar10"])
        ns = argparse.Namespace(layers=args.cost_layers, channels=args.cost_channels, input_size=None, in_channels=None, classes=None, style=None)
        model, inputs, _ = _build(arch, preset, ns)
        model.eval()
        return count_parameters(model), int(count_flops(model, inputs).forward)

    return fn


def _nasforge(argv: list[str], log: Path) -> tuple[int, float]:
    """Run ``python -m nasforge ARGV`` with output to ``log``; (exit status, wall seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ nasforge {shlex.join(argv)}\n")
        f.flush()
        rc = subprocess.run([sys.executable, "-m", "nasforge", *argv], stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    return rc, time.perf_counter() - t0


def _last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("nasforge: error:") or "Error" in ln]
    return (errs or lines or ["no output"])[-1][:200]


def _run_searches(args: argparse.Namespace, out: Path, say) -> list[tuple[str, Path, str]]:
    from nasforge.report.rundata import RunDirError, load_run

    methods = _split(args.methods, "methods")
    for m in methods:
        if m not in ONE_SHOT + MULTI_TRIAL:
            raise ConfigError(f"unknown search method {m!r} in --methods (known: {', '.join(ONE_SHOT + MULTI_TRIAL)})")
    if args.space is None:
        raise ConfigError("--space is required when compare runs the searches (the same space for every method)")
    seeds = _split(args.seeds, "seeds")
    for s in seeds:
        if not s.lstrip("-").isdigit():
            raise ConfigError(f"--seeds must be integers, got {s!r}")
    extra = _method_args(args.args, methods)
    done: list[tuple[str, Path, str]] = []
    for m in methods:
        for s in seeds:
            run_dir = out / "runs" / f"{m}-seed{s}"
            log = out / "logs" / f"{m}-seed{s}.log"
            argv = ["search", m, "--space", args.space, "--data", args.data, "--seed", s, "--out", str(run_dir), "--no-progress"]
            if args.data_dir:
                argv += ["--data-dir", args.data_dir]
            if args.device:
                argv += ["--device", args.device]
            if m in ONE_SHOT and args.epochs is not None:
                argv += ["--epochs", str(args.epochs)]
            if m in MULTI_TRIAL and args.trials is not None:
                argv += ["--trials", str(args.trials)]
            argv += extra[m]
            state = ""
            try:
                prev = load_run(run_dir)
                state = "finished" if prev.finished and (run_dir / "arch.json").is_file() else "partial"
            except RunDirError:
                pass
            if state == "finished":
                say(f"{m} seed {s}: reusing the finished run in {run_dir}")
            else:
                if state == "partial":
                    argv.append("--resume")
                say(f"{m} seed {s}: nasforge {shlex.join(argv)}")
                rc, wall = _nasforge(argv, log)
                if rc != 0 or not (run_dir / "arch.json").is_file():
                    msg = _last_error(log)
                    say(f"{m} seed {s}: search failed ({msg}); log in {log}")
                    done.append((m, run_dir, f"search failed: {msg}"))
                    continue
                wall_file = run_dir / "compare_wall.json"
                before = json.loads(wall_file.read_text())["seconds"] if state == "partial" and wall_file.is_file() else 0.0
                wall_file.write_text(json.dumps({"seconds": before + wall}) + "\n")
            status = ""
            if args.retrain_epochs:
                status = _retrain(args, m, s, run_dir, out, say)
            done.append((m, run_dir, status))
    return done


def _retrain(args: argparse.Namespace, m: str, s: str, run_dir: Path, out: Path, say) -> str:
    from nasforge.arch import load_arch

    arch = load_arch(run_dir / "arch.json")
    if arch.kind not in ("cell", "recurrent"):
        say(f"{m} seed {s}: no retraining for {arch.kind!r} architectures (nasforge train builds cell and recurrent ones)")
        return f"not retrained ({arch.kind} architecture)"
    target = run_dir / "retrain"
    if (target / "result.json").is_file():
        say(f"{m} seed {s}: reusing the retrained network in {target}")
        return ""
    argv = ["train", str(run_dir / "arch.json"), "--data", args.data, "--epochs", str(args.retrain_epochs), "--seed", s, "--out", str(target), "--no-progress"]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.device:
        argv += ["--device", args.device]
    if (target / "checkpoint.pt").is_file():
        argv.append("--resume")
    try:
        argv += shlex.split(args.retrain_args)
    except ValueError as e:
        raise ConfigError(f"--retrain-args: {e}") from None
    say(f"{m} seed {s}: nasforge {shlex.join(argv)}")
    rc, _ = _nasforge(argv, out / "logs" / f"{m}-seed{s}-retrain.log")
    if rc != 0:
        msg = _last_error(out / "logs" / f"{m}-seed{s}-retrain.log")
        say(f"{m} seed {s}: retraining failed ({msg})")
        return f"retraining failed: {msg}"
    return ""


def run(args: argparse.Namespace) -> int:
    from nasforge.report.compare import plot_compare, summarize_run, write_tables

    out = Path(args.out)
    say = (lambda msg: None) if args.no_progress else (lambda msg: print(msg, flush=True))
    if args.runs and args.methods:
        raise ConfigError("give either --runs (collect existing runs) or --methods (run them), not both")
    if not args.runs and not args.methods:
        raise ConfigError("nothing to compare: give --methods (with --space) or --runs")
    if args.budget is not None:
        args.epochs = args.epochs if args.epochs is not None else args.budget
        args.trials = args.trials if args.trials is not None else args.budget
    for name in ("epochs", "trials", "budget", "retrain_epochs", "cost_layers", "cost_channels"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if args.runs:
        items = [(None, Path(r), "") for r in args.runs]
    else:
        items = _run_searches(args, out, say)
    cost_fn = _cost_fn(args)
    rows = []
    for method, run_dir, status in items:
        try:
            row = summarize_run(run_dir, cost_fn)
        except NasforgeError as e:
            if method is None:
                raise
            from nasforge.report.compare import RunRow

            row = RunRow(run_dir=str(run_dir), method=method, status=str(e))
        if method is not None:
            row.method = method
        if status:
            row.status = status
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_compare(rows, out)
    drawings = _drawings(rows, out)
    paths = write_tables(rows, out, plots, drawings)
    print((out / "compare.md").read_text().split("## per run")[0].strip())
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['html']}, " + ", ".join(str(p) for p in plots))
    return 0 if all(r.arch_dict is not None for r in rows) else 1


def _drawings(rows: list, out: Path) -> dict[str, Path]:
    """PNG of each method's best architecture (graphviz; none without ``dot``)."""
    from nasforge.arch import arch_from_dict
    from nasforge.report.compare import method_summary
    from nasforge.report.draw import draw

    got: dict[str, Path] = {}
    for s in method_summary(rows):
        seed = s["best run"].removeprefix("seed ")
        row = next((r for r in rows if r.method == s["method"] and str(r.seed) == seed and r.arch_dict), None)
        if row is None:
            continue
        try:
            got[s["method"]] = draw(arch_from_dict(row.arch_dict), out / "figures" / f"best-{s['method']}.png", "png")
        except NasforgeError:
            continue
    return got


__all__ = ["add_parser", "run"]
