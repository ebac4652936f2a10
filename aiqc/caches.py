"""Per-process caches of what was read from a database, and one way to forget them all.

A module that caches (decoded datasets, encoded samples, loaded models) registers its
cache here when it is imported; :func:`aiqc.database.clear_caches` clears every registered
cache without knowing which modules have one.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

Cached = TypeVar("Cached", bound=Callable[..., Any])

_registered: list[Any] = []


def register(cached: Cached) -> Cached:
    """Register a ``functools.lru_cache``-wrapped function (use as a decorator); returns it."""
    if not callable(getattr(cached, "cache_clear", None)):
        raise TypeError(f"caches.register: expected a function with cache_clear(); received {cached!r}.")
    _registered.append(cached)
    return cached


def clear() -> None:
    """Empty every registered cache."""
    for cached in _registered:
        cached.cache_clear()
