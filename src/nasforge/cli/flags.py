"""Command-line flags built from config dataclasses, in one place.

Every field of a config dataclass becomes a flag: ``batch_size`` -> ``--batch-size``;
booleans get ``--x/--no-x``; lists of numbers or names are comma-separated
(``--ops a,b,c``); nested lists and mappings are YAML-only. The help text is the field's
``metadata["help"]`` or, failing that, the comment after the field in its class's source.
Flags that predate this scheme and differ from their field live in :data:`ALIASES`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any

#: (config class name, field) -> extra flag spellings (``!`` prefix: the flag stores the negation)
ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("SnasConfig", "log_penalty"): ("!--linear-penalty",),
    ("MultiTrialConfig", "replay_batch"): ("--replay",),
}
#: (config class name, field) -> the flag of another field that sets it (one flag for two configs' names)
SHARED: dict[tuple[str, str], str] = {
    ("DartsRNNConfig", "arch_wdecay"): "arch_weight_decay",
    ("DartsRNNConfig", "recompute"): "checkpoint_cells",
}
#: fields the CLI adds itself (positional or common run flags)
RESERVED = {"space", "data", "data_dir"}


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` -> {name: comment} from the class source (and its bases)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+)$", src, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


def _list_type(inner: Any):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return [inner(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {inner.__name__}, got {text!r}") from None

    return parse


def add_config_flags(parser: argparse.ArgumentParser, classes: list[type], reserved: set[str] = RESERVED) -> dict[str, str]:
    """Add a flag for every field of ``classes`` (union, first class wins); returns {field: dest}."""
    dests: dict[str, str] = {}
    taken = {s for a in parser._actions for s in a.option_strings}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        notes = _comments(cls)
        for f in dataclasses.fields(cls):
            shared = SHARED.get((cls.__name__, f.name))
            if shared is not None:
                dests[f.name] = shared
                continue
            if f.name in reserved or f.name in dests:
                continue
            flag = "--" + f.name.replace("_", "-")
            if flag in taken:
                dests[f.name] = f.name
                continue
            tp = _strip_optional(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else None
            text = f.metadata.get("help") or notes.get(f.name) or ""
            help_ = f"{text} (default: {default})" if text else f"(default: {default})"
            kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_.replace("%", "%%")}
            if tp is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            elif tp in (int, float, str):
                parser.add_argument(flag, type=tp, metavar=tp.__name__.upper(), **kw)
            elif typing.get_origin(tp) in (list, tuple) and typing.get_args(tp) and typing.get_args(tp)[0] in (int, float, str):
                parser.add_argument(flag, type=_list_type(typing.get_args(tp)[0]), metavar="A,B,...", **kw)
            else:
                continue  # nested lists, mappings: YAML only
            taken.add(flag)
            dests[f.name] = f.name
            for alias in ALIASES.get((cls.__name__, f.name), ()):
                negate = alias.startswith("!")
                name = alias.lstrip("!")
                if negate:
                    parser.add_argument(name, dest=f.name, action="store_false", default=None, help=f"sets {f.name} to false")
                else:
                    parser.add_argument(name, dest=f.name, type=tp, default=None, help=argparse.SUPPRESS)
                taken.add(name)
    return dests


def overrides_from_args(args: argparse.Namespace, cls: type, dests: dict[str, str]) -> dict[str, Any]:
    """The settings given on the command line for config ``cls`` ({field: value}, only those given)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        dest = SHARED.get((cls.__name__, f.name)) or dests.get(f.name, f.name)
        value = getattr(args, dest, None)
        if value is not None:
            out[f.name] = value
    return out


def given_flags(args: argparse.Namespace, dests: dict[str, str]) -> set[str]:
    """Destinations of the config flags that were given (to reject ones the chosen config lacks)."""
    return {d for d in set(dests.values()) if getattr(args, d, None) is not None}


__all__ = ["ALIASES", "SHARED", "add_config_flags", "given_flags", "overrides_from_args"]
