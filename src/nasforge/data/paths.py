"""Where dataset files are looked up.

Order: an explicit ``data_dir`` (the folder itself, or a folder holding one of the
dataset's usual sub-folders) -> ``$NASFORGE_DATA/<folder>`` -> ``~/.nasforge/data/<folder>``
(plus any extra system folders a dataset names, e.g. Debian's
``/usr/share/datasets/fashion-mnist``). Nothing found raises a one-line
:class:`~nasforge.errors.DataError` naming the dataset, where it looked and how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from nasforge.errors import DataError

#: environment variable naming the root folder of the data sets
ENV_VAR = "NASFORGE_DATA"


def user_data_root() -> Path:
    """``~/.nasforge/data``: where ``nasforge data download`` puts files by default."""
    return Path(os.path.expanduser("~")) / ".nasforge" / "data"


def candidate_dirs(folders: Sequence[str], data_dir: str | os.PathLike | None = None, extra: Sequence[str] = ()) -> list[Path]:
    """The folders searched, in order (see the module docstring)."""
    if data_dir is not None:
        base = Path(os.path.expanduser(str(data_dir)))
        return [base] + [base / f for f in folders]
    out: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out += [Path(os.path.expanduser(env)) / f for f in folders]
    out += [user_data_root() / f for f in folders]
    out += [Path(e) for e in extra]
    return out


def resolve_data_dir(
    dataset: str,
    folders: Sequence[str],
    is_valid: Callable[[Path], bool],
    data_dir: str | os.PathLike | None = None,
    hint: str = "",
    extra: Sequence[str] = (),
) -> Path:
    """First candidate folder for which ``is_valid(folder)`` holds, else :class:`DataError`."""
    if data_dir is not None and not Path(os.path.expanduser(str(data_dir))).is_dir():
        raise DataError(f"data folder for {dataset} does not exist: {data_dir}{'; ' + hint if hint else ''}")
    cands = candidate_dirs(folders, data_dir, extra)
    for c in cands:
        if c.is_dir() and is_valid(c):
            return c
    where = ", ".join(str(c) for c in cands)
    if data_dir is None and not os.environ.get(ENV_VAR):
        where += f" (${ENV_VAR} is not set)"
    raise DataError(f"{dataset} data not found; looked in {where}{'; ' + hint if hint else ''}")
