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
    "get_backend",
    "local_backend",
]


def local_backend() -> SearchBackend:
    from stores.backends.local import LocalBackend

    return LocalBackend()


def get_backend(store: Store) -> SearchBackend:
    """The backend that serves this store (the Gemini backend lands with issue 4)."""
    return local_backend()
