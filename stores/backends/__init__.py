"""Retrieval backends behind one interface: ``get_backend(store)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stores.backends.base import Answer, SearchBackend, SearchOptions, Source

if TYPE_CHECKING:
    from stores.models import Store

__all__ = [
    "Answer",
    "SearchBackend",
    "SearchOptions",
    "Source",
    "gemini_backend",
    "get_backend",
    "local_backend",
]


def local_backend() -> SearchBackend:
    from stores.backends.local import LocalBackend

    return LocalBackend()


def gemini_backend() -> SearchBackend:
    from stores.backends.gemini import GeminiBackend

    return GeminiBackend()


def get_backend(store: Store) -> SearchBackend:
    """The backend that serves this store: the one it was created with."""
    if store.backend == "gemini":
        return gemini_backend()
    return local_backend()
