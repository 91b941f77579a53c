"""``nasforge search METHOD --space SPACE --data DATA --out DIR [...]``.

One sub-command per registered method (:mod:`nasforge.search.registry`); its flags are
built from the method's config dataclasses (:mod:`nasforge.cli.flags`). A run ends with
one summary line: where the architecture is and its best metric.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

from nasforge.cli.common import add_data_args, add_output_args
from nasforge.cli.flags import add_config_flags, given_flags, overrides_from_args
from nasforge.config import load_yaml
from nasforge.errors import ConfigError
from nasforge.search import MethodSpec, methods, resolve_method_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run an architecture search (writes arch.json)")
    ms = p.add_subparsers(dest="method", metavar="METHOD")
    for name, spec in methods().items():
        mp = ms.add_parser(name, help=spec.summary or None, description=f"{spec.summary} [{spec.kind}]")
        mp.add_argument("--space", choices=spec.spaces, default=None, help=f"search space (default: {spec.default_space})")
        add_data_args(mp, default=None)
        add_output_args(mp)
        dests = add_config_flags(mp, spec.configs)
        mp.set_defaults(func=partial(run, spec, dests))


def config_for_args(spec: MethodSpec, dests: dict[str, str], args: argparse.Namespace):
    """Defaults < the space's defaults < ``--config`` (or the run's config.yaml on ``--resume``) < flags."""
    yaml_path = args.config
    out = Path(args.out)
    if yaml_path is None and args.resume and (out / "config.yaml").is_file():
        yaml_path = out / "config.yaml"
    space = args.space or (load_yaml(yaml_path).get("space") if yaml_path else None) or spec.default_space
    cls = spec.variant(space).config
    overrides = overrides_from_args(args, cls, dests)
    own = set(overrides) | {d for f, d in dests.items() if f in {x.name for x in _fields(cls)}}
    stray = sorted(given_flags(args, dests) - own)
    if stray:
        flags = ", ".join("--" + s.replace("_", "-") for s in stray)
        raise ConfigError(f"{flags} {'does' if len(stray) == 1 else 'do'} not apply to `search {spec.name} --space {space}`")
    for key in ("data", "data_dir"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = os.path.abspath(value) if key == "data_dir" or os.path.exists(value) else value
    return resolve_method_config(spec, space=space, yaml_path=yaml_path, overrides=overrides)


def _fields(cls: type):
    import dataclasses

    return dataclasses.fields(cls)


def run(spec: MethodSpec, dests: dict[str, str], args: argparse.Namespace) -> int:
    from nasforge.api import run_config

    cfg = config_for_args(spec, dests, args)
    result = run_config(spec, cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    print(result.summary())
    return 0
