"""The search cache: key builder and plain-dict payloads on the ``search`` alias.

A key covers everything that changes an answer. It includes the store's ``uid``
(a recreated store never meets an old entry) and ``revision`` (bumped by every
document change, so a changed store is never answered from stale cache).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import caches

log = structlog.get_logger(__name__)

CACHE_ALIAS = "search"
KEY_VERSION = "v1"


def normalise_query(query: str) -> str:
    return " ".join(query.split()).casefold()


def search_cache_key(
    *,
    store_uid: str,
    revision: int,
    query: str,
    mode: str,
    model: str,
    max_tokens: int,
    temperature: float,
    top_k: int,
) -> str:
    material = json.dumps(
        [
            KEY_VERSION,
            str(store_uid),
            revision,
            normalise_query(query),
            mode,
            model,
            max_tokens,
            round(temperature, 4),
            top_k,
        ],
        separators=(",", ":"),
    )
    return "search:" + hashlib.sha256(material.encode()).hexdigest()


def cache_get(key: str) -> dict[str, Any] | None:
    try:
        return caches[CACHE_ALIAS].get(key)
    except Exception:  # a cache outage must never fail a search
        log.warning("search_cache_unavailable", op="get", exc_info=True)
        return None


def cache_set(key: str, payload: dict[str, Any], ttl: int | None = None) -> None:
    try:
        caches[CACHE_ALIAS].set(
            key, payload, settings.SEARCH_CACHE_TTL if ttl is None else ttl
        )
    except Exception:
        log.warning("search_cache_unavailable", op="set", exc_info=True)
