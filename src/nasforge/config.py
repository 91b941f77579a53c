"""Configs: dataclasses filled from defaults, then a YAML file, then command-line flags.

Every key is checked against the dataclass: an unknown key or a value of the wrong type
raises :class:`~nasforge.errors.ConfigError` naming the key (and the closest valid one).
Then every float must be finite and every numeric key within its range in :data:`RANGES`
(one table for all commands, keyed by field name), before the config's own ``validate``
runs; so a bad number stops a command before its run directory is touched.
The resolved config is written to ``config.yaml`` in the run directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from nasforge.errors import ConfigError, NasforgeError
from nasforge.utils.io import atomic_write_text

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric config key: ``lo``/``hi`` bounds (``None`` = open ended)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: value > lo; False: value >= lo
    hi_open: bool = False  # True: value < hi; False: value <= hi

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            return False
        return True

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        return "a finite number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


COUNT = Range(1)  # a count: >= 1
NONNEG = Range(0)  # a weight, decay, clip (0 = off) or penalty: >= 0
POSITIVE = Range(0, lo_open=True)  # a rate or temperature: > 0
PROB = Range(0, 1, hi_open=True)  # a dropout probability or share: in [0, 1)
FRACTION = Range(0, 1, lo_open=True, hi_open=True)  # a split that must leave both sides non-empty
DECAY = Range(0, 1, lo_open=True)  # a multiplicative decay: in (0, 1]
UNIT = Range(0, 1)  # in [0, 1]


def _arch_limit(name: str) -> int:
    from nasforge.arch.base import arch_limit

    return arch_limit(name)


#: The range of every numeric key of every command's config, by key name (the names are
#: shared: ``lr`` means a learning rate in every config). Checked by :func:`from_dict` (so
#: by :func:`resolve` for every command, flags and YAML alike, before anything is written),
#: together with "every float is finite". ``None`` values (unset optional keys) are not
#: checked. A dataclass field may override its entry with ``metadata={"range": Range(...)}``;
#: :data:`CLASS_RANGES` overrides an entry for one config class. Structural sizes get the
#: upper bounds of :data:`nasforge.arch.base.ARCH_LIMITS` (see :func:`key_range`).
RANGES: dict[str, Range] = {
    # counts (>= 1)
    **{k: COUNT for k in (
        "epochs", "batch_size", "eval_batch_size", "test_batch_size", "bptt",
        "limit", "eval_limit", "max_steps", "eval_max_batches", "eval_batches", "eval_every", "threads",
        "trials", "workers", "replay_batch", "blocks_per_iteration", "blocks_per_stage", "stages",
        "controller_steps", "controller_aggregate", "derive_samples",
        "nonmono", "lr_t0", "lr_tmul", "nb201_cells",
    )},
    # widths and image sides: far above the papers' (C <= 96, hidden 1000, 224 px), low
    # enough that a typo cannot ask a search (which has no memory check) for terabytes
    **{k: Range(1, 4096) for k in ("channels", "controller_hidden", "head_hidden")},
    **{k: Range(1, 16384) for k in ("emsize", "nhid")},
    "input_size": Range(2, 1024),
    "order": Range(1, 2),
    "seed": Range(0, 2**32 - 1),  # numpy's seed range
    # counts that may be 0
    **{k: NONNEG for k in ("max_retries", "max_duplicates", "crop_padding", "cutout", "max_seq_len_delta", "rnn_lr_decay_start")},
    # rates and temperatures (> 0)
    **{k: POSITIVE for k in ("lr", "arch_lr", "controller_lr", "temp", "temp_min", "temperature", "tanh_constant", "reward_constant")},
    # weights, decays, clips, penalties, resources (>= 0)
    **{k: NONNEG for k in (
        "lr_min", "weight_decay", "arch_weight_decay", "wdecay", "arch_wdecay", "grad_clip", "clip",
        "auxiliary_weight", "alpha", "beta", "ar_alpha", "tar_beta", "alpha_init_std", "entropy_weight",
        "skip_weight", "mu", "rho", "penalty", "cpus_per_trial", "gpus_per_trial",
    )},
    # probabilities and shares
    **{k: PROB for k in (
        "dropout", "dropouth", "dropoutx", "dropouti", "dropoute", "drop_path", "drop_path_prob",
        "label_smoothing", "valid_fraction", "half_bptt_prob", "momentum", "arch_beta1", "arch_beta2",
        "arch_betas", "baseline_decay",
    )},
    "train_portion": FRACTION,
    "skip_target": FRACTION,
    "lr_gamma": DECAY,
    "rnn_lr_decay": DECAY,
    "q_lr": UNIT,
    "gamma": UNIT,  # Q-learning discount
    "q_init": Range(),  # any finite Q value
    "replay_every": NONNEG,  # 0 = replay after each schedule batch
}

#: (config class name, key) -> range, where one config differs from the shared meaning
CLASS_RANGES: dict[tuple[str, str], Range] = {
    ("EnasConfig", "lr"): NONNEG,  # the nb201 space trains nothing: its resolved config holds lr 0
}

#: structural sizes: key -> the architecture limit that bounds it from above
_STRUCTURAL = {"layers": "macro_layers", "nodes": "cell_nodes", "steps": "recurrent_nodes", "max_layers": "nsc_rows"}


def key_range(cls: type, f: dataclasses.Field) -> Range | None:
    """The allowed range of field ``f`` of config class ``cls`` (``None``: not in the table)."""
    meta = f.metadata.get("range") if f.metadata else None
    if meta is not None:
        return meta
    if (cls.__name__, f.name) in CLASS_RANGES:
        return CLASS_RANGES[(cls.__name__, f.name)]
    if f.name in _STRUCTURAL:
        return Range(1, _arch_limit(_STRUCTURAL[f.name]))
    return RANGES.get(f.name)


def _numbers(value: Any) -> list[float]:
    """The numbers in a config value (a number or a flat list of numbers)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def check_ranges(obj: Any) -> None:
    """Every float of dataclass ``obj`` finite, every numeric key in its :func:`key_range`."""
    cls = type(obj)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        nums = _numbers(value)
        for v in nums:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"config key {f.name!r} must be a finite number, got {v}")
        rng = key_range(cls, f)
        if rng is None:
            continue
        for v in nums:
            if not rng.contains(v):
                raise ConfigError(f"config key {f.name!r} must be {rng.describe()}, got {_num(v) if isinstance(v, int) else v}")


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key {name!r}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {name!r} must be a list, got {value!r}")
        inner = args[0] if args else Any
        seq = [_coerce(name, v, inner) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {name!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {name!r} must be a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r} in {where}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            kwargs[key] = from_dict(tp, value, where=f"{where}.{key}")
        else:
            kwargs[key] = _coerce(key, value, tp)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid {where}: {e}") from None
    check_ranges(obj)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except NasforgeError:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as e:  # a check tripped over a malformed value
            raise ConfigError(f"invalid {where}: {e}") from None
    return obj


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not a UTF-8 text file") from None
    except RecursionError:
        raise ConfigError(f"config file {p} is nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys to values")
    return data


def resolve(cls: type[T], yaml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Defaults < YAML file < overrides (flags; ``None`` values mean 'not given')."""
    data: dict[str, Any] = {}
    if yaml_path:
        data.update(load_yaml(yaml_path))
    for k, v in (overrides or {}).items():
        if v is not None:
            data[k] = v
    return from_dict(cls, data, where=str(yaml_path) if yaml_path else "config")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def write_config(cfg: Any, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
