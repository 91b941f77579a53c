"""Search methods: algorithms only, registered by :func:`register_method` with their config.

``methods()`` lists them (importing the method modules on first use); ``get_method(name)``
returns one :class:`~nasforge.search.registry.MethodSpec`. A one-shot method registers a
function ``run(cfg, out, *, resume, overwrite, progress) -> SearchResult``; a multi-trial
method registers its strategy class, run by :mod:`nasforge.runners.search_run`. Nothing
here parses arguments or prints: the CLI (:mod:`nasforge.cli.search`) and the Python API
(:func:`nasforge.search`) build the config and report.
"""

from __future__ import annotations

from nasforge.search.registry import MethodSpec, SearchResult, get_method, methods, register_method, resolve_method_config

__all__ = ["MethodSpec", "SearchResult", "get_method", "methods", "register_method", "resolve_method_config"]

from nasforge.utils.callable_module import make_callable  # noqa: E402

make_callable(__name__, "nasforge.api:search")  # nasforge.search("darts", ...) is the API call
