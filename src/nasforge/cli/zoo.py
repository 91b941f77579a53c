"""``nasforge zoo``: list the published architectures shipped with nasforge."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the zoo of published architectures (source, reported numbers)")
    p.add_argument("--sources", action="store_true", help="also print each entry's full source")
    p.set_defaults(func=run)


def _reported(rep: dict[str, Any]) -> str:
    parts = []
    if "cifar10_test_error" in rep:
        parts.append(f"CIFAR-10 {rep['cifar10_test_error']}% err")
    if "ptb_test_ppl" in rep:
        parts.append(f"PTB {rep['ptb_test_ppl']} ppl")
    if "params_M" in rep:
        parts.append(f"{rep['params_M']}M params")
    im = rep.get("imagenet")
    if isinstance(im, dict) and "top1" in im:
        parts.append(f"ImageNet {im['top1']}% top-1 err, {im.get('params_M', '?')}M")
    return "; ".join(parts) or "-"


def run(args: argparse.Namespace) -> int:
    from nasforge import zoo

    rows = []
    for name in zoo.names():
        d = zoo.get_dict(name)
        meta = d.get("meta", {})
        aliases = zoo.aliases_of(name)
        label = name + (f" ({', '.join(aliases)})" if aliases else "")
        rows.append((label, d.get("kind", "?"), _reported(meta.get("reported", {})), meta.get("source", "")))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'name (aliases)':<{w0}}  {'kind':<{w1}}  reported")
    for label, kind, rep, source in rows:
        print(f"{label:<{w0}}  {kind:<{w1}}  {rep}")
        if args.sources and source:
            print(f"{'':<{w0}}  {'':<{w1}}  source: {source}")
    print(f"\n{len(rows)} architectures; `nasforge show NAME` describes one, `nasforge cost NAME` counts its parameters.")
    return 0
