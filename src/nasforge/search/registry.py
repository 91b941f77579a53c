"""The registry of search methods: ``@register_method(name, config=..., kind=..., spaces=...)``.

A method is an algorithm that knows nothing of the command line (as NNI's ``Strategy``):
it is registered with its config dataclass, the spaces it searches and its family:

- ``one-shot`` (DARTS, SNAS, ENAS, DARTS-RNN): the decorated object is a function
  ``run(cfg, out, *, resume, overwrite, progress) -> SearchResult`` that trains a supernet
  (or shared weights) and derives one architecture;
- ``multi-trial`` (BlockQNN, random search, REINFORCE on NAS-Bench-201): the decorated
  object is a strategy class (``ask``/``tell``, ``state_dict``) run by the multi-trial
  runner (:mod:`nasforge.runners.search_run`), which owns workers, the trial store and resume.

One name may be registered several times for different spaces with different configs
(``darts`` on ``cell``/``nb201`` with :class:`~nasforge.search.darts.DartsConfig`, on
``rnn`` with :class:`~nasforge.search.darts_rnn_config.DartsRNNConfig`). The CLI builds
each method's flags from these config classes (:mod:`nasforge.cli.flags`) and the Python
API (:func:`nasforge.search`) resolves a config the same way.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nasforge.errors import ConfigError

KINDS = ("one-shot", "multi-trial")

#: modules that register methods when imported (imported in this order by :func:`methods`)
METHOD_MODULES = (
    "nasforge.search.darts",
    "nasforge.search.darts_rnn",
    "nasforge.search.snas",
    "nasforge.search.enas",
    "nasforge.search.blockqnn",
    "nasforge.search.random_search",
    "nasforge.search.reinforce",
)


@dataclass
class SearchResult:
    """What a finished search returns: the architecture and where its run lives."""

    method: str
    space: str
    arch: Any
    out: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the last epoch's record, or the best trial's

    @property
    def arch_path(self) -> Path | None:
        return None if self.out is None else self.out / "arch.json"

    def summary(self) -> str:
        """One line: where the architecture is and its best metric."""
        where = f" -> {self.arch_path}" if self.out is not None else ""
        best = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items() if isinstance(v, float))
        return f"{self.method} ({self.space}): derived architecture{where}" + (f" ({best})" if best else "")


@dataclass
class Variant:
    """One registration: a config class and its target for some spaces of a method."""

    config: type
    target: Any
    spaces: tuple[str, ...]
    space_defaults: dict[str, dict[str, Any]]
    kind: str = "one-shot"


@dataclass
class MethodSpec:
    """A registered method: its family (that of its first registration) and one :class:`Variant`
    per group of spaces; a variant may be of the other family (ENAS on the NAS-Bench-201 table
    is multi-trial: every controller sample is a table query)."""

    name: str
    kind: str
    summary: str = ""
    variants: list[Variant] = field(default_factory=list)

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(s for v in self.variants for s in v.spaces)

    @property
    def configs(self) -> list[type]:
        return [v.config for v in self.variants]

    @property
    def default_space(self) -> str:
        for v in self.variants:
            default = _field_default(v.config, "space")
            if default in v.spaces:
                return default
        return self.spaces[0]

    def variant(self, space: str) -> Variant:
        for v in self.variants:
            if space in v.spaces:
                return v
        raise ConfigError(f"search {self.name} has no space {space!r} (spaces: {', '.join(self.spaces)})")


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    *,
    config: type,
    kind: str,
    spaces: tuple[str, ...],
    space_defaults: dict[str, dict[str, Any]] | None = None,
    summary: str = "",
) -> Callable[[Any], Any]:
    """Decorator registering a one-shot run function or a multi-trial strategy class."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"config of {name!r} must be a dataclass")

    def deco(target: Any) -> Any:
        spec = _REGISTRY.setdefault(name, MethodSpec(name, kind, summary))
        if summary and not spec.summary:
            spec.summary = summary
        taken = set(spec.spaces) & set(spaces)
        if taken:
            raise ValueError(f"method {name!r}: spaces {sorted(taken)} registered twice")
        spec.variants.append(Variant(config, target, tuple(spaces), dict(space_defaults or {}), kind))
        return target

    return deco


def _load_all() -> None:
    for mod in METHOD_MODULES:
        importlib.import_module(mod)


def methods() -> dict[str, MethodSpec]:
    """Every registered method, by name (importing the method modules on first use)."""
    _load_all()
    return dict(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    all_methods = methods()
    if name not in all_methods:
        raise ConfigError(f"unknown search method {name!r} (known: {', '.join(all_methods)})")
    return all_methods[name]


def resolve_method_config(
    spec: MethodSpec, *, space: str | None = None, yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> Any:
    """The method's config: defaults < the space's defaults < YAML < ``overrides`` (``None`` = not given).

    A key that the chosen space's config does not have raises :class:`ConfigError`
    naming it (e.g. ``--emsize`` with ``darts --space cell``).
    """
    from nasforge.config import from_dict, load_yaml

    data: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    space = space or given.get("space") or data.get("space") or spec.default_space
    variant = spec.variant(str(space))
    names = {f.name for f in dataclasses.fields(variant.config)}
    for key in given:
        if key not in names:
            if any(key in {f.name for f in dataclasses.fields(v.config)} for v in spec.variants):
                raise ConfigError(f"setting {key!r} does not apply to search {spec.name} --space {space} ({variant.config.__name__})")
            import difflib

            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r} for search {spec.name} --space {space}{hint}")
    merged = {**variant.space_defaults.get(str(space), {}), **data, **given}
    if "space" in names:
        merged["space"] = space
    return from_dict(variant.config, merged, where=str(yaml_path) if yaml_path else "config")


def _field_default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default if f.default is not dataclasses.MISSING else None
    return None


__all__ = ["METHOD_MODULES", "MethodSpec", "SearchResult", "Variant", "get_method", "methods", "register_method", "resolve_method_config"]
