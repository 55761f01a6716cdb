"""Retrieval backends behind one interface: ``get_backend(store)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from flamehaven.errors import ApiError
from stores.backends.base import (
    Answer,
    Citation,
    SearchBackend,
    SearchOptions,
    Source,
)

if TYPE_CHECKING:
    from stores.models import Store

__all__ = [
    "Answer",
    "Citation",
    "SearchBackend",
    "SearchOptions",
    "Source",
    "gemini_backend",
    "get_backend",
    "local_backend",
    "delete_remote_quietly",
]

log = structlog.get_logger(__name__)


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


def delete_remote_quietly(
    delete: Callable[[Any], None], target: Any, *, remote: str
) -> None:
    """Delete a remote copy after ours is gone; if the backend cannot, log it.

    Ours is already deleted: a backend outage must not bring it back or fail the
    request, but what was left behind must be findable (``manage.py fsck``).
    """
    try:
        delete(target)
    except ApiError as exc:
        log.error("remote_copy_left_behind", remote=remote, error=exc.message)
