"""Source registry: every module here that defines ``SOURCE`` is a source."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from .base import ExtractContext, Source, SourceError

__all__ = ["ExtractContext", "Source", "SourceError", "all_sources", "get_source"]

# Sources that others resolve against run first.
_ORDER = {"backstage": 0, "synthetic": 1}


@cache
def all_sources() -> tuple[Source, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        source = getattr(module, "SOURCE", None)
        if isinstance(source, Source):
            found.append(source)
    return tuple(sorted(found, key=lambda s: (_ORDER.get(s.name, 9), s.name)))


def get_source(name: str) -> Source:
    for source in all_sources():
        if source.name == name:
            return source
    known = ", ".join(s.name for s in all_sources())
    raise KeyError(f"unknown source {name!r}; known sources: {known}")
